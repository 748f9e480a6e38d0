//! What a watcher asks of the trainer, and the one check of a gradient norm to clip to.

use serde::{Deserialize, Serialize};

use super::findings::{Remedy, Setting};

pub use crate::schedule::LearningRate;

/// What is wrong with `max` as a gradient norm to clip to: it must be 0 (no clipping) or a
/// finite number no smaller than f32's least normal one. The one check for the flag, a config
/// file and the command.
pub fn clip_norm_problem(max: f64) -> Option<String> {
    if max == 0.0 || (max.is_finite() && max >= f32::MIN_POSITIVE as f64) {
        None
    } else {
        Some(format!(
            "{max:e} is not a gradient norm to clip to: 0 (off), or from 1.2e-38 up"
        ))
    }
}

/// The most training images one `ShowSamples` may ask for: more than a screen shows, and few
/// enough that the latest grid, which every watcher's snapshot carries, stays small.
pub const MAX_SAMPLES: u32 = 64;

/// What the user asks of the trainer. Applied between two steps; one the trainer cannot carry
/// out is answered with `Event::Refused`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", content = "value", rename_all = "snake_case")]
pub enum Command {
    /// Use this learning rate from the next step on.
    SetLr(f64),
    /// Multiply the learning rate by this factor.
    ScaleLr(f64),
    /// Follow this schedule (a `--schedule` spec) from the next step on.
    SetSchedule(String),
    /// Run the LR range test on a copy of the model and optimizer (the run pauses meanwhile).
    FindLr,
    /// Augment training images (true) or not, from the next batch on.
    SetAugment(bool),
    /// Weight the loss by class ("balanced") or not, from the next step on.
    SetClassWeights(bool),
    /// Send this many training images as the model sees them now (augmented when on), at
    /// most `MAX_SAMPLES`.
    ShowSamples(u32),
    /// Clip the gradients' global L2 norm to this from the next step on; 0 turns clipping off.
    SetClipGradNorm(f64),
    /// Apply the doctor's remedy for a finding, keeping the run as it was in memory so that
    /// `UndoRemedy` can go back to it for the next `REMEDY_TRIAL_STEPS` steps.
    ApplyRemedy(Remedy),
    /// Go back to the run as it was before the last remedy (weights, optimizer, schedule,
    /// settings), while its trial lasts.
    UndoRemedy,
    /// Measure the activations of every layer on the next batch (besides every
    /// `ACTIVATION_EVERY` steps).
    ProbeActivations,
    Pause,
    Resume,
    /// One step while paused.
    Step,
    /// Save `last.h5` now.
    Save,
    /// A watcher's warning for the run's record and every watcher (a `--notify` command that
    /// failed): the trainer sends it on as `Event::Warning`.
    Warn(String),
    /// End the run by these rules from the next epoch's end on (early stopping, the target
    /// accuracy).
    SetStopping(crate::stopping::Stopping),
    /// Finish the current step, then end cleanly.
    Stop,
    /// Fork the run: a branch with `change` (config `key=value` settings) trains on the same
    /// batches as the main line, step by step, until `horizon`; then both are validated and the
    /// verdict is an event. With `ask` the run pauses for a watcher's `KeepLine`; without, the
    /// better line goes on (the main line unless the branch is better beyond the noise).
    Fork {
        change: Vec<Setting>,
        horizon: Horizon,
        #[serde(default)]
        ask: bool,
    },
    /// End the comparison under way now: the verdict over the steps taken so far.
    EndBranch,
    /// Decide a comparison that waits for it: go on with the branch (true) or the main line;
    /// with `save_other`, the line left is saved as a run directory of its own.
    KeepLine {
        branch: bool,
        save_other: bool,
    },
}

/// How long a what-if comparison runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Horizon {
    /// To the end of the current epoch.
    #[default]
    Epoch,
    /// This many steps (at most to the end of the run).
    Steps(u64),
    /// Until a watcher ends it (`EndBranch`), at most to the end of the run.
    Open,
}

impl std::fmt::Display for Horizon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Horizon::Epoch => write!(f, "the rest of the epoch"),
            Horizon::Steps(n) => write!(f, "{n} steps"),
            Horizon::Open => write!(f, "until you end it"),
        }
    }
}
