//! What-if branches: a copy of the run's learner and schedule with a change, trained on the
//! same batches as the main line, step by step, and the comparison of the two lines' training
//! losses on those batches (a fair A/B test of a live change, unlike a before/after window).

use super::error::TrainError;
use super::learner::{Learner, StepOutcome};
use crate::data::{AugmentSpec, Batch, BatchStream};
use crate::protocol::{
    BranchCall as Call, BranchVerdict, Horizon, LearningRate, Setting, BRANCH_KEYS,
};
use crate::schedule::Schedule;

/// What a change needs from the run that the learner does not hold.
pub struct RunSide<'a> {
    /// What `augment=on` turns on (the run's `augment`, or the usual small-image recipe).
    pub augment: &'a AugmentSpec,
    /// What `class_weights=balanced` weighs the classes by.
    pub balanced_weights: &'a [f32],
    /// A schedule from a `--schedule` spec, from the next step on.
    pub schedule: &'a dyn Fn(&str) -> Result<Schedule, String>,
}

/// One line of a comparison: a learner (weights, optimizer state, dropout stream, loss
/// settings) and the schedule that gives its LR.
pub struct Line {
    pub learner: Learner,
    pub schedule: Schedule,
    /// Its own augmentation (off: an empty spec); None: the main line's batches as they are.
    pub augment: Option<AugmentSpec>,
}

impl Line {
    /// An exact copy of `learner` and `schedule`: trained on the same batches, it gives the
    /// same losses to the last bit.
    pub fn fork(learner: &Learner, schedule: &Schedule) -> Result<Self, TrainError> {
        Ok(Self {
            learner: learner.duplicate(learner.rng.clone())?,
            schedule: schedule.clone(),
            augment: None,
        })
    }

    /// Applies `change` from step `next` on; the problem, naming the setting, when one cannot
    /// change on a branch or its value is not one.
    pub fn apply(&mut self, change: &[Setting], next: u64, run: &RunSide) -> Result<(), String> {
        for s in change {
            let v = s.value.trim();
            match s.key.as_str() {
                "schedule" => self.schedule = (run.schedule)(v)?,
                "augment" => {
                    self.augment = Some(match v {
                        "on" => run.augment.clone(),
                        "off" => AugmentSpec::default(),
                        spec => spec.parse().map_err(|e| format!("augment={v}: {e}"))?,
                    })
                }
                "class_weights" => {
                    self.learner.class_weights = match v {
                        "balanced" | "on" => Some(run.balanced_weights.to_vec()),
                        "none" | "off" => None,
                        _ => return Err(format!("class_weights={v}: none or balanced")),
                    }
                }
                key if BRANCH_KEYS.contains(&key) => self.apply_number(key, v, next)?,
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

    /// A setting whose value is a number of 0 or more.
    fn apply_number(&mut self, key: &str, text: &str, next: u64) -> Result<(), String> {
        let value: f64 = text
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{key}={text}: not a number of 0 or more"))?;
        match key {
            "lr" => {
                let lr = LearningRate::new(value).map_err(|e| format!("lr={text}: {e}"))?;
                self.schedule.rescale(next, lr.get())?;
            }
            "weight_decay" => self.learner.opt.hyper.weight_decay = value as f32,
            "clip_grad_norm" => self.learner.clip_grad_norm = (value > 0.0).then_some(value),
            "label_smoothing" if value < 1.0 => self.learner.label_smoothing = value,
            "dropout" => self.learner.model.set_dropout(value as f32)?,
            _ => return Err(format!("{key}={text}: must be under 1")),
        }
        Ok(())
    }

    /// One training step on `batch` as step `next` of the run, at the LR its schedule gives:
    /// the loss (NaN when the step was not finite and nothing changed) and the images it got
    /// right.
    pub fn step(&mut self, batch: &Batch, next: u64) -> Result<(f64, usize), TrainError> {
        let lr = self.schedule.lr_at(next);
        self.learner.lr = LearningRate::new(lr).unwrap_or(LearningRate::SMALLEST);
        if let Some(m) = self.schedule.momentum_at(next) {
            self.learner.opt.set_momentum(m as f32);
        }
        Ok(match self.learner.step(batch)? {
            StepOutcome::Updated(s) => (s.loss, s.hits),
            StepOutcome::NonFinite { .. } => (f64::NAN, 0),
        })
    }
}

/// A comparison under way, or over and waiting for a watcher to keep one line: the branch,
/// its change, where it was forked, the step it ends at, and the two lines' losses so far.
pub struct Fork {
    pub line: Line,
    pub change: Vec<Setting>,
    pub forked_at: u64,
    pub until: u64,
    pub horizon: Horizon,
    /// Pause at the end for a watcher to keep a line.
    pub ask: bool,
    pub comparison: Comparison,
    /// The branch's own batches (the same images as the main line's, with its augmentation),
    /// and the epoch they are of.
    pub batches: Option<(usize, BatchStream)>,
    /// The verdict, once the comparison is over and waits for a watcher's decision.
    pub awaiting: Option<BranchVerdict>,
    /// The run was paused for the decision (and resumes after it).
    pub paused_for_it: bool,
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
