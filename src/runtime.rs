//! How the process runs its arithmetic: the allocator's settings and the sizes of the thread
//! pools. Process-wide, set once before any tensor work.

use crate::model::Kernels;

/// Keeps freed memory in the process. Candle allocates fresh buffers for every tensor of every
/// step; with glibc's defaults the large ones are mapped and unmapped each time, and the page
/// faults cost more than the arithmetic. The same as
/// `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=2147483647:glibc.malloc.arena_max=1`:
/// one arena, so that the training thread's allocations get the same treatment as the main
/// thread's (with its own arena it ran about 1.45x slower).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Sizes the thread pools; they are made on first use, so this must run before any tensor
/// work. The fast kernels and gemm run on rayon's pool (RAYON_NUM_THREADS). Candle keeps a pool
/// of its own for its element-wise ops whose idle workers spin before they sleep; with the fast
/// kernels those ops are small, and a spinning worker takes a core from the rayon threads, so
/// candle's pool gets one thread (the caller) unless CANDLE_NUM_THREADS says otherwise: a
/// 300-step run took 7.1-7.4 s instead of 8.7-9.0 s. The stock ops keep candle's default.
pub fn set_threads(n: usize, kernels: Kernels) {
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    if kernels == Kernels::Fast && std::env::var_os(CANDLE_THREADS).is_none() {
        std::env::set_var(CANDLE_THREADS, "1");
        std::env::set_var(CANDLE_THREADS_SET_BY_US, "1");
    }
}

const CANDLE_THREADS: &str = "CANDLE_NUM_THREADS";
const CANDLE_THREADS_SET_BY_US: &str = "CANDLETOP_SET_CANDLE_NUM_THREADS";

/// The environment for a child process that runs the stock ops: candle's own default pool
/// unless the user chose one.
pub fn stock_child_env(cmd: &mut std::process::Command) {
    if std::env::var_os(CANDLE_THREADS_SET_BY_US).is_some() {
        cmd.env_remove(CANDLE_THREADS)
            .env_remove(CANDLE_THREADS_SET_BY_US);
    }
}

/// All cores when `threads` is 0.
pub fn threads_or_all(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    }
}
