//! Plumbing shared by the custom ops: contiguous slices of CPU storage, and running one generic
//! kernel on f32 or f64 inputs.

use candle_core::{
    CpuStorage, DType, Device, Layout, Result, Shape, Storage, StorageRef, Tensor, WithDType,
};

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
pub fn dispatch3(
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
pub trait Float: WithDType + Copy + Send + Sync + 'static {}
impl Float for f32 {}
impl Float for f64 {}

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
    flops: f64,
    t: &Tensor,
    op: &str,
    f32: impl FnOnce() -> Result<R>,
    f64: impl FnOnce() -> Result<R>,
) -> Result<R> {
    super::profile::time(label, super::profile::Phase::Backward, flops, || {
        by_dtype(t, op, f32, f64)
    })
}

/// A tensor owning `data`, on the CPU.
pub fn tensor<T: Float>(data: Vec<T>, shape: impl Into<Shape>) -> Result<Tensor> {
    Tensor::from_vec(data, shape, &Device::Cpu)
}
