//! `candletop lr-find`: the LR range test from the initial weights, or from a checkpoint's
//! weights and optimizer state (`--resume`), as the key `f` runs it mid-run.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use crate::checkpoint;
use crate::cli::LrFindArgs;
use crate::error::Error;
use crate::train::{lr_find, FinderSettings, Trainer};
use crate::{runtime, tui};

use super::data_info::load_data;
use super::train::{configure, resume_file};

pub(super) fn find_lr(args: &LrFindArgs) -> Result<ExitCode, Error> {
    let (start, end) = (args.start_lr.get(), args.end_lr.get());
    if start >= end {
        return Err(crate::config::ConfigError::Invalid {
            flag: "--start-lr",
            value: format!("{start} (--end-lr {end})"),
            problem: "must be below --end-lr",
        }
        .into());
    }
    let resume = args.train.resume.as_deref().map(resume_file).transpose()?;
    let resumed = match &resume {
        Some(path) => Some((checkpoint::read(path)?, path)),
        None => None,
    };
    let mut cfg = configure(&args.train, resumed.as_ref().map(|r| &r.0))?;
    if let Some((ckpt, _)) = &resumed {
        // The sweep trains a copy, not the run: a finished run's weights are tested too.
        cfg.epochs = cfg.epochs.max(ckpt.position.epoch);
    }
    runtime::set_threads(cfg.threads(), cfg.kernels);
    let data = load_data(&cfg)?;
    let mut trainer = match &resumed {
        Some((ckpt, path)) => Trainer::resume(cfg.clone(), data, ckpt, path, &args.train.given())?,
        None => Trainer::new(cfg.clone(), data)?,
    };
    let settings = FinderSettings {
        start_lr: start,
        end_lr: end,
        steps: args.sweep_steps as usize,
        ..FinderSettings::default()
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "LR range test{}: {} on {}, {}, batch {}; lr {start:.1e} to {end:.1e} over {} steps",
        match &resumed {
            Some((ckpt, path)) => format!(
                " from {} (step {}, lr {:.2e})",
                path.display(),
                ckpt.global_step,
                ckpt.lr
            ),
            None => String::new(),
        },
        trainer.info().model,
        trainer.info().data,
        trainer.info().optimizer,
        cfg.batch_size,
        settings.steps
    );
    let mut err = std::io::stderr();
    let show = err.is_terminal();
    let finding = trainer.lr_find(&settings, &mut |done| {
        if show {
            let _ = write!(err, "\r  {done}/{} steps", settings.steps);
        }
        true
    })?;
    if show {
        let _ = writeln!(err);
    }
    let _ = writeln!(out, "\n  step        lr      loss  smoothed");
    for (i, p) in finding.points.iter().enumerate() {
        let mark = if finding.suggestion == Some(i) {
            "  <- suggested"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {:>4}  {:>8.2e}  {:>8.4}  {:>8.4}{mark}",
            i + 1,
            p.lr,
            p.loss,
            p.smoothed
        );
    }
    if let Some(why) = &finding.stopped {
        let _ = writeln!(out, "  (ended early: {why})");
    }
    let _ = writeln!(out);
    let chart = tui::widgets::FinderChart {
        finding: &finding,
        pick: finding.suggestion,
        theme: tui::theme::Theme { color: false },
    };
    for line in tui::text_of(chart, 78, 20) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out);
    match finding.suggestion {
        Some(i) => {
            let _ = writeln!(
                out,
                "suggested lr: {:.2e} ({})\nchosen as {}.",
                finding.points[i].lr,
                finding.how,
                lr_find::METHOD
            );
        }
        None => {
            let _ = writeln!(out, "no suggestion: {}", finding.how);
        }
    }
    Ok(ExitCode::SUCCESS)
}
