//! 2x2 max and average pooling (stride 2, floor) as candle custom ops with correct gradients.
//!
//! Candle 0.11's own pooling backward is wrong for this use: max-pool multiplies the gradient by
//! the share of maxima in the window (a quarter of the true gradient for a unique maximum), and
//! both spread gradients onto the row and column that floor pooling drops on odd sizes. These
//! ops give the whole gradient to the first maximum of each window (as PyTorch does) and a
//! quarter to each input of an average window, and nothing to dropped rows and columns.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::arch::Pool;
use super::cpu::{dispatch1, slice, tensor, timed_backward, Float};
use super::profile::{self, Phase};

/// Forward records, for max pooling, which of the four inputs won each window (0..4, row-major
/// within the window); backward scatters the gradient there without looking at x again.
struct Pool2x2 {
    max: bool,
    argmax: Mutex<Vec<u8>>,
}

impl Pool2x2 {
    /// `max pool 32x28x28`, for the profile.
    fn label(&self, (_, c, h, w): (usize, usize, usize, usize)) -> String {
        let kind = if self.max { "max" } else { "avg" };
        format!("{kind} pool {c}x{h}x{w}")
    }
}

/// Applies 2x2 pooling to an (n, c, h, w) tensor.
pub fn pool2x2(x: &Tensor, kind: Pool) -> Result<Tensor> {
    let op = |max| Pool2x2 {
        max,
        argmax: Mutex::new(Vec::new()),
    };
    match kind {
        Pool::None => Ok(x.clone()),
        Pool::Max => x.contiguous()?.apply_op1(op(true)),
        Pool::Avg => x.contiguous()?.apply_op1(op(false)),
    }
}

/// One plane: the output rows from pairs of input rows, recording the winner of each max window.
pub(super) fn pool_plane<T: Float>(
    plane: &[T],
    w: usize,
    out: &mut [T],
    mut idx: Option<&mut [u8]>,
) {
    let ow = w / 2;
    let quarter = T::from_f64(0.25);
    for (oy, orow) in out.chunks_exact_mut(ow).enumerate() {
        let r0 = &plane[2 * oy * w..][..2 * ow];
        let r1 = &plane[(2 * oy + 1) * w..][..2 * ow];
        let win = r0.chunks_exact(2).zip(r1.chunks_exact(2));
        match idx.as_deref_mut() {
            Some(idx) => {
                let irow = &mut idx[oy * ow..][..ow];
                for ((o, i), (a, b)) in orow.iter_mut().zip(irow).zip(win) {
                    // The first maximum wins; NaN never wins, so a NaN first element stays
                    // (and propagates).
                    let (mut best, mut at) = (a[0], 0u8);
                    for (v, k) in [(a[1], 1u8), (b[0], 2), (b[1], 3)] {
                        if v > best {
                            (best, at) = (v, k);
                        }
                    }
                    *o = best;
                    *i = at;
                }
            }
            None => {
                for (o, (a, b)) in orow.iter_mut().zip(win) {
                    *o = (a[0] + a[1] + b[0] + b[1]) * quarter;
                }
            }
        }
    }
}

fn forward<T: Float>(x: &[T], (_, _, h, w): (usize, usize, usize, usize), op: &Pool2x2) -> Vec<T> {
    let (oh, ow) = (h / 2, w / 2);
    let planes = x.len() / (h * w);
    let mut out = vec![T::zero(); planes * oh * ow];
    if oh * ow == 0 {
        return out;
    }
    let mut argmax = vec![0u8; if op.max { out.len() } else { 0 }];
    let pairs = x.par_chunks(h * w).zip(out.par_chunks_mut(oh * ow));
    if op.max {
        pairs
            .zip(argmax.par_chunks_mut(oh * ow))
            .for_each(|((p, o), idx)| pool_plane(p, w, o, Some(idx)));
    } else {
        pairs.for_each(|(p, o)| pool_plane(p, w, o, None));
    }
    *op.argmax.lock().unwrap_or_else(|e| e.into_inner()) = argmax;
    out
}

/// One plane's gradient before pooling (h x w) from its pooled gradient: to the winner of each
/// window (`argmax` from forward), or a quarter to each input with no winners given (average
/// pooling); nothing to the row and column that floor pooling drops.
pub(super) fn unpool_plane<T: Float>(g: &[T], argmax: &[u8], w: usize, dx: &mut [T]) {
    struct Op<'a, T>(&'a [T], &'a [u8], usize, &'a mut [T]);
    impl<T: Float> pulp::WithSimd for Op<'_, T> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) {
            let Op(g, argmax, w, dx) = self;
            unpool_body(g, argmax, w, dx)
        }
    }
    // Compiled for the widest vector instructions the CPU has.
    pulp::Arch::new().dispatch(Op(g, argmax, w, dx))
}

#[inline(always)]
fn unpool_body<T: Float>(g: &[T], argmax: &[u8], w: usize, dx: &mut [T]) {
    let ow = w / 2;
    dx.fill(T::zero());
    if ow == 0 {
        return;
    }
    let quarter = T::from_f64(0.25);
    for (oy, grow) in g.chunks_exact(ow).enumerate() {
        let (r0, r1) = dx[2 * oy * w..][..2 * w].split_at_mut(w);
        let wins = r0.chunks_exact_mut(2).zip(r1.chunks_exact_mut(2));
        if argmax.is_empty() {
            for ((a, b), &gv) in wins.zip(grow) {
                let q = gv * quarter;
                (a[0], a[1], b[0], b[1]) = (q, q, q, q);
            }
        } else {
            let irow = &argmax[oy * ow..][..ow];
            // Branch-free: which input won is data, and mispredicted branches cost more here
            // than writing all four.
            let z = T::zero();
            for (((a, b), &gv), &k) in wins.zip(grow).zip(irow) {
                a[0] = if k == 0 { gv } else { z };
                a[1] = if k == 1 { gv } else { z };
                b[0] = if k == 2 { gv } else { z };
                b[1] = if k == 3 { gv } else { z };
            }
        }
    }
}

fn backward<T: Float>(op: &Pool2x2, x: &Tensor, grad: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (oh, ow) = (h / 2, w / 2);
    let mut dx = vec![T::zero(); x.elem_count()];
    if oh * ow == 0 {
        return tensor(dx, x.shape());
    }
    let (gs, gl) = grad.storage_and_layout();
    let g = slice::<T>(&gs, gl, "pool-2x2-backward")?;
    let argmax = op.argmax.lock().unwrap_or_else(|e| e.into_inner());
    dx.par_chunks_mut(h * w)
        .zip(g.par_chunks(oh * ow))
        .enumerate()
        .for_each(|(p, (dx, g))| {
            let idx = if op.max {
                &argmax[p * oh * ow..][..oh * ow]
            } else {
                &[]
            };
            unpool_plane(g, idx, w, dx)
        });
    tensor(dx, x.shape())
}

impl CustomOp1 for Pool2x2 {
    fn name(&self) -> &'static str {
        if self.max {
            "max-pool-2x2"
        } else {
            "avg-pool-2x2"
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = layout.shape().dims4()?;
        let shape = Shape::from((d.0, d.1, d.2 / 2, d.3 / 2));
        let out = profile::time(
            || self.label(d),
            Phase::Forward,
            0.0,
            || {
                dispatch1(
                    self.name(),
                    (storage, layout),
                    |x| forward(x, d, self),
                    |x| forward(x, d, self),
                )
            },
        )?;
        Ok((out, shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = grad.contiguous()?;
        let label = || self.label(arg.dims4().unwrap_or_default());
        timed_backward(
            label,
            0.0,
            arg,
            self.name(),
            || backward::<f32>(self, arg, &g),
            || backward::<f64>(self, arg, &g),
        )
        .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn forward_and_backward_by_hand_on_an_odd_size() {
        // One 3x3 plane: pooling sees only the top-left 2x2 window.
        let x = Var::from_vec(
            vec![1f32, 5., 2., 3., 4., 9., 7., 8., 6.],
            (1, 1, 3, 3),
            &Device::Cpu,
        )
        .unwrap();
        let y = pool2x2(&x, Pool::Max).unwrap();
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![5.0]
        );
        let g = (y * 3.0).unwrap().sum_all().unwrap().backward().unwrap();
        let gx = g
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(gx, vec![0., 3., 0., 0., 0., 0., 0., 0., 0.]);
        let y = pool2x2(&x, Pool::Avg).unwrap();
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![3.25]
        );
        let g = y.sum_all().unwrap().backward().unwrap();
        let gx = g
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(gx, vec![0.25, 0.25, 0., 0.25, 0.25, 0., 0., 0., 0.]);
    }

    #[test]
    fn ties_go_to_the_first_maximum_and_planes_stay_apart() {
        let x = Var::from_vec(
            vec![2f64, 2., 2., 2., 1., 0., 0., 1.],
            (1, 2, 2, 2),
            &Device::Cpu,
        )
        .unwrap();
        let y = pool2x2(&x, Pool::Max).unwrap();
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            vec![2.0, 1.0]
        );
        let g = y.sum_all().unwrap().backward().unwrap();
        let gx = g
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert_eq!(gx, vec![1., 0., 0., 0., 1., 0., 0., 0.]);
    }
}
