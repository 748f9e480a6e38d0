//! SGD (momentum, Nesterov, weight decay), Adam and AdamW, as PyTorch defines them, working on
//! plain `f32` slices so that their whole state is visible (and can be checkpointed).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
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
    pub fn new(kind: OptimizerKind, hyper: Hyper, sizes: &[usize]) -> Self {
        let state = sizes
            .iter()
            .map(|&n| match kind {
                OptimizerKind::Sgd if hyper.momentum == 0.0 => ParamState::default(),
                OptimizerKind::Sgd => ParamState {
                    m: vec![0.0; n],
                    v: Vec::new(),
                },
                OptimizerKind::Adam | OptimizerKind::Adamw => ParamState {
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                },
            })
            .collect();
        Self {
            kind,
            hyper,
            steps: 0,
            state,
        }
    }

    /// Counts a new step; call once before the `update`s of that step.
    pub fn begin_step(&mut self) {
        self.steps += 1;
    }

    /// Updates parameter `index` in place from its gradient; returns the squared L2 norm of the
    /// change (for the update-to-weight ratio).
    pub fn update(&mut self, index: usize, w: &mut [f32], g: &[f32], lr: f32) -> f64 {
        let h = self.hyper;
        let t = self.steps.max(1);
        let st = &mut self.state[index];
        let mut delta_sq = 0f64;
        match self.kind {
            OptimizerKind::Sgd => {
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
                let sums: Vec<f64> = w
                    .par_chunks_mut(CHUNK)
                    .zip(g.par_chunks(CHUNK))
                    .zip(st.m.par_chunks_mut(CHUNK).zip(st.v.par_chunks_mut(CHUNK)))
                    .map(|((w, g), (m, v))| adam.chunk(w, g, m, v))
                    .collect();
                delta_sq = sums.iter().sum();
            }
        }
        delta_sq
    }
}

/// One Adam(W) step's constants.
struct AdamStep {
    hyper: Hyper,
    lr: f32,
    step_size: f32,
    bc2_sqrt: f32,
    decoupled: bool,
}

impl AdamStep {
    /// Updates one chunk of a parameter and its moments; returns the squared change, added up
    /// in eight lanes (vectorised) and then in order.
    fn chunk(&self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) -> f64 {
        let h = &self.hyper;
        let mut lanes = [0f64; 8];
        for (i, (((w, &g), m), v)) in w.iter_mut().zip(g).zip(m).zip(v).enumerate() {
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
            let d = (*w - before) as f64;
            lanes[i % 8] += d * d;
        }
        lanes.iter().sum()
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
        let mut opt = Optimizer::new(kind, hyper, &[2]);
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
        let mut opt = Optimizer::new(OptimizerKind::Adamw, HYPER, &[1]);
        let mut w = vec![1.0f32];
        opt.begin_step();
        let d2 = opt.update(0, &mut w, &[0.5], 0.1);
        assert!((w[0] - 0.89).abs() < 1e-6);
        assert!((d2 - 0.11f64 * 0.11).abs() < 1e-6);
    }
}
