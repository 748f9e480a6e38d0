//! What a watcher asks of the trainer, and the one check of a learning rate.

use serde::{Deserialize, Serialize};

use super::findings::Remedy;

/// A learning rate: a positive, finite number. The one check for every way a learning rate
/// arrives (flags, config files, the UI's prompt, commands to the trainer).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct LearningRate(f64);

impl LearningRate {
    /// The smallest there is: f32's least normal number (the weights and their updates are
    /// f32; below it an update is 0 or loses its precision).
    pub const SMALLEST: LearningRate = LearningRate(f32::MIN_POSITIVE as f64);

    /// The largest: far past any LR that trains (SGD and Adam diverge within steps at 1e6),
    /// and near enough to `SMALLEST` that a schedule's scale spans the two.
    pub const LARGEST: LearningRate = LearningRate(1e6);

    /// A number from `SMALLEST` to `LARGEST`: below it nothing trains; above it nothing
    /// does either, and a schedule scaled from there back to a usable LR may underflow.
    pub fn new(lr: f64) -> Result<Self, String> {
        if lr > Self::LARGEST.0 && lr.is_finite() {
            Err(format!(
                "'{lr:e}' is too large to be a learning rate (the most is 1e6)"
            ))
        } else if lr.is_finite() && lr >= Self::SMALLEST.0 {
            Ok(Self(lr))
        } else if lr > 0.0 && lr < Self::SMALLEST.0 {
            Err(format!(
                "'{lr:e}' is too small to be a learning rate (the least is 1.2e-38, f32's least normal number)"
            ))
        } else {
            Err(format!("'{lr}' is not a positive learning rate"))
        }
    }

    /// A learning rate as a person types it: `0.003`, `3e-3`.
    pub fn parse(input: &str) -> Result<Self, String> {
        let s = input.trim();
        match s.parse::<f64>() {
            Ok(v) if v.is_nan() || v <= 0.0 => {
                Err(format!("'{s}' is not a positive learning rate"))
            }
            Ok(v) => Self::new(v),
            Err(_) if s.is_empty() => Err("type a learning rate, e.g. 0.003 or 3e-3".into()),
            Err(_) => Err(format!("'{s}' is not a number")),
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for LearningRate {
    type Error = String;
    fn try_from(lr: f64) -> Result<Self, String> {
        Self::new(lr)
    }
}

impl From<LearningRate> for f64 {
    fn from(lr: LearningRate) -> f64 {
        lr.0
    }
}

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
    /// Finish the current step, then end cleanly.
    Stop,
}
