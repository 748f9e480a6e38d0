//! `candletop completions SHELL` and `candletop man`: the command line described for a shell
//! and for man, both made from the one definition in `cli`.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{self, CompletionsArgs, ManArgs};
use crate::error::Error;

pub(super) fn completions(args: &CompletionsArgs) -> Result<ExitCode, Error> {
    write_stdout(&cli::completion_script(args.shell))
}

pub(super) fn man(args: &ManArgs) -> Result<ExitCode, Error> {
    let Some(dir) = &args.dir else {
        return write_stdout(&cli::man_page()?);
    };
    let shown = dir.display();
    let failed = |e: std::io::Error| Error::Usage(format!("--dir {shown}: {e}"));
    std::fs::create_dir_all(dir).map_err(failed)?;
    cli::write_man_pages(dir).map_err(failed)?;
    println!("wrote the manual pages into {shown}");
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<ExitCode, Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
