//! Matrix products on slices through the `gemm` crate, which picks its widest SIMD kernels
//! (AVX-512 where the CPU has it) at run time. One of the model's two places with `unsafe`
//! (the other is the direct convolution's innermost loads): every view is bounds-checked
//! against its slice before `gemm` sees a pointer.

use super::cpu::Float;

/// A read-only matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// The row-major (rows x cols) matrix at the start of `data`.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix view out of bounds");
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// How many threads one product may use.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// The calling thread only (the caller parallelises over something else).
    One,
    /// The rayon pool.
    All,
}

/// `dst = a . b`, or `dst += a . b` with `accumulate`, for a row-major `dst` of a.rows x b.cols.
pub fn matmul<T: Float>(
    dst: &mut [T],
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    threads: Threads,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    assert!(dst.len() >= m * n, "destination too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(T::zero());
        }
        return;
    }
    for v in [a, b] {
        assert!((v.rows - 1) * v.rs + (v.cols - 1) * v.cs < v.data.len());
    }
    let parallelism = match threads {
        Threads::One => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(rayon::current_num_threads()),
    };
    let one = T::from_f64(1.0);
    // SAFETY: the three views are in bounds (checked above) and `dst` is borrowed mutably, so
    // it aliases neither input; `Float` is implemented only for f32 and f64, which `gemm`
    // supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            one,
            one,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The f32 matrix-product rate this machine reaches (GFLOP/s, best of a few runs) on square
/// products of size `n`: the yardstick for the kernels' own rates in `candletop bench`.
pub fn peak_gflops(n: usize, threads: Threads) -> f64 {
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let mut c = vec![0f32; n * n];
    let m = MatRef::new(&a, n, n);
    matmul(&mut c, m, m, false, threads); // warm-up
    let best = (0..5)
        .map(|_| {
            let t0 = std::time::Instant::now();
            matmul(&mut c, m, m.t(), false, threads);
            t0.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min);
    2.0 * (n * n * n) as f64 / best / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_a_loop_with_transposes_and_accumulation() {
        let a: Vec<f64> = (0..6).map(|v| v as f64 - 2.0).collect(); // 2x3
        let b: Vec<f64> = (0..12).map(|v| (v as f64) * 0.5).collect(); // 3x4
        let mut c = vec![1.0; 8];
        matmul(
            &mut c,
            MatRef::new(&a, 2, 3),
            MatRef::new(&b, 3, 4),
            true,
            Threads::One,
        );
        for i in 0..2 {
            for j in 0..4 {
                let want = 1.0 + (0..3).map(|k| a[i * 3 + k] * b[k * 4 + j]).sum::<f64>();
                assert_eq!(c[i * 4 + j], want);
            }
        }
        // (b^T . a^T) = (a . b)^T
        let mut d = vec![0.0; 8];
        matmul(
            &mut d,
            MatRef::new(&b, 3, 4).t(),
            MatRef::new(&a, 2, 3).t(),
            false,
            Threads::All,
        );
        for i in 0..2 {
            for j in 0..4 {
                assert_eq!(d[j * 2 + i], c[i * 4 + j] - 1.0);
            }
        }
    }
}
