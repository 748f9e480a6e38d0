//! Conv2d as im2col + one matrix product (candle's matmul on gemm), with the input gradient as a
//! matrix product + col2im, and no input gradient at all when the input needs none (the first
//! layer). The weight gradient is the single product cols^T . dy over the whole batch.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::cpu::dispatch1;

#[derive(Debug, Clone, Copy)]
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

impl Geometry {
    fn row(&self) -> usize {
        self.c * self.k * self.k
    }

    /// For output position (oy, ox) and kernel offset (ky, kx): the input pixel, if inside.
    fn at(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
        let y = (oy * self.stride + ky).checked_sub(self.pad)?;
        let x = (ox * self.stride + kx).checked_sub(self.pad)?;
        (y < self.h && x < self.w).then_some((y, x))
    }
}

/// (n, c, h, w) -> (n * oh * ow, c * k * k): one row per output position.
struct Im2Col {
    g: Geometry,
}

fn im2col<T: WithDType>(x: &[T], g: Geometry) -> Vec<T> {
    let plane = g.c * g.h * g.w;
    let rows = g.oh * g.ow;
    let mut out = vec![T::zero(); x.len() / plane * rows * g.row()];
    out.par_chunks_mut(rows * g.row())
        .zip(x.par_chunks(plane))
        .for_each(|(cols, img)| {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let r = &mut cols[(oy * g.ow + ox) * g.row()..][..g.row()];
                    let mut i = 0;
                    for ch in 0..g.c {
                        for ky in 0..g.k {
                            for kx in 0..g.k {
                                if let Some((y, xx)) = g.at(oy, ox, ky, kx) {
                                    r[i] = img[(ch * g.h + y) * g.w + xx];
                                }
                                i += 1;
                            }
                        }
                    }
                }
            }
        });
    out
}

fn col2im<T: WithDType>(cols: &[T], g: Geometry) -> Vec<T> {
    let plane = g.c * g.h * g.w;
    let rows = g.oh * g.ow;
    let n = cols.len() / (rows * g.row());
    let mut out = vec![T::zero(); n * plane];
    out.par_chunks_mut(plane)
        .zip(cols.par_chunks(rows * g.row()))
        .for_each(|(img, cs)| {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let r = &cs[(oy * g.ow + ox) * g.row()..][..g.row()];
                    let mut i = 0;
                    for ch in 0..g.c {
                        for ky in 0..g.k {
                            for kx in 0..g.k {
                                if let Some((y, xx)) = g.at(oy, ox, ky, kx) {
                                    img[(ch * g.h + y) * g.w + xx] += r[i];
                                }
                                i += 1;
                            }
                        }
                    }
                }
            }
        });
    out
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = l.shape().dims4()?.0;
        let g = self.g;
        let out = dispatch1(self.name(), (s, l), |x| im2col(x, g), |x| im2col(x, g))?;
        Ok((out, Shape::from((n * g.oh * g.ow, g.row()))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // The first layer's input is data: nothing needs its gradient.
        if !arg.track_op() {
            return Ok(None);
        }
        let grad = grad.contiguous()?;
        Ok(Some(grad.apply_op1_no_bwd(&Col2Im {
            g: self.g,
            n: arg.dim(0)?,
        })?))
    }
}

struct Col2Im {
    g: Geometry,
    n: usize,
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.g;
        let out = dispatch1(self.name(), (s, l), |x| col2im(x, g), |x| col2im(x, g))?;
        Ok((out, Shape::from((self.n, g.c, g.h, g.w))))
    }
}

/// y = conv2d(x, weight) (no bias), x (n, c, h, w), weight (o, c, k, k), dilation 1, groups 1.
pub fn conv2d(x: &Tensor, weight: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (o, _, k, _) = weight.dims4()?;
    let oh = (h + 2 * pad - k) / stride + 1;
    let ow = (w + 2 * pad - k) / stride + 1;
    let g = Geometry {
        c,
        h,
        w,
        k,
        stride,
        pad,
        oh,
        ow,
    };
    let cols = x.contiguous()?.apply_op1(Im2Col { g })?;
    let y = cols.matmul(&weight.reshape((o, g.row()))?.t()?)?; // (n*oh*ow, o)
    y.reshape((n, oh * ow, o))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((n, o, oh, ow))
}
