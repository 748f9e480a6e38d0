//! Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional
//! Neural Networks", 2015) for 3x3 convolutions with stride 1: 16 multiplications per 2x2
//! output tile where the direct convolution does 36, so the matrix products do 2.25x fewer
//! multiply-adds.
//!
//! With d a 4x4 input tile, g a 3x3 filter and Y the 2x2 output tile,
//!   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A.
//! Summed over the input channels, each of the 16 positions ξ of the 4x4 transformed tile is one
//! matrix product: M[ξ] (o x tiles) = U[ξ] (o x c) · V[ξ] (c x tiles), with U the filters'
//! transforms and V the tiles'. The backward pass is the adjoint of the same map: from the
//! output gradient dM = A dY Aᵀ,
//!   dU[ξ] += dM[ξ] · V[ξ]ᵀ  (the weight gradient, dg = Gᵀ dU G once per batch), and
//!   dV[ξ] = U[ξ]ᵀ · dM[ξ]   (the input gradient, dd = B dV Bᵀ added onto overlapping tiles),
//! so all three products of a training step take the cheaper form.
//!
//! The transforms add and subtract, so the result differs from the direct convolution by a
//! few rounding errors of the largest terms (checked in the tests: 1e-4 relative in f32).
//!
//! Layout: the channels are the innermost dimension everywhere, padded to a multiple of the
//! [`L`] lanes the transforms work on together, so that every transform is a few vector adds
//! of whole lanes: each group of images is first copied into a zero-bordered HWC buffer
//! (every tile's window then lies inside it), V[ξ] is (tiles x c) and the products give
//! M[ξ] (tiles x o) = V[ξ] · U[ξ], with U[ξ] stored (c x o).

use super::cpu::Float;
use super::gemm::{matmul, MatRef, Threads};
use super::geometry::Geometry;

/// Positions of a transformed 4x4 tile.
const XI: usize = 16;

/// Channels transformed together (two AVX registers of f32).
const L: usize = 8;

/// Fewest input channels for which the transformed products beat im2col: the products'
/// inner dimension is the channel count, and with a handful of channels the transforms'
/// memory traffic costs more than the multiplications saved (the first layer has one).
const MIN_CHANNELS: usize = 8;

/// Whether F(2x2, 3x3) computes this convolution.
pub(super) fn fits(g: &Geometry) -> bool {
    g.k == 3 && g.stride == 1 && g.c >= MIN_CHANNELS
}

/// Tiles of 2x2 outputs covering one output plane (the last row or column of tiles may hang
/// over its edge).
fn tiles(g: &Geometry) -> (usize, usize) {
    (g.oh.div_ceil(2), g.ow.div_ceil(2))
}

/// `n` channels rounded up to whole lanes.
fn lanes(n: usize) -> usize {
    n.div_ceil(L) * L
}

/// [`L`] channels' values, added and subtracted together.
#[derive(Clone, Copy)]
struct Lane<T>([T; L]);

impl<T: Float> Lane<T> {
    #[inline(always)]
    fn zero() -> Self {
        Lane([T::zero(); L])
    }

    #[inline(always)]
    fn load(s: &[T]) -> Self {
        let mut v = [T::zero(); L];
        v.copy_from_slice(&s[..L]);
        Lane(v)
    }

    #[inline(always)]
    fn store(self, d: &mut [T]) {
        d[..L].copy_from_slice(&self.0);
    }

    #[inline(always)]
    fn add_to(self, d: &mut [T]) {
        d[..L].iter_mut().zip(self.0).for_each(|(d, v)| *d += v);
    }
}

impl<T: Float> std::ops::Add for Lane<T> {
    type Output = Self;
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        let mut r = self.0;
        (0..L).for_each(|k| r[k] += b.0[k]);
        Lane(r)
    }
}

impl<T: Float> std::ops::Sub for Lane<T> {
    type Output = Self;
    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        let mut r = self.0;
        (0..L).for_each(|k| r[k] -= b.0[k]);
        Lane(r)
    }
}

impl<T: Float> std::ops::Neg for Lane<T> {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        let mut r = self.0;
        (0..L).for_each(|k| r[k] = T::zero() - r[k]);
        Lane(r)
    }
}

/// A 4x4 tile of lanes.
type Tile<T> = [[Lane<T>; 4]; 4];

/// Bᵀ d B, with Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
#[inline(always)]
fn input_transform<T: Float>(d: &Tile<T>) -> Tile<T> {
    let mut r = [[Lane::zero(); 4]; 4];
    for j in 0..4 {
        let (d0, d1, d2, d3) = (d[0][j], d[1][j], d[2][j], d[3][j]);
        r[0][j] = d0 - d2;
        r[1][j] = d1 + d2;
        r[2][j] = d2 - d1;
        r[3][j] = d1 - d3;
    }
    let mut v = r;
    for (v, &[a, b, c, d]) in v.iter_mut().zip(&r) {
        *v = [a - c, b + c, c - b, b - d];
    }
    v
}

/// B dV Bᵀ (the adjoint of [`input_transform`]).
#[inline(always)]
fn input_adjoint<T: Float>(v: &Tile<T>) -> Tile<T> {
    let mut p = [[Lane::zero(); 4]; 4];
    for j in 0..4 {
        let (x0, x1, x2, x3) = (v[0][j], v[1][j], v[2][j], v[3][j]);
        p[0][j] = x0;
        p[1][j] = x1 - x2 + x3;
        p[2][j] = x1 + x2 - x0;
        p[3][j] = -x3;
    }
    let mut dd = p;
    for (o, &[a, b, c, d]) in dd.iter_mut().zip(&p) {
        *o = [a, b - c + d, b + c - a, -d];
    }
    dd
}

/// Aᵀ M A, with Aᵀ = [1 1 1 0; 0 1 -1 -1]: the 2x2 output tile.
#[inline(always)]
fn output_transform<T: Float>(m: &Tile<T>) -> [[Lane<T>; 2]; 2] {
    let mut s = [[Lane::zero(); 4]; 2];
    for j in 0..4 {
        let (a, b, c, d) = (m[0][j], m[1][j], m[2][j], m[3][j]);
        s[0][j] = a + b + c;
        s[1][j] = b - c - d;
    }
    let mut y = [[Lane::zero(); 2]; 2];
    for (y, &[a, b, c, d]) in y.iter_mut().zip(&s) {
        *y = [a + b + c, b - c - d];
    }
    y
}

/// A dY Aᵀ (the adjoint of [`output_transform`]).
#[inline(always)]
fn output_adjoint<T: Float>(dy: &[[Lane<T>; 2]; 2]) -> Tile<T> {
    let [u, w] = *dy;
    let q = [
        u,
        [u[0] + w[0], u[1] + w[1]],
        [u[0] - w[0], u[1] - w[1]],
        [-w[0], -w[1]],
    ];
    let mut m = [[Lane::zero(); 4]; 4];
    for (m, &[a, b]) in m.iter_mut().zip(&q) {
        *m = [a, a + b, a - b, -b];
    }
    m
}

/// The filters' transforms: U[ξ] = (G g Gᵀ)[ξ] for every (input, output) channel pair, as
/// 16 row-major (c x o) matrices, both padded to whole lanes with zeros.
pub(super) struct Filters<T> {
    ut: Vec<T>,
    o: usize,
    c: usize,
}

impl<T: Float> Filters<T> {
    /// From a weight of shape (o, c, 3, 3).
    pub fn new(w: &[T], o: usize, c: usize) -> Self {
        let h = T::from_f64(0.5);
        let (cp, op) = (lanes(c), lanes(o));
        let mut ut = vec![T::zero(); XI * cp * op];
        for (pair, g) in w.chunks_exact(9).take(o * c).enumerate() {
            let (oi, ci) = (pair / c, pair % c);
            // G g (4x3), then (G g) Gᵀ (4x4), row by row.
            let mut gg = [[T::zero(); 3]; 4];
            for j in 0..3 {
                let (a, b, c) = (g[j], g[3 + j], g[6 + j]);
                gg[0][j] = a;
                gg[1][j] = (a + b + c) * h;
                gg[2][j] = (a - b + c) * h;
                gg[3][j] = c;
            }
            for (i, &[a, b, c]) in gg.iter().enumerate() {
                let row = [a, (a + b + c) * h, (a - b + c) * h, c];
                for (j, v) in row.into_iter().enumerate() {
                    ut[((i * 4 + j) * cp + ci) * op + oi] = v;
                }
            }
        }
        Self { ut, o, c }
    }

    /// U[ξ], (c x o) with both padded.
    fn at(&self, xi: usize) -> MatRef<'_, T> {
        let (cp, op) = (lanes(self.c), lanes(self.o));
        MatRef::new(&self.ut[xi * cp * op..][..cp * op], cp, op)
    }

    /// Length of a weight-gradient accumulator in the transformed domain (see [`weight_grad`]).
    pub fn grad_len(&self) -> usize {
        self.ut.len()
    }
}

/// The weight gradient (o, c, 3, 3) from its transformed accumulator (laid out as the
/// filters' transforms): dg = Gᵀ dU G per pair.
pub(super) fn weight_grad<T: Float>(du: &[T], o: usize, c: usize) -> Vec<T> {
    let h = T::from_f64(0.5);
    let (cp, op) = (lanes(c), lanes(o));
    let mut dw = vec![T::zero(); o * c * 9];
    // Gᵀ applied to a column of four (and, transposed, to a row).
    let gt = |[x0, x1, x2, x3]: [T; 4]| [x0 + (x1 + x2) * h, (x1 - x2) * h, (x1 + x2) * h + x3];
    for (pair, dg) in dw.chunks_exact_mut(9).enumerate() {
        let (oi, ci) = (pair / c, pair % c);
        let x = |i: usize, j: usize| du[((i * 4 + j) * cp + ci) * op + oi];
        // Gᵀ X column by column (cols[j] is column j), then each row of it times G.
        let cols: [[T; 3]; 4] = std::array::from_fn(|j| gt([x(0, j), x(1, j), x(2, j), x(3, j)]));
        for (i, dg) in dg.chunks_exact_mut(3).enumerate() {
            dg.copy_from_slice(&gt([cols[0][i], cols[1][i], cols[2][i], cols[3][i]]));
        }
    }
    dw
}

/// Buffers one thread keeps across the groups of images it transforms.
pub(super) struct Scratch<T> {
    /// The images in HWC order inside a zero border (the backward pass then adds the input
    /// gradient's tiles into it), or the output gradient in HWC order.
    hwc: Vec<T>,
    /// The tiles' transforms V[ξ] (tiles x c); in the backward pass then dV.
    v: Vec<T>,
    /// The products M[ξ] (tiles x o); in the backward pass the output gradient's dM.
    m: Vec<T>,
}

impl<T> Default for Scratch<T> {
    fn default() -> Self {
        Self {
            hwc: Vec::new(),
            v: Vec::new(),
            m: Vec::new(),
        }
    }
}

/// The shape of a group of images laid out for the transforms.
struct Frame {
    images: usize,
    /// Tiles per column and per row of one image.
    th: usize,
    tw: usize,
    /// Rows and columns of the zero-bordered HWC input: every tile's window fits inside.
    hp: usize,
    wp: usize,
    /// Channels, in and out, padded to whole lanes.
    cp: usize,
    op: usize,
}

impl Frame {
    fn new(g: &Geometry, o: usize, images: usize) -> Self {
        let (th, tw) = tiles(g);
        Frame {
            images,
            th,
            tw,
            hp: 2 * th + 2,
            wp: 2 * tw + 2,
            cp: lanes(g.c),
            op: lanes(o),
        }
    }

    /// Tiles in the group.
    fn nt(&self) -> usize {
        self.images * self.th * self.tw
    }

    #[inline(always)]
    /// Every tile as (its number, image, tile row, tile column).
    fn each_tile(&self) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
        (0..self.nt()).map(|t| {
            let (img, r) = (t / (self.th * self.tw), t % (self.th * self.tw));
            (t, img, r / self.tw, r % self.tw)
        })
    }

    #[inline(always)]
    /// Offset in the HWC input of row `y`, column `x` of image `img` (border included).
    fn at(&self, img: usize, y: usize, x: usize) -> usize {
        ((img * self.hp + y) * self.wp + x) * self.cp
    }
}

/// Planes (c, h, w) into pixels of `stride` values: value (ch, y, x) goes to
/// `dst[((y0 + y) * width + x0 + x) * stride + ch]`, where `width` is the destination's.
#[inline(always)]
fn planes_to_pixels<T: Float>(
    src: &[T],
    (c, h, w): (usize, usize, usize),
    dst: &mut [T],
    (y0, x0, width, stride): (usize, usize, usize, usize),
) {
    for y in 0..h {
        for ch in 0..c {
            let row = &src[(ch * h + y) * w..][..w];
            let at = ((y0 + y) * width + x0) * stride + ch;
            let out = dst[at..][..(w - 1) * stride + 1].iter_mut().step_by(stride);
            out.zip(row).for_each(|(d, &v)| *d = v);
        }
    }
}

/// The reverse of [`planes_to_pixels`]: value (ch, y, x) of `dst` from
/// `src[((y0 + y) * width + x0 + x) * stride + ch]`.
#[inline(always)]
fn pixels_to_planes<T: Float>(
    src: &[T],
    (y0, x0, width, stride): (usize, usize, usize, usize),
    dst: &mut [T],
    (c, h, w): (usize, usize, usize),
) {
    for y in 0..h {
        for ch in 0..c {
            let row = &mut dst[(ch * h + y) * w..][..w];
            let at = ((y0 + y) * width + x0) * stride + ch;
            let from = src[at..][..(w - 1) * stride + 1].iter().step_by(stride);
            row.iter_mut().zip(from).for_each(|(d, &v)| *d = v);
        }
    }
}

/// The group's images (NCHW) into `hwc`, zero-bordered: pixel (y, x) at (y + pad, x + pad).
#[inline(always)]
fn to_hwc<T: Float>(g: &Geometry, f: &Frame, x: &[T], hwc: &mut Vec<T>) {
    hwc.clear();
    hwc.resize(f.images * f.hp * f.wp * f.cp, T::zero());
    let image = f.hp * f.wp * f.cp;
    for (src, dst) in x.chunks_exact(g.plane()).zip(hwc.chunks_exact_mut(image)) {
        planes_to_pixels(src, (g.c, g.h, g.w), dst, (g.pad, g.pad, f.wp, f.cp));
    }
}

/// V[ξ] (tiles x c) of every tile of the group, from its images (NCHW).
#[inline(always)]
fn transform_inputs<T: Float>(g: &Geometry, f: &Frame, x: &[T], s: &mut Scratch<T>) {
    to_hwc(g, f, x, &mut s.hwc);
    let (nt, cp) = (f.nt(), f.cp);
    s.v.resize(XI * nt * cp, T::zero());
    for (t, img, ty, tx) in f.each_tile() {
        for k in (0..cp).step_by(L) {
            let mut d = [[Lane::zero(); 4]; 4];
            for (i, row) in d.iter_mut().enumerate() {
                let at = f.at(img, 2 * ty + i, 2 * tx) + k;
                for (j, e) in row.iter_mut().enumerate() {
                    *e = Lane::load(&s.hwc[at + j * cp..]);
                }
            }
            for (i, row) in input_transform(&d).iter().enumerate() {
                for (j, e) in row.iter().enumerate() {
                    e.store(&mut s.v[((i * 4 + j) * nt + t) * cp + k..]);
                }
            }
        }
    }
}

/// Forward pass of `images` consecutive images of `x` into `out` (images, o, oh, ow).
pub(super) fn forward<T: Float>(
    g: &Geometry,
    u: &Filters<T>,
    x: &[T],
    images: usize,
    out: &mut [T],
    s: &mut Scratch<T>,
) {
    pulp::Arch::new().dispatch(Forward {
        g,
        u,
        x,
        images,
        out,
        s,
    })
}

/// The forward pass as a [`pulp::WithSimd`]: its body, inlined into a function compiled for
/// the widest vector instructions the CPU has, gets them (the transforms' adds and
/// subtractions round the same at any width).
struct Forward<'a, T> {
    g: &'a Geometry,
    u: &'a Filters<T>,
    x: &'a [T],
    images: usize,
    out: &'a mut [T],
    s: &'a mut Scratch<T>,
}

impl<T: Float> pulp::WithSimd for Forward<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        forward_body(self.g, self.u, self.x, self.images, self.out, self.s)
    }
}

#[inline(always)]
fn forward_body<T: Float>(
    g: &Geometry,
    u: &Filters<T>,
    x: &[T],
    images: usize,
    out: &mut [T],
    s: &mut Scratch<T>,
) {
    let f = Frame::new(g, u.o, images);
    let (nt, cp, op, o) = (f.nt(), f.cp, f.op, u.o);
    transform_inputs(g, &f, x, s);
    s.m.resize(XI * nt * op, T::zero());
    for xi in 0..XI {
        matmul(
            &mut s.m[xi * nt * op..][..nt * op],
            MatRef::new(&s.v[xi * nt * cp..][..nt * cp], nt, cp),
            u.at(xi),
            false,
            Threads::One,
        );
    }
    // Output tiles into whole-tile HWC order, then into planes.
    let (hh, ww) = (2 * f.th, 2 * f.tw);
    s.hwc.clear();
    s.hwc.resize(images * hh * ww * op, T::zero());
    for (t, img, ty, tx) in f.each_tile() {
        for k in (0..op).step_by(L) {
            let mut m = [[Lane::zero(); 4]; 4];
            for (xi, e) in m.iter_mut().flatten().enumerate() {
                *e = Lane::load(&s.m[(xi * nt + t) * op + k..]);
            }
            for (i, row) in output_transform(&m).iter().enumerate() {
                let at = ((img * hh + 2 * ty + i) * ww + 2 * tx) * op + k;
                row[0].store(&mut s.hwc[at..]);
                row[1].store(&mut s.hwc[at + op..]);
            }
        }
    }
    let ohow = o * g.out_plane();
    for (img, dst) in out.chunks_exact_mut(ohow).take(images).enumerate() {
        let src = &s.hwc[img * hh * ww * op..][..hh * ww * op];
        pixels_to_planes(src, (0, 0, ww, op), dst, (o, g.oh, g.ow));
    }
}

/// Backward pass of `images` consecutive images of `x`, from `dz` (images, o, oh, ow), the
/// gradient at the convolution's output: adds the transformed weight gradient into `du` (see
/// [`weight_grad`]) when given, and writes the input gradient into `dx` when given.
pub(super) fn backward<T: Float>(
    g: &Geometry,
    u: &Filters<T>,
    xdz: (&[T], &[T]),
    images: usize,
    dudx: (Option<&mut [T]>, Option<&mut [T]>),
    s: &mut Scratch<T>,
) {
    pulp::Arch::new().dispatch(Backward {
        g,
        u,
        xdz,
        images,
        dudx,
        s,
    })
}

/// The backward pass as a [`pulp::WithSimd`] (see [`Forward`]).
struct Backward<'a, T> {
    g: &'a Geometry,
    u: &'a Filters<T>,
    xdz: (&'a [T], &'a [T]),
    images: usize,
    dudx: (Option<&'a mut [T]>, Option<&'a mut [T]>),
    s: &'a mut Scratch<T>,
}

impl<T: Float> pulp::WithSimd for Backward<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        backward_body(self.g, self.u, self.xdz, self.images, self.dudx, self.s)
    }
}

#[inline(always)]
fn backward_body<T: Float>(
    g: &Geometry,
    u: &Filters<T>,
    (x, dz): (&[T], &[T]),
    images: usize,
    (du, dx): (Option<&mut [T]>, Option<&mut [T]>),
    s: &mut Scratch<T>,
) {
    let f = Frame::new(g, u.o, images);
    let (nt, cp, op, o) = (f.nt(), f.cp, f.op, u.o);
    // dY in HWC order over whole tiles (zero past the edges), then dM of every tile.
    let (hh, ww) = (2 * f.th, 2 * f.tw);
    s.hwc.clear();
    s.hwc.resize(images * hh * ww * op, T::zero());
    let ohow = o * g.out_plane();
    for (img, src) in dz.chunks_exact(ohow).take(images).enumerate() {
        let dst = &mut s.hwc[img * hh * ww * op..][..hh * ww * op];
        planes_to_pixels(src, (o, g.oh, g.ow), dst, (0, 0, ww, op));
    }
    s.m.resize(XI * nt * op, T::zero());
    for (t, img, ty, tx) in f.each_tile() {
        for k in (0..op).step_by(L) {
            let at = |i: usize, j: usize| ((img * hh + 2 * ty + i) * ww + 2 * tx + j) * op + k;
            let dy = [
                [
                    Lane::load(&s.hwc[at(0, 0)..]),
                    Lane::load(&s.hwc[at(0, 1)..]),
                ],
                [
                    Lane::load(&s.hwc[at(1, 0)..]),
                    Lane::load(&s.hwc[at(1, 1)..]),
                ],
            ];
            for (xi, e) in output_adjoint(&dy).iter().flatten().enumerate() {
                e.store(&mut s.m[(xi * nt + t) * op + k..]);
            }
        }
    }
    if let Some(du) = du {
        transform_inputs(g, &f, x, s);
        for xi in 0..XI {
            matmul(
                &mut du[xi * cp * op..][..cp * op],
                MatRef::new(&s.v[xi * nt * cp..][..nt * cp], nt, cp).t(),
                MatRef::new(&s.m[xi * nt * op..][..nt * op], nt, op),
                true,
                Threads::One,
            );
        }
    }
    let Some(dx) = dx else {
        return;
    };
    s.v.resize(XI * nt * cp, T::zero());
    for xi in 0..XI {
        matmul(
            &mut s.v[xi * nt * cp..][..nt * cp],
            MatRef::new(&s.m[xi * nt * op..][..nt * op], nt, op),
            u.at(xi).t(),
            false,
            Threads::One,
        );
    }
    // dd = B dV Bᵀ of every tile, added onto its (overlapping) window of the bordered HWC
    // buffer, whose inside is then the input gradient.
    s.hwc.clear();
    s.hwc.resize(images * f.hp * f.wp * cp, T::zero());
    for (t, img, ty, tx) in f.each_tile() {
        for k in (0..cp).step_by(L) {
            let mut v = [[Lane::zero(); 4]; 4];
            for (xi, e) in v.iter_mut().flatten().enumerate() {
                *e = Lane::load(&s.v[(xi * nt + t) * cp + k..]);
            }
            for (i, row) in input_adjoint(&v).iter().enumerate() {
                let at = f.at(img, 2 * ty + i, 2 * tx) + k;
                for (j, e) in row.iter().enumerate() {
                    e.add_to(&mut s.hwc[at + j * cp..]);
                }
            }
        }
    }
    let image = f.hp * f.wp * cp;
    for (src, dst) in s
        .hwc
        .chunks_exact(image)
        .zip(dx.chunks_exact_mut(g.plane()))
    {
        pixels_to_planes(src, (g.pad, g.pad, f.wp, cp), dst, (g.c, g.h, g.w));
    }
}
