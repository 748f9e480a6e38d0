//! Batches for one epoch, prepared on a background thread behind a bounded queue so that the
//! training step never waits for shuffling and normalisation.

use std::sync::Arc;
use std::thread;

use crossbeam_channel::{bounded, Receiver};
use serde::{Deserialize, Serialize};

use super::dataset::Dataset;
use crate::rng::Rng;

/// Pixels are scaled to [0, 1], then standardised with the training set's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: f32,
    pub std: f32,
}

impl Normalization {
    pub fn of(d: &Dataset) -> Self {
        let n = d.images.len().max(1) as f64;
        let (mut sum, mut sq) = (0f64, 0f64);
        for &p in &d.images {
            let x = p as f64 / 255.0;
            sum += x;
            sq += x * x;
        }
        let mean = sum / n;
        let var = (sq / n - mean * mean).max(0.0);
        Self {
            mean: mean as f32,
            std: (var.sqrt() as f32).max(1e-6),
        }
    }

    pub fn apply(&self, pixels: &[u8], out: &mut Vec<f32>) {
        let scale = 1.0 / (255.0 * self.std);
        let shift = self.mean / self.std;
        out.extend(pixels.iter().map(|&p| p as f32 * scale - shift));
    }
}

/// One batch: normalised images (`n x c x h x w`) and labels.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Position of the batch within its epoch.
    pub index: usize,
    pub x: Vec<f32>,
    pub y: Vec<u32>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// The order in which epoch `epoch` visits the training set: a function of the seed and the
/// epoch alone, so a run resumed mid-epoch sees the same order.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::derive(seed, "epoch-order", epoch as u64).shuffle(&mut order);
    order
}

pub fn batches_per_epoch(n: usize, batch_size: usize) -> usize {
    n.div_ceil(batch_size)
}

/// A stream of batches produced by a background thread. Dropping it stops the thread.
pub struct BatchStream {
    rx: Receiver<Batch>,
}

impl BatchStream {
    /// Batches of `data` in `order`, starting at batch `start`.
    pub fn spawn(
        data: Arc<Dataset>,
        order: Vec<usize>,
        batch_size: usize,
        start: usize,
        norm: Normalization,
    ) -> Self {
        let (tx, rx) = bounded(4);
        thread::Builder::new()
            .name("candletop-batches".into())
            .spawn(move || {
                for (index, chunk) in order.chunks(batch_size).enumerate().skip(start) {
                    let mut x = Vec::with_capacity(chunk.len() * data.image_len());
                    for &i in chunk {
                        norm.apply(data.image(i), &mut x);
                    }
                    let y = chunk.iter().map(|&i| data.labels[i] as u32).collect();
                    if tx.send(Batch { index, x, y }).is_err() {
                        return; // the consumer went away
                    }
                }
            })
            .expect("spawning the batch thread");
        Self { rx }
    }

    /// Batches of `data` in their stored order (evaluation).
    pub fn sequential(data: Arc<Dataset>, batch_size: usize, norm: Normalization) -> Self {
        let order = (0..data.len()).collect();
        Self::spawn(data, order, batch_size, 0, norm)
    }
}

impl Iterator for BatchStream {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        self.rx.recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Arc<Dataset> {
        Arc::new(Dataset {
            images: (0..10u8).flat_map(|i| [i * 20, i * 20 + 5]).collect(),
            labels: (0..10u8).collect(),
            channels: 1,
            height: 1,
            width: 2,
        })
    }

    #[test]
    fn batches_cover_the_epoch_in_order_from_the_start_batch() {
        let d = tiny();
        let order = epoch_order(10, 5, 0);
        let norm = Normalization {
            mean: 0.0,
            std: 1.0 / 255.0,
        };
        let all: Vec<Batch> = BatchStream::spawn(d.clone(), order.clone(), 4, 0, norm).collect();
        assert_eq!(
            all.iter().map(Batch::len).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        let labels: Vec<usize> = all
            .iter()
            .flat_map(|b| b.y.iter().map(|&y| y as usize))
            .collect();
        assert_eq!(labels, order);
        assert_eq!(all[0].x[0], d.image(order[0])[0] as f32);
        let rest: Vec<Batch> = BatchStream::spawn(d, order, 4, 1, norm).collect();
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[0].y, all[1].y);
        assert_eq!(rest[0].index, 1);
    }

    #[test]
    fn epoch_orders_differ_by_epoch_and_repeat_by_seed() {
        assert_eq!(epoch_order(100, 1, 3), epoch_order(100, 1, 3));
        assert_ne!(epoch_order(100, 1, 3), epoch_order(100, 1, 4));
        assert_ne!(epoch_order(100, 1, 3), epoch_order(100, 2, 3));
    }

    #[test]
    fn normalisation_standardises() {
        let d = tiny();
        let norm = Normalization::of(&d);
        let mut x = Vec::new();
        norm.apply(&d.images, &mut x);
        let mean = x.iter().sum::<f32>() / x.len() as f32;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / x.len() as f32;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
            "{mean} {var}"
        );
    }
}
