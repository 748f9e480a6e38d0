//! `candletop attach [RUN_DIR]`: the terminal UI on a run of another process; the options a
//! terminal UI takes from the command line.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::{AttachArgs, TrainArgs};
use crate::config::RunConfig;
use crate::error::Error;
use crate::watch::Outcome;
use crate::{runs, signals, socket, tui};

use super::recorded::comparison;

/// `candletop attach [RUN_DIR]`: a terminal UI on a run of another process.
pub(super) fn attach(args: &AttachArgs) -> Result<ExitCode, Error> {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let options = tui::UiOptions {
        fps: args.fps,
        color: !no_color,
        braille: args.braille,
        bell: args.bell,
        ..tui::UiOptions::default()
    };
    let compare = args.compare.as_deref().map(comparison).transpose()?;
    attach_with(args, options, compare)
}

pub(super) fn attach_with(
    args: &AttachArgs,
    options: tui::UiOptions,
    compare: Option<tui::Comparison>,
) -> Result<ExitCode, Error> {
    let dir = match &args.run_dir {
        Some(d) => d.clone(),
        None => runs::newest_live(Path::new("runs")).ok_or_else(|| {
            Error::Usage("no live run under runs/ (candletop ls lists them; give a RUN_DIR)".into())
        })?,
    };
    let attached = socket::client::attach(&dir).map_err(|e| Error::Usage(e.to_string()))?;
    let signals = signals::spawn()?;
    let options = tui::UiOptions {
        attached: true,
        ..options
    };
    let outcome = tui::run(
        &attached.link,
        options,
        signals,
        Some(attached.state),
        compare,
    )?;
    match outcome {
        Outcome::Left => {
            println!(
                "detached; the run goes on (pid {}): candletop attach {}",
                attached.pid,
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Failed(message) => Err(Error::Training(message)),
        o => Ok(o.exit_code()),
    }
}

pub(super) fn ui_options(args: &TrainArgs, cfg: &RunConfig) -> tui::UiOptions {
    // NO_COLOR set to anything but "" turns colour off.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    tui::UiOptions {
        lr_step: args.lr_step,
        fps: args.fps,
        color: !no_color,
        braille: args.braille,
        quit_when_done: false,
        // What x turns clipping on to: the run's norm, or 1 (a common choice).
        clip_grad_norm: if cfg.clip_grad_norm > 0.0 {
            cfg.clip_grad_norm
        } else {
            1.0
        },
        attached: false,
        bell: args.bell,
    }
}
