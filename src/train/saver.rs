//! Checkpoints of a running training: snapshots handed to the background writer, and its
//! results turned into events.

use std::path::PathBuf;
use std::sync::Arc;

use crate::checkpoint::{Checkpoint, CheckpointWriter, SaveKind, SaveResult};
use crate::protocol::Event;

pub struct Saver {
    writer: CheckpointWriter,
    /// How long the last snapshot held the training thread.
    hold_ms: f64,
}

impl Saver {
    /// A writer into `dir` keeping the newest `keep_last` epoch checkpoints.
    pub fn spawn(dir: PathBuf, keep_last: usize) -> std::io::Result<Self> {
        Ok(Self {
            writer: CheckpointWriter::spawn(dir, keep_last)?,
            hold_ms: 0.0,
        })
    }

    /// Queues `ckpt` under every name in `kinds`; `hold_ms` is what taking it cost the trainer.
    pub fn queue(&mut self, ckpt: Checkpoint, hold_ms: f64, kinds: &[SaveKind]) {
        self.hold_ms = hold_ms;
        let ckpt = Arc::new(ckpt);
        for k in kinds {
            self.writer.save(ckpt.clone(), k.clone());
        }
    }

    /// The saves finished since the last call, as events.
    pub fn finished(&mut self) -> Vec<Event> {
        let done: Vec<SaveResult> = std::iter::from_fn(|| self.writer.try_result()).collect();
        done.into_iter().map(|r| self.event(r)).collect()
    }

    /// Waits for every queued save; the results not yet reported, as events.
    pub fn finish(&mut self) -> Vec<Event> {
        let rest = self.writer.finish();
        rest.into_iter().map(|r| self.event(r)).collect()
    }

    fn event(&self, r: SaveResult) -> Event {
        let path = r.path.display().to_string();
        match r.outcome {
            Ok((bytes, secs)) => Event::CheckpointSaved {
                step: r.step,
                epoch: r.epoch,
                path,
                bytes,
                write_secs: secs,
                hold_ms: self.hold_ms,
            },
            Err(f) => Event::CheckpointFailed {
                step: r.step,
                epoch: r.epoch,
                path,
                reason: f.reason,
                detail: f.detail,
            },
        }
    }
}
