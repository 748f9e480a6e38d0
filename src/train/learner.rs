//! One training step: forward, loss, backward and the optimizer's update, and what the watchers
//! see of it (loss, accuracy, per-layer gradient norms and update/weight ratios).

use candle_core::{Device, Tensor, D};

use crate::data::Batch;
use crate::model::profile::{self, Phase};
use crate::model::{cross_entropy, Cnn, Mode};
use crate::optim::{self, Optimizer};
use crate::protocol::LearningRate;
use crate::rng::Rng;

/// What learns: the model, its optimizer, the dropout RNG and the learning rate in force.
pub struct Learner {
    pub model: Cnn,
    pub opt: Optimizer,
    /// Dropout masks.
    pub rng: Rng,
    pub lr: LearningRate,
    pub label_smoothing: f64,
    /// Per-class weights of the loss; `None`: every sample counts the same.
    pub class_weights: Option<Vec<f32>>,
    /// The largest global L2 norm of the gradients; `None`: no clipping.
    pub clip_grad_norm: Option<f64>,
    /// Count the exactly-zero gradient entries of the next step (`StepStats::zero_grads`).
    pub count_zero_grads: bool,
}

/// A step that updated the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    pub loss: f64,
    /// Correct predictions in the batch.
    pub hits: usize,
    pub grad_norms: Vec<f64>,
    pub update_ratios: Vec<f64>,
    /// Per parameter, the share of exactly-zero gradient entries (empty unless asked for).
    pub zero_grads: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    Updated(StepStats),
    /// The loss or a gradient norm was NaN or infinite: nothing changed, not even the batch-norm
    /// running statistics.
    NonFinite {
        what: String,
    },
}

impl Learner {
    /// An independent copy with its own dropout RNG: for trying something (the LR range test)
    /// without touching the run.
    pub fn duplicate(&self, rng: Rng) -> Result<Learner, crate::model::ModelError> {
        Ok(Learner {
            model: self.model.duplicate()?,
            opt: self.opt.clone(),
            rng,
            lr: self.lr,
            label_smoothing: self.label_smoothing,
            class_weights: self.class_weights.clone(),
            clip_grad_norm: self.clip_grad_norm,
            count_zero_grads: false,
        })
    }

    /// The activations of every layer on `batch` (see `Cnn::probe`), dropout drawn from `rng`.
    pub fn probe(
        &mut self,
        batch: &Batch,
        rng: &mut Rng,
    ) -> candle_core::Result<Vec<crate::protocol::LayerActivations>> {
        let [c, h, w] = self.model.config().input;
        let x = Tensor::from_slice(&batch.x, (batch.len(), c, h, w), &Device::Cpu)?;
        self.model.probe(&x, rng)
    }

    /// Forward, backward and update on one batch.
    pub fn step(&mut self, batch: &Batch) -> candle_core::Result<StepOutcome> {
        let [c, h, w] = self.model.config().input;
        let x = Tensor::from_slice(&batch.x, (batch.len(), c, h, w), &Device::Cpu)?;
        // Handles, not copies: put back if the step turns out non-finite.
        let running = self.model.running_stats();
        let logits = self.model.forward(&x, Mode::Train, &mut self.rng)?;
        let loss_t = cross_entropy(
            &logits,
            &batch.y,
            self.label_smoothing,
            self.class_weights.as_deref(),
        )?;
        let loss = loss_t.to_scalar::<f32>()? as f64;
        if !loss.is_finite() {
            self.model.set_running_stats(running);
            return Ok(StepOutcome::NonFinite {
                what: format!("loss is {loss}"),
            });
        }
        let hits = count_correct(&logits, &batch.y)?;
        let grads = loss_t.backward()?;
        let params = self.model.params().to_vec();
        let mut grad_tensors = Vec::with_capacity(params.len());
        let mut grad_norms = Vec::with_capacity(params.len());
        for p in &params {
            let g = match grads.get(p.var.as_tensor()) {
                Some(g) => g.contiguous()?,
                None => p.var.zeros_like()?,
            };
            grad_norms.push(l2_of(&g)?);
            grad_tensors.push(g);
        }
        let zero_grads = if std::mem::take(&mut self.count_zero_grads) {
            grad_tensors
                .iter()
                .map(zero_share)
                .collect::<candle_core::Result<Vec<f64>>>()?
        } else {
            Vec::new()
        };
        if let Some(i) = grad_norms.iter().position(|n| !n.is_finite()) {
            self.model.set_running_stats(running);
            let what = format!("gradient norm of {} is {}", params[i].name, grad_norms[i]);
            return Ok(StepOutcome::NonFinite { what });
        }
        // PyTorch's clip_grad_norm_: every gradient scaled by max / (total + 1e-6) when the total
        // norm is above max. The norms reported are those before clipping, as PyTorch returns.
        if let Some(max) = self.clip_grad_norm {
            let coef = clip_coefficient(&grad_norms, max);
            if coef < 1.0 {
                for g in &mut grad_tensors {
                    *g = g.affine(coef, 0.0)?;
                }
            }
        }
        self.opt.begin_step();
        let mut update_ratios = Vec::with_capacity(params.len());
        let lr = self.lr.get() as f32;
        let kind = self.opt.kind;
        let label = || format!("optimizer ({})", kind.name());
        profile::time(label, Phase::Forward, 0.0, || -> candle_core::Result<()> {
            for (i, (p, g)) in params.iter().zip(&grad_tensors).enumerate() {
                let (norm_w, delta) = self.opt.update_tensor(i, p.var.as_tensor(), g, lr)?;
                update_ratios.push(if norm_w > 0.0 { delta / norm_w } else { delta });
            }
            Ok(())
        })?;
        Ok(StepOutcome::Updated(StepStats {
            loss,
            hits,
            grad_norms,
            update_ratios,
            zero_grads,
        }))
    }
}

/// The factor that brings gradients of these per-tensor norms to a global norm of `max`, or 1
/// when they are within it.
pub fn clip_coefficient(norms: &[f64], max: f64) -> f64 {
    let total = norms.iter().map(|n| n * n).sum::<f64>().sqrt();
    (max / (total + 1e-6)).min(1.0)
}

pub(super) fn count_correct(logits: &Tensor, labels: &[u32]) -> candle_core::Result<usize> {
    let preds: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
    Ok(preds.iter().zip(labels).filter(|(p, y)| p == y).count())
}

/// The share of exactly-zero entries of a contiguous f32 tensor.
fn zero_share(t: &Tensor) -> candle_core::Result<f64> {
    let (s, l) = t.storage_and_layout();
    let v = crate::model::cpu::slice::<f32>(&s, l, "zero share")?;
    Ok(v.iter().filter(|&&x| x == 0.0).count() as f64 / v.len().max(1) as f64)
}

/// The L2 norm of a contiguous f32 tensor, read in place.
fn l2_of(t: &Tensor) -> candle_core::Result<f64> {
    let (s, l) = t.storage_and_layout();
    Ok(optim::l2(crate::model::cpu::slice::<f32>(&s, l, "l2")?))
}
