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
    use crate::diagnose::{Doctor, Patient, Thresholds};
    use crate::protocol::{Event, Record};
    let dir = &args.run_dir;
    let cfg = RunConfig::from_toml_file(&RunDir::new(dir).config())?;
    let recorded = read_records(dir)?;
    let mut doctor: Option<Doctor> = None;
    let mut out = std::io::stdout().lock();
    let (mut steps, mut epochs) = (0u64, 0usize);
    for stamped in &recorded.records {
        let changes = match (&stamped.record, doctor.as_mut()) {
            (Record::Event(Event::Started(info)), _) => {
                let mut d = Doctor::new(
                    Patient::of(info, &cfg.arch, cfg.activation, cfg.batch_norm),
                    Thresholds::default(),
                );
                let changes = d.on_start();
                doctor = Some(d);
                changes
            }
            (Record::Step(_) | Record::Event(Event::Epoch(_)), None) => {
                return Err(Error::Usage(format!(
                    "{}: line {}: a step or epoch record before the run started",
                    RunDir::new(dir).metrics().display(),
                    stamped.line
                )));
            }
            (Record::Step(m), Some(d)) => {
                steps = m.step;
                d.on_step(m)
            }
            (Record::Event(Event::Epoch(m)), Some(d)) => {
                epochs = m.epoch;
                d.on_epoch(m)
            }
            (Record::Event(Event::Activations { layers, .. }), Some(d)) => d.on_activations(layers),
            (Record::Event(Event::NonFinite { step, what, .. }), Some(d)) => {
                d.on_non_finite(*step, what)
            }
            _ => Vec::new(),
        };
        let step = stamped.step;
        for c in changes {
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
    }
    let Some(d) = doctor else {
        return Err(Error::Usage(format!(
            "{}: no started record: is this a candletop run directory?",
            RunDir::new(dir).metrics().display()
        )));
    };
    let open = d.findings();
    let _ = writeln!(
        out,
        "{}: {epochs} epochs, {steps} steps (step records every {} steps: the doctor sees their means); {} in force at the end{}",
        dir.display(),
        cfg.log_every,
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
