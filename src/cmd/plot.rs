//! `candletop plot RUN_DIR [--compare OTHER ...] -o FILE`: a run as a figure.

use std::process::ExitCode;

use crate::cli::PlotArgs;
use crate::error::Error;
use crate::figure;
use crate::run_dir::RunDir;

use super::recorded::recorded;

/// `candletop plot RUN_DIR [--compare OTHER ...] -o FILE`: the run as a figure.
pub(super) fn plot(args: &PlotArgs) -> Result<ExitCode, Error> {
    let mut runs = Vec::new();
    for dir in std::iter::once(&args.run_dir).chain(&args.compare) {
        runs.push(figure::Run {
            name: RunDir::new(dir).name(),
            state: recorded(dir)?,
        });
    }
    figure::write(&args.output, &runs).map_err(Error::Usage)?;
    println!("wrote {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}
