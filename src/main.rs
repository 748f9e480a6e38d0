use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

fn main() -> ExitCode {
    if std::env::var_os("CANDLETOP_MALLOC_DEFAULTS").is_none() {
        candletop::runtime::tune_allocator();
    }
    let cli = match candletop::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            eprintln!("candletop: {}", candletop::cli::one_line(&e));
            return ExitCode::from(2);
        }
    };
    match candletop::cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("candletop: {e}");
            ExitCode::from(if e.is_usage() { 2 } else { 1 })
        }
    }
}
