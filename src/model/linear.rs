//! A fully connected layer as one candle custom op: y = act(x . W^T + b), with the input
//! flattened in place (no reshape node before the first classifier layer) and the bias and
//! activation applied while the product's rows are in cache. Backward: dz = dy * act'(y), the
//! bias gradient as a column sum, dW = dz^T . x and dx = dz . W as two products on all threads.

use candle_core::{Result, Shape, Tensor};
use rayon::prelude::*;

use super::activation::Activation;
use super::cpu::{slice, tensor, Float, Grads3, Kernel3, Op3};
use super::gemm::{matmul, MatRef, Threads};

struct LinearOp {
    in_f: usize,
    out_f: usize,
    act: Option<Activation>,
}

fn forward<T: Float>(x: &[T], w: &[T], b: &[T], op: &LinearOp) -> Vec<T> {
    let out_f = op.out_f;
    let in_f = w.len() / out_f;
    let n = x.len() / in_f;
    let mut y = vec![T::zero(); n * out_f];
    matmul(
        &mut y,
        MatRef::new(x, n, in_f),
        MatRef::new(w, out_f, in_f).t(),
        false,
        Threads::All,
    );
    y.par_chunks_mut(out_f).for_each(|row| {
        for (v, &bias) in row.iter_mut().zip(b) {
            *v = match op.act {
                None => *v + bias,
                Some(a) => a.apply(*v + bias),
            };
        }
    });
    y
}

fn backward<T: Float>(
    op: &LinearOp,
    (x, w, b): (&Tensor, &Tensor, &Tensor),
    y: &Tensor,
    dy: &Tensor,
) -> Result<Grads3> {
    let name = "linear-backward";
    let out_f = op.out_f;
    let (xs, xl) = x.storage_and_layout();
    let (ws, wl) = w.storage_and_layout();
    let (ys, yl) = y.storage_and_layout();
    let (gs, gl) = dy.storage_and_layout();
    let (xv, wv) = (slice::<T>(&xs, xl, name)?, slice::<T>(&ws, wl, name)?);
    let (yv, dyv) = (slice::<T>(&ys, yl, name)?, slice::<T>(&gs, gl, name)?);
    let in_f = wv.len() / out_f;
    let n = xv.len() / in_f;
    let dz: Vec<T> = match op.act {
        None => dyv.to_vec(),
        Some(a) => dyv
            .iter()
            .zip(yv)
            .map(|(&g, &v)| g * a.slope_at_output(v))
            .collect(),
    };
    let db = b.track_op().then(|| {
        let mut sums = vec![0f64; out_f];
        for row in dz.chunks_exact(out_f) {
            sums.iter_mut().zip(row).for_each(|(s, v)| *s += v.to_f64());
        }
        sums.into_iter().map(T::from_f64).collect::<Vec<T>>()
    });
    let dz_m = MatRef::new(&dz, n, out_f);
    let dw = w.track_op().then(|| {
        let mut dw = vec![T::zero(); out_f * in_f];
        matmul(
            &mut dw,
            dz_m.t(),
            MatRef::new(xv, n, in_f),
            false,
            Threads::All,
        );
        dw
    });
    let dx = x.track_op().then(|| {
        let mut dx = vec![T::zero(); n * in_f];
        matmul(
            &mut dx,
            dz_m,
            MatRef::new(wv, out_f, in_f),
            false,
            Threads::All,
        );
        dx
    });
    Ok((
        dx.map(|v| tensor(v, x.shape())).transpose()?,
        dw.map(|v| tensor(v, w.shape())).transpose()?,
        db.map(|v| tensor(v, out_f)).transpose()?,
    ))
}

impl Kernel3 for LinearOp {
    const NAME: &'static str = "linear";

    /// `linear 3136->128 +relu`, for the profile.
    fn label(&self) -> String {
        let act = self
            .act
            .map(|a| format!(" +{}", a.name()))
            .unwrap_or_default();
        format!("linear {}->{}{act}", self.in_f, self.out_f)
    }

    fn flops(&self, n: usize, products: usize) -> f64 {
        2.0 * (products * n * self.in_f * self.out_f) as f64
    }

    fn out_shape(&self, n: usize) -> Shape {
        Shape::from((n, self.out_f))
    }

    fn forward<T: Float>(&self, x: &[T], w: &[T], b: &[T]) -> Vec<T> {
        forward(x, w, b, self)
    }

    fn backward<T: Float>(
        &self,
        args: (&Tensor, &Tensor, &Tensor),
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<Grads3> {
        backward::<T>(self, args, y, dy)
    }
}

/// y = act(flatten(x) . weight^T + bias) for x (n, ...) with in_features values per sample,
/// weight (out, in), bias (out,).
pub fn linear(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    act: Option<Activation>,
) -> Result<Tensor> {
    let (out_f, in_f) = weight.dims2()?;
    let n = x.dims().first().copied().unwrap_or(1);
    if x.elem_count() != n * in_f || bias.dims() != [out_f] {
        candle_core::bail!(
            "linear: input {:?}, weight {:?}, bias {:?} do not fit",
            x.dims(),
            weight.dims(),
            bias.dims()
        );
    }
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        Op3(LinearOp { in_f, out_f, act }),
    )
}
