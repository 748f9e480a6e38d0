//! The convolution kernels of the fused conv block (`block`), on a group of images at a time:
//! Winograd F(2x2, 3x3) (`winograd`) for 3x3 kernels with stride 1 and enough input channels,
//! the direct convolution (`direct`) for 3x3 kernels on images of few channels, im2col
//! otherwise ([`Method`]).
//!
//! im2col, one image at a time. Forward: im2col into a scratch buffer that the thread keeps, then one matrix product
//! `W (o x c*k*k) . cols (c*k*k x oh*ow)` that lands directly in NCHW order. Backward from the
//! gradient dz at the product's output: the weight gradient `dz . cols^T` accumulated into a
//! per-thread buffer (the columns are rebuilt from x rather than kept from the forward pass:
//! cheaper than a round trip through memory), and the input gradient `W^T . dz` through
//! col2im, computed only when asked for (the first layer's input is data).

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Result;

use super::cpu::Float;
use super::direct;
use super::gemm::{matmul, MatRef, Threads};
pub use super::geometry::Geometry;
use super::winograd::{self, Filters};

/// One image's columns, (c*k*k) x (oh*ow) row-major, written into `scratch`; or the image
/// itself for a pointwise convolution.
fn columns<'a, T: Float>(g: &Geometry, img: &'a [T], scratch: &'a mut Vec<T>) -> &'a [T] {
    if g.pointwise() {
        return img;
    }
    scratch.resize(g.row() * g.out_plane(), T::zero());
    im2col(img, g, scratch);
    scratch
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

/// How a convolution's matrix products are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// The faster of the two for the shape: Winograd where it fits, else im2col.
    #[default]
    Auto,
    /// Columns of receptive fields, one product per image.
    Im2col,
    /// F(2x2, 3x3) on 4x4 tiles (3x3 kernels, stride 1 only).
    Winograd,
    /// Multiply-adds straight from the image (3x3 kernels, stride 1, padding 1, at most 4
    /// input channels, rows of 8 or more).
    Direct,
}

/// One convolution of a batch, ready to run on groups of images: the geometry, the weight and,
/// for Winograd, the filters' transforms (made once per batch).
pub(super) struct Conv<'w, T> {
    g: Geometry,
    w: &'w [T],
    o: usize,
    /// The CPU's AVX2, for the direct convolution in f32.
    direct: Option<pulp::x86::V3>,
    filters: Option<Filters<T>>,
}

/// Whether [`Method::Auto`] may pick Winograd or the direct convolution (on unless a bench
/// turns it off to time im2col on the same shapes in the same run).
static AUTO_FAST: AtomicBool = AtomicBool::new(true);

/// Lets [`Method::Auto`] pick Winograd or the direct convolution, or only im2col.
pub fn auto_fast(on: bool) {
    AUTO_FAST.store(on, Ordering::Relaxed);
}

impl Method {
    /// The method that runs for this shape: [`Method::Auto`] made definite, or an error for
    /// Winograd asked of a shape it cannot do.
    pub fn resolve(self, g: &Geometry) -> Result<Method> {
        let fast = AUTO_FAST.load(Ordering::Relaxed);
        Ok(match self {
            Method::Auto if fast && winograd::fits(g) => Method::Winograd,
            Method::Auto if fast && direct::fits(g) => Method::Direct,
            Method::Auto => Method::Im2col,
            Method::Winograd if g.k != 3 || g.stride != 1 => {
                candle_core::bail!("conv2d: Winograd needs a 3x3 kernel with stride 1")
            }
            Method::Direct if !direct::fits(g) => candle_core::bail!(
                "conv2d: the direct convolution needs a 3x3 kernel, stride 1, padding 1, at most 4 input channels and rows of 8 or more"
            ),
            m => m,
        })
    }
}

impl<'w, T: Float> Conv<'w, T> {
    /// The convolution by `method` as [`Method::resolve`] made it definite.
    pub fn new(g: Geometry, w: &'w [T], method: Method) -> Self {
        let o = w.len() / g.row();
        let filters = (method == Method::Winograd).then(|| Filters::new(w, o, g.c));
        let f32s = T::f32s(w).is_some();
        let direct = (method == Method::Direct && f32s)
            .then(direct::simd)
            .flatten();
        Self {
            g,
            w,
            o,
            direct,
            filters,
        }
    }

    /// The forward pass of `images` consecutive images of `x` into `out` (images, o, oh, ow).
    pub fn forward(&self, x: &[T], images: usize, out: &mut [T], s: &mut Scratch<T>) {
        let g = &self.g;
        if let Some(f) = &self.filters {
            return winograd::forward(g, f, x, images, out, &mut s.winograd);
        }
        if let (Some(simd), Some(w), Some(x), Some(out)) =
            (self.direct, T::f32s(self.w), T::f32s(x), T::f32s_mut(out))
        {
            return direct::forward(simd, g, w, x, images, out, &mut s.direct);
        }
        let planes = x.chunks_exact(g.plane()).take(images);
        for (xi, yi) in planes.zip(out.chunks_exact_mut(self.o * g.out_plane())) {
            forward_image(g, self.w, xi, &mut s.cols, yi);
        }
    }

    /// Length of the weight-gradient accumulator [`Conv::backward`] adds into: the weight's,
    /// or its transforms' for Winograd ([`Conv::weight_grad`] turns it into the gradient).
    pub fn grad_len(&self) -> usize {
        self.filters.as_ref().map_or(self.w.len(), |f| f.grad_len())
    }

    /// The backward pass of `images` consecutive images of `x` from `dz` (images, o, oh, ow),
    /// the gradient at the convolution's output: adds to the weight-gradient accumulator
    /// `dw` when given, and writes the input gradient into `dx` when given.
    pub fn backward(
        &self,
        (x, dz): (&[T], &[T]),
        images: usize,
        (dw, dx): (Option<&mut [T]>, Option<&mut [T]>),
        s: &mut Scratch<T>,
    ) {
        let g = &self.g;
        if let Some(f) = &self.filters {
            return winograd::backward(g, f, (x, dz), images, (dw, dx), &mut s.winograd);
        }
        let ozw = self.o * g.out_plane();
        let (mut dw, mut dx) = (dw, dx);
        if let (Some(simd), Some(x32), Some(dz32)) = (self.direct, T::f32s(x), T::f32s(dz)) {
            if let Some(dw) = dw.take().and_then(|dw| T::f32s_mut(dw)) {
                direct::weight_grad(simd, g, (x32, dz32), images, dw, &mut s.direct);
            }
            if dx.is_none() {
                return;
            }
        }
        for img in 0..images {
            let xi = &x[img * g.plane()..][..g.plane()];
            let dzi = &dz[img * ozw..][..ozw];
            let dxi = dx
                .as_deref_mut()
                .map(|d| &mut d[img * g.plane()..][..g.plane()]);
            backward_image(g, self.w, xi, dzi, dw.as_deref_mut(), dxi, s);
        }
    }

    /// The weight gradient from the accumulator the backward passes added into.
    pub fn weight_grad(&self, acc: Vec<T>) -> Vec<T> {
        match &self.filters {
            Some(_) => winograd::weight_grad(&acc, self.o, self.g.c),
            None => acc,
        }
    }
}

/// One image's forward pass: out (o x oh*ow) = W (o x c*k*k) . columns(img).
fn forward_image<T: Float>(g: &Geometry, w: &[T], img: &[T], scratch: &mut Vec<T>, out: &mut [T]) {
    let o = w.len() / g.row();
    let cols = columns(g, img, scratch);
    matmul(
        out,
        MatRef::new(w, o, g.row()),
        MatRef::new(cols, g.row(), g.out_plane()),
        false,
        Threads::One,
    );
}

/// Scratch buffers one thread keeps across the images it convolves.
pub(super) struct Scratch<T> {
    cols: Vec<T>,
    dcols: Vec<T>,
    winograd: winograd::Scratch<T>,
    direct: direct::Scratch,
}

impl<T> Default for Scratch<T> {
    fn default() -> Self {
        Self {
            cols: Vec::new(),
            dcols: Vec::new(),
            winograd: winograd::Scratch::default(),
            direct: direct::Scratch::default(),
        }
    }
}

/// One image's backward pass from dz (o x oh*ow), the gradient at the product's output:
/// `dw += dz . columns(img)^T` when given, and `dx = col2im(W^T . dz)` when given.
fn backward_image<T: Float>(
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
        let cols = columns(g, img, &mut scratch.cols);
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
