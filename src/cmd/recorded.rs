//! A run as its metrics.jsonl recorded it, for the subcommands that read one (view, plot,
//! diagnose, --compare, --plot).

use std::path::Path;

use crate::error::Error;
use crate::run_dir::{Recorded, RunDir};
use crate::tui;

/// A run as its metrics.jsonl recorded it (live or not).
pub(super) fn recorded(dir: &Path) -> Result<crate::watch::RunState, Error> {
    let path = RunDir::new(dir).metrics();
    let recorded = read_records(dir)?;
    let state = crate::watch::RunState::replay(recorded.records.iter().map(|s| &s.record));
    if state.info.is_none() {
        return Err(Error::Usage(format!(
            "{}: no started record: is this a candletop run directory?",
            path.display()
        )));
    }
    Ok(state)
}

/// Every record of a run's metrics.jsonl; what was passed over (a torn last line, records of
/// a newer version) is said on stderr.
pub(super) fn read_records(dir: &Path) -> Result<Recorded, Error> {
    let run = RunDir::new(dir);
    let recorded = run.read_records()?;
    for remark in recorded.remarks(&run.metrics()) {
        eprintln!("candletop: warning: {remark}");
    }
    Ok(recorded)
}

/// The run `--compare` names, to draw under this one.
pub(super) fn comparison(dir: &Path) -> Result<tui::Comparison, Error> {
    // The directory's own name: the charts' legend is short.
    Ok(tui::Comparison {
        name: RunDir::new(dir).name(),
        run: recorded(dir)?,
    })
}
