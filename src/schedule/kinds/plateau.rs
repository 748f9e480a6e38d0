//! `plateau[:monitor=val_loss|val_acc][,mode=min|max][,factor=0.1][,patience=10]
//! [,threshold=1e-4][,threshold_mode=rel|abs][,cooldown=0][,min_lr=0][,eps=1e-8]`: PyTorch's
//! `ReduceLROnPlateau`, deciding at the end of each epoch from the validation metric. The one
//! kind with a memory between epochs (`PlateauState`, kept by the schedule in use).

use serde::{Deserialize, Serialize};

use super::curve::{At, Curve, Def, FormArgs};
use crate::schedule::spec::{
    count, learning_rate, non_negative, number, pairs, unknown, SpecError,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    ValLoss,
    ValAcc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Min,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdMode {
    Rel,
    Abs,
}

/// `ReduceLROnPlateau`, with PyTorch's defaults (the mode follows the monitor: min for the
/// loss, max for the accuracy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plateau {
    pub monitor: Monitor,
    pub mode: Mode,
    pub factor: f64,
    pub patience: u32,
    pub threshold: f64,
    pub threshold_mode: ThresholdMode,
    pub cooldown: u32,
    pub min_lr: f64,
    pub eps: f64,
}

impl Default for Plateau {
    fn default() -> Self {
        Self {
            monitor: Monitor::ValLoss,
            mode: Mode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
        }
    }
}

/// Reduce-on-plateau's memory between epochs, as PyTorch keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlateauState {
    /// The best value of the monitored metric so far (none before the first epoch).
    pub best: Option<f64>,
    pub bad_epochs: u32,
    pub cooldown_left: u32,
    /// Every reduction so far, multiplied.
    pub reduction: f64,
}

impl Default for PlateauState {
    fn default() -> Self {
        Self {
            best: None,
            bad_epochs: 0,
            cooldown_left: 0,
            reduction: 1.0,
        }
    }
}

/// A reduce-on-plateau decision at the end of an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlateauCut {
    pub old: f64,
    pub new: f64,
    /// Epochs without improvement that led to it.
    pub bad_epochs: u32,
    /// The best value of the monitored metric (NaN when it has never been finite).
    pub best: f64,
    /// Epochs from now on in which no further cut is made.
    pub cooldown: u32,
}

pub const DEF: Def = Def {
    name: "plateau",
    syntax: &[
        "plateau[:monitor=val_loss|val_acc][,mode=min|max][,factor=0.1][,patience=10][,threshold=1e-4]",
        "       [,threshold_mode=rel|abs][,cooldown=0][,min_lr=0][,eps=1e-8]",
    ],
    about: &[
        "x factor at the end of an epoch when the monitored validation metric",
        "has not improved for patience epochs (ReduceLROnPlateau, PyTorch's",
        "defaults)",
    ],
    example: "plateau:patience=3,factor=0.5",
    form: &[
        ("monitor", "val_loss or val_acc (val_loss)"),
        ("factor", "factor at each cut (0.1)"),
        ("patience", "epochs without improvement (10)"),
        ("threshold", "what counts as improvement (1e-4)"),
        ("cooldown", "epochs after a cut without cuts (0)"),
        ("min_lr", "never below (0)"),
    ],
    form_args: FormArgs::Named,
    no_warmup: None,
    run_epochs: None,
};

impl Plateau {
    /// From the text after `plateau:`; `whole` is all of it, for errors.
    pub fn parse(_whole: &str, args: &str) -> Result<Self, SpecError> {
        let mut p = Plateau::default();
        let mut mode = None;
        for (item, k, v) in pairs(args)? {
            match k {
                "monitor" => {
                    p.monitor = match v {
                        "val_loss" => Monitor::ValLoss,
                        "val_acc" => Monitor::ValAcc,
                        _ => {
                            return Err(SpecError::at(
                                item,
                                format!("no metric '{v}' to monitor (val_loss or val_acc)"),
                            ))
                        }
                    }
                }
                "mode" => {
                    mode = Some(match v {
                        "min" => Mode::Min,
                        "max" => Mode::Max,
                        _ => return Err(SpecError::at(item, "mode is min or max")),
                    })
                }
                "factor" => {
                    p.factor = number(item, v, "factor")?;
                    if !(p.factor > 0.0 && p.factor < 1.0) {
                        return Err(SpecError::at(item, "factor must be between 0 and 1"));
                    }
                }
                "patience" => p.patience = count(item, v, "epochs")? as u32,
                "threshold" => p.threshold = non_negative(item, v, "threshold")?,
                "threshold_mode" => {
                    p.threshold_mode = match v {
                        "rel" => ThresholdMode::Rel,
                        "abs" => ThresholdMode::Abs,
                        _ => return Err(SpecError::at(item, "threshold_mode is rel or abs")),
                    }
                }
                "cooldown" => p.cooldown = count(item, v, "epochs")? as u32,
                "min_lr" => p.min_lr = learning_rate(item, v, "min_lr", true)?,
                "eps" => p.eps = non_negative(item, v, "eps")?,
                _ => return Err(unknown(
                    item,
                    k,
                    "monitor, mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps",
                )),
            }
        }
        p.mode = mode.unwrap_or(match p.monitor {
            Monitor::ValLoss => Mode::Min,
            Monitor::ValAcc => Mode::Max,
        });
        Ok(p)
    }
}

impl Plateau {
    pub fn monitor_name(&self) -> &'static str {
        match self.monitor {
            Monitor::ValLoss => "val_loss",
            Monitor::ValAcc => "val_acc",
        }
    }

    /// The end of an epoch whose validation loss and accuracy are given, with `old` the LR in
    /// force: `state` learns the epoch, and when it is time to cut, takes the cut into its
    /// reduction and gives the epochs without improvement that led to it and the best value.
    pub fn end_epoch(
        &self,
        state: &mut PlateauState,
        old: f64,
        val_loss: f64,
        val_acc: f64,
    ) -> Option<(u32, f64)> {
        let current = match self.monitor {
            Monitor::ValLoss => val_loss,
            Monitor::ValAcc => val_acc,
        };
        // PyTorch starts from an infinitely bad best.
        let best = state.best.unwrap_or(match self.mode {
            Mode::Min => f64::INFINITY,
            Mode::Max => f64::NEG_INFINITY,
        });
        let better = match (self.mode, self.threshold_mode) {
            (Mode::Min, ThresholdMode::Rel) => current < best * (1.0 - self.threshold),
            (Mode::Min, ThresholdMode::Abs) => current < best - self.threshold,
            (Mode::Max, ThresholdMode::Rel) => current > best * (self.threshold + 1.0),
            (Mode::Max, ThresholdMode::Abs) => current > best + self.threshold,
        };
        if better {
            state.best = Some(current);
            state.bad_epochs = 0;
        } else {
            state.bad_epochs += 1;
        }
        if state.cooldown_left > 0 {
            state.cooldown_left -= 1;
            state.bad_epochs = 0;
        }
        if state.bad_epochs <= self.patience {
            return None;
        }
        let bad_epochs = state.bad_epochs;
        state.cooldown_left = self.cooldown;
        state.bad_epochs = 0;
        let new = (old * self.factor).max(self.min_lr);
        if old - new <= self.eps {
            return None;
        }
        state.reduction *= new / old;
        Some((bad_epochs, state.best.unwrap_or(f64::NAN)))
    }
}

impl Curve for Plateau {
    fn def(&self) -> &'static Def {
        &DEF
    }

    fn args(&self) -> String {
        format!(
            "monitor={},mode={},factor={},patience={},threshold={},threshold_mode={},cooldown={},min_lr={},eps={}",
            self.monitor_name(),
            match self.mode {
                Mode::Min => "min",
                Mode::Max => "max",
            },
            self.factor,
            self.patience,
            self.threshold,
            match self.threshold_mode {
                ThresholdMode::Rel => "rel",
                ThresholdMode::Abs => "abs",
            },
            self.cooldown,
            self.min_lr,
            self.eps
        )
    }

    fn describe(&self) -> String {
        format!(
            "plateau {} x{} after {}",
            self.monitor_name(),
            self.factor,
            self.patience
        )
    }

    fn form(&self) -> Vec<(&'static str, String)> {
        vec![
            ("monitor", self.monitor_name().to_string()),
            ("factor", self.factor.to_string()),
            ("patience", self.patience.to_string()),
            ("threshold", self.threshold.to_string()),
            ("cooldown", self.cooldown.to_string()),
            ("min_lr", self.min_lr.to_string()),
        ]
    }

    fn lr(&self, at: &At) -> f64 {
        at.base * at.reduction
    }
}
