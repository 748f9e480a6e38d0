//! Batches for one epoch, prepared on background loader threads behind bounded queues so that
//! the training step never waits for shuffling, augmentation and normalisation.

use std::sync::Arc;
use std::thread;

use crossbeam_channel::{bounded, Receiver};
use serde::{Deserialize, Serialize};

use super::augment::{self, AugmentSpec, Image};
use super::dataset::Dataset;
use super::error::DataError;
use crate::rng::Rng;

/// Pixels are scaled to [0, 1], then standardised per channel with the training set's
/// statistics (or given ones).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    /// The mean and standard deviation of each channel of `d`'s pixels scaled to [0, 1].
    pub fn of(d: &Dataset) -> Self {
        Self::of_first(d, d.len())
    }

    /// As `of`, over an even sample of at most `n` of `d`'s images.
    pub fn of_first(d: &Dataset, n: usize) -> Self {
        use rayon::prelude::*;
        let c = d.channels.max(1);
        let plane = (d.height * d.width).max(1);
        let stride = d.len().div_ceil(n.max(1)).max(1);
        let picked: Vec<usize> = (0..d.len()).step_by(stride).collect();
        // Integer sums per channel: exact, so the order the images are summed in (in
        // parallel, for sets read from disk) does not matter.
        let sums = picked
            .par_iter()
            .map(|&i| i)
            .map(|i| {
                let img = d.image(i);
                let mut s = vec![(0u64, 0u64); c];
                for (ch, px) in img.chunks_exact(plane).enumerate() {
                    for &p in px {
                        s[ch].0 += p as u64;
                        s[ch].1 += (p as u64) * (p as u64);
                    }
                }
                s
            })
            .reduce(
                || vec![(0u64, 0u64); c],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        x.0 += y.0;
                        x.1 += y.1;
                    }
                    a
                },
            );
        let n = (picked.len() * plane).max(1) as f64;
        let (mut mean, mut std) = (Vec::with_capacity(c), Vec::with_capacity(c));
        for &(sum, sq) in &sums {
            let m = sum as f64 / n / 255.0;
            let var = (sq as f64 / n / (255.0 * 255.0) - m * m).max(0.0);
            mean.push(m as f32);
            std.push((var.sqrt() as f32).max(1e-6));
        }
        Self { mean, std }
    }

    /// One mean and one std for every channel.
    pub fn uniform(mean: f32, std: f32, channels: usize) -> Self {
        Self {
            mean: vec![mean; channels],
            std: vec![std; channels],
        }
    }

    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Appends the normalised pixels of one image (`channels` planes) to `out`.
    pub fn apply(&self, pixels: &[u8], out: &mut Vec<f32>) {
        let plane = pixels.len() / self.channels().max(1);
        for (ch, px) in pixels.chunks(plane.max(1)).enumerate() {
            let (m, s) = (self.mean[ch], self.std[ch]);
            let scale = 1.0 / (255.0 * s);
            let shift = m / s;
            out.extend(px.iter().map(|&p| p as f32 * scale - shift));
        }
    }

    /// Appends the normalised values of an image already in [0, 1] to `out`.
    pub fn apply_unit(&self, img: &Image, out: &mut Vec<f32>) {
        let plane = img.height * img.width;
        for (ch, px) in img.data.chunks(plane.max(1)).enumerate() {
            let (m, s) = (self.mean[ch], 1.0 / self.std[ch]);
            out.extend(px.iter().map(|&v| (v - m) * s));
        }
    }

    /// "0.2860 / 0.3530" or per channel "0.491,0.482,0.447 / 0.247,0.243,0.262".
    pub fn describe(&self) -> String {
        let list = |v: &[f32]| {
            v.iter()
                .map(|x| format!("{x:.4}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!("mean {} std {}", list(&self.mean), list(&self.std))
    }
}

/// Where the normalisation comes from: the training set's statistics, or given ones.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum NormalizeSpec {
    #[default]
    Auto,
    /// Mean and std per channel (one value stands for every channel).
    Given { mean: Vec<f32>, std: Vec<f32> },
}

impl std::str::FromStr for NormalizeSpec {
    type Err = DataError;

    /// `auto`, or `MEAN/STD` with comma lists: `0.5/0.25`, `0.49,0.48,0.45/0.25,0.24,0.26`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |problem: &str| DataError::Normalize {
            spec: crate::format::shown(s),
            problem: problem.to_string(),
        };
        if let Some(problem) = crate::format::control_character(s.trim()) {
            return Err(bad(&problem));
        }
        let t = s.trim();
        if t == "auto" {
            return Ok(Self::Auto);
        }
        let Some((m, d)) = t.split_once('/') else {
            return Err(bad(
                "expected 'auto' or MEAN/STD, e.g. 0.5/0.25 or 0.49,0.48,0.45/0.25,0.24,0.26",
            ));
        };
        let list = |v: &str| -> Option<Vec<f32>> {
            v.split(',')
                .map(|x| x.trim().parse::<f32>().ok().filter(|x| x.is_finite()))
                .collect()
        };
        let (Some(mean), Some(std)) = (list(m), list(d)) else {
            return Err(bad("the means and stds must be numbers"));
        };
        if mean.len() != std.len() || !(mean.len() == 1 || mean.len() == 3) {
            return Err(bad("give 1 or 3 means and as many stds"));
        }
        if std.iter().any(|&x| x <= 0.0) {
            return Err(bad("a std must be positive"));
        }
        Ok(Self::Given { mean, std })
    }
}

impl std::fmt::Display for NormalizeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[f32]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Given { mean, std } => write!(f, "{}/{}", list(mean), list(std)),
        }
    }
}

impl TryFrom<String> for NormalizeSpec {
    type Error = DataError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<NormalizeSpec> for String {
    fn from(n: NormalizeSpec) -> String {
        n.to_string()
    }
}

impl NormalizeSpec {
    /// The normalisation of `train`'s images.
    pub fn resolve(&self, train: &Dataset) -> Result<Normalization, DataError> {
        match self {
            Self::Auto => Ok(Normalization::of(train)),
            Self::Given { mean, std } => {
                let c = train.channels;
                if mean.len() == 1 {
                    return Ok(Normalization::uniform(mean[0], std[0], c));
                }
                if mean.len() != c {
                    return Err(DataError::Normalize {
                        spec: self.to_string(),
                        problem: format!(
                            "{} values per list for images of {c} channels",
                            mean.len()
                        ),
                    });
                }
                Ok(Normalization {
                    mean: mean.clone(),
                    std: std.clone(),
                })
            }
        }
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

/// How a loader turns stored images into a batch: normalisation, and for training the
/// augmentation of this epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Loader {
    pub norm: Normalization,
    /// Empty: no augmentation.
    pub augment: AugmentSpec,
    pub seed: u64,
    pub epoch: usize,
    /// Loader threads.
    pub workers: usize,
}

/// Loader threads for training batches: enough to stay ahead of the training step with
/// augmentation on, few enough to leave the cores to it.
pub const LOADER_THREADS: usize = 2;

impl Loader {
    /// Normalisation only, one thread (evaluation).
    pub fn plain(norm: Normalization) -> Self {
        Self {
            norm,
            augment: AugmentSpec::default(),
            seed: 0,
            epoch: 0,
            workers: 1,
        }
    }

    /// The image at `position` of the epoch as the model sees it, before normalisation (an
    /// erased box holds the mean, which normalises to 0).
    pub fn view(&self, data: &Dataset, index: usize, position: usize) -> Result<Image, DataError> {
        let mut img = Image::from_bytes(
            &data.try_image(index)?,
            data.channels,
            data.height,
            data.width,
        );
        if self.augment.is_empty() {
            return Ok(img);
        }
        let mut rng = augment::sample_rng(self.seed, self.epoch, position);
        augment::apply(&self.augment, &mut img, &mut rng);
        let mut unit = Vec::with_capacity(img.data.len());
        self.norm.apply_unit(&img, &mut unit);
        augment::erase_normalised(
            &self.augment,
            &mut unit,
            (img.channels, img.height, img.width),
            &mut rng,
        );
        let plane = img.height * img.width;
        for (i, v) in img.data.iter_mut().enumerate() {
            let ch = i / plane;
            *v = (unit[i] * self.norm.std[ch] + self.norm.mean[ch]).clamp(0.0, 1.0);
        }
        Ok(img)
    }

    /// The batch of the samples at `chunk` (dataset indices), batch `index` of the epoch, whose
    /// first sample is at `first` in the epoch's order.
    pub fn batch(
        &self,
        data: &Dataset,
        chunk: &[usize],
        index: usize,
        first: usize,
    ) -> Result<Batch, DataError> {
        let mut x = Vec::with_capacity(chunk.len() * data.image_len());
        let shape = (data.channels, data.height, data.width);
        for (k, &i) in chunk.iter().enumerate() {
            let pixels = data.try_image(i)?;
            if self.augment.is_empty() {
                self.norm.apply(&pixels, &mut x);
                continue;
            }
            let mut rng = augment::sample_rng(self.seed, self.epoch, first + k);
            let mut img = Image::from_bytes(&pixels, shape.0, shape.1, shape.2);
            augment::apply(&self.augment, &mut img, &mut rng);
            let at = x.len();
            self.norm.apply_unit(&img, &mut x);
            augment::erase_normalised(&self.augment, &mut x[at..], shape, &mut rng);
        }
        let y = chunk.iter().map(|&i| data.labels[i] as u32).collect();
        Ok(Batch { index, x, y })
    }
}

/// A stream of batches produced by background threads, in order; an image that cannot be read
/// ends it with that error. Dropping it stops the threads.
pub struct BatchStream {
    /// One queue per loader thread; batch k comes from thread (k - start) % threads.
    queues: Vec<Receiver<Result<Batch, DataError>>>,
    turn: usize,
    failed: bool,
}

impl BatchStream {
    /// Batches of `data` in `order`, starting at batch `start`.
    pub fn spawn(
        data: Arc<Dataset>,
        order: Vec<usize>,
        batch_size: usize,
        start: usize,
        loader: Loader,
    ) -> Self {
        let order = Arc::new(order);
        let loader = Arc::new(loader);
        let workers = loader.workers.max(1);
        let queues = (0..workers)
            .map(|w| {
                let (tx, rx) = bounded(3);
                let (data, order, loader) = (data.clone(), order.clone(), loader.clone());
                thread::Builder::new()
                    .name("candletop-batches".into())
                    .spawn(move || {
                        let chunks = order.chunks(batch_size).enumerate().skip(start);
                        for (index, chunk) in chunks.skip(w).step_by(workers) {
                            let b = loader.batch(&data, chunk, index, index * batch_size);
                            let failed = b.is_err();
                            // Stop when the consumer went away or after an error.
                            if tx.send(b).is_err() || failed {
                                return;
                            }
                        }
                    })
                    .expect("spawning a loader thread");
                rx
            })
            .collect();
        Self {
            queues,
            turn: 0,
            failed: false,
        }
    }

    /// Batches of `data` in their stored order (evaluation).
    pub fn sequential(data: Arc<Dataset>, batch_size: usize, norm: Normalization) -> Self {
        let order = (0..data.len()).collect();
        Self::spawn(data, order, batch_size, 0, Loader::plain(norm))
    }
}

impl Iterator for BatchStream {
    type Item = Result<Batch, DataError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let b = self.queues[self.turn].recv().ok()?;
        self.failed = b.is_err();
        self.turn = (self.turn + 1) % self.queues.len();
        Some(b)
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
            files: None,
        })
    }

    #[test]
    fn batches_cover_the_epoch_in_order_from_the_start_batch() {
        let d = tiny();
        let order = epoch_order(10, 5, 0);
        let norm = Normalization::uniform(0.0, 1.0 / 255.0, 1);
        let all: Vec<Batch> =
            BatchStream::spawn(d.clone(), order.clone(), 4, 0, Loader::plain(norm.clone()))
                .map(Result::unwrap)
                .collect();
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
        let rest: Vec<Batch> = BatchStream::spawn(d, order, 4, 1, Loader::plain(norm))
            .map(Result::unwrap)
            .collect();
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

    #[test]
    fn augmented_batches_repeat_on_any_number_of_loader_threads_and_from_any_start() {
        let d = Arc::new(Dataset {
            images: (0..48 * 3 * 8 * 8).map(|i| (i * 7 % 256) as u8).collect(),
            labels: (0..48).map(|i| (i % 4) as u8).collect(),
            channels: 3,
            height: 8,
            width: 8,
            files: None,
        });
        let loader = |workers| Loader {
            norm: Normalization::of(&d),
            augment: "pad-crop:2,flip,jitter:0.3:0.3:0.3:0.1,erase:0.5"
                .parse()
                .unwrap(),
            seed: 9,
            epoch: 2,
            workers,
        };
        let order = epoch_order(48, 9, 2);
        let one: Vec<Batch> = BatchStream::spawn(d.clone(), order.clone(), 5, 0, loader(1))
            .map(Result::unwrap)
            .collect();
        let three: Vec<Batch> = BatchStream::spawn(d.clone(), order.clone(), 5, 0, loader(3))
            .map(Result::unwrap)
            .collect();
        assert_eq!(one.len(), 10);
        for (a, b) in one.iter().zip(&three) {
            assert_eq!((a.index, &a.x, &a.y), (b.index, &b.x, &b.y));
        }
        let later: Vec<Batch> = BatchStream::spawn(d.clone(), order, 5, 4, loader(2))
            .map(Result::unwrap)
            .collect();
        assert_eq!(later[0].x, one[4].x);
        // Augmentation changes the pixels; without it the batch is the normalised images.
        let plain = Loader {
            augment: AugmentSpec::default(),
            ..loader(1)
        };
        let chunk: Vec<usize> = (0..5).collect();
        assert_ne!(
            plain.batch(&d, &chunk, 0, 0).unwrap().x,
            loader(1).batch(&d, &chunk, 0, 0).unwrap().x
        );
    }

    #[test]
    fn statistics_are_per_channel() {
        // Channel 0 is all 0, channel 1 alternates 0 and 255.
        let d = Dataset {
            images: [[0u8, 0, 0, 0], [0, 255, 0, 255]].concat(),
            labels: vec![0],
            channels: 2,
            height: 2,
            width: 2,
            files: None,
        };
        let n = Normalization::of(&d);
        assert_eq!(n.mean, vec![0.0, 0.5]);
        assert!((n.std[1] - 0.5).abs() < 1e-6 && n.std[0] == 1e-6);
        let mut x = Vec::new();
        n.apply(&d.images, &mut x);
        assert_eq!(x, vec![0.0, 0.0, 0.0, 0.0, -1.0, 1.0, -1.0, 1.0]);
        let mut unit = Vec::new();
        n.apply_unit(&Image::from_bytes(&d.images, 2, 2, 2), &mut unit);
        assert_eq!(&unit[4..], &[-1.0, 1.0, -1.0, 1.0]);
    }
}
