//! 2x2 max and average pooling (stride 2, floor) as candle custom ops with correct gradients.
//!
//! Candle 0.11's own pooling backward is wrong for this use: max-pool multiplies the gradient by
//! the share of maxima in the window (a quarter of the true gradient for a unique maximum), and
//! both spread gradients onto the row and column that floor pooling drops on odd sizes. These
//! ops give the whole gradient to the first maximum of each window (as PyTorch does) and a
//! quarter to each input of an average window, and nothing to dropped rows and columns.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, WithDType};

use super::cpu::{dispatch1, dispatch2};
use super::Pool;

#[derive(Debug, Clone, Copy)]
struct Pool2x2 {
    max: bool,
}

#[derive(Debug, Clone, Copy)]
struct Pool2x2Backward {
    max: bool,
}

/// Applies 2x2 pooling to an (n, c, h, w) tensor.
pub fn pool2x2(x: &Tensor, kind: Pool) -> Result<Tensor> {
    match kind {
        Pool::None => Ok(x.clone()),
        Pool::Max => x.contiguous()?.apply_op1(Pool2x2 { max: true }),
        Pool::Avg => x.contiguous()?.apply_op1(Pool2x2 { max: false }),
    }
}

fn dims(layout: &Layout) -> Result<(usize, usize, usize, usize)> {
    layout.shape().dims4()
}

/// Index within an (h, w) plane of the first maximum of window (oy, ox).
fn argmax<T: WithDType>(plane: &[T], w: usize, oy: usize, ox: usize) -> usize {
    let (y, x) = (2 * oy, 2 * ox);
    let mut best = y * w + x;
    for i in [y * w + x + 1, (y + 1) * w + x, (y + 1) * w + x + 1] {
        // NaN never wins, so a NaN maximum keeps the first element (it propagates through it).
        if plane[i] > plane[best] {
            best = i;
        }
    }
    best
}

fn forward<T: WithDType>(x: &[T], (n, c, h, w): (usize, usize, usize, usize), max: bool) -> Vec<T> {
    let (oh, ow) = (h / 2, w / 2);
    let quarter = T::from_f64(0.25);
    let mut out = Vec::with_capacity(n * c * oh * ow);
    for plane in x.chunks_exact(h * w) {
        for oy in 0..oh {
            for ox in 0..ow {
                out.push(if max {
                    plane[argmax(plane, w, oy, ox)]
                } else {
                    let (y, x) = (2 * oy, 2 * ox);
                    (plane[y * w + x]
                        + plane[y * w + x + 1]
                        + plane[(y + 1) * w + x]
                        + plane[(y + 1) * w + x + 1])
                        * quarter
                });
            }
        }
    }
    out
}

fn backward<T: WithDType>(
    x: &[T],
    g: &[T],
    (_, _, h, w): (usize, usize, usize, usize),
    max: bool,
) -> Vec<T> {
    let (oh, ow) = (h / 2, w / 2);
    let quarter = T::from_f64(0.25);
    let mut out = vec![T::zero(); x.len()];
    for ((plane, grad), dx) in x
        .chunks_exact(h * w)
        .zip(g.chunks_exact(oh * ow))
        .zip(out.chunks_exact_mut(h * w))
    {
        for oy in 0..oh {
            for ox in 0..ow {
                let gi = grad[oy * ow + ox];
                if max {
                    dx[argmax(plane, w, oy, ox)] += gi;
                } else {
                    let (y, x) = (2 * oy, 2 * ox);
                    for i in [
                        y * w + x,
                        y * w + x + 1,
                        (y + 1) * w + x,
                        (y + 1) * w + x + 1,
                    ] {
                        dx[i] += gi * quarter;
                    }
                }
            }
        }
    }
    out
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
        let d = dims(layout)?;
        let shape = Shape::from((d.0, d.1, d.2 / 2, d.3 / 2));
        let max = self.max;
        let out = dispatch1(
            self.name(),
            (storage, layout),
            |x| forward(x, d, max),
            |x| forward(x, d, max),
        )?;
        Ok((out, shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g = grad_res.contiguous()?;
        Ok(Some(arg.apply_op2_no_bwd(
            &g,
            &Pool2x2Backward { max: self.max },
        )?))
    }
}

impl CustomOp2 for Pool2x2Backward {
    fn name(&self) -> &'static str {
        "pool-2x2-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = dims(l1)?;
        let max = self.max;
        let out = dispatch2(
            self.name(),
            (s1, l1),
            (s2, l2),
            |x, g| backward(x, g, d, max),
            |x, g| backward(x, g, d, max),
        )?;
        Ok((out, l1.shape().clone()))
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
