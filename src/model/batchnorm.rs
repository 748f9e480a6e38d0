//! Batch-norm arithmetic for the fused conv block (`block`): per-channel statistics and sums
//! accumulated in f64 lanes, and the normalisation of one plane.
//!
//! For channel c with m = n*h*w values, xhat = (x - mean) / sqrt(var + eps) and
//! y = gamma * xhat + beta, the gradients are
//!   dbeta = sum(dy), dgamma = sum(dy * xhat),
//!   dx = gamma / sqrt(var + eps) / m * (m * dy - dbeta - xhat * dgamma).

use super::cpu::Float;

/// Sums of `f(a[i], b[i])` (two of them) in eight f64 lanes: vectorised, where one running f64
/// sum would be a chain of dependent adds.
#[inline(always)]
pub(super) fn lane_sums<T: Float, F: Fn(T, T) -> (f64, f64)>(a: &[T], b: &[T], f: F) -> (f64, f64) {
    struct Op<'a, T, F>(&'a [T], &'a [T], F);
    impl<T: Float, F: Fn(T, T) -> (f64, f64)> pulp::WithSimd for Op<'_, T, F> {
        type Output = (f64, f64);
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) -> (f64, f64) {
            lane_sums_body(self.0, self.1, self.2)
        }
    }
    // Compiled for the widest vector instructions the CPU has: the same sums in the same order.
    pulp::Arch::new().dispatch(Op(a, b, f))
}

#[inline(always)]
fn lane_sums_body<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> (f64, f64)) -> (f64, f64) {
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
pub(super) fn per_channel(planes: Vec<(f64, f64)>, c: usize) -> Vec<(f64, f64)> {
    let mut out = vec![(0f64, 0f64); c];
    for (i, (a, b)) in planes.into_iter().enumerate() {
        out[i % c].0 += a;
        out[i % c].1 += b;
    }
    out
}

/// The sum and sum of squares of one plane, in f64 lanes.
pub(super) fn plane_moments<T: Float>(p: &[T]) -> (f64, f64) {
    lane_sums(p, p, |v, _| {
        let v = v.to_f64();
        (v, v * v)
    })
}

/// Per-channel mean and biased variance from the moments of every (sample, channel) plane,
/// in that order, `m` values per channel.
pub(super) fn channel_stats(planes: Vec<(f64, f64)>, c: usize, m: f64) -> Vec<(f64, f64)> {
    per_channel(planes, c)
        .into_iter()
        .map(|(sum, sq)| {
            let mean = sum / m;
            (mean, (sq / m - mean * mean).max(0.0))
        })
        .collect()
}

/// One plane: y = act((x - m) * s + b), with the activation inlined into the loop.
#[inline(always)]
pub(super) fn normalize<T: Float, A: Fn(T) -> T>(ys: &mut [T], xs: &[T], m: T, s: T, b: T, act: A) {
    struct Op<'a, T, A>(&'a mut [T], &'a [T], [T; 3], A);
    impl<T: Float, A: Fn(T) -> T> pulp::WithSimd for Op<'_, T, A> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) {
            let Op(ys, xs, [m, s, b], act) = self;
            for (y, &x) in ys.iter_mut().zip(xs) {
                *y = act((x - m) * s + b);
            }
        }
    }
    pulp::Arch::new().dispatch(Op(ys, xs, [m, s, b], act))
}
