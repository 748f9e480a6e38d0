//! Plumbing shared by the custom ops: contiguous slices of CPU storage, and running one generic
//! kernel on f32 or f64 inputs.

use candle_core::{
    CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Storage, StorageRef, Tensor,
    WithDType,
};

use super::profile::{self, Phase};

/// The elements a contiguous layout covers.
pub fn contiguous<'a, T>(data: &'a [T], l: &Layout, op: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: inputs must be contiguous"),
    }
}

/// Runs `f32` or `f64` on one contiguous input.
pub fn dispatch1(
    op: &str,
    (s, l): (&CpuStorage, &Layout),
    f32: impl Fn(&[f32]) -> Vec<f32>,
    f64: impl Fn(&[f64]) -> Vec<f64>,
) -> Result<CpuStorage> {
    Ok(match s {
        CpuStorage::F32(a) => CpuStorage::F32(f32(contiguous(a, l, op)?)),
        CpuStorage::F64(a) => CpuStorage::F64(f64(contiguous(a, l, op)?)),
        _ => candle_core::bail!("{op}: only f32 and f64 are supported"),
    })
}

/// Runs `f32` or `f64` on three contiguous inputs of the same dtype.
fn dispatch3(
    op: &str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    (s3, l3): (&CpuStorage, &Layout),
    f32: impl Fn(&[f32], &[f32], &[f32]) -> Vec<f32>,
    f64: impl Fn(&[f64], &[f64], &[f64]) -> Vec<f64>,
) -> Result<CpuStorage> {
    Ok(match (s1, s2, s3) {
        (CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)) => CpuStorage::F32(f32(
            contiguous(a, l1, op)?,
            contiguous(b, l2, op)?,
            contiguous(c, l3, op)?,
        )),
        (CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)) => CpuStorage::F64(f64(
            contiguous(a, l1, op)?,
            contiguous(b, l2, op)?,
            contiguous(c, l3, op)?,
        )),
        _ => candle_core::bail!("{op}: only f32 and f64 are supported"),
    })
}

/// The element types the custom ops compute in (the ones `gemm` has kernels for).
pub trait Float: WithDType + Copy + Send + Sync + 'static {
    /// The same values as f32, for the kernels written for f32 alone; `None` for f64.
    fn f32s(s: &[Self]) -> Option<&[f32]>;

    fn f32s_mut(s: &mut [Self]) -> Option<&mut [f32]>;
}

impl Float for f32 {
    fn f32s(s: &[Self]) -> Option<&[f32]> {
        Some(s)
    }

    fn f32s_mut(s: &mut [Self]) -> Option<&mut [f32]> {
        Some(s)
    }
}

impl Float for f64 {
    fn f32s(_: &[Self]) -> Option<&[f32]> {
        None
    }

    fn f32s_mut(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
}

/// The contiguous CPU elements of a tensor's storage (for a tensor read in a `bwd`).
pub fn slice<'a, T: Float>(storage: &'a StorageRef<'_>, l: &Layout, op: &str) -> Result<&'a [T]> {
    match &**storage {
        Storage::Cpu(s) => contiguous(T::cpu_storage_as_slice(s)?, l, op),
        _ => candle_core::bail!("{op}: only the CPU is supported"),
    }
}

/// Calls `f32` or `f64` with the tensor's dtype as the type parameter.
pub fn by_dtype<R>(
    t: &Tensor,
    op: &str,
    f32: impl FnOnce() -> Result<R>,
    f64: impl FnOnce() -> Result<R>,
) -> Result<R> {
    match t.dtype() {
        DType::F32 => f32(),
        DType::F64 => f64(),
        d => candle_core::bail!("{op}: only f32 and f64 are supported, not {d:?}"),
    }
}

/// A custom op's backward pass: the f32 or f64 kernel by the dtype of `t`, timed under
/// `label` when the profile records.
pub fn timed_backward<R>(
    label: impl FnOnce() -> String,
    work: impl Into<super::profile::Work>,
    t: &Tensor,
    op: &str,
    f32: impl FnOnce() -> Result<R>,
    f64: impl FnOnce() -> Result<R>,
) -> Result<R> {
    super::profile::time(label, super::profile::Phase::Backward, work, || {
        by_dtype(t, op, f32, f64)
    })
}

/// The gradients of a three-input op's inputs (none where an input needs none).
pub type Grads3 = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

/// A fused op on three inputs (data, weight, per-channel parameters) with one kernel generic
/// over f32 and f64; [`Op3`] makes it a candle `CustomOp3`, timed under the profile.
pub trait Kernel3: Send + Sync {
    const NAME: &'static str;

    /// The op as the profile table names it.
    fn label(&self) -> String;

    /// FLOPs of `products` of its matrix products for a batch of `n` (the forward pass does
    /// one; the backward pass one per input gradient it computes, data and weight).
    fn flops(&self, n: usize, products: usize) -> f64;

    /// Bytes of the batch-sized arrays that a pass over a batch of `n` reads and writes, with
    /// elements of `size` bytes and, for the backward pass, whether the input's gradient is
    /// computed (for the profile; zero where not counted).
    fn bytes(&self, _n: usize, _phase: Phase, _size: usize, _dx: bool) -> f64 {
        0.0
    }

    /// The output's shape for a batch of `n`.
    fn out_shape(&self, n: usize) -> Shape;

    /// The output, from the contiguous inputs.
    fn forward<T: Float>(&self, a: &[T], b: &[T], c: &[T]) -> Vec<T>;

    /// The inputs' gradients from the output's (`dout`, contiguous).
    fn backward<T: Float>(
        &self,
        args: (&Tensor, &Tensor, &Tensor),
        out: &Tensor,
        dout: &Tensor,
    ) -> Result<Grads3>;
}

/// A [`Kernel3`] as a candle op.
pub struct Op3<K>(pub K);

impl<K: Kernel3> CustomOp3 for Op3<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let k = &self.0;
        let n = l1.dims().first().copied().unwrap_or(1);
        let work = profile::Work {
            flops: k.flops(n, 1),
            bytes: k.bytes(
                n,
                Phase::Forward,
                candle_core::backend::BackendStorage::dtype(s1).size_in_bytes(),
                false,
            ),
        };
        let out = profile::time(
            || k.label(),
            Phase::Forward,
            work,
            || {
                dispatch3(
                    K::NAME,
                    (s1, l1),
                    (s2, l2),
                    (s3, l3),
                    |a, b, c| k.forward(a, b, c),
                    |a, b, c| k.forward(a, b, c),
                )
            },
        )?;
        Ok((out, k.out_shape(n)))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        c: &Tensor,
        out: &Tensor,
        dout: &Tensor,
    ) -> Result<Grads3> {
        let k = &self.0;
        let dout = dout.contiguous()?;
        let products = usize::from(a.track_op()) + usize::from(b.track_op());
        let n = dout.dim(0)?;
        let size = a.dtype().size_in_bytes();
        let work = profile::Work {
            flops: k.flops(n, products),
            bytes: k.bytes(n, Phase::Backward, size, a.track_op()),
        };
        timed_backward(
            || k.label(),
            work,
            a,
            K::NAME,
            || k.backward::<f32>((a, b, c), out, &dout),
            || k.backward::<f64>((a, b, c), out, &dout),
        )
    }
}

/// A tensor owning `data`, on the CPU.
pub fn tensor<T: Float>(data: Vec<T>, shape: impl Into<Shape>) -> Result<Tensor> {
    Tensor::from_vec(data, shape, &Device::Cpu)
}
