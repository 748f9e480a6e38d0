//! Checkpoints: everything needed to resume a run exactly, as plain data (`Checkpoint`), stored
//! in HDF5 files that h5py, PyTorch and h5dump can read (`h5`), written atomically off the
//! training thread (`writer`); their weights also as safetensors (`safetensors`).

pub mod h5;
pub mod safetensors;
pub mod writer;

use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::model::{ModelConfig, NamedTensor};
use crate::optim::Optimizer;
use crate::protocol::EpochMetrics;
use crate::schedule::Schedule;

pub use h5::{read, write, CheckpointError, FORMAT, FORMAT_VERSION};
pub use writer::{CheckpointWriter, SaveFailure, SaveKind, SaveResult};

/// Where the data came from, how it was normalised (per channel), and whether augmentation was
/// on (the key `a` turns it off and on; the spec is the run's `augment` setting).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    pub source: String,
    #[serde(deserialize_with = "one_or_many")]
    pub mean: Vec<f32>,
    #[serde(deserialize_with = "one_or_many")]
    pub std: Vec<f32>,
    /// Whether augmentation was on; files from before it say nothing (on when the run's
    /// `augment` setting names transforms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augmenting: Option<bool>,
}

/// A list, or one number (files from before per-channel normalisation).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(f32),
        Many(Vec<f32>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(x) => vec![x],
        OneOrMany::Many(v) => v,
    })
}

impl DataInfo {
    pub fn norm(&self) -> crate::data::Normalization {
        crate::data::Normalization {
            mean: self.mean.clone(),
            std: self.std.clone(),
        }
    }
}

/// Where in the run the checkpoint was taken: the next batch to train is `batch` of `epoch`,
/// with the epoch's running sums so far (so the epoch's metrics come out the same).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Position {
    pub epoch: usize,
    pub batch: usize,
    pub loss_sum: f64,
    pub correct: u64,
    pub seen: u64,
    pub active_secs: f64,
}

/// Everything a checkpoint holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub created: String,
    pub global_step: u64,
    pub model_config: ModelConfig,
    pub train_config: RunConfig,
    pub classes: Vec<String>,
    pub data: DataInfo,
    /// Parameters and batch-norm running statistics, in `state_dict` order.
    pub tensors: Vec<NamedTensor>,
    /// Batch-norm `num_batches_tracked` counters (int64 in PyTorch).
    pub counters: Vec<(String, i64)>,
    /// Optimizer state; `state[i]` belongs to the i-th trainable parameter of `tensors`. A
    /// buffer the saved optimizer did not need (SGD without momentum) is empty.
    pub optimizer: Optimizer,
    pub param_names: Vec<String>,
    /// The learning rate in force.
    pub lr: f64,
    /// The schedule in use, with its state (files from before schedules have none).
    pub schedule: Option<Schedule>,
    /// State of the dropout RNG.
    pub rng: [u64; 4],
    pub position: Position,
    /// Per-epoch metrics so far.
    pub epochs: Vec<EpochMetrics>,
    /// The LR changes made by the user or by reduce-on-plateau, as (step, new lr): the new LR
    /// applies from the step after `step`; an entry at step 0 is the run's first LR.
    pub lr_changes: Vec<(u64, f64)>,
    /// The LR each step used, (step, lr), every k-th step once there are many (at most
    /// 10,000 entries).
    pub lr_history: Vec<(u64, f64)>,
    /// The doctor's remedies applied so far, with their undo and verdict (the `remedies`
    /// attribute of `history`, JSON).
    pub remedies: Vec<crate::protocol::RemedyRecord>,
    /// The what-if comparisons so far: where each forked, its change and what became of it
    /// (the `branches` attribute of `history`, JSON; files from before branches have none).
    pub branches: Vec<crate::protocol::BranchRecord>,
    /// With `--early-stop ...,restore_best`: the best epoch's weights so far, to put back
    /// when the run stops early (the `/best_model` group, laid out as `/model`).
    pub best_model: Option<BestModel>,
}

/// A model's `state_dict` as of the end of epoch `epoch`.
#[derive(Debug, Clone, PartialEq)]
pub struct BestModel {
    pub epoch: usize,
    pub tensors: Vec<NamedTensor>,
    pub counters: Vec<(String, i64)>,
}

impl Checkpoint {
    /// Epochs completed when the checkpoint was taken (the root `epoch` attribute): the
    /// position is always in the epoch after them.
    pub fn completed_epochs(&self) -> usize {
        self.position.epoch.saturating_sub(1)
    }

    /// The epoch the checkpoint's step belongs to: the last completed one when it was taken at
    /// an epoch's end (the position is then at the start of the next), else the current one.
    pub fn epoch_of_step(&self) -> usize {
        if self.position.batch == 0 {
            self.completed_epochs().max(1)
        } else {
            self.position.epoch
        }
    }

    pub fn param_count(&self) -> usize {
        self.tensors
            .iter()
            .filter(|t| self.param_names.contains(&t.name))
            .map(|t| t.data.len())
            .sum()
    }
}
