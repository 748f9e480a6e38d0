//! `candletop diagnose RUN_DIR`: a finished run's record through the doctor.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::DiagnoseArgs;
use crate::config::RunConfig;
use crate::error::Error;
use crate::run_dir::RunDir;

use super::recorded::read_records;

/// `candletop diagnose RUN_DIR`: the run's recorded steps and epochs through the doctor.
pub(super) fn diagnose(args: &DiagnoseArgs) -> Result<ExitCode, Error> {
    use crate::diagnose::{replay, BeforeStart};
    let dir = &args.run_dir;
    let cfg = RunConfig::from_toml_file(&RunDir::new(dir).config())?;
    let recorded = read_records(dir)?;
    let metrics = RunDir::new(dir).metrics();
    // A run resumed into a new directory: the epochs before are in the checkpoint's history.
    let earlier = |r: &crate::protocol::Resumed| {
        crate::checkpoint::read(std::path::Path::new(&r.from))
            .ok()
            .map(|c| c.epochs)
    };
    let records = recorded.records.iter().map(|s| (s.step, &s.record));
    let replayed = replay(records, &cfg, earlier).map_err(|BeforeStart(i)| {
        Error::Usage(format!(
            "{}: line {}: a step or epoch record before the run started",
            metrics.display(),
            recorded.records[i].line
        ))
    })?;
    let mut out = std::io::stdout().lock();
    for (step, c) in &replayed.changes {
        let f = &c.finding;
        let line = if c.cleared {
            format!("step {step:>6}  resolved: {}", f.kind.title())
        } else {
            format!(
                "step {step:>6}  {}: {}: {}; try {}",
                f.severity.word(),
                f.kind.title(),
                f.evidence,
                f.action
            )
        };
        let _ = writeln!(out, "{line}");
    }
    let Some(d) = &replayed.doctor else {
        return Err(Error::Usage(format!(
            "{}: no started record: is this a candletop run directory?",
            metrics.display()
        )));
    };
    if let Some(from) = &replayed.history_unknown {
        let _ = writeln!(
            out,
            "(the epochs before the resume are in {from}, which cannot be read now: the epoch rules judged from the resume on, as the live doctor did not)"
        );
    }
    let open = d.findings();
    let _ = writeln!(
        out,
        "{}: {} epochs, {} steps (step records every {} steps, windows of {}); {} in force at the end{}",
        dir.display(),
        replayed.epochs,
        replayed.steps,
        cfg.log_every,
        d.window_steps(),
        match open.len() {
            0 => "no finding".to_string(),
            1 => "1 finding".to_string(),
            n => format!("{n} findings"),
        },
        if open.is_empty() {
            String::new()
        } else {
            format!(
                ": {}",
                open.iter()
                    .map(|f| f.kind.title())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    Ok(ExitCode::SUCCESS)
}
