//! Continuing a run from a checkpoint. The run goes on with the checkpoint's settings; a flag
//! given with `--resume` either changes its setting from the resumed step on, or is refused
//! with the reason (a setting the saved weights or the run's history depend on). What changed is
//! reported, and the optimizer state is checked against what the optimizer now needs.

use std::path::Path;

use serde_json::Value;

use super::error::TrainError;
use crate::checkpoint::Checkpoint;
use crate::config::{setting, OnResume, RunConfig};
use crate::data::DataSplits;
use crate::format::sci;
use crate::optim::{Optimizer, OptimizerKind, ParamState};
use crate::protocol::{LearningRate, SettingChange};

/// How a resumed run starts.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumePlan {
    /// The learning rate in force: the checkpoint's, or `--lr`.
    pub lr: LearningRate,
    pub optimizer: Optimizer,
    pub changes: Vec<SettingChange>,
    pub notes: Vec<String>,
}

/// A setting's value as a person would type it: `embedded`, `0`, `0.9`.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "none".into(),
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
            _ => n.to_string(),
        },
        v => v.to_string(),
    }
}

/// The settings given that differ from the checkpoint's, each checked against its resume
/// policy, and the LR to go on with (the LR in force, or the one given).
fn changes(
    ckpt: &Checkpoint,
    cfg: &RunConfig,
    given: &[String],
) -> Result<(Vec<SettingChange>, LearningRate), String> {
    let pos = ckpt.position;
    let (old, new) = (ckpt.train_config.values(), cfg.values());
    let mut changes = Vec::new();
    let mut lr = LearningRate::new(ckpt.lr).map_err(|e| format!("learning rate: {e}"))?;
    for key in RunConfig::keys() {
        if !given.contains(&key) || key == "run_dir" {
            continue;
        }
        let flag = format!("--{}", key.replace('_', "-"));
        if key == "lr" {
            // Against the LR in force, which may differ from the run's first.
            if cfg.lr != lr {
                changes.push(SettingChange {
                    flag,
                    old: sci(lr.get()),
                    new: sci(cfg.lr.get()),
                });
                lr = cfg.lr;
            }
            continue;
        }
        let (was, now) = (old.get(&key).unwrap_or(&Value::Null), &new[&key]);
        if was == now {
            continue;
        }
        let (was_s, now_s) = (shown(was), shown(now));
        let cannot = |why: String| {
            format!("{flag} {now_s}: cannot change on resume ({was_s} in the checkpoint): {why}")
        };
        match setting(&key).map_or(OnResume::Free, |s| s.on_resume) {
            OnResume::Free => {}
            OnResume::Fixed(why) => return Err(cannot(why.into())),
            OnResume::Dropout => {
                if (ckpt.train_config.dropout == 0.0) != (cfg.dropout == 0.0) {
                    return Err(cannot(
                        "turning dropout on or off adds or removes layers; between non-zero values it may change".into(),
                    ));
                }
            }
            OnResume::EpochStart | OnResume::Data if pos.batch > 0 => {
                return Err(cannot(format!(
                    "the checkpoint is in the middle of epoch {} (after batch {}); resume from an epoch checkpoint (epoch-NNN.h5) to change it",
                    pos.epoch, pos.batch
                )));
            }
            OnResume::EpochStart | OnResume::Data => {}
        }
        changes.push(SettingChange {
            flag,
            old: was_s,
            new: now_s,
        });
    }
    Ok((changes, lr))
}

/// Whether the data fits the model, and whether anything is left to train.
fn fits(ckpt: &Checkpoint, cfg: &RunConfig, data: &DataSplits) -> Result<(), String> {
    let pos = ckpt.position;
    let model = &ckpt.model_config;
    let shape = [data.train.channels, data.train.height, data.train.width];
    if shape != model.input || data.classes.len() != model.classes {
        return Err(format!(
            "the model takes {}x{}x{} images in {} classes; --data {} has {}x{}x{} in {}",
            model.input[0],
            model.input[1],
            model.input[2],
            model.classes,
            cfg.data,
            shape[0],
            shape[1],
            shape[2],
            data.classes.len()
        ));
    }
    if cfg.epochs < pos.epoch {
        let done = if pos.batch == 0 {
            format!("{} epochs", pos.epoch - 1)
        } else {
            format!("{} epochs and part of epoch {}", pos.epoch - 1, pos.epoch)
        };
        return Err(format!(
            "nothing left to train: the checkpoint has done {done} and --epochs is {} (the run's total); give a larger --epochs",
            cfg.epochs
        ));
    }
    if cfg.max_steps > 0 && cfg.max_steps <= ckpt.global_step {
        return Err(format!(
            "--max-steps {}: the checkpoint is at step {} already (--max-steps counts the run's total)",
            cfg.max_steps, ckpt.global_step
        ));
    }
    Ok(())
}

/// Checks that `ckpt` can continue as `cfg` describes, where `given` are the settings (config
/// keys) given on the command line, and `data` the data `cfg` names, loaded.
pub fn plan(
    ckpt: &Checkpoint,
    cfg: &RunConfig,
    given: &[String],
    data: &DataSplits,
    path: &Path,
) -> Result<ResumePlan, TrainError> {
    let refuse = |problem: String| TrainError::Mismatch {
        path: path.to_path_buf(),
        problem,
    };
    let (changes, lr) = changes(ckpt, cfg, given).map_err(refuse)?;
    fits(ckpt, cfg, data).map_err(refuse)?;
    let mut notes = Vec::new();
    if data.norm != ckpt.data.norm() {
        notes.push(format!(
            "the model keeps the input normalisation it was trained with ({}; this data's is {})",
            ckpt.data.norm().describe(),
            data.norm.describe()
        ));
    }
    let sizes: Vec<usize> = ckpt
        .tensors
        .iter()
        .filter(|t| ckpt.param_names.contains(&t.name))
        .map(|t| t.data.len())
        .collect();
    let optimizer = optimizer_state(&ckpt.optimizer, cfg, &sizes, &ckpt.param_names, &mut notes)
        .map_err(refuse)?;
    Ok(ResumePlan {
        lr,
        optimizer,
        changes,
        notes,
    })
}

/// The saved optimizer state if it is what the optimizer `cfg` describes needs; otherwise a
/// fresh one, with a note saying so. Buffers of the wrong size are an error.
fn optimizer_state(
    saved: &Optimizer,
    cfg: &RunConfig,
    sizes: &[usize],
    names: &[String],
    notes: &mut Vec<String>,
) -> Result<Optimizer, String> {
    let config = cfg.optimizer;
    let fresh = Optimizer::new(config, sizes);
    if saved.kind != config.kind {
        notes.push(format!(
            "the optimizer changes from {} to {}: its state starts fresh",
            saved.kind.name(),
            config.kind.name()
        ));
        return Ok(fresh);
    }
    if saved.state.len() != sizes.len() {
        return Err(format!(
            "the optimizer state has {} entries for {} parameters",
            saved.state.len(),
            sizes.len()
        ));
    }
    let (need_m, need_v) = config.buffers();
    let mut present = 0;
    let mut missing = 0;
    for ((s, &n), name) in saved.state.iter().zip(sizes).zip(names) {
        for (buf, needed, what) in [(&s.m, need_m, "m"), (&s.v, need_v, "v")] {
            if !buf.is_empty() && buf.len() != n {
                return Err(format!(
                    "optimizer state {name}/{what} has {} values for {n} weights",
                    buf.len()
                ));
            }
            if needed {
                if buf.is_empty() {
                    missing += 1;
                } else {
                    present += 1;
                }
            }
        }
    }
    let (what, why) = match config.kind {
        OptimizerKind::Sgd => (
            "momentum buffers",
            format!(" (it was saved with momentum {})", saved.hyper.momentum),
        ),
        OptimizerKind::Adam | OptimizerKind::Adamw => ("Adam moments", String::new()),
    };
    if missing > 0 && present > 0 {
        return Err(format!(
            "the optimizer state has {what} for some parameters and not for others"
        ));
    }
    if missing > 0 {
        notes.push(format!(
            "the checkpoint has no {what}{why}: they start at zero"
        ));
        return Ok(fresh);
    }
    // What the optimizer needs is there; buffers it no longer needs are dropped.
    let state = saved
        .state
        .iter()
        .map(|s| ParamState {
            m: if need_m { s.m.clone() } else { Vec::new() },
            v: if need_v { s.v.clone() } else { Vec::new() },
        })
        .collect();
    Ok(Optimizer {
        kind: config.kind,
        hyper: config.hyper,
        steps: saved.steps,
        state,
    })
}
