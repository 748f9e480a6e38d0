//! How a watched run ended, and the process exit status that says so.

use std::process::ExitCode;

use super::{RunState, Status};
use crate::protocol::FinishReason;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished(FinishReason),
    Failed(String),
    /// The watcher left while the run was still live (its terminal went, or it detached).
    Left,
}

/// The exit status when the loss or a gradient turned non-finite and a headless run stopped.
pub const EXIT_NON_FINITE: u8 = 3;

impl Outcome {
    /// What the watcher saw last.
    pub fn of(run: &RunState) -> Self {
        match &run.status {
            Status::Error(m) => Outcome::Failed(m.clone()),
            Status::Finished(r) => Outcome::Finished(*r),
            Status::Starting | Status::Running | Status::Paused => Outcome::Left,
        }
    }

    /// 0 when the run completed or was stopped, 3 when it stopped on a non-finite loss
    /// (`EXIT_NON_FINITE`). A failed run is an error for `main` to report (exit 1).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Outcome::Finished(FinishReason::NonFinite) => ExitCode::from(EXIT_NON_FINITE),
            Outcome::Finished(_) | Outcome::Left => ExitCode::SUCCESS,
            Outcome::Failed(_) => ExitCode::FAILURE,
        }
    }
}
