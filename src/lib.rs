//! candletop: train a convolutional image classifier with Candle and watch and steer the run.
//!
//! The core (`data`, `model`, `train`, `run_dir`) knows nothing of how the run is shown; the
//! front ends (`headless`, `tui`) reach the trainer only through `protocol`, and both fold its
//! events the same way (`run_state`).

pub mod app;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod headless;
pub mod model;
pub mod protocol;
pub mod rng;
pub mod run_dir;
pub mod run_state;
pub mod signals;
pub mod train;
pub mod tui;

/// Every error the library reports. `is_usage` tells input errors (exit code 2) from failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Arch(#[from] model::ArchError),
    #[error(transparent)]
    RunDir(#[from] run_dir::RunDirError),
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Training(String),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("--resume {0}")]
    Resume(String),
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

impl Error {
    /// True when the user's input (flags, files) is at fault.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::Data(_)
                | Error::Config(_)
                | Error::Arch(_)
                | Error::Checkpoint(_)
                | Error::Resume(_)
        )
    }
}
