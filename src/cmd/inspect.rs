//! `candletop inspect FILE.h5`: a checkpoint summarised and checked.

use std::io::Write;
use std::process::ExitCode;

use crate::checkpoint;
use crate::cli::InspectArgs;
use crate::error::Error;
use crate::format::{group_thousands, human_bytes};

pub(super) fn inspect(args: &InspectArgs) -> Result<ExitCode, Error> {
    let path = &args.file;
    // Integrity first, as its own line: the most useful fact about a file that will not load.
    let integrity = checkpoint::h5::verify(path);
    let mut out = std::io::stdout().lock();
    if let Err(e) = integrity {
        return Err(e.into());
    }
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let c = checkpoint::read(path)?;
    let m = &c.model_config;
    let _ = writeln!(out, "{}  ({})", path.display(), human_bytes(size));
    let _ = writeln!(out, "  integrity   ok (CRC32 of the HDF5 payload matches)");
    let _ = writeln!(
        out,
        "  format      {} version {}, created {}",
        checkpoint::FORMAT,
        checkpoint::FORMAT_VERSION,
        c.created
    );
    let _ = writeln!(
        out,
        "  progress    {} epochs done, step {}; resumes at epoch {} batch {}",
        c.completed_epochs(),
        c.global_step,
        c.position.epoch,
        c.position.batch
    );
    let _ = writeln!(
        out,
        "  model       {}  input {}x{}x{}, {} classes, {} params",
        m.describe(),
        m.input[0],
        m.input[1],
        m.input[2],
        m.classes,
        group_thousands(c.param_count())
    );
    let _ = writeln!(
        out,
        "  optimizer   {} after {} steps, lr {:.3e}, {}",
        c.optimizer.kind.name(),
        c.optimizer.steps,
        c.lr,
        serde_json::to_string(&c.optimizer.hyper).unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "  data        {} ({}), classes {}",
        c.data.source,
        c.data.norm().describe(),
        c.classes.join(", ")
    );
    let augment = &c.train_config.augment;
    let _ = writeln!(
        out,
        "  augment     {} ({})",
        if augment.is_empty() {
            "none".into()
        } else {
            augment.to_string()
        },
        match c.data.augmenting {
            Some(true) => "on",
            Some(false) => "switched off",
            None if augment.is_empty() => "off",
            None => "on",
        }
    );
    if let Some(s) = &c.schedule {
        let _ = writeln!(
            out,
            "  schedule    {} ({}), next step's lr {:.3e}",
            s.spec.describe(),
            s.spec,
            s.lr_at(c.global_step + 1)
        );
    }
    if !c.lr_changes.is_empty() {
        let changes: Vec<String> = c
            .lr_changes
            .iter()
            .map(|(s, lr)| format!("{lr:.2e} from step {}", s + 1))
            .collect();
        let _ = writeln!(out, "  lr history  {}", changes.join(", "));
    }
    let _ = writeln!(out, "  tensors     {}", c.tensors.len() + c.counters.len());
    for t in &c.tensors {
        let _ = writeln!(out, "    /model/{:<28} {:?}", t.name, t.shape);
    }
    for (name, n) in &c.counters {
        let _ = writeln!(out, "    /model/{name:<28} int64 scalar = {n}");
    }
    if !c.epochs.is_empty() {
        let _ = writeln!(
            out,
            "  metrics (last {} of {} epochs)",
            c.epochs.len().min(5),
            c.epochs.len()
        );
        for e in c.epochs.iter().rev().take(5).rev() {
            let _ = writeln!(
                out,
                "    epoch {:>3}  train loss {:.4} acc {:6.2}%  val loss {:.4} acc {:6.2}%  lr {:.2e}",
                e.epoch,
                e.train_loss,
                100.0 * e.train_accuracy,
                e.val_loss,
                100.0 * e.val_accuracy,
                e.lr
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
