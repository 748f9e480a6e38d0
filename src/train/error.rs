//! What can go wrong in training, apart from the run's own failures (which are events).

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::model::ModelError;
use crate::run_dir::RunDirError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A checkpoint that does not fit what was asked of it (resuming with other settings,
    /// evaluating on other data).
    #[error("{path}: {problem}")]
    Mismatch { path: PathBuf, problem: String },
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    /// An image the loaders could not read (a streamed file gone since the run started).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
}

impl TrainError {
    /// True when the user's input (settings, files) is at fault.
    pub fn is_usage(&self) -> bool {
        match self {
            TrainError::RunDir(e) => e.is_usage(),
            e => matches!(
                e,
                TrainError::Config(_)
                    | TrainError::Model(ModelError::Arch(_))
                    | TrainError::Mismatch { .. }
            ),
        }
    }
}
