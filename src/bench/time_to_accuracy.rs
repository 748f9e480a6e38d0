//! `bench --only time-to-accuracy`: the wall-clock time of the README's fast recipe on the full
//! Fashion-MNIST (one-cycle to 3e-3 for 3 epochs), from the first step to the test accuracy,
//! with each epoch's validation on the way. 91% test accuracy is the target.

use std::time::Instant;

use super::output::say;
use crate::cli::BenchArgs;
use crate::config::RunConfig;
use crate::data::{DataSpec, DataSplits};
use crate::error::Error;
use crate::protocol::{self, Event};
use crate::train::Trainer;

/// Where Debian's `dataset-fashion-mnist` puts the full data.
pub const DEFAULT_DATA: &str = "fashion-mnist:/usr/share/datasets/fashion-mnist";
/// The recipe `lr-find` and the README lead to.
const EPOCHS: usize = 3;
const SCHEDULE: &str = "onecycle:max=3e-3";
const TARGET: f64 = 0.91;

pub fn run(args: &BenchArgs) -> Result<(), Error> {
    let spec = args.data.as_deref().unwrap_or(DEFAULT_DATA);
    let data: DataSpec = spec
        .parse()
        .map_err(|e| Error::Usage(format!("--data {spec}: {e}")))?;
    let cfg = RunConfig {
        data,
        epochs: EPOCHS,
        schedule: SCHEDULE.parse().expect("the recipe's schedule parses"),
        threads: args.threads.unwrap_or(0),
        ..RunConfig::default()
    };
    let t0 = Instant::now();
    let splits = match DataSplits::load(&cfg.data, &cfg.data_options()) {
        Ok(d) => d,
        Err(e) => {
            say(&format!(
                "time to accuracy: not measured: {e} (apt-get install dataset-fashion-mnist, or --data)"
            ));
            return Ok(());
        }
    };
    let load_secs = t0.elapsed().as_secs_f64();
    say(&format!(
        "time to {:.0}% test accuracy: --data {spec} --epochs {EPOCHS} --schedule {SCHEDULE}, {} threads ({} training images, loaded in {load_secs:.1} s)",
        100.0 * TARGET,
        cfg.threads(),
        splits.train.len()
    ));
    let trainer = Trainer::new(cfg, splits)?;
    let (tl, m) = protocol::link();
    let t0 = Instant::now();
    let handle = trainer.spawn(tl);
    let mut test = None;
    while let Ok(e) = m.events.recv() {
        // Steps are not read; the channel folds them.
        while m.steps.try_recv().is_ok() {}
        match &e {
            Event::Epoch(ep) => say(&format!(
                "  epoch {}: validation {:.2}% at {:.1} s, {:.0} images/s",
                ep.epoch,
                100.0 * ep.val_accuracy,
                t0.elapsed().as_secs_f64(),
                ep.images_per_sec
            )),
            Event::Evaluated(t) if t.split == "test" => test = Some(t.accuracy),
            Event::Error { message } => return Err(Error::Training(message.clone())),
            _ => {}
        }
        if e.is_terminal() {
            break;
        }
    }
    let _ = handle.join();
    let secs = t0.elapsed().as_secs_f64();
    match test {
        Some(acc) if acc >= TARGET => say(&format!(
            "  test {:.2}% after {secs:.1} s: {:.0}% reached in {secs:.1} s",
            100.0 * acc,
            100.0 * TARGET
        )),
        Some(acc) => say(&format!(
            "  test {:.2}% after {secs:.1} s: {:.0}% not reached",
            100.0 * acc,
            100.0 * TARGET
        )),
        None => say("  no test accuracy: the run did not finish"),
    }
    Ok(())
}
