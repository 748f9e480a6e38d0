//! Writes checkpoints on a background thread, atomically: a temporary file in the same
//! directory, fsync, rename over the final name, fsync of the directory. A crash at any moment
//! leaves the old file or the new one under the final name, never a partial one. The training
//! thread hands over a snapshot and goes on; results come back on a channel it polls.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{unbounded, Receiver, Sender};
use serde::Serialize;

use super::{h5, Checkpoint, CheckpointError};

/// Which file a save writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "epoch")]
pub enum SaveKind {
    /// `epoch-NNN.h5`, at the end of every epoch (older ones pruned).
    Epoch(usize),
    /// `best.h5`, when the validation metric improves.
    Best,
    /// `last.h5`: on `s`, every N steps, and on every way out.
    Last,
}

impl SaveKind {
    pub fn file_name(&self) -> String {
        match self {
            SaveKind::Epoch(n) => format!("epoch-{n:03}.h5"),
            SaveKind::Best => "best.h5".into(),
            SaveKind::Last => "last.h5".into(),
        }
    }
}

/// The outcome of one save.
#[derive(Debug, Clone, PartialEq)]
pub struct SaveResult {
    pub kind: SaveKind,
    pub step: u64,
    /// The epoch that step belongs to ([`Checkpoint::epoch_of_step`]).
    pub epoch: usize,
    pub path: PathBuf,
    /// File size in bytes and seconds the write took, or what went wrong.
    pub outcome: Result<(u64, f64), SaveFailure>,
}

/// Why a save failed: a few words for the screen, and everything the libraries said.
#[derive(Debug, Clone, PartialEq)]
pub struct SaveFailure {
    pub reason: String,
    pub detail: String,
}

impl From<CheckpointError> for SaveFailure {
    fn from(e: CheckpointError) -> Self {
        Self {
            reason: e.reason(),
            detail: e.to_string(),
        }
    }
}

struct Job {
    ckpt: Arc<Checkpoint>,
    kind: SaveKind,
}

pub struct CheckpointWriter {
    jobs: Option<Sender<Job>>,
    results: Receiver<SaveResult>,
    handle: Option<JoinHandle<()>>,
}

impl CheckpointWriter {
    /// A writer into `dir` that keeps the last `keep_last` epoch checkpoints.
    pub fn spawn(dir: PathBuf, keep_last: usize) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let (jobs_tx, jobs_rx) = unbounded::<Job>();
        let (results_tx, results_rx) = unbounded();
        let handle = std::thread::Builder::new()
            .name("candletop-checkpoints".into())
            .spawn(move || {
                for job in jobs_rx {
                    let path = dir.join(job.kind.file_name());
                    let t0 = Instant::now();
                    let outcome = write_atomic(&job.ckpt, &path)
                        .map(|bytes| (bytes, t0.elapsed().as_secs_f64()))
                        .map_err(SaveFailure::from);
                    if outcome.is_ok() {
                        if let SaveKind::Epoch(_) = job.kind {
                            prune(&dir, keep_last);
                        }
                    }
                    let _ = results_tx.send(SaveResult {
                        kind: job.kind,
                        step: job.ckpt.global_step,
                        epoch: job.ckpt.epoch_of_step(),
                        path,
                        outcome,
                    });
                }
            })?;
        Ok(Self {
            jobs: Some(jobs_tx),
            results: results_rx,
            handle: Some(handle),
        })
    }

    /// Queues a save; never blocks.
    pub fn save(&self, ckpt: Arc<Checkpoint>, kind: SaveKind) {
        if let Some(tx) = &self.jobs {
            let _ = tx.send(Job { ckpt, kind });
        }
    }

    pub fn try_result(&self) -> Option<SaveResult> {
        self.results.try_recv().ok()
    }

    /// Waits for every queued save and returns the results not yet collected.
    pub fn finish(&mut self) -> Vec<SaveResult> {
        self.jobs = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.results.try_iter().collect()
    }
}

impl Drop for CheckpointWriter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Temp file beside the target, fsync, rename, fsync the directory.
pub fn write_atomic(ckpt: &Checkpoint, path: &Path) -> Result<u64, CheckpointError> {
    // `h5::write` fsyncs the file when it seals it.
    replace_atomically(path, |tmp| h5::write(ckpt, tmp))
}

/// Writes `path` whole or not at all: `write` makes a file beside it (and fsyncs it), which is
/// renamed over `path`, and the directory is synced. On failure the temporary file goes and
/// whatever `path` held stays.
pub fn replace_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<u64, CheckpointError>,
) -> Result<u64, CheckpointError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("checkpoint");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = match write(&tmp) {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(bytes)
}

/// Deletes all but the newest `keep` `epoch-NNN.h5` files.
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut epochs: Vec<(usize, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name
                .strip_prefix("epoch-")?
                .strip_suffix(".h5")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    epochs.sort();
    let excess = epochs.len().saturating_sub(keep);
    for (_, p) in epochs.into_iter().take(excess) {
        let _ = std::fs::remove_file(p);
    }
}
