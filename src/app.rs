//! What each subcommand does, from a parsed command line to an exit code.

use std::process::ExitCode;

use crate::cli::{Cli, Cmd, TrainArgs};
use crate::data::DataSplits;
use crate::headless::{Outcome, Reporter};
use crate::train::Trainer;
use crate::{bench, protocol, run_dir, Error};

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
    set_threads(cfg.threads());
    let data = DataSplits::load(&cfg.data, cfg.val_split, cfg.seed)?;
    let log_every = cfg.log_every;
    let mut trainer = Trainer::new(cfg.clone(), data)?;
    // The run directory is made only once the inputs are known to be good.
    let dir = run_dir::create(&cfg)?;
    trainer.set_log(run_dir::MetricsLog::create(&dir)?);
    let (trainer_link, monitor) = protocol::link();
    let handle = trainer.spawn(trainer_link);
    let outcome = Reporter::new(std::io::stdout().lock(), log_every).run(&monitor);
    drop(monitor);
    let _ = handle.join();
    match outcome {
        Outcome::Finished(_) => Ok(ExitCode::SUCCESS),
        Outcome::Failed(message) => Err(Error::Training(message)),
    }
}
