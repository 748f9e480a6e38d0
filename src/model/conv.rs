//! The convolution kernels of the fused conv block (`block`), one image at a time.
//!
//! Forward: im2col into a scratch buffer that the thread keeps, then one matrix product
//! `W (o x c*k*k) . cols (c*k*k x oh*ow)` that lands directly in NCHW order. Backward from the
//! gradient dz at the product's output: the weight gradient `dz . cols^T` accumulated into a
//! per-thread buffer (the columns are rebuilt from x rather than kept from the forward pass:
//! cheaper than a round trip through memory), and the input gradient `W^T . dz` through
//! col2im, computed only when asked for (the first layer's input is data).

use candle_core::Result;

use super::cpu::Float;
use super::gemm::{matmul, MatRef, Threads};

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

    pub fn plane(&self) -> usize {
        self.c * self.h * self.w
    }

    pub fn out_plane(&self) -> usize {
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
                    if s == 1 {
                        // Contiguous: a loop the compiler vectorises.
                        let dst = &mut dst[first..first + hi - lo];
                        dst.iter_mut().zip(&src[lo..hi]).for_each(|(d, &v)| *d += v);
                    } else {
                        for (i, &v) in (first..).step_by(s).zip(&src[lo..hi]) {
                            dst[i] += v;
                        }
                    }
                }
            }
        }
    }
}

/// One image's forward pass: out (o x oh*ow) = W (o x c*k*k) . columns(img).
pub(super) fn forward_image<T: Float>(
    g: &Geometry,
    w: &[T],
    img: &[T],
    scratch: &mut Vec<T>,
    out: &mut [T],
) {
    let o = w.len() / g.row();
    let cols = g.columns(img, scratch);
    matmul(
        out,
        MatRef::new(w, o, g.row()),
        MatRef::new(cols, g.row(), g.out_plane()),
        false,
        Threads::One,
    );
}

/// Scratch buffers one thread keeps across the images of a backward pass.
pub(super) struct Scratch<T> {
    cols: Vec<T>,
    dcols: Vec<T>,
}

impl<T> Default for Scratch<T> {
    fn default() -> Self {
        Self {
            cols: Vec::new(),
            dcols: Vec::new(),
        }
    }
}

/// One image's backward pass from dz (o x oh*ow), the gradient at the product's output:
/// `dw += dz . columns(img)^T` when given, and `dx = col2im(W^T . dz)` when given.
pub(super) fn backward_image<T: Float>(
    g: &Geometry,
    w: &[T],
    img: &[T],
    dz: &[T],
    dw: Option<&mut [T]>,
    dx: Option<&mut [T]>,
    scratch: &mut Scratch<T>,
) {
    let (o, ohow) = (w.len() / g.row(), g.out_plane());
    let dz = MatRef::new(dz, o, ohow);
    if let Some(dw) = dw {
        let cols = g.columns(img, &mut scratch.cols);
        let cols = MatRef::new(cols, g.row(), ohow).t();
        matmul(dw, dz, cols, true, Threads::One);
    }
    if let Some(dx) = dx {
        let wt = MatRef::new(w, o, g.row()).t();
        if g.pointwise() {
            matmul(dx, wt, dz, false, Threads::One);
        } else {
            scratch.dcols.resize(g.row() * ohow, T::zero());
            matmul(&mut scratch.dcols, wt, dz, false, Threads::One);
            dx.fill(T::zero());
            col2im(&scratch.dcols, g, dx);
        }
    }
}
