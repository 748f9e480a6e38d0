//! `candletop view RUN_DIR`: a run that has ended, in the terminal UI, read-only.

use std::process::ExitCode;

use crate::cli::ViewArgs;
use crate::error::Error;
use crate::protocol::{self};
use crate::{signals, socket, tui};

use super::recorded::{comparison, recorded};

/// `candletop view RUN_DIR`: a run that has ended, in the terminal UI, read-only.
pub(super) fn view(args: &ViewArgs) -> Result<ExitCode, Error> {
    let dir = &args.run_dir;
    if socket::client::is_live(dir) {
        return Err(Error::Usage(format!(
            "{}: the run is live: candletop attach {}",
            dir.display(),
            dir.display()
        )));
    }
    let compare = args.compare.as_deref().map(comparison).transpose()?;
    let mut state = recorded(dir)?;
    // A run that ended without a word (killed) is shown as such.
    state.on_trainer_gone();
    // Nobody at the other end: the channels are closed from the start.
    let (trainer, monitor) = protocol::link();
    drop(trainer);
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let options = tui::UiOptions {
        color: !no_color,
        braille: args.braille,
        ..tui::UiOptions::default()
    };
    let signals = signals::spawn()?;
    tui::run(&monitor, options, signals, Some(state), compare)?;
    Ok(ExitCode::SUCCESS)
}
