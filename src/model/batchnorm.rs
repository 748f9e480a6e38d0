//! Training-mode batch norm as candle custom ops: the forward pass in two sweeps over the input
//! (statistics, then normalise), the backward pass in two (per-channel sums, then the input
//! gradient), instead of the dozen full-size tensors the composed stock ops create.
//!
//! For channel c with m = n*h*w values, xhat = (x - mean) / sqrt(var + eps) and
//! y = gamma * xhat + beta, the gradients are
//!   dbeta = sum(dy), dgamma = sum(dy * xhat),
//!   dx = gamma / sqrt(var + eps) / m * (m * dy - dbeta - xhat * dgamma).

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::cpu::{dispatch1, dispatch3};

/// Per-channel mean and biased variance of an (n, c, h, w) tensor, accumulated in f64.
fn channel_stats<T: WithDType>(x: &[T], n: usize, c: usize, hw: usize) -> Vec<(f64, f64)> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mut sum, mut sq) = (0f64, 0f64);
            for s in 0..n {
                for &v in &x[(s * c + ch) * hw..(s * c + ch + 1) * hw] {
                    let v = v.to_f64();
                    sum += v;
                    sq += v * v;
                }
            }
            let m = (n * hw) as f64;
            let mean = sum / m;
            (mean, (sq / m - mean * mean).max(0.0))
        })
        .collect()
}

/// y = gamma * (x - mean) / sqrt(var + eps) + beta with the batch's own statistics.
pub struct BatchNormTrain {
    pub eps: f64,
}

fn forward<T: WithDType>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    dims: (usize, usize, usize, usize),
    eps: f64,
) -> Vec<T> {
    let (n, c, h, w) = dims;
    let hw = h * w;
    let stats = channel_stats(x, n, c, hw);
    // y = x * scale + shift per channel.
    let (scale, shift): (Vec<f64>, Vec<f64>) = stats
        .iter()
        .enumerate()
        .map(|(ch, &(mean, var))| {
            let s = gamma[ch].to_f64() / (var + eps).sqrt();
            (s, beta[ch].to_f64() - mean * s)
        })
        .unzip();
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(c * hw)
        .zip(x.par_chunks(c * hw))
        .for_each(|(ys, xs)| {
            for ch in 0..c {
                let (s, b) = (T::from_f64(scale[ch]), T::from_f64(shift[ch]));
                for (yv, &xv) in ys[ch * hw..(ch + 1) * hw]
                    .iter_mut()
                    .zip(&xs[ch * hw..(ch + 1) * hw])
                {
                    *yv = xv * s + b;
                }
            }
        });
    y
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = l1.shape().dims4()?;
        let eps = self.eps;
        let out = dispatch3(
            self.name(),
            (s1, l1),
            (s2, l2),
            (s3, l3),
            |x, g, b| forward(x, g, b, dims, eps),
            |x, g, b| forward(x, g, b, dims, eps),
        )?;
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = gamma.elem_count();
        let packed = x.apply_op3_no_bwd(
            gamma,
            &dy.contiguous()?,
            &BatchNormTrainBackward { eps: self.eps },
        )?;
        let n = x.elem_count();
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, n, c)?;
        let dbeta = packed.narrow(0, n + c, c)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// The three gradients packed in one vector: dx, then dgamma, then dbeta.
struct BatchNormTrainBackward {
    eps: f64,
}

fn backward<T: WithDType>(
    x: &[T],
    gamma: &[T],
    dy: &[T],
    dims: (usize, usize, usize, usize),
    eps: f64,
) -> Vec<T> {
    let (n, c, h, w) = dims;
    let hw = h * w;
    let m = (n * hw) as f64;
    let stats = channel_stats(x, n, c, hw);
    // Per channel: inv_std, dbeta = sum(dy), dgamma = sum(dy * xhat).
    let sums: Vec<(f64, f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mean, var) = stats[ch];
            let inv = 1.0 / (var + eps).sqrt();
            let (mut db, mut dg) = (0f64, 0f64);
            for s in 0..n {
                let r = (s * c + ch) * hw..(s * c + ch + 1) * hw;
                for (&xv, &g) in x[r.clone()].iter().zip(&dy[r]) {
                    let g = g.to_f64();
                    db += g;
                    dg += g * (xv.to_f64() - mean) * inv;
                }
            }
            (inv, db, dg)
        })
        .collect();
    let mut out = vec![T::zero(); x.len() + 2 * c];
    let (dx, tail) = out.split_at_mut(x.len());
    dx.par_chunks_mut(c * hw).enumerate().for_each(|(s, dxs)| {
        for ch in 0..c {
            let (mean, _) = stats[ch];
            let (inv, db, dg) = sums[ch];
            let k = gamma[ch].to_f64() * inv / m;
            let base = (s * c + ch) * hw;
            for i in 0..hw {
                let xhat = (x[base + i].to_f64() - mean) * inv;
                dxs[ch * hw + i] = T::from_f64(k * (m * dy[base + i].to_f64() - db - xhat * dg));
            }
        }
    });
    for ch in 0..c {
        tail[ch] = T::from_f64(sums[ch].2);
        tail[c + ch] = T::from_f64(sums[ch].1);
    }
    out
}

impl CustomOp3 for BatchNormTrainBackward {
    fn name(&self) -> &'static str {
        "batch-norm-train-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = l1.shape().dims4()?;
        let len = l1.shape().elem_count() + 2 * dims.1;
        let eps = self.eps;
        let out = dispatch3(
            self.name(),
            (s1, l1),
            (s2, l2),
            (s3, l3),
            |x, g, dy| backward(x, g, dy, dims, eps),
            |x, g, dy| backward(x, g, dy, dims, eps),
        )?;
        Ok((out, Shape::from(len)))
    }
}

/// Per-channel batch mean and biased variance as a (2, c) tensor, outside the autograd graph
/// (for the running statistics).
pub struct ChannelStats;

impl CustomOp1 for ChannelStats {
    fn name(&self) -> &'static str {
        "channel-stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let pack = |st: Vec<(f64, f64)>| -> Vec<f64> {
            st.iter()
                .map(|s| s.0)
                .chain(st.iter().map(|s| s.1))
                .collect()
        };
        let out = dispatch1(
            self.name(),
            (s, l),
            |x| {
                pack(channel_stats(x, n, c, h * w))
                    .into_iter()
                    .map(|v| v as f32)
                    .collect()
            },
            |x| pack(channel_stats(x, n, c, h * w)),
        )?;
        Ok((out, Shape::from((2, c))))
    }
}

/// Training-mode batch norm of a contiguous (n, c, h, w) `x`; also returns the batch mean and
/// biased variance (detached) for the running statistics.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let x = x.contiguous()?;
    let stats = x.detach().apply_op1_no_bwd(&ChannelStats)?;
    let y = x.apply_op3(gamma, beta, BatchNormTrain { eps })?;
    Ok((y, stats.get(0)?, stats.get(1)?))
}
