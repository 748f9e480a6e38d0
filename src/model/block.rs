//! One conv block of the model (conv, then batch norm, activation and 2x2 pooling, each
//! optional) as a single candle custom op, for training and evaluation.
//!
//! Candle's backprop allocates a zeroed gradient and adds into it for every node of the graph,
//! and every node's output is a full-size tensor: for the default model at batch 64 the conv,
//! batch-norm and pooling nodes alone moved ~90 MB per step that way. As one op the block keeps
//! only what its backward pass needs (the conv output, the batch statistics and the winner of
//! each max-pool window) and hands candle the pooled output.
//!
//! Forward: per image, the convolution (`conv`), with bias and activation applied in place
//! when there is no batch norm (in evaluation the batch norm's running statistics fold into a
//! per-channel scale and shift); in training with batch norm, the per-channel statistics, then
//! per plane normalise, activate and pool. Backward: per plane, the gradient is un-pooled and
//! taken through the activation (recomputed from the conv output) and the batch norm; the
//! batch-norm sums need one sweep over the planes first; then per image the conv's weight and
//! input gradients.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, Result, Shape, Tensor};
use rayon::prelude::*;

use super::activation::Activation;
use super::arch::Pool;
use super::batchnorm::{channel_stats, lane_sums, normalize, per_channel, plane_moments};
use super::conv::{Conv, Geometry, Method, Scratch};
use super::cpu::{slice, tensor, Float, Grads3, Kernel3, Op3};
use super::pool::{pool_plane, unpool_plane};
use super::profile::Phase;

/// What the block normalises with.
#[derive(Debug, Clone, PartialEq)]
pub enum Norm {
    /// No batch norm: the third argument is the conv bias (or zeros).
    None,
    /// Batch norm with the batch's statistics (training): the third argument is
    /// [gamma; beta], 2 * channels values.
    Batch { eps: f64 },
    /// Batch norm from running statistics folded into y = conv * scale + shift (evaluation):
    /// the third argument is the shift, this the scale.
    Folded(Vec<f64>),
}

/// Everything after the convolution itself.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockSpec {
    pub stride: usize,
    pub pad: usize,
    pub norm: Norm,
    pub act: Option<Activation>,
    pub pool: Pool,
    /// How the convolution's products are formed.
    pub method: Method,
    /// Whether a backward pass may follow (training). Without one, and without batch
    /// statistics, each group of images goes from convolution to pooled output while in cache,
    /// and nothing is kept.
    pub grad: bool,
}

/// What the forward pass leaves for the backward pass (and the running statistics).
#[derive(Default)]
struct Saved {
    /// The conv output (with batch norm), or the activations before pooling (without); none
    /// when the op's output is itself the activations.
    z: Option<CpuStorage>,
    /// Per-channel batch mean and biased variance.
    stats: Vec<(f64, f64)>,
    /// Winner (0..4) of each max-pool window.
    argmax: Vec<u8>,
}

struct ConvBlock {
    g: Geometry,
    out_c: usize,
    spec: BlockSpec,
    saved: Arc<Mutex<Saved>>,
}

impl ConvBlock {
    fn batch(&self) -> bool {
        matches!(self.spec.norm, Norm::Batch { .. })
    }

    fn pooled(&self) -> (usize, usize) {
        match self.spec.pool {
            Pool::None => (self.g.oh, self.g.ow),
            _ => (self.g.oh / 2, self.g.ow / 2),
        }
    }

    fn eps(&self) -> f64 {
        match self.spec.norm {
            Norm::Batch { eps } => eps,
            _ => 0.0,
        }
    }

    /// Per channel, what normalisation does in training: (mean, gamma / std, beta).
    fn affine<T: Float>(&self, stats: &[(f64, f64)], p: &[T]) -> Vec<(T, T, T)> {
        let o = self.out_c;
        (0..o)
            .map(|ch| {
                let (mean, var) = stats[ch];
                let s = p[ch].to_f64() / (var + self.eps()).sqrt();
                (T::from_f64(mean), T::from_f64(s), p[o + ch])
            })
            .collect()
    }
}

/// `n` zeros, written by all threads: a batch's activations are megabytes, and zeroing them on
/// the calling thread alone left the others idle (4% of a step).
fn zeroed<T: Float>(n: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    v.par_extend(rayon::iter::repeat_n(T::zero(), n));
    v
}

/// Without batch statistics: each plane of `z` (image-major planes of the conv output) scaled
/// (a folded batch norm), shifted by its channel's `p` and activated, in place.
fn shift_and_activate<T: Float>(z: &mut [T], p: &[T], op: &ConvBlock) {
    let o = op.out_c;
    for (i, row) in z.chunks_exact_mut(op.g.out_plane()).enumerate() {
        let ch = i % o;
        let s = match &op.spec.norm {
            Norm::Folded(scale) => T::from_f64(scale[ch]),
            _ => T::from_f64(1.0),
        };
        let b = p[ch];
        match op.spec.act {
            None => row.iter_mut().for_each(|v| *v = *v * s + b),
            Some(Activation::Relu) => row.iter_mut().for_each(|v| {
                let y = *v * s + b;
                *v = if y > T::zero() { y } else { T::zero() };
            }),
            Some(a) => row.iter_mut().for_each(|v| *v = a.apply(*v * s + b)),
        }
    }
}

/// The forward pass when no backward pass follows and there are no batch statistics to wait
/// for: per group of images, convolution, shift and activation, and pooling, with the conv
/// output in a buffer of the thread's that stays in cache.
fn forward_only<T: Float>(x: &[T], w: &[T], p: &[T], op: &ConvBlock) -> Vec<T> {
    let (g, o) = (&op.g, op.out_c);
    let ohow = g.out_plane();
    let n = x.len() / g.plane();
    let (ph, pw) = op.pooled();
    let conv = Conv::new(*g, w, op.spec.method);
    let mut out = zeroed(n * o * ph * pw);
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(o * ph * pw * FORWARD_GROUP)
        .zip(x.par_chunks(g.plane() * FORWARD_GROUP))
        .for_each_init(
            || (Scratch::default(), Vec::new(), vec![0u8; ph * pw]),
            |(scratch, z, winners), (outg, xg)| {
                let images = xg.len() / g.plane();
                z.resize(images * o * ohow, T::zero());
                conv.forward(xg, images, z, scratch);
                shift_and_activate(z, p, op);
                for (outp, zp) in outg.chunks_exact_mut(ph * pw).zip(z.chunks_exact(ohow)) {
                    match op.spec.pool {
                        Pool::None => outp.copy_from_slice(zp),
                        Pool::Max => pool_plane(zp, g.ow, outp, Some(winners)),
                        Pool::Avg => pool_plane(zp, g.ow, outp, None),
                    }
                }
            },
        );
    out
}

fn forward<T: Float>(x: &[T], w: &[T], p: &[T], op: &ConvBlock) -> Vec<T> {
    let batch = op.batch();
    if !batch && !op.spec.grad {
        return forward_only(x, w, p, op);
    }
    let (g, o) = (&op.g, op.out_c);
    let ohow = g.out_plane();
    let n = x.len() / g.plane();
    let act = op.spec.act;
    let mut z = zeroed(n * o * ohow);
    let conv = Conv::new(*g, w, op.spec.method);
    // With batch norm, each image's contribution to the statistics is summed while its conv
    // output is still in cache; per image, the moments of its planes.
    let moments: Vec<Vec<(f64, f64)>> = z
        .par_chunks_mut(o * ohow * FORWARD_GROUP)
        .zip(x.par_chunks(g.plane() * FORWARD_GROUP))
        .map_init(Scratch::default, |scratch, (zi, xi)| {
            conv.forward(xi, xi.len() / g.plane(), zi, scratch);
            if batch {
                return zi.chunks_exact(ohow).map(plane_moments).collect();
            }
            shift_and_activate(zi, p, op);
            Vec::new()
        })
        .collect();
    let mut saved = op.saved.lock().unwrap_or_else(|e| e.into_inner());
    if !batch && op.spec.pool == Pool::None {
        // The activations are the output: backward reads them from there.
        saved.z = None;
        return z;
    }
    let affine = if batch {
        let planes = moments.into_iter().flatten().collect();
        saved.stats = channel_stats(planes, o, (n * ohow) as f64);
        op.affine(&saved.stats, p)
    } else {
        Vec::new()
    };
    let (ph, pw) = op.pooled();
    let mut out = zeroed(n * o * ph * pw);
    let mut argmax = vec![0u8; out.len()];
    if ph * pw > 0 {
        out.par_chunks_mut(ph * pw)
            .zip(argmax.par_chunks_mut(ph * pw))
            .zip(z.par_chunks(ohow))
            .enumerate()
            .for_each_init(Vec::new, |buf, (i, ((outp, idx), zp))| {
                let y: &[T] =
                    if batch {
                        let (m, s, b) = affine[i % o];
                        buf.resize(ohow, T::zero());
                        match act {
                            None => normalize(buf, zp, m, s, b, |v| v),
                            Some(Activation::Relu) => normalize(buf, zp, m, s, b, |v| {
                                if v > T::zero() {
                                    v
                                } else {
                                    T::zero()
                                }
                            }),
                            Some(a) => normalize(buf, zp, m, s, b, |v| a.apply(v)),
                        }
                        buf
                    } else {
                        zp
                    };
                match op.spec.pool {
                    Pool::None => outp.copy_from_slice(y),
                    Pool::Max => pool_plane(y, g.ow, outp, Some(idx)),
                    Pool::Avg => pool_plane(y, g.ow, outp, None),
                }
            });
    }
    if op.spec.pool == Pool::Max {
        saved.argmax = argmax;
    }
    saved.z = Some(T::to_cpu_storage_owned(z));
    out
}

/// Per plane of the conv output: the gradient at the conv's output from the block's output
/// gradient, in three steps sharing one buffer: un-pool, through the activation, through a
/// folded scale (batch norm in training is applied by the caller, which needs the sums first).
struct PlaneGrad<'a, T> {
    op: &'a ConvBlock,
    /// The block's output and its gradient.
    out: &'a [T],
    dout: &'a [T],
    /// The activations before pooling (no batch norm), or the conv output (batch norm).
    z: &'a [T],
    argmax: &'a [u8],
    affine: &'a [(T, T, T)],
}

impl<T: Float> PlaneGrad<'_, T> {
    /// Whether the block is batch norm, ReLU and 2x2 max pooling (the default model's): the
    /// gradient before the activation is then non-zero only at the winner of each pooling
    /// window, and only where the window's output is positive (ReLU passed it), so batch
    /// norm's sums visit the winners alone ([`PlaneGrad::winners`]) rather than un-pool and
    /// mask whole planes. (Writing the conv-output gradient that way, a plane-wide term and
    /// then the winners', measured no faster than un-pooling: that pass keeps the planes.)
    fn winners_only(&self) -> bool {
        self.op.batch()
            && self.op.spec.act == Some(Activation::Relu)
            && self.op.spec.pool == Pool::Max
    }

    /// For [`PlaneGrad::winners_only`], calls `f(position, dL/d(pre-activation))` for the
    /// winner of each window of plane `i`, in order: zero where the gradient does not reach
    /// it (a select, not a branch: which windows pass is a coin toss the CPU cannot predict).
    #[inline(always)]
    fn winners(&self, i: usize, mut f: impl FnMut(usize, T)) {
        let ow = self.op.g.ow;
        let (ph, pw) = self.op.pooled();
        let at = i * ph * pw;
        let (out, dout) = (&self.out[at..][..ph * pw], &self.dout[at..][..ph * pw]);
        let argmax = &self.argmax[at..][..ph * pw];
        for (py, ((orow, drow), arow)) in out
            .chunks_exact(pw)
            .zip(dout.chunks_exact(pw))
            .zip(argmax.chunks_exact(pw))
            .enumerate()
        {
            for (px, ((&y, &d), &k)) in orow.iter().zip(drow).zip(arow).enumerate() {
                let k = usize::from(k);
                let d = if y > T::zero() { d } else { T::zero() };
                f((2 * py + (k >> 1)) * ow + 2 * px + (k & 1), d);
            }
        }
    }

    /// Writes dL/d(pre-activation) of plane `i` (image i / o, channel i % o) into `buf`.
    fn pre_activation(&self, i: usize, buf: &mut Vec<T>) {
        let (g, o) = (&self.op.g, self.op.out_c);
        let ohow = g.out_plane();
        let (ph, pw) = self.op.pooled();
        let dout = &self.dout[i * ph * pw..][..ph * pw];
        buf.resize(ohow, T::zero());
        match self.op.spec.pool {
            Pool::None => buf.copy_from_slice(dout),
            Pool::Max => unpool_plane(dout, &self.argmax[i * ph * pw..][..ph * pw], g.ow, buf),
            Pool::Avg => unpool_plane(dout, &[], g.ow, buf),
        }
        let Some(act) = self.op.spec.act else {
            return;
        };
        let zp = &self.z[i * ohow..][..ohow];
        if self.op.batch() {
            let (m, s, b) = self.affine[i % o];
            match act {
                // A select, not a conditional store, so that the loop vectorises.
                Activation::Relu => buf.iter_mut().zip(zp).for_each(|(d, &z)| {
                    *d = if (z - m) * s + b > T::zero() {
                        *d
                    } else {
                        T::zero()
                    };
                }),
                a => buf.iter_mut().zip(zp).for_each(|(d, &z)| {
                    *d *= a.slope_at_output(a.apply((z - m) * s + b));
                }),
            }
        } else {
            match act {
                Activation::Relu => buf.iter_mut().zip(zp).for_each(|(d, &y)| {
                    *d = if y > T::zero() { *d } else { T::zero() };
                }),
                a => buf
                    .iter_mut()
                    .zip(zp)
                    .for_each(|(d, &y)| *d *= a.slope_at_output(y)),
            }
        }
    }
}

/// Batch norm's backward, per channel: the batch's statistics and its sums over the batch
/// (inv_std, dbeta, dgamma), gamma, and how many values each channel had.
struct NormGrad<'a, T> {
    stats: &'a [(f64, f64)],
    sums: &'a [(f64, f64, f64)],
    gamma: &'a [T],
    m: f64,
}

impl<T: Float> PlaneGrad<'_, T> {
    /// Per channel (inv_std, dbeta, dgamma) of batch norm, from one sweep over the `n * o`
    /// planes.
    fn norm_sums(&self, n: usize, stats: &[(f64, f64)]) -> Vec<(f64, f64, f64)> {
        let (o, ohow) = (self.op.out_c, self.op.g.out_plane());
        let planes = (0..n * o)
            .into_par_iter()
            .map_init(Vec::new, |buf, i| {
                if self.winners_only() {
                    let z = &self.z[i * ohow..][..ohow];
                    let (mut db, mut dzz) = (0f64, 0f64);
                    self.winners(i, |q, d| {
                        let d = d.to_f64();
                        db += d;
                        dzz += d * z[q].to_f64();
                    });
                    return (db, dzz);
                }
                self.pre_activation(i, buf);
                lane_sums(buf, &self.z[i * ohow..][..ohow], |d, z| {
                    let d = d.to_f64();
                    (d, d * z.to_f64())
                })
            })
            .collect();
        per_channel(planes, o)
            .into_iter()
            .zip(stats)
            .map(|((db, dzz), &(mean, var))| {
                let inv = 1.0 / (var + self.op.eps()).sqrt();
                (inv, db, (dzz - mean * db) * inv)
            })
            .collect()
    }

    /// Writes dL/d(conv output) of plane `i` (channel `ch`) into `dz`: the pre-activation
    /// gradient (in `buf`) through batch norm, a folded scale, or as it is. Without batch
    /// norm, adds the plane's sum to `dshift`.
    fn conv_out(
        &self,
        (i, ch): (usize, usize),
        buf: &mut Vec<T>,
        dz: &mut [T],
        norm: Option<&NormGrad<T>>,
        dshift: &mut f64,
    ) {
        self.pre_activation(i, buf);
        let ohow = dz.len();
        if let Some(bn) = norm {
            // dx = k * (m * d - db - (z - mean) * inv * dg), in f64: the terms nearly
            // cancel when a channel has few values.
            let (mean, _) = bn.stats[ch];
            let (inv, db, dg) = bn.sums[ch];
            let m = bn.m;
            let k = bn.gamma[ch].to_f64() * inv / m;
            let (a, b, c0) = (k * m, -k * inv * dg, -k * db);
            let (a, b, c0, mean) = (
                T::from_f64(a),
                T::from_f64(b),
                T::from_f64(c0),
                T::from_f64(mean),
            );
            let zp = &self.z[i * ohow..][..ohow];
            for ((d, &u), &z) in dz.iter_mut().zip(buf.iter()).zip(zp) {
                *d = a * u + b * (z - mean) + c0;
            }
            return;
        }
        *dshift += buf.iter().map(|v| v.to_f64()).sum::<f64>();
        match &self.op.spec.norm {
            Norm::Folded(scale) => {
                let s = T::from_f64(scale[ch]);
                dz.iter_mut().zip(buf.iter()).for_each(|(d, &u)| *d = u * s);
            }
            _ => dz.copy_from_slice(buf),
        }
    }
}

/// The gradient of the block's parameter vector: (gamma, beta) with batch norm, else the
/// shift's.
fn param_grad<T: Float>(norm: Option<&NormGrad<T>>, dshift: &[f64]) -> Vec<T> {
    match norm {
        Some(bn) => {
            let dgamma = bn.sums.iter().map(|s| T::from_f64(s.2));
            dgamma
                .chain(bn.sums.iter().map(|s| T::from_f64(s.1)))
                .collect()
        }
        None => dshift.iter().map(|&v| T::from_f64(v)).collect(),
    }
}

/// One group's share of the weight and shift gradients.
struct Partial<T> {
    dw: Vec<T>,
    dshift: Vec<f64>,
}

impl<T: Float> Partial<T> {
    /// The groups' shares added in group order.
    fn sum(groups: Vec<Self>, zero: impl Fn() -> Self) -> Self {
        let add = |mut a: Self, b: Self| {
            a.dw.iter_mut().zip(&b.dw).for_each(|(u, &v)| *u += v);
            let shifts = a.dshift.iter_mut().zip(&b.dshift);
            shifts.for_each(|(u, v)| *u += v);
            a
        };
        groups.into_iter().reduce(add).unwrap_or_else(zero)
    }
}

/// A thread's buffers.
struct Work<T> {
    dz: Vec<T>,
    buf: Vec<T>,
    scratch: Scratch<T>,
}

/// Images per partial weight-gradient sum in the backward pass: small enough that a batch of
/// 64 makes 16 groups to share among the threads, large enough that adding the groups' sums
/// (one weight-sized vector each) costs little.
const GRADIENT_GROUP: usize = 4;

/// Images per convolution call in the forward pass: Winograd's products then have 4 images'
/// tiles as their columns (196 for a 14x14 output), wide enough to run near the product's
/// peak.
const FORWARD_GROUP: usize = 4;

fn backward<T: Float>(
    op: &ConvBlock,
    (x, w, p): (&Tensor, &Tensor, &Tensor),
    out: &Tensor,
    dout: &Tensor,
) -> Result<Grads3> {
    let name = "conv-block-backward";
    if !op.spec.grad {
        candle_core::bail!("{name}: the forward pass was run without gradients");
    }
    let (g, o) = (&op.g, op.out_c);
    let ohow = g.out_plane();
    let saved = op.saved.lock().unwrap_or_else(|e| e.into_inner());
    let (xs, xl) = x.storage_and_layout();
    let (ws, wl) = w.storage_and_layout();
    let (ps, pl) = p.storage_and_layout();
    let (ds, dl) = dout.storage_and_layout();
    let (os, ol) = out.storage_and_layout();
    let (xv, wv, pv) = (
        slice::<T>(&xs, xl, name)?,
        slice::<T>(&ws, wl, name)?,
        slice::<T>(&ps, pl, name)?,
    );
    let dv = slice::<T>(&ds, dl, name)?;
    let zv = match &saved.z {
        Some(z) => T::cpu_storage_as_slice(z)?,
        None => slice::<T>(&os, ol, name)?,
    };
    let n = xv.len() / g.plane();
    let batch = op.batch();
    let affine = if batch {
        op.affine(&saved.stats, pv)
    } else {
        Vec::new()
    };
    let pg = PlaneGrad {
        op,
        out: slice::<T>(&os, ol, name)?,
        dout: dv,
        z: zv,
        argmax: &saved.argmax,
        affine: &affine,
    };

    let sums = batch.then(|| pg.norm_sums(n, &saved.stats));
    let norm = sums.as_ref().map(|sums| NormGrad {
        stats: &saved.stats,
        sums,
        gamma: pv,
        m: (n * ohow) as f64,
    });

    // Per group of images: the gradient at the conv output, then the conv's own gradients.
    let (need_dx, need_dw, need_p) = (x.track_op(), w.track_op(), p.track_op());
    let conv = Conv::new(*g, wv, op.spec.method);
    // Weight and shift gradients are summed over the images of a fixed group in image order,
    // then over the groups in group order: the same sums in the same order whichever thread
    // ran which group, so a run repeats bit for bit (and resumes exactly).
    let zero_partial = || Partial {
        dw: vec![T::zero(); if need_dw { conv.grad_len() } else { 0 }],
        dshift: vec![0f64; o],
    };
    let new_work = || Work {
        dz: vec![T::zero(); GRADIENT_GROUP * o * ohow],
        buf: Vec::new(),
        scratch: Scratch::default(),
    };
    let group = |work: &mut Work<T>, first: usize, dx: Option<&mut [T]>| {
        let mut part = zero_partial();
        let images = GRADIENT_GROUP.min(n - first);
        for (i, dz) in work.dz.chunks_exact_mut(ohow).take(images * o).enumerate() {
            let ch = i % o;
            let dshift = &mut part.dshift[ch];
            pg.conv_out(
                (first * o + i, ch),
                &mut work.buf,
                dz,
                norm.as_ref(),
                dshift,
            );
        }
        let xs = &xv[first * g.plane()..][..images * g.plane()];
        let dw = need_dw.then_some(part.dw.as_mut_slice());
        conv.backward((xs, &work.dz), images, (dw, dx), &mut work.scratch);
        part
    };
    let mut dx = zeroed(if need_dx { xv.len() } else { 0 });
    let groups: Vec<Partial<T>> = if need_dx {
        dx.par_chunks_mut(g.plane() * GRADIENT_GROUP)
            .enumerate()
            .map_init(new_work, |work, (k, dxk)| {
                group(work, k * GRADIENT_GROUP, Some(dxk))
            })
            .collect()
    } else if need_dw || need_p {
        (0..n.div_ceil(GRADIENT_GROUP))
            .into_par_iter()
            .map_init(new_work, |work, k| group(work, k * GRADIENT_GROUP, None))
            .collect()
    } else {
        Vec::new()
    };
    let total = Partial::sum(groups, zero_partial);
    let dp = need_p.then(|| param_grad(norm.as_ref(), &total.dshift));
    Ok((
        need_dx.then(|| tensor(dx, x.shape())).transpose()?,
        need_dw
            .then(|| tensor(conv.weight_grad(total.dw), w.shape()))
            .transpose()?,
        dp.map(|v| tensor(v, p.shape())).transpose()?,
    ))
}

impl Kernel3 for ConvBlock {
    const NAME: &'static str = "conv-block";

    /// `conv 32->64 k3 14x14 +bn +relu +max pool`, for the profile.
    fn label(&self) -> String {
        let g = &self.g;
        let mut s = format!("conv {}->{} k{} {}x{}", g.c, self.out_c, g.k, g.h, g.w);
        if g.stride > 1 {
            s += &format!(" s{}", g.stride);
        }
        if self.spec.norm != Norm::None {
            s += " +bn";
        }
        if let Some(a) = self.spec.act {
            s += &format!(" +{}", a.name());
        }
        match self.spec.pool {
            Pool::Max => s += " +max pool",
            Pool::Avg => s += " +avg pool",
            Pool::None => {}
        }
        s
    }

    /// The nominal FLOPs, those of the direct convolution, whichever method ran: a faster
    /// method shows as a higher rate.
    fn flops(&self, n: usize, products: usize) -> f64 {
        2.0 * (products * n * self.g.macs(self.out_c)) as f64
    }

    /// Per pass over the batch, the batch-sized arrays it streams: forward, the input, then
    /// (when a backward pass follows) the conv output written and read back, then the output
    /// and the max-pool winners; backward, the output gradient, winners and conv output
    /// (twice with batch norm: its sums need a sweep of their own), the input, and the input's
    /// gradient when asked for.
    fn bytes(&self, n: usize, phase: Phase, size: usize, dx: bool) -> f64 {
        let g = &self.g;
        let (ph, pw) = self.pooled();
        let x = n * g.plane() * size;
        let z = n * self.out_c * g.out_plane() * size;
        let out = n * self.out_c * ph * pw;
        let winners = if self.spec.pool == Pool::Max { out } else { 0 };
        let kept = self.batch() || self.spec.pool != Pool::None;
        let total = match phase {
            Phase::Forward if !self.spec.grad && !self.batch() => x + out * size,
            Phase::Forward => x + if kept { 2 * z } else { 0 } + out * size + winners,
            Phase::Backward => {
                let sweeps = if self.batch() { 2 } else { 1 };
                let dx = if dx { x } else { 0 };
                sweeps * (out * size + winners + z) + x + dx
            }
        };
        total as f64
    }

    fn out_shape(&self, n: usize) -> Shape {
        let (ph, pw) = self.pooled();
        Shape::from((n, self.out_c, ph, pw))
    }

    fn forward<T: Float>(&self, x: &[T], w: &[T], p: &[T]) -> Vec<T> {
        forward(x, w, p, self)
    }

    fn backward<T: Float>(
        &self,
        args: (&Tensor, &Tensor, &Tensor),
        out: &Tensor,
        dout: &Tensor,
    ) -> Result<Grads3> {
        backward::<T>(self, args, out, dout)
    }
}

/// The block's output for x (n, c, h, w) and weight (o, c, k, k); `p` is the conv bias (o,)
/// or none for [`Norm::None`], [gamma; beta] (2o,) for [`Norm::Batch`], the shift (o,) for
/// [`Norm::Folded`]. With [`Norm::Batch`] also returns the batch's per-channel mean and
/// biased variance, for the running statistics.
pub fn conv_block(
    x: &Tensor,
    weight: &Tensor,
    p: Option<&Tensor>,
    spec: BlockSpec,
) -> Result<(Tensor, Vec<(f64, f64)>)> {
    let (_, c, h, w) = x.dims4()?;
    let (o, wc, k, k2) = weight.dims4()?;
    if wc != c || k != k2 {
        candle_core::bail!(
            "conv2d: weight {:?} does not fit input {:?}",
            weight.dims(),
            x.dims()
        );
    }
    let g = Geometry::new((c, h, w), k, spec.stride, spec.pad)?;
    let spec = BlockSpec {
        method: spec.method.resolve(&g)?,
        ..spec
    };
    let want = if matches!(spec.norm, Norm::Batch { .. }) {
        2 * o
    } else {
        o
    };
    let p = match p {
        Some(p) if p.elem_count() == want => p.contiguous()?,
        Some(p) => candle_core::bail!("conv block: {} parameters, want {want}", p.elem_count()),
        None if want == o => Tensor::zeros(o, x.dtype(), x.device())?,
        None => candle_core::bail!("conv block: batch norm needs gamma and beta"),
    };
    let saved = Arc::new(Mutex::new(Saved::default()));
    let op = ConvBlock {
        g,
        out_c: o,
        spec,
        saved: Arc::clone(&saved),
    };
    let y = x
        .contiguous()?
        .apply_op3(&weight.contiguous()?, &p, Op3(op))?;
    let stats = saved
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .stats
        .clone();
    Ok((y, stats))
}
