//! Opt-in timing of the fast kernels for `candletop bench`: each fused op times its forward and
//! backward pass under a label that names the layer's shape. Off unless a bench turns it on,
//! and then costs one relaxed atomic load per op.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
static TABLE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Forward,
    Backward,
}

/// The time one op took over all its calls, per phase, the floating-point operations it did
/// (zero for ops that are not matrix products) and the bytes it moved through memory (zero
/// where not counted).
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub label: String,
    pub forward: Duration,
    pub backward: Duration,
    pub forward_calls: u32,
    pub backward_calls: u32,
    pub forward_flops: f64,
    pub backward_flops: f64,
    pub forward_bytes: f64,
    pub backward_bytes: f64,
}

/// What one call of an op does: its nominal floating-point operations, and the bytes of the
/// batch-sized arrays its passes read and write (buffers that stay in cache not counted).
#[derive(Debug, Clone, Copy, Default)]
pub struct Work {
    pub flops: f64,
    pub bytes: f64,
}

impl From<f64> for Work {
    /// FLOPs alone.
    fn from(flops: f64) -> Self {
        Work { flops, bytes: 0.0 }
    }
}

/// Starts (clearing what was recorded) or stops recording.
pub fn enable(on: bool) {
    if on {
        TABLE.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
    ENABLED.store(on, Ordering::Relaxed);
}

/// What was recorded, in the order the ops first ran.
pub fn entries() -> Vec<Entry> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Runs `f`, and when recording adds its time and `work` to the entry `label()`.
pub fn time<R>(
    label: impl FnOnce() -> String,
    phase: Phase,
    work: impl Into<Work>,
    f: impl FnOnce() -> R,
) -> R {
    if !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    let t0 = Instant::now();
    let out = f();
    let elapsed = t0.elapsed();
    let (label, work) = (label(), work.into());
    let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let i = match table.iter().position(|e| e.label == label) {
        Some(i) => i,
        None => {
            table.push(Entry {
                label,
                ..Entry::default()
            });
            table.len() - 1
        }
    };
    let e = &mut table[i];
    match phase {
        Phase::Forward => {
            e.forward += elapsed;
            e.forward_calls += 1;
            e.forward_flops += work.flops;
            e.forward_bytes += work.bytes;
        }
        Phase::Backward => {
            e.backward += elapsed;
            e.backward_calls += 1;
            e.backward_flops += work.flops;
            e.backward_bytes += work.bytes;
        }
    }
    out
}
