//! The CNN's layers, each a struct with a constructor and `forward`, holding candle `Var`s for
//! their parameters. Parameter layouts are PyTorch's (conv OIHW, linear [out, in]).

use std::sync::Arc;

use candle_core::{
    CpuStorage, CustomOp1, DType, Device, Layout, Module, Result, Shape, Tensor, Var, D,
};
use serde::{Deserialize, Serialize};

use super::activation::Activation;
use super::arch::Pool;
use super::block::{conv_block, BlockSpec, Norm};
use super::conv::Method;
use super::cpu::{dispatch1, slice, tensor, timed_backward, Float};
use super::profile::{self, Phase};
use crate::rng::Rng;

/// Which implementation of the hot operations runs: candle's stock ops (the reference), or
/// candletop's fused custom ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    Stock,
    Fast,
}

/// Train mode uses batch statistics and dropout; eval mode running statistics and no dropout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// A tensor made from values drawn uniformly in [-bound, bound) from the project's RNG.
fn uniform(rng: &mut Rng, shape: &[usize], bound: f32, dtype: DType, dev: &Device) -> Result<Var> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.uniform(-bound, bound)).collect();
    Var::from_tensor(&Tensor::from_vec(v, shape, dev)?.to_dtype(dtype)?)
}

fn constant(value: f32, n: usize, dtype: DType, dev: &Device) -> Result<Tensor> {
    Tensor::from_vec(vec![value; n], n, dev)?.to_dtype(dtype)
}

pub struct Conv2d {
    pub weight: Var,
    pub bias: Option<Var>,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    /// PyTorch's default init: Kaiming uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), ..),
    /// and the same bound for the bias.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rng: &mut Rng,
        in_c: usize,
        out_c: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let fan_in = in_c * kernel * kernel;
        let bound = 1.0 / (fan_in as f32).sqrt();
        let weight = uniform(rng, &[out_c, in_c, kernel, kernel], bound, dtype, dev)?;
        let bias = if bias {
            Some(uniform(rng, &[out_c], bound, dtype, dev)?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            stride,
            padding,
        })
    }

    /// Candle's stock convolution.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.as_tensor().reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}

impl Conv2d {
    /// The fast kernel: the conv block as one op. In training a batch norm uses (and tracks)
    /// the batch's statistics; in evaluation its running statistics fold into the conv.
    pub fn forward_block(
        &self,
        x: &Tensor,
        bn: Option<&mut BatchNorm2d>,
        act: Option<Activation>,
        pool: Pool,
        mode: Mode,
    ) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(|b| b.as_tensor());
        let spec = |norm| BlockSpec {
            stride: self.stride,
            pad: self.padding,
            norm,
            act,
            pool,
            method: Method::Auto,
            grad: mode == Mode::Train,
        };
        match (bn, mode) {
            (None, _) => Ok(conv_block(x, &self.weight, bias, spec(Norm::None))?.0),
            (Some(bn), Mode::Train) => {
                let p = Tensor::cat(&[bn.weight.as_tensor(), bn.bias.as_tensor()], 0)?;
                let norm = Norm::Batch {
                    eps: BatchNorm2d::EPS,
                };
                let (y, stats) = conv_block(x, &self.weight, Some(&p), spec(norm))?;
                // The statistics cover every output position of every image.
                let (n, c, h, w) = x.dims4()?;
                let k = self.weight.dim(2)?;
                let g = super::conv::Geometry::new((c, h, w), k, self.stride, self.padding)?;
                bn.track(&stats, (n * g.oh * g.ow) as f64)?;
                Ok(y)
            }
            (Some(bn), Mode::Eval) => {
                let (scale, shift) = bn.eval_affine(bias)?;
                let shift =
                    Tensor::from_vec(shift, scale.len(), x.device())?.to_dtype(x.dtype())?;
                Ok(conv_block(x, &self.weight, Some(&shift), spec(Norm::Folded(scale)))?.0)
            }
        }
    }
}

pub struct BatchNorm2d {
    pub weight: Var,
    pub bias: Var,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub num_batches_tracked: i64,
}

impl BatchNorm2d {
    pub const EPS: f64 = 1e-5;
    pub const MOMENTUM: f64 = 0.1;

    pub fn new(channels: usize, dtype: DType, dev: &Device) -> Result<Self> {
        Ok(Self {
            weight: Var::from_tensor(&constant(1.0, channels, dtype, dev)?)?,
            bias: Var::from_tensor(&constant(0.0, channels, dtype, dev)?)?,
            running_mean: constant(0.0, channels, dtype, dev)?,
            running_var: constant(1.0, channels, dtype, dev)?,
            num_batches_tracked: 0,
        })
    }

    /// Folds a batch's per-channel (mean, biased variance) into the running statistics, as
    /// PyTorch does (with the variance made unbiased).
    fn track(&mut self, stats: &[(f64, f64)], count: f64) -> Result<()> {
        let m = Self::MOMENTUM;
        let unbias = count / (count - 1.0).max(1.0);
        let dtype = self.running_mean.dtype();
        let update = |running: &Tensor, batch: &mut dyn Iterator<Item = f64>| -> Result<Tensor> {
            let old: Vec<f64> = running.to_dtype(DType::F64)?.to_vec1()?;
            let new: Vec<f64> = old
                .iter()
                .zip(batch)
                .map(|(r, b)| r * (1.0 - m) + b * m)
                .collect();
            Tensor::from_vec(new, old.len(), running.device())?.to_dtype(dtype)
        };
        self.running_mean = update(&self.running_mean, &mut stats.iter().map(|s| s.0))?;
        self.running_var = update(&self.running_var, &mut stats.iter().map(|s| s.1 * unbias))?;
        self.num_batches_tracked += 1;
        Ok(())
    }

    /// Evaluation mode as y = x * scale + shift per channel, with a preceding per-channel
    /// `bias` folded into the shift.
    fn eval_affine(&self, bias: Option<&Tensor>) -> Result<(Vec<f64>, Vec<f64>)> {
        let vals = |t: &Tensor| -> Result<Vec<f64>> { t.to_dtype(DType::F64)?.to_vec1() };
        let (gamma, beta) = (vals(self.weight.as_tensor())?, vals(self.bias.as_tensor())?);
        let (mean, var) = (vals(&self.running_mean)?, vals(&self.running_var)?);
        let bias = match bias {
            Some(b) => vals(b)?,
            None => vec![0.0; gamma.len()],
        };
        Ok((0..gamma.len())
            .map(|c| {
                let s = gamma[c] / (var[c] + Self::EPS).sqrt();
                (s, beta[c] + (bias[c] - mean[c]) * s)
            })
            .unzip())
    }

    /// Candle's stock ops.
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        // Working on (n, c, h*w) keeps every reduction on the contiguous last dimension and
        // every broadcast a (1, c, 1) one, which candle's CPU kernels handle fastest.
        let (n, c, h, w) = x.dims4()?;
        let x3 = x.reshape((n, c, h * w))?;
        let count = (n * h * w) as f64;
        let (mean, var) = match mode {
            Mode::Train => {
                let mean = (x3.sum_keepdim(2)?.sum_keepdim(0)? / count)?;
                let centred = x3.broadcast_sub(&mean)?;
                let var = (centred.sqr()?.sum_keepdim(2)?.sum_keepdim(0)? / count)?;
                let flat = |t: &Tensor| -> Result<Vec<f64>> {
                    t.detach().flatten_all()?.to_dtype(DType::F64)?.to_vec1()
                };
                let stats: Vec<(f64, f64)> = flat(&mean)?.into_iter().zip(flat(&var)?).collect();
                self.track(&stats, count)?;
                (mean, var)
            }
            Mode::Eval => (
                self.running_mean.reshape((1, c, 1))?,
                self.running_var.reshape((1, c, 1))?,
            ),
        };
        // y = (x - mean) * (gamma / sqrt(var + eps)) + beta, with the per-channel factors
        // computed on c values rather than on the whole batch.
        let scale = (var + Self::EPS)?
            .sqrt()?
            .recip()?
            .broadcast_mul(&self.weight.as_tensor().reshape((1, c, 1))?)?;
        let y = x3
            .broadcast_sub(&mean)?
            .broadcast_mul(&scale)?
            .broadcast_add(&self.bias.as_tensor().reshape((1, c, 1))?)?;
        y.reshape((n, c, h, w))
    }
}

pub struct Linear {
    pub weight: Var,
    pub bias: Var,
}

impl Linear {
    pub fn new(
        rng: &mut Rng,
        in_f: usize,
        out_f: usize,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let bound = 1.0 / (in_f as f32).sqrt();
        Ok(Self {
            weight: uniform(rng, &[out_f, in_f], bound, dtype, dev)?,
            bias: uniform(rng, &[out_f], bound, dtype, dev)?,
        })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight.as_tensor().t()?)?
            .broadcast_add(self.bias.as_tensor())
    }
}

impl Linear {
    /// The fast kernel: flattens x (n, ...) itself, with bias and `act` fused in.
    pub fn forward_fused(&self, x: &Tensor, act: Option<Activation>) -> Result<Tensor> {
        super::linear::linear(x, self.weight.as_tensor(), self.bias.as_tensor(), act)
    }
}

/// Inverted dropout with masks from the project's RNG (so runs repeat bit for bit); with the
/// fast kernels one op that keeps its mask for the backward pass.
pub fn dropout(x: &Tensor, p: f32, mode: Mode, rng: &mut Rng, kernels: Kernels) -> Result<Tensor> {
    if mode == Mode::Eval || p <= 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| if rng.next_f32() < p { 0.0 } else { keep })
        .collect();
    match kernels {
        Kernels::Fast => x.contiguous()?.apply_op1(DropoutOp {
            mask: Arc::new(mask),
        }),
        Kernels::Stock => {
            let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
            x.mul(&mask)
        }
    }
}

/// y = x * mask, dx = dy * mask.
struct DropoutOp {
    mask: Arc<Vec<f32>>,
}

impl DropoutOp {
    fn apply<T: Float>(&self, x: &[T]) -> Vec<T> {
        x.iter()
            .zip(self.mask.iter())
            .map(|(&v, &m)| v * T::from_f64(m as f64))
            .collect()
    }
}

impl CustomOp1 for DropoutOp {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let label = || format!("dropout {:?}", &l.dims()[1..]);
        let out = profile::time(label, Phase::Forward, 0.0, || {
            dispatch1(self.name(), (s, l), |x| self.apply(x), |x| self.apply(x))
        })?;
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let label = || format!("dropout {:?}", &arg.dims()[1..]);
        let grad = grad.contiguous()?;
        let (gs, gl) = grad.storage_and_layout();
        let name = self.name();
        timed_backward(
            label,
            0.0,
            &grad,
            name,
            || tensor(self.apply(slice::<f32>(&gs, gl, name)?), grad.shape()),
            || tensor(self.apply(slice::<f64>(&gs, gl, name)?), grad.shape()),
        )
        .map(Some)
    }
}

/// Cross-entropy over logits, averaged over the batch, with optional label smoothing
/// (as `torch.nn.CrossEntropyLoss(label_smoothing=eps)`).
pub fn cross_entropy(
    logits: &Tensor,
    labels: &[u32],
    smoothing: f64,
    class_weights: Option<&[f32]>,
) -> Result<Tensor> {
    let (n, c) = logits.dims2()?;
    let off = smoothing / c as f64;
    let on = 1.0 - smoothing + off;
    let mut target = vec![off as f32; n * c];
    // With class weights each sample's term is scaled by its class's weight and the sum is
    // divided by the weights' sum (PyTorch's CrossEntropyLoss(weight=...), mean reduction).
    let mut total = 0f64;
    for (i, &y) in labels.iter().enumerate() {
        let w = class_weights.map_or(1.0, |cw| cw[y as usize]);
        total += w as f64;
        let row = &mut target[i * c..(i + 1) * c];
        for t in row.iter_mut() {
            *t *= w;
        }
        row[y as usize] = on as f32 * w;
    }
    let target = Tensor::from_vec(target, (n, c), logits.device())?.to_dtype(logits.dtype())?;
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    (logp * target)?
        .sum_all()?
        .affine(-1.0 / total.max(f64::MIN_POSITIVE), 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn class_weights_scale_each_sample_and_normalise_by_their_sum() {
        // Two samples, two classes; by hand: -(w0 * log p(y0) + w1 * log p(y1)) / (w0 + w1).
        let logits = Tensor::new(&[[2.0f32, 0.0], [0.5, 1.5]], &Device::Cpu).unwrap();
        let lse = |a: f64, b: f64| (a.exp() + b.exp()).ln();
        let lp0 = 2.0 - lse(2.0, 0.0);
        let lp1 = 1.5 - lse(0.5, 1.5);
        let loss = |w: Option<&[f32]>| {
            cross_entropy(&logits, &[0, 1], 0.0, w)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let want = -(0.25 * lp0 + 3.0 * lp1) / 3.25;
        assert!((loss(Some(&[0.25, 3.0])) - want).abs() < 1e-6);
        assert!((loss(None) + (lp0 + lp1) / 2.0).abs() < 1e-6);
        // Equal weights change nothing.
        assert!((loss(Some(&[2.0, 2.0])) - loss(None)).abs() < 1e-6);
    }
}
