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

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{by_dtype, dispatch3, slice, tensor, Float};
use super::layers::Activation;
use super::profile::{self, Phase};

/// Sums of `f(a[i], b[i])` (two of them) in eight f64 lanes: vectorised, where one running f64
/// sum would be a chain of dependent adds.
#[inline(always)]
fn lane_sums<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> (f64, f64)) -> (f64, f64) {
    const L: usize = 8;
    let (mut s, mut q) = ([0f64; L], [0f64; L]);
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for j in 0..L {
            let (u, v) = f(xa[j], xb[j]);
            s[j] += u;
            q[j] += v;
        }
    }
    let (mut s0, mut q0) = (s.iter().sum::<f64>(), q.iter().sum::<f64>());
    for (&xa, &xb) in ra.iter().zip(rb) {
        let (u, v) = f(xa, xb);
        s0 += u;
        q0 += v;
    }
    (s0, q0)
}

/// Adds up per-plane pairs of sums into per-channel ones (planes are (sample, channel)).
fn per_channel(planes: Vec<(f64, f64)>, c: usize) -> Vec<(f64, f64)> {
    let mut out = vec![(0f64, 0f64); c];
    for (i, (a, b)) in planes.into_iter().enumerate() {
        out[i % c].0 += a;
        out[i % c].1 += b;
    }
    out
}

/// Per-channel mean and biased variance of an (n, c, h, w) tensor, accumulated in f64.
fn channel_stats<T: Float>(x: &[T], c: usize, hw: usize) -> Vec<(f64, f64)> {
    let m = (x.len() / c) as f64;
    let planes = x
        .par_chunks(hw)
        .map(|p| {
            lane_sums(p, p, |v, _| {
                let v = v.to_f64();
                (v, v * v)
            })
        })
        .collect();
    per_channel(planes, c)
        .into_iter()
        .map(|(sum, sq)| {
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

impl BatchNormTrain {
    /// `batch norm 32x28x28 +relu`, for the profile.
    fn label(&self, (_, c, h, w): (usize, usize, usize, usize)) -> String {
        let act = self.act.map(|a| format!(" +{}", a.name())).unwrap_or_default();
        format!("batch norm {c}x{h}x{w}{act}")
    }
}

fn forward<T: Float>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    (_, c, h, w): (usize, usize, usize, usize),
    op: &BatchNormTrain,
) -> Vec<T> {
    let hw = h * w;
    let stats = channel_stats(x, c, hw);
    // y = act((x - mean) * scale + beta) per channel.
    let scale: Vec<T> = (0..c)
        .map(|ch| T::from_f64(gamma[ch].to_f64() / (stats[ch].1 + op.eps).sqrt()))
        .collect();
    let mean: Vec<T> = stats.iter().map(|s| T::from_f64(s.0)).collect();
    *op.stats.lock().unwrap_or_else(|e| e.into_inner()) = stats;
    let mut y = vec![T::zero(); x.len()];
    let mut run = |act: &(dyn Fn(&mut [T], &[T], T, T, T) + Sync)| {
        y.par_chunks_mut(hw)
            .zip(x.par_chunks(hw))
            .enumerate()
            .for_each(|(i, (ys, xs))| act(ys, xs, mean[i % c], scale[i % c], beta[i % c]));
    };
    match op.act {
        None => run(&|ys, xs, m, s, b| normalize(ys, xs, m, s, b, |z| z)),
        Some(Activation::Relu) => run(&|ys, xs, m, s, b| {
            normalize(ys, xs, m, s, b, |z| if z > T::zero() { z } else { T::zero() })
        }),
        Some(a) => run(&|ys, xs, m, s, b| normalize(ys, xs, m, s, b, |z| a.apply(z))),
    }
    y
}

/// One plane: y = act((x - m) * s + b), with the activation inlined into the loop.
#[inline(always)]
fn normalize<T: Float>(ys: &mut [T], xs: &[T], m: T, s: T, b: T, act: impl Fn(T) -> T) {
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = act((x - m) * s + b);
    }
}

type Grads = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

/// dz = dy * act'(y); dbeta = sum(dz), dgamma = sum(dz * xhat) per channel;
/// dx = gamma * inv_std / m * (m * dz - dbeta - xhat * dgamma). Returns dx and, per channel,
/// (inv_std, dbeta, dgamma). `dz` is inlined into both sweeps rather than stored.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn input_grad<T: Float>(
    x: &[T],
    dy: &[T],
    y: &[T],
    gamma: &[T],
    stats: &[(f64, f64)],
    (c, hw): (usize, usize),
    eps: f64,
    dz: impl Fn(T, T) -> T + Sync,
) -> (Vec<T>, Vec<(f64, f64, f64)>) {
    let m = (x.len() / c) as f64;
    // Per plane: sum(dz) and sum(dz * x); sum(dz * (x - mean)) follows per channel.
    let planes = dy
        .par_chunks(hw)
        .zip(y.par_chunks(hw))
        .zip(x.par_chunks(hw))
        .map(|((dys, ys), xs)| {
            let (mut s, mut q) = ([0f64; 8], [0f64; 8]);
            let mut tail = (0f64, 0f64);
            let n8 = hw - hw % 8;
            for k in (0..n8).step_by(8) {
                for j in 0..8 {
                    let g = dz(dys[k + j], ys[k + j]).to_f64();
                    s[j] += g;
                    q[j] += g * xs[k + j].to_f64();
                }
            }
            for k in n8..hw {
                let g = dz(dys[k], ys[k]).to_f64();
                tail.0 += g;
                tail.1 += g * xs[k].to_f64();
            }
            (
                s.iter().sum::<f64>() + tail.0,
                q.iter().sum::<f64>() + tail.1,
            )
        })
        .collect();
    let sums: Vec<(f64, f64, f64)> = per_channel(planes, c)
        .into_iter()
        .zip(stats)
        .map(|((db, dzx), &(mean, var))| {
            let inv = 1.0 / (var + eps).sqrt();
            (inv, db, (dzx - mean * db) * inv)
        })
        .collect();
    let mut dx = vec![T::zero(); x.len()];
    dx.par_chunks_mut(hw)
        .zip(dy.par_chunks(hw))
        .zip(y.par_chunks(hw).zip(x.par_chunks(hw)))
        .enumerate()
        .for_each(|(p, ((dxs, dys), (ys, xs)))| {
            let ch = p % c;
            let (mean, _) = stats[ch];
            let (inv, db, dg) = sums[ch];
            // dx = k * (m * dz - db - (x - mean) * inv * dg) = a * dz + b * (x - mean) + c0,
            // in f64: the three terms nearly cancel when a channel has few values.
            let k = gamma[ch].to_f64() * inv / m;
            let (a, b, c0) = (k * m, -k * inv * dg, -k * db);
            for (((d, &g), &yv), &xv) in dxs.iter_mut().zip(dys).zip(ys).zip(xs) {
                *d = T::from_f64(a * dz(g, yv).to_f64() + b * (xv.to_f64() - mean) + c0);
            }
        });
    (dx, sums)
}

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
    let (xs, xl) = x.storage_and_layout();
    let (gs, gl) = gamma.storage_and_layout();
    let (ys, yl) = y.storage_and_layout();
    let (ds, dl) = dy.storage_and_layout();
    let (x, gamma) = (slice::<T>(&xs, xl, name)?, slice::<T>(&gs, gl, name)?);
    let (y, dy) = (slice::<T>(&ys, yl, name)?, slice::<T>(&ds, dl, name)?);
    let stats = op.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let dx = match op.act {
        None => input_grad(x, dy, y, gamma, &stats, (c, hw), op.eps, |g, _| g),
        Some(Activation::Relu) => input_grad(x, dy, y, gamma, &stats, (c, hw), op.eps, |g, y| {
            if y > T::zero() {
                g
            } else {
                T::zero()
            }
        }),
        Some(a) => input_grad(x, dy, y, gamma, &stats, (c, hw), op.eps, |g, y| {
            g * a.slope_at_output(y)
        }),
    };
    let (dx, sums) = dx;
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
        let out = profile::time(|| self.label(dims), Phase::Forward, 0.0, || {
            dispatch3(
                self.name(),
                (s1, l1),
                (s2, l2),
                (s3, l3),
                |x, g, b| forward(x, g, b, dims, self),
                |x, g, b| forward(x, g, b, dims, self),
            )
        })?;
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
        let label = || self.label(x.dims4().unwrap_or_default());
        profile::time(label, Phase::Backward, 0.0, || {
            by_dtype(
                x,
                self.name(),
                || backward::<f32>(self, x, gamma, y, &dy),
                || backward::<f64>(self, x, gamma, y, &dy),
            )
        })
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
