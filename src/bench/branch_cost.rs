//! What a what-if branch costs: peak memory and time of one epoch of the default model with
//! and without a comparison running through it, each in a process of its own (a process's
//! peak resident memory only grows), beside a process that only loads the data and builds the
//! model. The memory of a line is a run's peak less that baseline.

use std::time::Instant;

use super::output::say;
use crate::cli::BenchArgs;
use crate::config::RunConfig;
use crate::data::{DataSpec, DataSplits};
use crate::error::Error;
use crate::protocol::{self, Command, Horizon, Setting};
use crate::train::Trainer;

/// Set in the child process that measures one of the three configurations.
const CHILD: &str = "CANDLETOP_BENCH_BRANCH";

/// What one child measured: its peak resident memory (kB) and the seconds it trained.
struct Measured {
    peak_kb: u64,
    secs: f64,
}

/// In a child process (`CANDLETOP_BENCH_BRANCH` set): measures and prints one line; false
/// when this process is not such a child.
pub fn child(base: &RunConfig) -> Result<bool, Error> {
    let Some(what) = std::env::var_os(CHILD) else {
        return Ok(false);
    };
    let cfg = RunConfig {
        epochs: 1,
        ..base.clone()
    };
    let data = DataSplits::load(&DataSpec::Embedded, &cfg.data_options())?;
    let mut trainer = Trainer::new(cfg, data)?;
    let t0 = Instant::now();
    if what != "base" {
        let (tl, m) = protocol::link();
        if what == "branch" {
            let fork = Command::Fork {
                change: vec![Setting::new("lr", "3e-4")],
                horizon: Horizon::Epoch,
                ask: false,
            };
            let _ = m.commands.send(fork);
        }
        // The events are not read: the channel keeps them, as a watcher's would.
        trainer
            .run(tl)
            .map_err(|e| Error::Training(e.to_string()))?;
        drop(m);
    }
    say(&format!(
        "{} {}",
        peak_kb().unwrap_or(0),
        t0.elapsed().as_secs_f64()
    ));
    Ok(true)
}

/// The table: baseline, one line, two lines; the ratio of the lines' memory and time.
pub fn run(args: &BenchArgs) -> Result<(), Error> {
    say("");
    say("what-if branch: one epoch of the default model, each in a process of its own");
    say(&format!(
        "{:<34} {:>12} {:>12} {:>10}",
        "what", "peak RSS MB", "line MB", "seconds"
    ));
    let base = measure(args, "base")?;
    let one = measure(args, "main")?;
    let two = measure(args, "branch")?;
    let mb = |kb: u64| kb as f64 / 1024.0;
    let line = |m: &Measured| mb(m.peak_kb.saturating_sub(base.peak_kb));
    say(&format!(
        "{:<34} {:>12.1} {:>12} {:>10}",
        "data and model, no step",
        mb(base.peak_kb),
        "-",
        "-"
    ));
    for (what, m) in [
        ("one line (no branch)", &one),
        ("main line + branch, whole epoch", &two),
    ] {
        say(&format!(
            "{what:<34} {:>12.1} {:>12.1} {:>10.2}",
            mb(m.peak_kb),
            line(m),
            m.secs
        ));
    }
    say(&format!(
        "branch / one line: memory {:.2}x (of the line), {:.2}x (whole process); time {:.2}x",
        line(&two) / line(&one).max(1e-9),
        two.peak_kb as f64 / one.peak_kb.max(1) as f64,
        two.secs / one.secs.max(1e-9)
    ));
    Ok(())
}

fn measure(args: &BenchArgs, what: &str) -> Result<Measured, Error> {
    let failed = |why: String| Error::Training(format!("bench: the {what} run failed: {why}"));
    let exe = std::env::current_exe().map_err(|e| failed(e.to_string()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("bench").arg("--only").arg("branch");
    if let Some(t) = args.threads {
        cmd.arg("--threads").arg(t.to_string());
    }
    cmd.env(CHILD, what);
    let out = cmd.output().map_err(|e| failed(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    let parsed = (|| {
        let peak_kb = fields.next()?.parse().ok()?;
        let secs = fields.next()?.parse().ok()?;
        Some(Measured { peak_kb, secs })
    })();
    match parsed {
        Some(m) if out.status.success() => Ok(m),
        _ => Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )),
    }
}

/// The process's peak resident memory, kB (`VmHWM` of /proc/self/status).
fn peak_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
