//! What each subcommand does, from a parsed command line to an exit code: one file a
//! subcommand. The one place that wires the core (data, model, training, checkpoints) to a
//! front end.

mod attach;
mod data_info;
mod diagnose;
mod docs;
mod eval;
mod export;
mod inspect;
mod lr_find;
mod ls;
mod plot;
mod recorded;
mod train;
mod view;

use std::process::ExitCode;

use crate::bench;
use crate::cli::{Cli, Cmd};
use crate::error::Error;

pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        None => train::train(&cli.train),
        Some(Cmd::Train(t)) => train::train(&t),
        Some(Cmd::Bench(b)) => bench::run(&b),
        Some(Cmd::Eval(e)) => eval::eval(&e),
        Some(Cmd::Inspect(i)) => inspect::inspect(&i),
        Some(Cmd::LrFind(f)) => lr_find::find_lr(&f),
        Some(Cmd::DataInfo(d)) => data_info::data_info(&d),
        Some(Cmd::Diagnose(d)) => diagnose::diagnose(&d),
        Some(Cmd::Attach(a)) => attach::attach(&a),
        Some(Cmd::Ls(l)) => ls::ls(&l),
        Some(Cmd::View(v)) => view::view(&v),
        Some(Cmd::Plot(p)) => plot::plot(&p),
        Some(Cmd::Export(x)) => export::export(&x),
        Some(Cmd::Completions(c)) => docs::completions(&c),
        Some(Cmd::Man(m)) => docs::man(&m),
    }
}
