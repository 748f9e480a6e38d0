//! Conv2d as one candle custom op, for training and evaluation.
//!
//! Forward, per image and in parallel over the batch: im2col into a scratch buffer that the
//! thread keeps, one matrix product `W (o x c*k*k) . cols (c*k*k x oh*ow)` that lands directly
//! in NCHW order, then an epilogue over the output while it is still in cache: a per-channel
//! scale and shift (the bias, or an evaluation-mode batch norm folded in) and the activation.
//!
//! Backward, per image again: dz = dy * act'(y) * scale; the shift gradient is a plain sum of
//! dz; the weight gradient `dz . cols^T` accumulates in a per-thread buffer (the columns are
//! rebuilt from x rather than kept from the forward pass: cheaper than a round trip through
//! memory); the input gradient `W^T . dz` goes back through col2im, and is not computed at all
//! when the input needs none (the first layer's input is data).

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{by_dtype, dispatch3, slice, tensor, Float};
use super::gemm::{matmul, MatRef, Threads};
use super::layers::Activation;
use super::profile::{self, Phase};

/// The shape of one convolution (dilation 1, one group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geometry {
    pub fn new(
        (c, h, w): (usize, usize, usize),
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        let out = |x: usize| (x + 2 * pad).checked_sub(k).map(|v| v / stride + 1);
        match (out(h), out(w)) {
            (Some(oh), Some(ow)) if stride > 0 && k > 0 => Ok(Self {
                c,
                h,
                w,
                k,
                stride,
                pad,
                oh,
                ow,
            }),
            _ => candle_core::bail!("conv2d: kernel {k} does not fit a padded {h}x{w} input"),
        }
    }

    /// Length of one im2col column (one output position's receptive field).
    pub fn row(&self) -> usize {
        self.c * self.k * self.k
    }

    fn plane(&self) -> usize {
        self.c * self.h * self.w
    }

    fn out_plane(&self) -> usize {
        self.oh * self.ow
    }

    /// A 1x1 convolution with stride 1 and no padding: the image is its own column matrix.
    fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }

    /// Multiply-adds of one image's forward pass.
    pub fn macs(&self, out_channels: usize) -> usize {
        out_channels * self.row() * self.out_plane()
    }

    /// The output columns `ox` whose input column `ox * stride + kx - pad` lies inside the image.
    fn valid(&self, kx: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.pad);
        let lo = p.saturating_sub(kx).div_ceil(s);
        let hi = (self.w + p).saturating_sub(kx).div_ceil(s).min(self.ow);
        (lo.min(hi), hi)
    }

    /// The input row read by output row `oy` at kernel row `ky`, if inside the image.
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky)
            .checked_sub(self.pad)
            .filter(|&y| y < self.h)
    }

    /// One image's columns, (c*k*k) x (oh*ow) row-major, written into `scratch`; or the image
    /// itself for a pointwise convolution.
    fn columns<'a, T: Float>(&self, img: &'a [T], scratch: &'a mut Vec<T>) -> &'a [T] {
        if self.pointwise() {
            return img;
        }
        scratch.resize(self.row() * self.out_plane(), T::zero());
        im2col(img, self, scratch);
        scratch
    }
}

fn im2col<T: Float>(img: &[T], g: &Geometry, cols: &mut [T]) {
    let (s, ohow) = (g.stride, g.out_plane());
    for ch in 0..g.c {
        let plane = &img[ch * g.h * g.w..][..g.h * g.w];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = &mut cols[((ch * g.k + ky) * g.k + kx) * ohow..][..ohow];
                let (lo, hi) = g.valid(kx);
                for (oy, out) in row.chunks_exact_mut(g.ow).enumerate() {
                    let Some(iy) = g.input_row(oy, ky) else {
                        out.fill(T::zero());
                        continue;
                    };
                    let src = &plane[iy * g.w..][..g.w];
                    out[..lo].fill(T::zero());
                    out[hi..].fill(T::zero());
                    if lo < hi {
                        let first = lo * s + kx - g.pad;
                        if s == 1 {
                            out[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
                        } else {
                            for (o, i) in out[lo..hi].iter_mut().zip((first..).step_by(s)) {
                                *o = src[i];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds columns back onto the image they came from: `img` += col2im(cols).
fn col2im<T: Float>(cols: &[T], g: &Geometry, img: &mut [T]) {
    let (s, ohow) = (g.stride, g.out_plane());
    for ch in 0..g.c {
        let plane = &mut img[ch * g.h * g.w..][..g.h * g.w];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = &cols[((ch * g.k + ky) * g.k + kx) * ohow..][..ohow];
                let (lo, hi) = g.valid(kx);
                if lo >= hi {
                    continue;
                }
                for (oy, src) in row.chunks_exact(g.ow).enumerate() {
                    let Some(iy) = g.input_row(oy, ky) else {
                        continue;
                    };
                    let dst = &mut plane[iy * g.w..][..g.w];
                    let first = lo * s + kx - g.pad;
                    for (i, &v) in (first..).step_by(s).zip(&src[lo..hi]) {
                        dst[i] += v;
                    }
                }
            }
        }
    }
}

/// What follows the matrix product, per output channel: y = act(acc * scale + shift).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Epilogue {
    /// None means 1 (training: batch norm, if any, is its own op).
    pub scale: Option<Vec<f64>>,
    pub act: Option<Activation>,
}

impl Epilogue {
    /// Applies the epilogue in place to the rows (one per channel) of `out`.
    pub fn apply<T: Float>(&self, out: &mut [T], shift: &[T], len: usize) {
        for (ch, row) in out.chunks_exact_mut(len).enumerate() {
            let b = shift[ch];
            match (&self.scale, self.act) {
                (None, None) => row.iter_mut().for_each(|v| *v += b),
                (None, Some(a)) => row.iter_mut().for_each(|v| *v = a.apply(*v + b)),
                (Some(s), act) => {
                    let s = T::from_f64(s[ch]);
                    for v in row.iter_mut() {
                        let z = *v * s + b;
                        *v = act.map_or(z, |a| a.apply(z));
                    }
                }
            }
        }
    }

    /// The gradient before the epilogue, dz = dy * act'(y) * scale, one row per channel.
    /// None when the epilogue is the identity up to the shift (dz = dy).
    pub fn backward<T: Float>(&self, dy: &[T], y: &[T], len: usize, dz: &mut Vec<T>) -> bool {
        if self.scale.is_none() && self.act.is_none() {
            return false;
        }
        dz.clear();
        dz.extend(dy.iter().zip(y).map(|(&g, &v)| match self.act {
            Some(a) => g * a.slope_at_output(v),
            None => g,
        }));
        if let Some(s) = &self.scale {
            for (ch, row) in dz.chunks_exact_mut(len).enumerate() {
                let s = T::from_f64(s[ch]);
                row.iter_mut().for_each(|v| *v *= s);
            }
        }
        true
    }
}

struct Conv2dOp {
    g: Geometry,
    out_c: usize,
    epilogue: Epilogue,
}

impl Conv2dOp {
    /// `conv 32->64 k3 14x14 +relu`, for the profile.
    fn label(&self) -> String {
        let g = &self.g;
        let mut s = format!("conv {}->{} k{} {}x{}", g.c, self.out_c, g.k, g.h, g.w);
        if g.stride > 1 {
            s += &format!(" s{}", g.stride);
        }
        if self.epilogue.scale.is_some() {
            s += " +bn";
        }
        if let Some(a) = self.epilogue.act {
            s += &format!(" +{}", a.name());
        }
        s
    }
}

fn forward<T: Float>(x: &[T], w: &[T], shift: &[T], op: &Conv2dOp) -> Vec<T> {
    let (g, o) = (op.g, op.out_c);
    let ohow = g.out_plane();
    let n = x.len() / g.plane();
    let mut y = vec![T::zero(); n * o * ohow];
    y.par_chunks_mut(o * ohow)
        .zip(x.par_chunks(g.plane()))
        .for_each_init(Vec::new, |scratch, (yi, xi)| {
            let cols = g.columns(xi, scratch);
            matmul(
                yi,
                MatRef::new(w, o, g.row()),
                MatRef::new(cols, g.row(), ohow),
                false,
                Threads::One,
            );
            op.epilogue.apply(yi, shift, ohow);
        });
    y
}

/// Per-thread state of the backward pass: the summed gradients and the scratch buffers.
struct Acc<T> {
    dw: Vec<T>,
    dshift: Vec<f64>,
    cols: Vec<T>,
    dz: Vec<T>,
    dcols: Vec<T>,
}

impl<T: Float> Acc<T> {
    fn merge(mut self, other: Self) -> Self {
        self.dw
            .iter_mut()
            .zip(&other.dw)
            .for_each(|(a, &b)| *a += b);
        self.dshift
            .iter_mut()
            .zip(&other.dshift)
            .for_each(|(a, b)| *a += b);
        self
    }
}

type Grads = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

fn backward<T: Float>(
    op: &Conv2dOp,
    (x, w, shift): (&Tensor, &Tensor, &Tensor),
    y: &Tensor,
    dy: &Tensor,
) -> Result<Grads> {
    let name = "conv2d-backward";
    let (g, o) = (op.g, op.out_c);
    let ohow = g.out_plane();
    let (xs, xl) = x.storage_and_layout();
    let (ws, wl) = w.storage_and_layout();
    let (ys, yl) = y.storage_and_layout();
    let (gs, gl) = dy.storage_and_layout();
    let (xv, wv) = (slice::<T>(&xs, xl, name)?, slice::<T>(&ws, wl, name)?);
    let (yv, dyv) = (slice::<T>(&ys, yl, name)?, slice::<T>(&gs, gl, name)?);
    let n = xv.len() / g.plane();
    let (need_dx, need_dw) = (x.track_op(), w.track_op());

    let init = || Acc {
        dw: vec![T::zero(); if need_dw { o * g.row() } else { 0 }],
        dshift: vec![0f64; o],
        cols: Vec::new(),
        dz: Vec::new(),
        dcols: Vec::new(),
    };
    let per_image = |acc: &mut Acc<T>, i: usize, dx: Option<&mut [T]>| {
        let Acc {
            dw,
            dshift,
            cols,
            dz,
            dcols,
        } = acc;
        let (dyi, yi) = (
            &dyv[i * o * ohow..][..o * ohow],
            &yv[i * o * ohow..][..o * ohow],
        );
        let dz: &[T] = if op.epilogue.backward(dyi, yi, ohow, dz) {
            dz
        } else {
            dyi
        };
        for (ch, row) in dz.chunks_exact(ohow).enumerate() {
            dshift[ch] += row.iter().map(|v| v.to_f64()).sum::<f64>();
        }
        let xi = &xv[i * g.plane()..][..g.plane()];
        if need_dw {
            let cols = g.columns(xi, cols);
            matmul(
                dw,
                MatRef::new(dz, o, ohow),
                MatRef::new(cols, g.row(), ohow).t(),
                true,
                Threads::One,
            );
        }
        if let Some(dx) = dx {
            let wt = MatRef::new(wv, o, g.row()).t();
            if g.pointwise() {
                matmul(dx, wt, MatRef::new(dz, o, ohow), false, Threads::One);
            } else {
                dcols.resize(g.row() * ohow, T::zero());
                matmul(dcols, wt, MatRef::new(dz, o, ohow), false, Threads::One);
                dx.fill(T::zero());
                col2im(dcols, &g, dx);
            }
        }
    };
    let mut dx = vec![T::zero(); if need_dx { xv.len() } else { 0 }];
    let acc = if need_dx {
        dx.par_chunks_mut(g.plane())
            .enumerate()
            .fold(init, |mut acc, (i, dxi)| {
                per_image(&mut acc, i, Some(dxi));
                acc
            })
            .reduce_with(Acc::merge)
    } else {
        (0..n)
            .into_par_iter()
            .fold(init, |mut acc, i| {
                per_image(&mut acc, i, None);
                acc
            })
            .reduce_with(Acc::merge)
    }
    .unwrap_or_else(init);
    let dx = need_dx.then(|| tensor(dx, x.shape())).transpose()?;
    let dw = need_dw.then(|| tensor(acc.dw, w.shape())).transpose()?;
    let dshift = shift
        .track_op()
        .then(|| tensor(acc.dshift.iter().map(|&v| T::from_f64(v)).collect(), o))
        .transpose()?;
    Ok((dx, dw, dshift))
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "conv2d"
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
        let n = l1.shape().dims4()?.0;
        let flops = 2.0 * (n * self.g.macs(self.out_c)) as f64;
        let out = profile::time(|| self.label(), Phase::Forward, flops, || {
            dispatch3(
                self.name(),
                (s1, l1),
                (s2, l2),
                (s3, l3),
                |x, w, b| forward(x, w, b, self),
                |x, w, b| forward(x, w, b, self),
            )
        })?;
        let shape = Shape::from((n, self.out_c, self.g.oh, self.g.ow));
        Ok((out, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        shift: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<Grads> {
        let dy = dy.contiguous()?;
        let args = (x, w, shift);
        let products = usize::from(x.track_op()) + usize::from(w.track_op());
        let flops = 2.0 * (products * x.dim(0)? * self.g.macs(self.out_c)) as f64;
        profile::time(|| self.label(), Phase::Backward, flops, || {
            by_dtype(
                x,
                self.name(),
                || backward::<f32>(self, args, y, &dy),
                || backward::<f64>(self, args, y, &dy),
            )
        })
    }
}

/// y = act(conv2d(x, weight) * scale + shift) per output channel; x (n, c, h, w), weight
/// (o, c, k, k), shift (o,) or none (zero). Gradients flow to x, weight and shift where they
/// track them.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    shift: Option<&Tensor>,
    stride: usize,
    pad: usize,
    epilogue: Epilogue,
) -> Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    let (o, wc, k, k2) = weight.dims4()?;
    if wc != c || k != k2 {
        candle_core::bail!(
            "conv2d: weight {:?} does not fit input {:?}",
            weight.dims(),
            x.dims()
        );
    }
    let g = Geometry::new((c, h, w), k, stride, pad)?;
    let shift = match shift {
        Some(s) => s.contiguous()?,
        None => Tensor::zeros(o, x.dtype(), x.device())?,
    };
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &shift,
        Conv2dOp {
            g,
            out_c: o,
            epilogue,
        },
    )
}
