//! `candletop ls [DIR]`: the runs in a directory.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::LsArgs;
use crate::error::Error;
use crate::runs;

/// `candletop ls [DIR]`: the runs in DIR, newest first.
pub(super) fn ls(args: &LsArgs) -> Result<ExitCode, Error> {
    let runs =
        runs::list(&args.dir).map_err(|e| Error::Usage(format!("{}: {e}", args.dir.display())))?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", runs::table(&runs));
    Ok(ExitCode::SUCCESS)
}
