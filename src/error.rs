//! Every error a subcommand reports, from the layers' own error types. `is_usage` tells the
//! user's input (exit status 2) from failures (exit status 1).

use crate::checkpoint::CheckpointError;
use crate::config::ConfigError;
use crate::data::DataError;
use crate::run_dir::{RecordError, RunDirError};
use crate::train::TrainError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A run's metrics.jsonl that cannot be read.
    #[error(transparent)]
    Records(#[from] RecordError),
    /// Flags that do not go together.
    #[error("{0}")]
    Usage(String),
    /// The run itself failed.
    #[error("{0}")]
    Training(String),
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

impl Error {
    /// True when the user's input (flags, files) is at fault.
    pub fn is_usage(&self) -> bool {
        match self {
            Error::Data(_)
            | Error::Config(_)
            | Error::Checkpoint(_)
            | Error::Records(_)
            | Error::Usage(_) => true,
            Error::Train(t) => t.is_usage(),
            Error::RunDir(e) => e.is_usage(),
            Error::Training(_) | Error::Terminal(_) => false,
        }
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Train(e.into())
    }
}
