//! The run's configuration: defaults in one place, read from TOML (`--config`), overridden by
//! flags, validated into errors that name the flag.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::DataSpec;
use crate::model::{Activation, Arch, Kernels, ModelConfig};
use crate::train::optim::{Hyper, OptimizerKind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    pub data: DataSpec,
    pub val_split: f64,
    pub arch: String,
    pub activation: Activation,
    pub batch_norm: bool,
    pub dropout: f32,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: OptimizerKind,
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub label_smoothing: f64,
    pub seed: u64,
    /// Compute threads; 0 means all cores.
    pub threads: usize,
    /// Steps between progress records (metrics.jsonl, headless progress lines).
    pub log_every: u64,
    /// Where the run writes its files; empty means `runs/<timestamp>`.
    pub run_dir: Option<PathBuf>,
    /// Epoch checkpoints kept (`epoch-NNN.h5`); older ones are deleted.
    pub keep_last: usize,
    /// What makes `best.h5` better.
    pub best_metric: BestMetric,
    /// Save `last.h5` every N steps; 0 never (it is still saved on every way out).
    pub save_every_steps: u64,
    /// Stop after this many steps in total; 0 means no limit.
    pub max_steps: u64,
    /// Candle's stock ops or candletop's fused custom ops for the hot paths.
    pub kernels: Kernels,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum BestMetric {
    ValAcc,
    ValLoss,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            data: DataSpec::Embedded,
            val_split: 0.1,
            arch: "c32,c64,f128".into(),
            activation: Activation::Relu,
            batch_norm: true,
            dropout: 0.25,
            epochs: 10,
            batch_size: 64,
            lr: 1e-3,
            optimizer: OptimizerKind::Adamw,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            label_smoothing: 0.0,
            seed: 42,
            threads: 0,
            log_every: 20,
            run_dir: None,
            keep_last: 3,
            best_metric: BestMetric::ValAcc,
            save_every_steps: 0,
            max_steps: 0,
            kernels: Kernels::Fast,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{flag} {value}: {problem}")]
    Invalid {
        flag: &'static str,
        value: String,
        problem: &'static str,
    },
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(transparent)]
    Arch(#[from] crate::model::ArchError),
}

impl RunConfig {
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            // toml's messages span several lines; one line is enough to find the problem.
            message: e
                .message()
                .lines()
                .next()
                .unwrap_or("invalid TOML")
                .to_string()
                + &e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default(),
        })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a RunConfig always serialises")
    }

    /// The network these settings describe, for images of `input` (channels, height, width)
    /// and `classes` classes; checks every value first.
    pub fn model_config(
        &self,
        input: [usize; 3],
        classes: usize,
    ) -> Result<ModelConfig, ConfigError> {
        Ok(ModelConfig {
            input,
            classes,
            arch: self.validate()?,
            activation: self.activation,
            batch_norm: self.batch_norm,
            dropout: self.dropout,
        })
    }

    /// Checks every value; the error names the flag.
    pub fn validate(&self) -> Result<Arch, ConfigError> {
        fn bad<T: std::fmt::Display>(
            flag: &'static str,
            v: T,
            problem: &'static str,
        ) -> Result<Arch, ConfigError> {
            Err(ConfigError::Invalid {
                flag,
                value: v.to_string(),
                problem,
            })
        }
        let arch: Arch = self.arch.parse()?;
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("--lr", self.lr, "must be a positive number");
        }
        if self.batch_size == 0 {
            return bad("--batch-size", 0, "must be at least 1");
        }
        if self.epochs == 0 {
            return bad("--epochs", 0, "must be at least 1");
        }
        if !(self.val_split > 0.0 && self.val_split < 1.0) {
            return bad(
                "--val-split",
                self.val_split,
                "must be strictly between 0 and 1",
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("--dropout", self.dropout, "must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(
                "--label-smoothing",
                self.label_smoothing,
                "must be in [0, 1)",
            );
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("--momentum", self.momentum, "must be in [0, 1)");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "--weight-decay",
                self.weight_decay,
                "must be zero or positive",
            );
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad(
                "beta1/beta2",
                format!("{}/{}", self.beta1, self.beta2),
                "must be in [0, 1)",
            );
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad("eps", self.eps, "must be a positive number");
        }
        if self.log_every == 0 {
            return bad("--log-every", 0, "must be at least 1");
        }
        Ok(arch)
    }

    pub fn hyper(&self) -> Hyper {
        Hyper {
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
        }
    }

    pub fn threads(&self) -> usize {
        if self.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            self.threads
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let c = RunConfig::default();
        c.validate().unwrap();
        let back: RunConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn bad_values_name_their_flag() {
        let cases: Vec<(RunConfig, &str)> = vec![
            (
                RunConfig {
                    lr: 0.0,
                    ..Default::default()
                },
                "--lr 0",
            ),
            (
                RunConfig {
                    lr: -1.0,
                    ..Default::default()
                },
                "--lr -1",
            ),
            (
                RunConfig {
                    batch_size: 0,
                    ..Default::default()
                },
                "--batch-size 0",
            ),
            (
                RunConfig {
                    val_split: 1.0,
                    ..Default::default()
                },
                "--val-split 1",
            ),
            (
                RunConfig {
                    arch: "q".into(),
                    ..Default::default()
                },
                "--arch 'q'",
            ),
            (
                RunConfig {
                    dropout: 1.0,
                    ..Default::default()
                },
                "--dropout 1",
            ),
        ];
        for (c, want) in cases {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
        }
    }

    #[test]
    fn partial_toml_keeps_defaults_and_unknown_keys_are_errors() {
        let c: RunConfig =
            toml::from_str("lr = 0.01\noptimizer = \"sgd\"\ndata = \"mnist:/x\"").unwrap();
        assert_eq!(c.lr, 0.01);
        assert_eq!(c.optimizer, OptimizerKind::Sgd);
        assert_eq!(c.batch_size, 64);
        assert_eq!(c.data, DataSpec::Mnist("/x".into()));
        assert!(toml::from_str::<RunConfig>("learning_rate = 1").is_err());
    }
}
