//! The model in evaluation mode over a whole split: the summary a run reports each epoch
//! (`evaluate`) and the per-image predictions `candletop eval` writes (`predict`), both from one
//! forward loop.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, D};

use super::error::TrainError;
use crate::checkpoint::Checkpoint;
use crate::data::{Batch, BatchStream, Dataset, Normalization};
use crate::model::{cross_entropy, Cnn, Mode};
use crate::protocol::Confusion;
use crate::rng::Rng;

/// Batch size for evaluation: bigger than training batches, since no gradients are kept.
pub const EVAL_BATCH: usize = 256;

/// A split's loss, accuracy, per-class accuracy and the speed it was computed at.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    /// In class order; a class absent from the split counts as 0.
    pub class_accuracy: Vec<f64>,
    /// In class order: the class each one's images were most often taken for.
    pub confusion: Vec<Confusion>,
    pub images_per_sec: f64,
}

/// Predictions on a whole split.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub loss: f64,
    pub labels: Vec<u32>,
    pub predicted: Vec<u32>,
    /// Row-major, one row of class probabilities per sample.
    pub probabilities: Vec<f32>,
}

/// Runs the model in evaluation mode over `data` in its stored order and hands each batch with
/// its logits to `each`. Returns the mean cross-entropy.
fn forward_all(
    model: &mut Cnn,
    data: &Arc<Dataset>,
    norm: &Normalization,
    batch_size: usize,
    mut each: impl FnMut(&Batch, &Tensor) -> candle_core::Result<()>,
) -> candle_core::Result<f64> {
    let [c, h, w] = model.config().input;
    // Evaluation draws no dropout masks; the RNG is only there to satisfy the signature.
    let mut unused = Rng::new(0);
    let (mut loss_sum, mut n) = (0.0, 0usize);
    for batch in BatchStream::sequential(data.clone(), batch_size, norm.clone()) {
        let batch = batch.map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let x = Tensor::from_slice(&batch.x, (batch.len(), c, h, w), &Device::Cpu)?;
        let logits = model.forward(&x, Mode::Eval, &mut unused)?.detach();
        let loss = cross_entropy(&logits, &batch.y, 0.0, None)?.to_scalar::<f32>()? as f64;
        loss_sum += loss * batch.len() as f64;
        n += batch.len();
        each(&batch, &logits)?;
    }
    Ok(loss_sum / n.max(1) as f64)
}

pub fn evaluate(
    model: &mut Cnn,
    data: &Arc<Dataset>,
    norm: &Normalization,
    batch_size: usize,
) -> candle_core::Result<Evaluation> {
    let t0 = Instant::now();
    let classes = model.config().classes;
    // taken[y * classes + p]: images of class y predicted as p.
    let mut taken = vec![0usize; classes * classes];
    let loss = forward_all(model, data, norm, batch_size, |batch, logits| {
        let preds: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
        for (&p, &y) in preds.iter().zip(&batch.y) {
            taken[y as usize * classes + p as usize] += 1;
        }
        Ok(())
    })?;
    let rows: Vec<&[usize]> = taken.chunks(classes.max(1)).collect();
    let seen: Vec<usize> = rows.iter().map(|r| r.iter().sum()).collect();
    let hits: Vec<usize> = rows.iter().enumerate().map(|(c, r)| r[c]).collect();
    let n: usize = seen.iter().sum();
    Ok(Evaluation {
        loss,
        accuracy: hits.iter().sum::<usize>() as f64 / n.max(1) as f64,
        class_accuracy: hits
            .iter()
            .zip(&seen)
            .map(|(&h, &n)| h as f64 / n.max(1) as f64)
            .collect(),
        confusion: rows
            .iter()
            .enumerate()
            .map(|(c, r)| most_confused(c, r))
            .collect(),
        images_per_sec: n as f64 / t0.elapsed().as_secs_f64().max(1e-9),
    })
}

/// The class that `row` (one class's predictions, counted by class) holds most of, besides the
/// class `c` itself.
fn most_confused(c: usize, row: &[usize]) -> Confusion {
    let total = row.iter().sum::<usize>().max(1) as f64;
    row.iter()
        .enumerate()
        .filter(|&(p, &k)| p != c && k > 0)
        // The first of equal counts (max_by_key keeps the last).
        .min_by_key(|&(p, &k)| (std::cmp::Reverse(k), p))
        .map_or(
            Confusion {
                class: c,
                share: 0.0,
            },
            |(p, &k)| Confusion {
                class: p,
                share: k as f64 / total,
            },
        )
}

/// Softmax probabilities and the predicted class of every image of `data`.
pub fn predict(
    model: &mut Cnn,
    data: &Arc<Dataset>,
    norm: &Normalization,
    batch_size: usize,
) -> candle_core::Result<Predictions> {
    let mut p = Predictions {
        loss: 0.0,
        labels: Vec::with_capacity(data.len()),
        predicted: Vec::with_capacity(data.len()),
        probabilities: Vec::with_capacity(data.len() * model.config().classes),
    };
    p.loss = forward_all(model, data, norm, batch_size, |batch, logits| {
        p.predicted
            .extend(logits.argmax(D::Minus1)?.to_vec1::<u32>()?);
        p.probabilities.extend(
            candle_nn::ops::softmax_last_dim(logits)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        );
        p.labels.extend_from_slice(&batch.y);
        Ok(())
    })?;
    Ok(p)
}

/// The model a checkpoint holds, with its weights and running statistics, for evaluation.
pub fn load_model(ckpt: &Checkpoint, path: &std::path::Path) -> Result<Cnn, TrainError> {
    let mut rng = Rng::new(0);
    let mut model = Cnn::new(ckpt.model_config.clone(), &mut rng, DType::F32)?;
    model.set_kernels(ckpt.train_config.kernels);
    model
        .load_state(&ckpt.tensors, &ckpt.counters)
        .map_err(|problem| TrainError::Mismatch {
            path: path.to_path_buf(),
            problem,
        })?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_is_most_confused_with_the_class_holding_most_of_its_wrong_images() {
        // Class 1: 5 right, 3 taken for class 2, 2 for class 0.
        assert_eq!(
            most_confused(1, &[2, 5, 3]),
            Confusion {
                class: 2,
                share: 0.3
            }
        );
        // Ties go to the lower class; no wrong image names the class itself with 0.
        assert_eq!(
            most_confused(2, &[1, 1, 8]),
            Confusion {
                class: 0,
                share: 0.1
            }
        );
        assert_eq!(
            most_confused(0, &[4, 0, 0]),
            Confusion {
                class: 0,
                share: 0.0
            }
        );
    }
}
