//! What each subcommand does, from a parsed command line to an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cli::{Cli, Cmd, TrainArgs};
use crate::data::DataSplits;
use crate::headless::{Outcome, Reporter};
use crate::train::Trainer;
use crate::{bench, protocol, run_dir, tui, Error};

pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        None => train(&cli.train),
        Some(Cmd::Train(t)) => train(&t),
        Some(Cmd::Bench(b)) => bench::run(&b),
    }
}

/// Candle and gemm size their thread pools from RAYON_NUM_THREADS when first used, so this
/// must run before any tensor work.
pub fn set_threads(n: usize) {
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
}

fn train(args: &TrainArgs) -> Result<ExitCode, Error> {
    let cfg = args.resolve()?;
    let ui = args.ui_options()?;
    set_threads(cfg.threads());
    let data = DataSplits::load(&cfg.data, cfg.val_split, cfg.seed)?;
    let log_every = cfg.log_every;
    let mut trainer = Trainer::new(cfg.clone(), data)?;
    // The run directory is made only once the inputs are known to be good.
    let dir = run_dir::create(&cfg)?;
    trainer.set_log(run_dir::MetricsLog::create(&dir)?);
    let (trainer_link, monitor) = protocol::link();
    let handle = trainer.spawn(trainer_link);
    let outcome = if args.headless || !std::io::stdout().is_terminal() {
        Reporter::new(std::io::stdout().lock(), log_every).run(&monitor)
    } else {
        tui::run(&monitor, ui)?
    };
    drop(monitor);
    // The trainer has ended or was told to stop; do not hang on one that is stuck.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !handle.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if handle.is_finished() {
        let _ = handle.join();
    }
    match outcome {
        Outcome::Finished(_) => Ok(ExitCode::SUCCESS),
        Outcome::Failed(message) => Err(Error::Training(message)),
    }
}
