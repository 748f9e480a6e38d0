//! The run's configuration: defaults in one place, read from TOML (`--config`), overridden by
//! flags, validated into errors that name the flag.

use crate::stopping::EarlyStop;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::folder::{FolderOptions, ImageSize};
use crate::data::{AugmentSpec, ClassWeights, DataOptions, DataSpec, NormalizeSpec, Sampler};
use crate::model::{Activation, Arch, Kernels, ModelConfig};
use crate::optim::OptimizerConfig;
use crate::protocol::{clip_norm_problem, LearningRate};
use crate::run_dir::{RunDir, RunDirError};

mod settings;
use crate::schedule::{ScheduleSpec, SpecError};
pub use settings::{setting, Form, OnResume, Setting, SETTINGS};

/// The most compute threads per core `--threads` may ask for.
pub const THREADS_PER_CORE: usize = 8;

/// Every setting of a run. In a TOML file (`--config`, and the `config.toml` each run writes)
/// the keys are the flags' names with `_` for `-`; unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunConfig {
    pub data: DataSpec,
    pub val_split: f64,
    /// Image folders: 1 or 3 channels; 0 means what the images are.
    pub channels: usize,
    /// Image folders: resize every image to this size; none means the first image's size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size: Option<ImageSize>,
    /// Image folders: skip files that do not decode instead of stopping.
    pub skip_bad_images: bool,
    /// Image folders: read the images from disk as they are needed, even when they fit in
    /// memory (they are when they would not).
    pub stream_images: bool,
    /// Train on a stratified subset of this many images; 0 means all.
    pub subset: usize,
    /// Skew the training set so the first class has this many times the images of the last;
    /// 0 means no skew.
    pub imbalance: f64,
    /// Change this share of the training labels to another class, at random (seeded); 0 means
    /// none.
    pub label_noise: f64,
    /// Per-channel mean/std: "auto" (the training set's) or given.
    pub normalize: NormalizeSpec,
    /// Augmentation of training images (an `--augment` spec).
    pub augment: AugmentSpec,
    /// Weights of the classes in the loss.
    pub class_weights: ClassWeights,
    /// How an epoch visits the training images.
    pub sampler: Sampler,
    /// Clip the gradients' global L2 norm to this (PyTorch's clip_grad_norm_); 0: no clipping.
    pub clip_grad_norm: f64,
    pub arch: String,
    pub activation: Activation,
    pub batch_norm: bool,
    #[serde(serialize_with = "crate::format::f32_as_written")]
    pub dropout: f32,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: LearningRate,
    /// How the LR moves over the run (a `--schedule` spec).
    pub schedule: ScheduleSpec,
    /// `optimizer`, `momentum`, `nesterov`, `weight_decay`, `beta1`, `beta2`, `eps`.
    #[serde(flatten)]
    pub optimizer: OptimizerConfig,
    pub label_smoothing: f64,
    pub seed: u64,
    /// Compute threads; 0 means all cores. At most `THREADS_PER_CORE` per core: beyond that
    /// the threads only take turns (100,000 of them trained nothing for a minute).
    pub threads: usize,
    /// Steps between progress records (metrics.jsonl, headless progress lines).
    pub log_every: u64,
    /// Where the run writes its files; empty means `runs/<timestamp>`.
    #[serde(skip_serializing_if = "Option::is_none")]
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
    /// End the run when a validation metric stops improving (`--early-stop`).
    pub early_stop: EarlyStop,
    /// A validation accuracy (%) to forecast and report; 0: none.
    pub target_acc: f64,
    /// End the run at the epoch that reaches `target_acc`.
    pub stop_at_target: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BestMetric {
    ValAcc,
    ValLoss,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            data: DataSpec::Embedded,
            val_split: 0.1,
            channels: 0,
            image_size: None,
            skip_bad_images: false,
            stream_images: false,
            subset: 0,
            imbalance: 0.0,
            label_noise: 0.0,
            normalize: NormalizeSpec::Auto,
            augment: AugmentSpec::default(),
            class_weights: ClassWeights::None,
            sampler: Sampler::Shuffle,
            clip_grad_norm: 0.0,
            arch: "c32,c64,f128".into(),
            activation: Activation::Relu,
            batch_norm: true,
            dropout: 0.25,
            epochs: 10,
            batch_size: 64,
            lr: LearningRate::new(1e-3).expect("a valid default"),
            schedule: ScheduleSpec::default(),
            optimizer: OptimizerConfig::default(),
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
            early_stop: EarlyStop::OFF,
            target_acc: 0.0,
            stop_at_target: false,
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
    /// A value's own parser named the flag already.
    #[error("{0}")]
    Said(String),
    /// A value the command line gives that its setting cannot take.
    #[error("{flag} {value}: {problem}")]
    Setting {
        flag: String,
        value: String,
        problem: String,
    },
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: unknown setting '{key}' (settings are the flags' names with '_' for '-', e.g. batch_size)")]
    UnknownKey { path: PathBuf, key: String },
    #[error(transparent)]
    Arch(#[from] crate::model::ArchError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Schedule(#[from] SpecError),
    #[error(transparent)]
    Augment(#[from] crate::data::augment::AugmentError),
}

impl RunConfig {
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.into(),
                message,
            },
            ConfigError::UnknownKey { key, .. } => ConfigError::UnknownKey {
                path: path.into(),
                key,
            },
            e => e,
        })
    }

    /// The settings in a TOML text (errors name no file: `from_toml_file` adds it).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let parse_error = |e: toml::de::Error| ConfigError::Parse {
            path: PathBuf::new(),
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
        };
        let config: Self = toml::from_str(text).map_err(parse_error)?;
        // The optimizer's settings are flattened into the top level, where serde cannot refuse
        // unknown keys by itself.
        let table: toml::Table = toml::from_str(text).map_err(parse_error)?;
        let known = Self::keys();
        if let Some(key) = table.keys().find(|k| !known.contains(k)) {
            return Err(ConfigError::UnknownKey {
                path: PathBuf::new(),
                key: crate::format::shown(key),
            });
        }
        Ok(config)
    }

    /// The names of every setting, as in a config file.
    pub fn keys() -> Vec<String> {
        let full = Self {
            run_dir: Some(PathBuf::from(".")),
            image_size: Some(ImageSize {
                height: 1,
                width: 1,
            }),
            ..Self::default()
        };
        match serde_json::to_value(full) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Every setting as JSON values by key, for comparing two configurations.
    pub fn values(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a RunConfig always serialises")
    }

    /// Writes `config.toml` into `dir`: these settings without the run directory, so that
    /// `--config <this file>` repeats the run in a new directory rather than writing over this.
    pub fn save_in(&self, dir: &RunDir) -> Result<(), RunDirError> {
        let text = format!(
            "# The resolved configuration of the run in {}.\n# `candletop --config <this file>` repeats it in a new run directory.\n\n{}",
            dir.path().display(),
            self.without_run_dir().to_toml()
        );
        RunDir::write_atomic(&dir.config(), &text)
    }

    /// Writes `suggested.toml` into `dir`, a config for a new run, with `note` (one line) on
    /// top; the file is whole or absent.
    pub fn save_suggested(&self, dir: &RunDir, note: &str) -> Result<PathBuf, RunDirError> {
        let path = dir.suggested();
        let text = format!(
            "# {note}\n# `candletop --config {}` starts it in a new run directory.\n\n{}",
            path.display(),
            self.without_run_dir().to_toml()
        );
        RunDir::write_atomic(&path, &text)?;
        Ok(path)
    }

    fn without_run_dir(&self) -> Self {
        Self {
            run_dir: None,
            ..self.clone()
        }
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
        if self.batch_size == 0 {
            return bad("--batch-size", 0, "must be at least 1");
        }
        if let Err(problem) = crate::stopping::parse_target(&self.target_acc.to_string()) {
            return Err(ConfigError::Said(problem));
        }
        if self.stop_at_target && self.target_acc == 0.0 {
            return Err(ConfigError::Said(
                "--stop-at-target needs --target-acc (the validation accuracy to stop at)".into(),
            ));
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
        let h = &self.optimizer.hyper;
        if !(0.0..1.0).contains(&h.momentum) {
            return bad("--momentum", h.momentum, "must be in [0, 1)");
        }
        if !(h.weight_decay.is_finite() && h.weight_decay >= 0.0) {
            return bad("--weight-decay", h.weight_decay, "must be zero or positive");
        }
        if !(0.0..1.0).contains(&h.beta1) || !(0.0..1.0).contains(&h.beta2) {
            return bad(
                "beta1/beta2",
                format!("{}/{}", h.beta1, h.beta2),
                "must be in [0, 1)",
            );
        }
        if !(h.eps.is_finite() && h.eps > 0.0) {
            return bad("eps", h.eps, "must be a positive number");
        }
        if self.log_every == 0 {
            return bad("--log-every", 0, "must be at least 1");
        }
        if clip_norm_problem(self.clip_grad_norm).is_some() {
            return bad(
                "--clip-grad-norm",
                format!("{:e}", self.clip_grad_norm),
                "must be zero (off), or from 1.2e-38 up",
            );
        }
        if ![0, 1, 3].contains(&self.channels) {
            return bad("--channels", self.channels, "must be 1 or 3");
        }
        if !(self.imbalance == 0.0 || (self.imbalance.is_finite() && self.imbalance >= 1.0)) {
            return bad(
                "--imbalance",
                self.imbalance,
                "must be at least 1 (the largest class over the smallest)",
            );
        }
        if !(0.0..1.0).contains(&self.label_noise) {
            return bad("--label-noise", self.label_noise, "must be in [0, 1)");
        }
        let cores = crate::runtime::threads_or_all(0);
        if self.threads > THREADS_PER_CORE * cores {
            return Err(ConfigError::Said(format!(
                "--threads {}: at most {} on this machine ({THREADS_PER_CORE} per core; 0 means all cores)",
                self.threads,
                THREADS_PER_CORE * cores
            )));
        }
        // The number of steps is known only with the data; the trainer checks those.
        self.schedule.check(self.epochs, u64::MAX)?;
        Ok(arch)
    }

    /// How to read and split the data.
    pub fn data_options(&self) -> DataOptions {
        DataOptions {
            val_split: self.val_split,
            seed: self.seed,
            folder: FolderOptions {
                channels: (self.channels > 0).then_some(self.channels),
                size: self.image_size.map(|s| (s.height, s.width)),
                skip_bad: self.skip_bad_images,
                stream: self.stream_images,
            },
            subset: self.subset,
            imbalance: self.imbalance,
            label_noise: self.label_noise,
            normalize: self.normalize.clone(),
        }
    }

    /// Compute threads: the setting, or all cores when it is 0.
    pub fn threads(&self) -> usize {
        crate::runtime::threads_or_all(self.threads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::OptimizerKind;

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
                    threads: 100_000,
                    ..Default::default()
                },
                "--threads 100000: at most",
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
        let c = RunConfig::from_toml(
            "lr = 0.01\noptimizer = \"sgd\"\nmomentum = 0.5\ndata = \"mnist:/x\"",
        )
        .unwrap();
        assert_eq!(c.lr.get(), 0.01);
        assert_eq!(c.optimizer.kind, OptimizerKind::Sgd);
        assert_eq!(c.optimizer.hyper.momentum, 0.5);
        assert_eq!(c.optimizer.hyper.weight_decay, 0.01, "the default");
        assert_eq!(c.batch_size, 64);
        assert_eq!(c.data, DataSpec::Mnist("/x".into()));
        let e = RunConfig::from_toml("learning_rate = 1").unwrap_err();
        assert!(
            e.to_string().contains("unknown setting 'learning_rate'"),
            "{e}"
        );
        let e = RunConfig::from_toml("lr = -1").unwrap_err();
        assert!(
            e.to_string().contains("not a positive learning rate"),
            "{e}"
        );
        let e = RunConfig::from_toml("momentum = \"high\"").unwrap_err();
        assert!(e.to_string().contains("(at byte"), "{e}");
    }

    #[test]
    fn the_file_says_what_was_written() {
        let text = RunConfig::default().to_toml();
        for line in [
            "momentum = 0.9\n",
            "weight_decay = 0.01\n",
            "eps = 0.00000001\n",
            "dropout = 0.25\n",
            "lr = 0.001\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        // Every key the file can hold, the optimizer's among them.
        let keys = RunConfig::keys();
        for k in ["optimizer", "momentum", "beta2", "run_dir", "lr", "kernels"] {
            assert!(keys.contains(&k.to_string()), "{k}");
        }
    }
}
