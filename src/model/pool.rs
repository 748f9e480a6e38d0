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

use super::cpu::{by_dtype, dispatch1, slice, tensor, Float};
use super::Pool;

/// Forward records, for max pooling, which of the four inputs won each window (0..4, row-major
/// within the window); backward scatters the gradient there without looking at x again.
struct Pool2x2 {
    max: bool,
    argmax: Mutex<Vec<u8>>,
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

/// Offsets within an (h, w) plane of the four inputs of window (oy, ox).
fn window(w: usize, oy: usize, ox: usize) -> [usize; 4] {
    let i = 2 * oy * w + 2 * ox;
    [i, i + 1, i + w, i + w + 1]
}

fn forward<T: Float>(x: &[T], (_, _, h, w): (usize, usize, usize, usize), op: &Pool2x2) -> Vec<T> {
    let (oh, ow) = (h / 2, w / 2);
    let planes = x.len() / (h * w);
    let quarter = T::from_f64(0.25);
    let mut out = vec![T::zero(); planes * oh * ow];
    let mut argmax = vec![0u8; if op.max { out.len() } else { 0 }];
    let run = |(plane, out): (&[T], &mut [T]), mut idx: Option<&mut [u8]>| {
        for oy in 0..oh {
            for ox in 0..ow {
                let win = window(w, oy, ox);
                let o = oy * ow + ox;
                if let Some(idx) = idx.as_deref_mut() {
                    // The first maximum wins; NaN never wins, so a NaN first element stays
                    // (and propagates).
                    let mut best = 0;
                    for j in 1..4 {
                        if plane[win[j]] > plane[win[best]] {
                            best = j;
                        }
                    }
                    idx[o] = best as u8;
                    out[o] = plane[win[best]];
                } else {
                    out[o] =
                        (plane[win[0]] + plane[win[1]] + plane[win[2]] + plane[win[3]]) * quarter;
                }
            }
        }
    };
    let pairs = x.par_chunks(h * w).zip(out.par_chunks_mut(oh * ow));
    if op.max {
        pairs
            .zip(argmax.par_chunks_mut(oh * ow))
            .for_each(|(p, idx)| run(p, Some(idx)));
    } else {
        pairs.for_each(|p| run(p, None));
    }
    *op.argmax.lock().unwrap_or_else(|e| e.into_inner()) = argmax;
    out
}

fn backward<T: Float>(op: &Pool2x2, x: &Tensor, grad: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (oh, ow) = (h / 2, w / 2);
    let (gs, gl) = grad.storage_and_layout();
    let g = slice::<T>(&gs, gl, "pool-2x2-backward")?;
    let argmax = op.argmax.lock().unwrap_or_else(|e| e.into_inner());
    let quarter = T::from_f64(0.25);
    let mut dx = vec![T::zero(); x.elem_count()];
    dx.par_chunks_mut(h * w)
        .zip(g.par_chunks(oh * ow))
        .enumerate()
        .for_each(|(p, (dx, g))| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (win, o) = (window(w, oy, ox), oy * ow + ox);
                    if op.max {
                        dx[win[argmax[p * oh * ow + o] as usize]] = g[o];
                    } else {
                        win.iter().for_each(|&i| dx[i] = g[o] * quarter);
                    }
                }
            }
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
        let out = dispatch1(
            self.name(),
            (storage, layout),
            |x| forward(x, d, self),
            |x| forward(x, d, self),
        )?;
        Ok((out, shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = grad.contiguous()?;
        by_dtype(
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
