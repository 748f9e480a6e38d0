//! The direct 3x3 convolution (stride 1, one pixel of zero padding) for images with few
//! channels: the first layer, with 1 channel for grey images and 3 for colour.
//!
//! im2col turns such a layer into matrix products with an inner dimension of 9 (or 27): far
//! too short to run near the products' peak, and the columns are 9 copies of the image. Here
//! each output row is computed from the image itself: the image is copied once into a
//! zero-bordered buffer (a few KB, in L1); a span of up to 32 output columns of two output
//! channels is eight vectors of accumulators fed by shifted loads of three input rows, 9 fused
//! multiply-adds per input channel. The weight gradient is the same sweep in reverse: per
//! (output, input) channel pair, nine vectors of sums of dz times the shifted input rows.
//!
//! Written for f32 in AVX2 and FMA (8 lanes, also on CPUs with AVX-512, so that the weight
//! gradient's lane sums are the same everywhere); without them, or in f64, the conv block
//! uses im2col (`conv`). The input gradient, which the first layer never needs (its input is
//! data), goes through im2col.
//!
//! Measured on the default model's first layer (64 images, one thread, best of 30): forward
//! 0.60 ms against im2col's 0.70, weight gradient 0.68 ms against 0.98; near the machine's
//! multiply-add peak, so a conv block with it spends its time on batch norm, activation and
//! pooling. (Computing the convolution again in the backward pass instead of keeping it was
//! tried and was slower.)

use pulp::x86::V3;
use pulp::{f32x8, WithSimd};

use super::geometry::Geometry;

/// Lanes of a vector.
const L: usize = 8;

/// Most input channels the direct convolution is used for: beyond a few, its loads of the
/// input per multiply-add cost more than im2col's products.
const MAX_CHANNELS: usize = 4;

/// Whether the direct convolution computes this one (rows at least a vector wide).
pub(super) fn fits(g: &Geometry) -> bool {
    g.k == 3 && g.stride == 1 && g.pad == 1 && g.c <= MAX_CHANNELS && g.w >= L && simd().is_some()
}

/// The CPU's AVX2 and FMA, when it has them.
pub(super) fn simd() -> Option<V3> {
    V3::try_new()
}

/// One image, zero-bordered: per channel `h + 2` rows of `w + 2` values, the image's row y at
/// row y + 1 from column 1.
#[derive(Default)]
pub(super) struct Scratch {
    padded: Vec<f32>,
    shape: (usize, usize, usize),
}

impl Scratch {
    /// Copies `img` (c, h, w) inside the zero border.
    fn load(&mut self, g: &Geometry, img: &[f32]) {
        let (st, rows) = (g.w + 2, g.h + 2);
        if self.shape != (g.c, g.h, g.w) {
            self.padded.clear();
            self.padded.resize(g.c * rows * st, 0.0);
            self.shape = (g.c, g.h, g.w);
        }
        for (c, plane) in img.chunks_exact(g.h * g.w).enumerate() {
            for (y, row) in plane.chunks_exact(g.w).enumerate() {
                self.padded[(c * rows + y + 1) * st + 1..][..g.w].copy_from_slice(row);
            }
        }
    }

    /// The padded row that output row `y` reads at kernel row `ky` of channel `c`.
    #[inline(always)]
    fn row(&self, g: &Geometry, (c, y, ky): (usize, usize, usize)) -> &[f32] {
        let st = g.w + 2;
        &self.padded[(c * (g.h + 2) + y + ky) * st..][..st]
    }
}

/// The [`L`] + 2 padded columns that a vector of outputs starting at column `at` reads: one
/// bounds check, after which its three shifted loads need none.
#[inline(always)]
fn window(r: &[f32], at: usize) -> &[f32; L + 2] {
    r[at..at + L + 2].try_into().expect("a window of L + 2")
}

/// The vector at `s[at..at + L]`.
#[inline(always)]
fn load(s: &[f32], at: usize) -> f32x8 {
    let a: &[f32; L] = s[at..at + L].try_into().expect("a vector");
    pulp::cast(*a)
}

/// Where vector `v` of an output row of `ow` columns starts: every [`L`] columns, except that
/// the last ends at the row's end (overlapping the one before when `ow` is not a multiple of
/// [`L`]), so that every load and store is a whole vector.
#[inline(always)]
fn lane_start(v: usize, ow: usize) -> usize {
    (v * L).min(ow - L)
}

/// What the direct convolution does with each image once it is in the zero-bordered buffer:
/// the forward pass or the weight gradient. A trait rather than a closure so that each kernel
/// is compiled inside [`each_image`]'s AVX2 context, where its vector instructions inline.
trait ImageKernel {
    fn image(&mut self, simd: V3, g: &Geometry, s: &Scratch, i: usize);
}

/// Runs `kernel` on each of `images` consecutive images of `x`, copying each into `s` first,
/// compiled for AVX2 and FMA.
fn each_image<K: ImageKernel>(
    simd: V3,
    g: &Geometry,
    x: &[f32],
    images: usize,
    s: &mut Scratch,
    kernel: K,
) {
    struct Op<'a, K>(V3, &'a Geometry, &'a [f32], usize, &'a mut Scratch, K);
    impl<K: ImageKernel> WithSimd for Op<'_, K> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) {
            let Op(simd, g, x, images, s, mut kernel) = self;
            for (i, img) in x.chunks_exact(g.plane()).take(images).enumerate() {
                s.load(g, img);
                kernel.image(simd, g, s, i);
            }
        }
    }
    pulp::Simd::vectorize(simd, Op(simd, g, x, images, s, kernel))
}

/// The forward pass of `images` consecutive images of `x` into `out` (images, o, h, w).
pub(super) fn forward(
    simd: V3,
    g: &Geometry,
    w: &[f32],
    x: &[f32],
    images: usize,
    out: &mut [f32],
    s: &mut Scratch,
) {
    struct Forward<'a> {
        w: &'a [f32],
        out: &'a mut [f32],
    }
    impl ImageKernel for Forward<'_> {
        #[inline(always)]
        fn image(&mut self, simd: V3, g: &Geometry, s: &Scratch, i: usize) {
            let len = self.w.len() / g.row() * g.out_plane();
            forward_image(simd, g, self.w, s, &mut self.out[i * len..][..len]);
        }
    }
    each_image(simd, g, x, images, s, Forward { w, out })
}

/// One image: per pair of output channels and output row, spans of four vectors, each a loop
/// over the kernel's taps with eight independent accumulators (four vectors of each of the
/// two channels; each load of the input feeds both).
#[inline(always)]
fn forward_image(simd: V3, g: &Geometry, w: &[f32], s: &Scratch, out: &mut [f32]) {
    let (o, ohow, ow) = (w.len() / g.row(), g.out_plane(), g.ow);
    let lanes = ow.div_ceil(L);
    let (st, plane) = (g.w + 2, (g.h + 2) * (g.w + 2));
    // Where each tap (c, ky, kx) reads, relative to the output position.
    let mut offsets = [0usize; 9 * MAX_CHANNELS];
    for (t, off) in offsets.iter_mut().enumerate().take(g.row()) {
        let (c, ky, kx) = (t / 9, t / 3 % 3, t % 3);
        *off = c * plane + ky * st + kx;
    }
    let offsets = &offsets[..g.row()];
    // Every load below starts at y * st + lane_start(..) + offset <= (oh - 1) * st + (ow - L)
    // + (c - 1) * plane + 2 * st + 2, and so ends inside the padded image: checked once here,
    // not at each of the loads in the innermost loop.
    let last = (g.oh - 1) * st + (ow - L) + offsets[g.row() - 1];
    assert!(
        last + L <= s.padded.len(),
        "direct conv: padded image too short"
    );
    let padded = s.padded.as_ptr();
    for o0 in (0..o).step_by(2) {
        // Past the last channel, the pair computes and stores the last one twice.
        let chans = [o0, (o0 + 1).min(o - 1)];
        let (w0, w1) = (
            &w[chans[0] * g.row()..][..g.row()],
            &w[chans[1] * g.row()..][..g.row()],
        );
        for y in 0..g.oh {
            for v0 in (0..lanes).step_by(4) {
                // Past the row's last vector, the span computes and stores it again.
                let at = [0, 1, 2, 3].map(|v| y * st + lane_start(v0 + v, ow));
                let mut acc = [simd.splat_f32x8(0.0); 8];
                for ((&off, &a), &b) in offsets.iter().zip(w0).zip(w1) {
                    let (a, b) = (simd.splat_f32x8(a), simd.splat_f32x8(b));
                    for v in 0..4 {
                        // SAFETY: at[v] + off <= last (see above), and the L values from
                        // there lie inside `padded`; f32x8 is 8 plain f32s, read unaligned.
                        let i = unsafe { padded.add(at[v] + off).cast::<f32x8>().read_unaligned() };
                        acc[v] = simd.mul_add_f32x8(i, a, acc[v]);
                        acc[4 + v] = simd.mul_add_f32x8(i, b, acc[4 + v]);
                    }
                }
                // Overlapping vectors store the same values: the same multiply-adds in the
                // same order.
                for (b, &ch) in chans.iter().enumerate() {
                    for v in 0..4 {
                        let to = ch * ohow + at[v] - y * st + y * ow;
                        let dst: &mut [f32; L] =
                            (&mut out[to..to + L]).try_into().expect("a vector");
                        *dst = pulp::cast(acc[b * 4 + v]);
                    }
                }
            }
        }
    }
}

/// Adds the weight gradient of `images` consecutive images of `x` to `dw` (o, c, 3, 3), from
/// `dz` (images, o, h, w), the gradient at the convolution's output.
pub(super) fn weight_grad(
    simd: V3,
    g: &Geometry,
    (x, dz): (&[f32], &[f32]),
    images: usize,
    dw: &mut [f32],
    s: &mut Scratch,
) {
    struct WeightGrad<'a> {
        dz: &'a [f32],
        dw: &'a mut [f32],
    }
    impl ImageKernel for WeightGrad<'_> {
        #[inline(always)]
        fn image(&mut self, simd: V3, g: &Geometry, s: &Scratch, i: usize) {
            let len = self.dw.len() / g.row() * g.out_plane();
            weight_grad_image(simd, g, s, &self.dz[i * len..][..len], self.dw);
        }
    }
    each_image(simd, g, x, images, s, WeightGrad { dz, dw })
}

/// One image: per (output, input) channel pair, nine vectors of sums, one per kernel
/// position, of dz times the input under it.
#[inline(always)]
fn weight_grad_image(simd: V3, g: &Geometry, s: &Scratch, dz: &[f32], dw: &mut [f32]) {
    let ow = g.ow;
    let lanes = ow.div_ceil(L);
    // The last vector of a row counts only the columns the one before did not.
    let last = lane_start(lanes - 1, ow);
    let fresh: [f32; L] = std::array::from_fn(|k| f32::from(u8::from(last + k >= (lanes - 1) * L)));
    let fresh: f32x8 = pulp::cast(fresh);
    for (dzo, dwo) in dz
        .chunks_exact(g.out_plane())
        .zip(dw.chunks_exact_mut(g.row()))
    {
        for (c, dwc) in dwo.chunks_exact_mut(9).enumerate() {
            let mut acc = [simd.splat_f32x8(0.0); 9];
            for (y, drow) in dzo.chunks_exact(ow).enumerate() {
                let rows = [
                    s.row(g, (c, y, 0)),
                    s.row(g, (c, y, 1)),
                    s.row(g, (c, y, 2)),
                ];
                for v in 0..lanes {
                    let at = lane_start(v, ow);
                    let d: &[f32; L] = drow[at..at + L].try_into().expect("a vector");
                    let mut d: f32x8 = pulp::cast(*d);
                    if v + 1 == lanes {
                        d = simd.mul_f32x8(d, fresh);
                    }
                    for (ky, r) in rows.iter().enumerate() {
                        let win = window(r, at);
                        for kx in 0..3 {
                            let a = &mut acc[ky * 3 + kx];
                            *a = simd.mul_add_f32x8(load(win, kx), d, *a);
                        }
                    }
                }
            }
            for (d, a) in dwc.iter_mut().zip(acc) {
                let v: [f32; L] = pulp::cast(a);
                *d += ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
            }
        }
    }
}
