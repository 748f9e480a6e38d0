//! SGD (momentum, Nesterov, weight decay), Adam and AdamW, as PyTorch defines them, working on
//! plain `f32` slices so that their whole state is visible (and can be checkpointed). The
//! settings (`OptimizerConfig`) and the state (`Optimizer`) are plain data that the run's
//! configuration and checkpoints hold as they are.

use std::sync::Mutex;

use candle_core::{CpuStorage, InplaceOp2, Layout, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::cpu::contiguous;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adam,
    Adamw,
}

impl OptimizerKind {
    /// The name used on the command line, in configs and in checkpoints.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sgd => "sgd",
            Self::Adam => "adam",
            Self::Adamw => "adamw",
        }
    }
}

/// The hyper-parameters of every kind (each kind uses some of them), as PyTorch names them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hyper {
    /// SGD momentum.
    #[serde(serialize_with = "crate::format::f32_as_written")]
    pub momentum: f32,
    pub nesterov: bool,
    /// L2 for SGD and Adam, decoupled for AdamW.
    #[serde(serialize_with = "crate::format::f32_as_written")]
    pub weight_decay: f32,
    #[serde(serialize_with = "crate::format::f32_as_written")]
    pub beta1: f32,
    #[serde(serialize_with = "crate::format::f32_as_written")]
    pub beta2: f32,
    #[serde(serialize_with = "crate::format::f32_as_written")]
    pub eps: f32,
}

impl Default for Hyper {
    fn default() -> Self {
        Self {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Which optimizer and its hyper-parameters. In a config file these are top-level keys, as the
/// flags: `optimizer = "sgd"`, `momentum = 0.9`, ...
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerConfig {
    #[serde(rename = "optimizer")]
    pub kind: OptimizerKind,
    #[serde(flatten)]
    pub hyper: Hyper,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adamw,
            hyper: Hyper::default(),
        }
    }
}

impl OptimizerConfig {
    /// `AdamW wd 0.01`, `SGD momentum 0.9 nesterov wd 0`.
    pub fn describe(&self) -> String {
        let h = &self.hyper;
        match self.kind {
            OptimizerKind::Sgd => format!(
                "SGD momentum {}{} wd {}",
                h.momentum,
                if h.nesterov { " nesterov" } else { "" },
                h.weight_decay
            ),
            OptimizerKind::Adam => format!("Adam wd {}", h.weight_decay),
            OptimizerKind::Adamw => format!("AdamW wd {}", h.weight_decay),
        }
    }

    /// The state buffers each parameter needs: (momentum or first moment, second moment).
    pub fn buffers(&self) -> (bool, bool) {
        match self.kind {
            OptimizerKind::Sgd => (self.hyper.momentum != 0.0, false),
            OptimizerKind::Adam | OptimizerKind::Adamw => (true, true),
        }
    }
}

/// Per-parameter state: the momentum buffer (SGD) or the first moment (Adam), and the second
/// moment (Adam).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ParamState {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub hyper: Hyper,
    /// Steps taken so far (Adam's bias correction, SGD's first-step momentum).
    pub steps: u64,
    pub state: Vec<ParamState>,
}

impl Optimizer {
    /// A fresh optimizer for parameters of `sizes` elements: zero buffers, no steps taken.
    pub fn new(config: OptimizerConfig, sizes: &[usize]) -> Self {
        let (m, v) = config.buffers();
        let zeros = |needed: bool, n: usize| if needed { vec![0.0; n] } else { Vec::new() };
        let state = sizes
            .iter()
            .map(|&n| ParamState {
                m: zeros(m, n),
                v: zeros(v, n),
            })
            .collect();
        Self {
            kind: config.kind,
            hyper: config.hyper,
            steps: 0,
            state,
        }
    }

    pub fn config(&self) -> OptimizerConfig {
        OptimizerConfig {
            kind: self.kind,
            hyper: self.hyper,
        }
    }

    /// The momentum (SGD) or Adam's beta1 from the next step on, as a schedule cycles it. SGD
    /// without momentum keeps none (it has no buffers to keep it in).
    pub fn set_momentum(&mut self, m: f32) {
        match self.kind {
            OptimizerKind::Sgd if self.hyper.momentum != 0.0 => self.hyper.momentum = m,
            OptimizerKind::Sgd => {}
            OptimizerKind::Adam | OptimizerKind::Adamw => self.hyper.beta1 = m,
        }
    }

    /// Counts a new step; call once before the `update`s of that step.
    pub fn begin_step(&mut self) {
        self.steps += 1;
    }

    /// Updates parameter `index` in place from its gradient; returns the squared L2 norms of
    /// the weights before the step and of the change (for the update-to-weight ratio), taken
    /// in the same pass.
    pub fn update(&mut self, index: usize, w: &mut [f32], g: &[f32], lr: f32) -> (f64, f64) {
        let h = self.hyper;
        let t = self.steps.max(1);
        let st = &mut self.state[index];
        let mut delta_sq = 0f64;
        let mut weight_sq = 0f64;
        match self.kind {
            OptimizerKind::Sgd => {
                weight_sq = l2(w).powi(2);
                let first = t == 1;
                for i in 0..w.len() {
                    let mut d = g[i] + h.weight_decay * w[i];
                    if h.momentum != 0.0 {
                        let buf = if first { d } else { h.momentum * st.m[i] + d };
                        st.m[i] = buf;
                        d = if h.nesterov {
                            d + h.momentum * buf
                        } else {
                            buf
                        };
                    }
                    let step = lr * d;
                    w[i] -= step;
                    delta_sq += (step as f64) * (step as f64);
                }
            }
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                let decoupled = self.kind == OptimizerKind::Adamw;
                let bc1 = 1.0 - h.beta1.powi(t as i32);
                let bc2_sqrt = (1.0 - h.beta2.powi(t as i32)).sqrt();
                let step_size = lr / bc1;
                // Element-wise, so chunks on all threads give the same result as one loop.
                let adam = AdamStep {
                    hyper: h,
                    lr,
                    step_size,
                    bc2_sqrt,
                    decoupled,
                };
                const CHUNK: usize = 1 << 14;
                let sums: Vec<(f64, f64)> = w
                    .par_chunks_mut(CHUNK)
                    .zip(g.par_chunks(CHUNK))
                    .zip(st.m.par_chunks_mut(CHUNK).zip(st.v.par_chunks_mut(CHUNK)))
                    .map(|((w, g), (m, v))| adam.chunk(w, g, m, v))
                    .collect();
                for (w2, d2) in sums {
                    weight_sq += w2;
                    delta_sq += d2;
                }
            }
        }
        (weight_sq, delta_sq)
    }
}

impl Optimizer {
    /// Updates parameter `index`, the f32 tensor `w`, in its own storage from its gradient `g`
    /// (same number of elements; any contiguous layout). Returns ||w|| before the step and
    /// ||change||. No copy of the weights leaves the tensor or comes back.
    pub fn update_tensor(
        &mut self,
        index: usize,
        w: &Tensor,
        g: &Tensor,
        lr: f32,
    ) -> candle_core::Result<(f64, f64)> {
        let g = g.contiguous()?;
        let op = InPlace {
            opt: Mutex::new(self),
            index,
            lr,
            norms: Mutex::new((0.0, 0.0)),
        };
        w.inplace_op2(&g, &op)?;
        let norms = *op.norms.lock().unwrap_or_else(|e| e.into_inner());
        Ok(norms)
    }
}

/// One parameter's optimizer step as a candle in-place op on the parameter's storage.
struct InPlace<'a> {
    opt: Mutex<&'a mut Optimizer>,
    index: usize,
    lr: f32,
    /// ||w|| before the step and ||change||, set by the op.
    norms: Mutex<(f64, f64)>,
}

impl InplaceOp2 for InPlace<'_> {
    fn name(&self) -> &'static str {
        "optimizer-step"
    }

    fn cpu_fwd(
        &self,
        w: &mut CpuStorage,
        wl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        let name = self.name();
        let (CpuStorage::F32(w), CpuStorage::F32(g)) = (w, g) else {
            candle_core::bail!("{name}: parameters and gradients must be f32");
        };
        let Some((a, b)) = wl.contiguous_offsets() else {
            candle_core::bail!("{name}: the parameter must be contiguous");
        };
        let (w, g) = (&mut w[a..b], contiguous(g, gl, name)?);
        if w.len() != g.len() {
            candle_core::bail!("{name}: {} weights but {} gradients", w.len(), g.len());
        }
        let mut opt = self.opt.lock().unwrap_or_else(|e| e.into_inner());
        let (weight_sq, delta_sq) = opt.update(self.index, w, g, self.lr);
        *self.norms.lock().unwrap_or_else(|e| e.into_inner()) = (weight_sq.sqrt(), delta_sq.sqrt());
        Ok(())
    }
}

/// The L2 norm: chunks of a fixed size summed on all threads, each in f64 in eight lanes
/// (vectorised), then the lanes and the chunks in order, so the result does not depend on the
/// threads.
pub fn l2(xs: &[f32]) -> f64 {
    const CHUNK: usize = 1 << 14;
    let sums: Vec<f64> = xs.par_chunks(CHUNK).map(sum_of_squares).collect();
    sums.iter().sum::<f64>().sqrt()
}

fn sum_of_squares(xs: &[f32]) -> f64 {
    struct Squares<'a>(&'a [f32]);
    impl pulp::WithSimd for Squares<'_> {
        type Output = f64;
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) -> f64 {
            let mut lanes = [0f64; LANES];
            let chunks = self.0.chunks_exact(LANES);
            let rest = chunks.remainder();
            for c in chunks {
                for (l, &x) in lanes.iter_mut().zip(c) {
                    *l += (x as f64) * (x as f64);
                }
            }
            let tail: f64 = rest.iter().map(|&x| (x as f64) * (x as f64)).sum();
            lanes.iter().sum::<f64>() + tail
        }
    }
    pulp::Arch::new().dispatch(Squares(xs))
}

/// Lanes of the f64 sums of squares (one 512-bit register).
const LANES: usize = 8;

/// One Adam(W) step's constants.
struct AdamStep {
    hyper: Hyper,
    lr: f32,
    step_size: f32,
    bc2_sqrt: f32,
    decoupled: bool,
}

impl AdamStep {
    /// Updates one chunk of a parameter and its moments; returns the squared weights before
    /// the step and the squared change, each added up in eight lanes (vectorised, compiled for
    /// the widest vector instructions the CPU has) and then in order.
    fn chunk(&self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) -> (f64, f64) {
        struct Chunk<'a>(
            &'a AdamStep,
            &'a mut [f32],
            &'a [f32],
            &'a mut [f32],
            &'a mut [f32],
        );
        impl pulp::WithSimd for Chunk<'_> {
            type Output = (f64, f64);
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) -> (f64, f64) {
                let Chunk(adam, w, g, m, v) = self;
                let (mut ws, mut ds) = ([0f64; LANES], [0f64; LANES]);
                let chunks = w
                    .chunks_mut(LANES)
                    .zip(g.chunks(LANES))
                    .zip(m.chunks_mut(LANES).zip(v.chunks_mut(LANES)));
                for ((w, g), (m, v)) in chunks {
                    let lanes = ws.iter_mut().zip(&mut ds);
                    for ((((w, &g), m), v), (wl, dl)) in
                        w.iter_mut().zip(g).zip(m).zip(v).zip(lanes)
                    {
                        let before = *w as f64;
                        *wl += before * before;
                        let d = adam.one(w, g, m, v) as f64;
                        *dl += d * d;
                    }
                }
                (ws.iter().sum(), ds.iter().sum())
            }
        }
        pulp::Arch::new().dispatch(Chunk(self, w, g, m, v))
    }

    /// One element: returns its change.
    #[inline(always)]
    fn one(&self, w: &mut f32, g: f32, m: &mut f32, v: &mut f32) -> f32 {
        let h = &self.hyper;
        let before = *w;
        let mut gi = g;
        if self.decoupled {
            *w *= 1.0 - self.lr * h.weight_decay;
        } else {
            gi += h.weight_decay * *w;
        }
        *m = h.beta1 * *m + (1.0 - h.beta1) * gi;
        *v = h.beta2 * *v + (1.0 - h.beta2) * gi * gi;
        let denom = v.sqrt() / self.bc2_sqrt + h.eps;
        *w -= self.step_size * *m / denom;
        *w - before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPER: Hyper = Hyper {
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };

    fn two_steps(kind: OptimizerKind, hyper: Hyper) -> Vec<f32> {
        let mut opt = Optimizer::new(OptimizerConfig { kind, hyper }, &[2]);
        let mut w = vec![1.0f32, -2.0];
        for g in [[0.5f32, -1.0], [0.25, 2.0]] {
            opt.begin_step();
            opt.update(0, &mut w, &g, 0.1);
        }
        w
    }

    fn close(a: &[f32], b: &[f64]) {
        for (x, y) in a.iter().zip(b) {
            assert!((*x as f64 - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    // The expected values below are worked out by hand from PyTorch's update rules.
    #[test]
    fn sgd_momentum_two_steps() {
        // step 1: d = g + 0.1 w = [0.6, -1.2]; buf = d; w = [0.94, -1.88]
        // step 2: d = [0.25 + 0.094, 2 - 0.188] = [0.344, 1.812]
        //         buf = 0.9 buf + d = [0.884, 0.732]; w = [0.94 - 0.0884, -1.88 - 0.0732]
        close(&two_steps(OptimizerKind::Sgd, HYPER), &[0.8516, -1.9532]);
    }

    #[test]
    fn sgd_nesterov_two_steps() {
        let h = Hyper {
            nesterov: true,
            ..HYPER
        };
        // step 1: d = [0.6, -1.2]; buf = d; d' = d + 0.9 buf = [1.14, -2.28]; w = [0.886, -1.772]
        // step 2: d = [0.25 + 0.0886, 2 - 0.1772] = [0.3386, 1.8228]
        //         buf = 0.9 [0.6, -1.2] + d = [0.8786, 0.7428]; d' = d + 0.9 buf = [1.12934, 2.49132]
        close(
            &two_steps(OptimizerKind::Sgd, h),
            &[0.886 - 0.112934, -1.772 - 0.249132],
        );
    }

    #[test]
    fn plain_sgd_two_steps() {
        let h = Hyper {
            momentum: 0.0,
            weight_decay: 0.0,
            ..HYPER
        };
        close(
            &two_steps(OptimizerKind::Sgd, h),
            &[1.0 - 0.05 - 0.025, -2.0 + 0.1 - 0.2],
        );
    }

    fn adam_reference(decoupled: bool) -> Vec<f64> {
        let (b1, b2, eps, lr, wd) = (0.9f64, 0.999f64, 1e-8f64, 0.1f64, 0.1f64);
        let mut w = [1.0f64, -2.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for (t, g) in [[0.5f64, -1.0], [0.25, 2.0]].iter().enumerate() {
            let t = t as i32 + 1;
            for i in 0..2 {
                let mut gi = g[i];
                if decoupled {
                    w[i] *= 1.0 - lr * wd;
                } else {
                    gi += wd * w[i];
                }
                m[i] = b1 * m[i] + (1.0 - b1) * gi;
                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                let mhat = m[i] / (1.0 - b1.powi(t));
                let vhat = v[i] / (1.0 - b2.powi(t));
                w[i] -= lr * mhat / (vhat.sqrt() + eps);
            }
        }
        w.to_vec()
    }

    #[test]
    fn adam_two_steps() {
        // Step 1 of Adam moves each weight by lr * sign(g): 1 - 0.1, -2 + 0.1.
        let w = two_steps(OptimizerKind::Adam, HYPER);
        close(&w, &adam_reference(false));
    }

    #[test]
    fn adamw_two_steps() {
        close(
            &two_steps(OptimizerKind::Adamw, HYPER),
            &adam_reference(true),
        );
        // First step by hand: w = 1 * (1 - 0.01) - 0.1 = 0.89.
        let mut opt = Optimizer::new(
            OptimizerConfig {
                kind: OptimizerKind::Adamw,
                hyper: HYPER,
            },
            &[1],
        );
        let mut w = vec![1.0f32];
        opt.begin_step();
        let (_, d2) = opt.update(0, &mut w, &[0.5], 0.1);
        assert!((w[0] - 0.89).abs() < 1e-6);
        assert!((d2 - 0.11f64 * 0.11).abs() < 1e-6);
    }

    /// The in-place update of a candle tensor (what training uses) gives the same bits as the
    /// update of a slice, takes a transposed (non-contiguous) gradient, and reports the norms.
    #[test]
    fn tensor_update_matches_the_slice_update() {
        use candle_core::{Device, Var};
        let n = 3 * 37; // not a multiple of the lanes or of a chunk
        let w0: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0).collect();
        let g: Vec<f32> = (0..n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0).collect();
        for kind in [
            OptimizerKind::Sgd,
            OptimizerKind::Adam,
            OptimizerKind::Adamw,
        ] {
            let mut by_slice = Optimizer::new(OptimizerConfig { kind, hyper: HYPER }, &[n]);
            let mut by_tensor = by_slice.clone();
            let mut w = w0.clone();
            let var = Var::from_vec(w0.clone(), (3, 37), &Device::Cpu).unwrap();
            // The gradient as a transposed view of its [37, 3] transpose.
            let gt = Tensor::from_vec(g.clone(), (3, 37), &Device::Cpu)
                .unwrap()
                .t()
                .unwrap()
                .contiguous()
                .unwrap()
                .t()
                .unwrap();
            assert!(!gt.is_contiguous());
            for _ in 0..3 {
                by_slice.begin_step();
                by_tensor.begin_step();
                let before = l2(&w);
                let (w2, d2) = by_slice.update(0, &mut w, &g, 0.05);
                assert!((w2.sqrt() - before).abs() <= 1e-12 * before, "{kind:?}");
                let (norm_w, delta) = by_tensor.update_tensor(0, &var, &gt, 0.05).unwrap();
                assert_eq!((norm_w, delta), (w2.sqrt(), d2.sqrt()), "{kind:?}");
            }
            let got: Vec<f32> = var.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(got, w, "{kind:?}");
            assert_eq!(by_tensor, by_slice, "{kind:?}");
        }
    }

    #[test]
    fn names_match_the_config_spelling() {
        for k in [
            OptimizerKind::Sgd,
            OptimizerKind::Adam,
            OptimizerKind::Adamw,
        ] {
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.name())
            );
        }
    }

    #[test]
    fn l2_matches_a_plain_sum() {
        let xs: Vec<f32> = (0..1001).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let plain = xs.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
        assert!((l2(&xs) - plain).abs() <= 1e-12 * plain);
        assert_eq!(l2(&[]), 0.0);
        assert_eq!(l2(&[3.0, 4.0]), 5.0);
    }
}
