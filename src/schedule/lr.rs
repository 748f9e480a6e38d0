//! The one check of a learning rate, for every way one arrives: flags, config files, specs,
//! the UI's prompt, commands to the trainer.

use serde::{Deserialize, Serialize};

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
