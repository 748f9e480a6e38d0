//! `candletop export RUN_DIR --csv FILE` and `candletop export CHECKPOINT --safetensors FILE`.

use std::process::ExitCode;

use crate::checkpoint;
use crate::cli::ExportArgs;
use crate::error::Error;
use crate::format::human_bytes;
use crate::run_dir::RunDir;

use super::recorded::read_records;

pub(super) fn export(args: &ExportArgs) -> Result<ExitCode, Error> {
    let source = &args.source;
    let shown = source.display();
    if let Some(out) = &args.csv {
        if source.is_file() {
            return Err(Error::Usage(format!(
                "{shown}: --csv reads a run directory (with metrics.jsonl), not a file"
            )));
        }
        let recorded = read_records(source)?;
        let text = crate::export::csv(&recorded);
        // Where the table goes is the user's input: a path that cannot be written is exit 2.
        RunDir::write_atomic(out, &text).map_err(|e| Error::Usage(e.to_string()))?;
        let rows = text.lines().count().saturating_sub(1);
        println!("wrote {} ({rows} rows)", out.display());
    }
    if let Some(out) = &args.safetensors {
        if source.is_dir() {
            let ckpts = RunDir::new(source).checkpoints();
            return Err(Error::Usage(format!(
                "{shown}: --safetensors reads a checkpoint file, e.g. {}",
                ckpts.join("best.h5").display()
            )));
        }
        let ckpt = checkpoint::read(source)?;
        let bytes = checkpoint::safetensors::write(&ckpt, out)?;
        println!(
            "wrote {} ({} tensors, {}) from step {}",
            out.display(),
            ckpt.tensors.len() + ckpt.counters.len(),
            human_bytes(bytes),
            ckpt.global_step
        );
    }
    Ok(ExitCode::SUCCESS)
}
