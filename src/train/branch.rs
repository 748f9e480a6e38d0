//! What-if branches: a copy of the run's learner and schedule with a change, trained on the
//! same batches as the main line, step by step, and the comparison of the two lines' training
//! losses on those batches (a fair A/B test of a live change, unlike a before/after window).

use super::error::TrainError;
use super::learner::{Learner, StepOutcome};
use crate::data::Batch;
use crate::protocol::{BranchCall as Call, LearningRate, Setting};
use crate::schedule::Schedule;

/// The settings a branch can change, as `key=value`.
pub const BRANCH_KEYS: &[&str] = &["lr", "weight_decay", "clip_grad_norm", "label_smoothing"];

/// One line of a comparison: a learner (weights, optimizer state, dropout stream, loss
/// settings) and the schedule that gives its LR.
pub struct Line {
    pub learner: Learner,
    pub schedule: Schedule,
}

impl Line {
    /// An exact copy of `learner` and `schedule`: trained on the same batches, it gives the
    /// same losses to the last bit.
    pub fn fork(learner: &Learner, schedule: &Schedule) -> Result<Self, TrainError> {
        Ok(Self {
            learner: learner.duplicate(learner.rng.clone())?,
            schedule: schedule.clone(),
        })
    }

    /// Applies `change` from step `next` on; the problem, naming the setting, when one cannot
    /// change on a branch or its value is not one.
    pub fn apply(&mut self, change: &[Setting], next: u64) -> Result<(), String> {
        for s in change {
            let value: f64 = s
                .value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("{}={}: not a number of 0 or more", s.key, s.value))?;
            match s.key.as_str() {
                "lr" => {
                    let lr =
                        LearningRate::new(value).map_err(|e| format!("lr={}: {e}", s.value))?;
                    self.schedule.rescale(next, lr.get())?;
                }
                "weight_decay" => self.learner.opt.hyper.weight_decay = value as f32,
                "clip_grad_norm" => self.learner.clip_grad_norm = (value > 0.0).then_some(value),
                "label_smoothing" if value < 1.0 => self.learner.label_smoothing = value,
                "label_smoothing" => {
                    return Err(format!("label_smoothing={}: must be under 1", s.value))
                }
                key => {
                    return Err(format!(
                        "{key}: cannot change on a branch (these can: {})",
                        BRANCH_KEYS.join(", ")
                    ))
                }
            }
        }
        Ok(())
    }

    /// One training step on `batch` as step `next` of the run, at the LR its schedule gives:
    /// the loss (NaN when the step was not finite and nothing changed).
    pub fn step(&mut self, batch: &Batch, next: u64) -> Result<f64, TrainError> {
        let lr = self.schedule.lr_at(next);
        self.learner.lr = LearningRate::new(lr).unwrap_or(LearningRate::SMALLEST);
        if let Some(m) = self.schedule.momentum_at(next) {
            self.learner.opt.set_momentum(m as f32);
        }
        Ok(match self.learner.step(batch)? {
            StepOutcome::Updated(s) => s.loss,
            StepOutcome::NonFinite { .. } => f64::NAN,
        })
    }
}

/// A comparison under way: the branch, its change, where it was forked, the step it ends at,
/// and the two lines' losses so far.
pub struct Fork {
    pub line: Line,
    pub change: Vec<Setting>,
    pub forked_at: u64,
    pub until: u64,
    pub comparison: Comparison,
}

/// The two lines' training losses, step by step, on the same batches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    pairs: Vec<(f64, f64)>,
}

/// The comparison in numbers: mean training losses over the same batches, the branch's mean
/// difference from the main line, and its noise (two standard errors of the paired
/// differences).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub steps: usize,
    pub main: f64,
    pub branch: f64,
    pub diff: f64,
    pub noise: f64,
    pub call: Call,
}

impl Comparison {
    /// The two lines' losses on one batch.
    pub fn push(&mut self, main: f64, branch: f64) {
        self.pairs.push((main, branch));
    }

    pub fn steps(&self) -> usize {
        self.pairs.len()
    }

    /// The verdict over the steps so far (`None` before the first).
    pub fn verdict(&self) -> Option<Verdict> {
        let n = self.pairs.len();
        if n == 0 {
            return None;
        }
        let mean = |f: fn(&(f64, f64)) -> f64| self.pairs.iter().map(f).sum::<f64>() / n as f64;
        let (main, branch) = (mean(|p| p.0), mean(|p| p.1));
        let diff = mean(|p| p.1 - p.0);
        let var = self
            .pairs
            .iter()
            .map(|p| (p.1 - p.0 - diff).powi(2))
            .sum::<f64>()
            / (n.max(2) - 1) as f64;
        let noise = 2.0 * (var / n as f64).sqrt();
        let call = if !branch.is_finite() || diff > noise {
            Call::Worse
        } else if diff < -noise {
            Call::Better
        } else {
            Call::Same
        };
        Some(Verdict {
            steps: n,
            main,
            branch,
            diff,
            noise,
            call,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_is_the_paired_difference_against_twice_its_standard_error() {
        let mut c = Comparison::default();
        assert_eq!(c.verdict(), None);
        // Identical lines: no difference, no noise.
        for _ in 0..5 {
            c.push(0.5, 0.5);
        }
        let v = c.verdict().unwrap();
        assert_eq!((v.diff, v.noise, v.call), (0.0, 0.0, Call::Same));
        // Differences 0.1 and 0.35 (mean 0.225, 2 standard errors 0.25): within the noise.
        let mut c = Comparison::default();
        c.push(1.0, 1.1);
        c.push(1.0, 1.35);
        let v = c.verdict().unwrap();
        assert!((v.diff - 0.225).abs() < 1e-12);
        assert!((v.noise - 0.25).abs() < 1e-12);
        assert_eq!(v.call, Call::Same);
        // A third of 0.2: mean 0.217, noise 0.145: worse.
        c.push(1.0, 1.2);
        assert_eq!(c.verdict().unwrap().call, Call::Worse);
        // A branch that diverged is worse whatever the noise.
        let mut c = Comparison::default();
        c.push(1.0, f64::NAN);
        assert_eq!(c.verdict().unwrap().call, Call::Worse);
    }
}
