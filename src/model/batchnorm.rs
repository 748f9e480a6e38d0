//! Training-mode batch norm as one candle custom op, with the activation that follows it fused
//! in: the forward pass in two sweeps over the input (statistics, then normalise and activate),
//! the backward pass in two (per-channel sums, then the input gradient), instead of the dozen
//! full-size tensors the composed stock ops create. The statistics of the forward pass are kept
//! for the backward pass and for the running statistics.
//!
//! For channel c with m = n*h*w values, xhat = (x - mean) / sqrt(var + eps) and
//! y = gamma * xhat + beta, the gradients are
//!   dbeta = sum(dy), dgamma = sum(dy * xhat),
//!   dx = gamma / sqrt(var + eps) / m * (m * dy - dbeta - xhat * dgamma).

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::cpu::{by_dtype, dispatch3, slice, tensor, Float};
use super::layers::Activation;

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

/// y = act(gamma * (x - mean) / sqrt(var + eps) + beta) with the batch's own statistics,
/// which the forward pass leaves in `stats` for the backward pass and the running statistics.
struct BatchNormTrain {
    eps: f64,
    act: Option<Activation>,
    stats: Arc<Mutex<Vec<(f64, f64)>>>,
}

fn forward<T: Float>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    dims: (usize, usize, usize, usize),
    op: &BatchNormTrain,
) -> Vec<T> {
    let (n, c, h, w) = dims;
    let hw = h * w;
    let stats = channel_stats(x, n, c, hw);
    // y = act((x - mean) * scale + beta) per channel.
    let scale: Vec<T> = (0..c)
        .map(|ch| T::from_f64(gamma[ch].to_f64() / (stats[ch].1 + op.eps).sqrt()))
        .collect();
    let mean: Vec<T> = stats.iter().map(|s| T::from_f64(s.0)).collect();
    *op.stats.lock().unwrap_or_else(|e| e.into_inner()) = stats;
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(hw)
        .zip(x.par_chunks(hw))
        .enumerate()
        .for_each(|(i, (ys, xs))| {
            let (m, s, b) = (mean[i % c], scale[i % c], beta[i % c]);
            match op.act {
                None => ys
                    .iter_mut()
                    .zip(xs)
                    .for_each(|(y, &x)| *y = (x - m) * s + b),
                Some(a) => ys
                    .iter_mut()
                    .zip(xs)
                    .for_each(|(y, &x)| *y = a.apply((x - m) * s + b)),
            }
        });
    y
}

type Grads = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

/// dz = dy * act'(y); dbeta = sum(dz), dgamma = sum(dz * xhat) per channel;
/// dx = gamma * inv_std / m * (m * dz - dbeta - xhat * dgamma).
fn backward<T: Float>(
    op: &BatchNormTrain,
    x: &Tensor,
    gamma: &Tensor,
    y: &Tensor,
    dy: &Tensor,
) -> Result<Grads> {
    let name = "batch-norm-train-backward";
    let (n, c, h, w) = x.dims4()?;
    let hw = h * w;
    let m = (n * hw) as f64;
    let (xs, xl) = x.storage_and_layout();
    let (gs, gl) = gamma.storage_and_layout();
    let (ys, yl) = y.storage_and_layout();
    let (ds, dl) = dy.storage_and_layout();
    let (x, gamma) = (slice::<T>(&xs, xl, name)?, slice::<T>(&gs, gl, name)?);
    let (y, dy) = (slice::<T>(&ys, yl, name)?, slice::<T>(&ds, dl, name)?);
    let stats = op.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let dz = |i: usize| match op.act {
        None => dy[i],
        Some(a) => dy[i] * a.slope_at_output(y[i]),
    };
    // Per channel: inv_std, dbeta, dgamma.
    let sums: Vec<(f64, f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mean, var) = stats[ch];
            let inv = 1.0 / (var + op.eps).sqrt();
            let (mut db, mut dg) = (0f64, 0f64);
            for s in 0..n {
                let base = (s * c + ch) * hw;
                for (i, xv) in (base..).zip(&x[base..base + hw]) {
                    let g = dz(i).to_f64();
                    db += g;
                    dg += g * (xv.to_f64() - mean);
                }
            }
            (inv, db, dg * inv)
        })
        .collect();
    let mut dx = vec![T::zero(); x.len()];
    dx.par_chunks_mut(hw).enumerate().for_each(|(p, dxs)| {
        let ch = p % c;
        let (mean, _) = stats[ch];
        let (inv, db, dg) = sums[ch];
        // dx = k * (m * dz - db - (x - mean) * inv * dg) = a * dz + b * (x - mean) + c0
        // In f64: the three terms nearly cancel when a channel has few values.
        let k = gamma[ch].to_f64() * inv / m;
        let (a, b, c0) = (k * m, -k * inv * dg, -k * db);
        for (j, d) in dxs.iter_mut().enumerate() {
            let i = p * hw + j;
            *d = T::from_f64(a * dz(i).to_f64() + b * (x[i].to_f64() - mean) + c0);
        }
    });
    let col = |f: fn(&(f64, f64, f64)) -> f64| -> Result<Tensor> {
        tensor(sums.iter().map(|s| T::from_f64(f(s))).collect(), c)
    };
    Ok((
        Some(tensor(dx, (n, c, h, w))?),
        Some(col(|s| s.2)?),
        Some(col(|s| s.1)?),
    ))
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
        let out = dispatch3(
            self.name(),
            (s1, l1),
            (s2, l2),
            (s3, l3),
            |x, g, b| forward(x, g, b, dims, self),
            |x, g, b| forward(x, g, b, dims, self),
        )?;
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<Grads> {
        let dy = dy.contiguous()?;
        by_dtype(
            x,
            self.name(),
            || backward::<f32>(self, x, gamma, y, &dy),
            || backward::<f64>(self, x, gamma, y, &dy),
        )
    }
}

/// Training-mode batch norm of an (n, c, h, w) `x`, followed by `act` if given; also returns
/// the batch mean and biased variance per channel (f64) for the running statistics.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    act: Option<Activation>,
) -> Result<(Tensor, Vec<(f64, f64)>)> {
    let stats = Arc::new(Mutex::new(Vec::new()));
    let y = x.contiguous()?.apply_op3(
        &gamma.contiguous()?,
        &beta.contiguous()?,
        BatchNormTrain {
            eps,
            act,
            stats: stats.clone(),
        },
    )?;
    let stats = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok((y, stats))
}
