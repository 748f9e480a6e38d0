//! The HDF5 layout of a checkpoint (format version 1):
//!
//! ```text
//! user block (512 bytes)   "CANDLETOP-CKPT" magic, header version, payload length, CRC32 of
//!                          everything after the user block; checked before HDF5 sees the file
//! / attributes             format, format_version, epoch, global_step, created, model_config,
//!                          train_config, classes, data (JSON strings where structured)
//! /model/<name>            every parameter and buffer, float32, PyTorch names and layouts
//!                          (num_batches_tracked: int64 scalars)
//! /optimizer               attributes kind, hyper (JSON), steps;
//!                          /optimizer/state/<param>/{m,v} (momentum buffer / Adam moments)
//! /schedule                attributes kind, spec, state (JSON), lr; change_step, change_lr
//! /rng                     uint64[4]: the dropout RNG
//! /position                attributes epoch, batch, loss_sum, correct, seen, active_secs
//! /history/<metric>        per-epoch arrays (train_loss, val_accuracy, ...); lr_step and lr:
//!                          the LR each step used, at most 10,000 entries
//! ```

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use hdf5::{File, Group};

use super::{Checkpoint, DataInfo, Position};
use crate::model::NamedTensor;
use crate::optim::{Optimizer, OptimizerKind, ParamState};
use crate::protocol::{Confusion, EpochMetrics};

pub const FORMAT: &str = "candletop-checkpoint";
pub const FORMAT_VERSION: u32 = 1;

const USER_BLOCK: usize = 512;
const MAGIC: &[u8; 16] = b"CANDLETOP-CKPT\n\0";
const HEADER_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a candletop checkpoint ({reason})")]
    Foreign { path: PathBuf, reason: String },
    #[error("{path}: integrity check failed ({reason}); the file is truncated or damaged")]
    Integrity { path: PathBuf, reason: String },
    #[error("{path}: unsupported format version {found} (this candletop reads version {FORMAT_VERSION})")]
    Version { path: PathBuf, found: u32 },
    #[error("{path}: {what}")]
    Content { path: PathBuf, what: String },
}

impl CheckpointError {
    /// The reason in a few words, for one line on a screen: the operating system's reason when
    /// there is one ("no space left on device"), even when it sits deep in an HDF5 error stack
    /// hundreds of characters long. `to_string` keeps the whole story.
    pub fn reason(&self) -> String {
        match self {
            CheckpointError::Io { source, .. } => os_reason(source),
            CheckpointError::Content { what, .. } => match errno_in(what) {
                Some(n) => os_reason(&std::io::Error::from_raw_os_error(n)),
                None => first_clause(what),
            },
            CheckpointError::Foreign { reason, .. } | CheckpointError::Integrity { reason, .. } => {
                reason.clone()
            }
            CheckpointError::Version { found, .. } => {
                format!("unsupported format version {found}")
            }
        }
    }
}

/// "No space left on device (os error 28)" -> "no space left on device".
fn os_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The `errno = N` that HDF5 puts in its messages about failed system calls.
fn errno_in(text: &str) -> Option<i32> {
    let at = text.find("errno = ")? + "errno = ".len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|&n| n > 0)
}

/// The text up to its first detail (HDF5 stacks run on after the first colon or comma).
fn first_clause(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let short: String = line.chars().take(120).collect();
    if short.len() < line.len() {
        format!("{short}...")
    } else {
        short
    }
}

fn content(path: &Path, what: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Content {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

// HDF5 file locks are off for both directions. Writes go to a private temp file that is
// renamed into place, and reads check the CRC of a whole file first, so a lock protects
// nothing here. And HDF5 opens files without close-on-exec: a process spawned (by any
// thread) while a file is open inherits its descriptor and, with it, the lock, which then
// outlives our close and makes the next open fail with "unable to lock file" (EAGAIN).

/// Writes `ckpt` to `path` (not atomically: see `writer` for that). Returns the file size.
pub fn write(ckpt: &Checkpoint, path: &Path) -> Result<u64, CheckpointError> {
    reads_back(ckpt).map_err(|e| content(path, format!("not saved: {e}")))?;
    room_for(ckpt, path)?;
    let h5err = |e: hdf5::Error| content(path, format!("writing HDF5: {e}"));
    {
        let file = File::with_options()
            .with_fapl(|p| p.file_locking(false))
            .with_fcpl(|p| p.userblock(USER_BLOCK as u64))
            .create(path)
            .map_err(h5err)?;
        write_contents(&file, ckpt).map_err(h5err)?;
        file.close().map_err(h5err)?;
    }
    seal(path)
}

fn str_attr(loc: &hdf5::Location, name: &str, value: &str) -> hdf5::Result<()> {
    let v: VarLenUnicode = value
        .parse()
        .map_err(|e| hdf5::Error::from(format!("{e}")))?;
    loc.new_attr::<VarLenUnicode>()
        .shape(())
        .create(name)?
        .write_scalar(&v)
}

fn num_attr<T: hdf5::H5Type>(loc: &hdf5::Location, name: &str, value: T) -> hdf5::Result<()> {
    loc.new_attr::<T>()
        .shape(())
        .create(name)?
        .write_scalar(&value)
}

fn dataset<T: hdf5::H5Type>(
    g: &Group,
    name: &str,
    shape: &[usize],
    data: &[T],
) -> hdf5::Result<()> {
    g.new_dataset::<T>()
        .shape(shape)
        .create(name)?
        .write_raw(data)
}

/// Refuses to start a file that cannot be finished. When the disk or the file size limit runs
/// out while HDF5 writes its metadata, its flush at close crashes the process (a null dataset in
/// `H5D__flush_all_cb`), so the room a checkpoint takes is checked first: the tensors and
/// optimizer buffers, and a megabyte for the rest. Another process may still take the space
/// meanwhile; then HDF5 fails on the data, which it reports.
fn room_for(c: &Checkpoint, path: &Path) -> Result<(), CheckpointError> {
    let values = c.tensors.iter().map(|t| t.data.len()).sum::<usize>()
        + (c.optimizer.state.iter())
            .map(|s| s.m.len() + s.v.len())
            .sum::<usize>();
    let need = values as u64 * 4 + (1 << 20);
    let refuse = |errno: i32| CheckpointError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::from_raw_os_error(errno),
    };
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is valid for writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) } == 0
        && limit.rlim_cur != libc::RLIM_INFINITY
        && limit.rlim_cur < need
    {
        return Err(refuse(libc::EFBIG));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(dir) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return Ok(());
    };
    // SAFETY: statvfs is plain data; `dir` is a valid C string and `fs` valid for writes.
    let mut fs: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(dir.as_ptr(), &mut fs) } == 0 {
        let free = fs.f_bavail.saturating_mul(fs.f_frsize);
        if free < need {
            return Err(refuse(libc::ENOSPC));
        }
    }
    Ok(())
}

/// Whether what the reader parses reads back, so that no checkpoint is written that `read`
/// would refuse (a NaN or infinity in JSON is written as null, which is not a number).
fn reads_back(c: &Checkpoint) -> Result<(), String> {
    fn back<T: serde::Serialize + serde::de::DeserializeOwned>(
        what: &str,
        v: &T,
    ) -> Result<(), String> {
        serde_json::from_str::<T>(&json(v))
            .map(drop)
            .map_err(|e| format!("its {what} would not read back ({e})"))
    }
    back("model config", &c.model_config)?;
    back("settings", &c.train_config)?;
    back("data description", &c.data)?;
    back("optimizer settings", &c.optimizer.hyper)?;
    if let Some(s) = &c.schedule {
        back("schedule", s)?;
    }
    back("remedies", &c.remedies)?;
    back("branches", &c.branches)?;
    crate::protocol::LearningRate::new(c.lr).map_err(|e| format!("its learning rate: {e}"))?;
    Ok(())
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("checkpoint metadata serialises")
}

/// A model's tensors and `num_batches_tracked` counters (int64 scalars) in `group`.
fn state_dict(
    group: &hdf5::Group,
    tensors: &[NamedTensor],
    counters: &[(String, i64)],
) -> hdf5::Result<()> {
    for t in tensors {
        dataset(group, &t.name, &t.shape, &t.data)?;
    }
    for (name, n) in counters {
        group
            .new_dataset::<i64>()
            .shape(())
            .create(name.as_str())?
            .write_scalar(n)?;
    }
    Ok(())
}

fn write_contents(file: &File, c: &Checkpoint) -> hdf5::Result<()> {
    str_attr(file, "format", FORMAT)?;
    num_attr(file, "format_version", FORMAT_VERSION)?;
    num_attr(file, "epoch", c.completed_epochs() as u64)?;
    num_attr(file, "global_step", c.global_step)?;
    str_attr(file, "created", &c.created)?;
    str_attr(file, "model_config", &json(&c.model_config))?;
    str_attr(file, "train_config", &json(&c.train_config))?;
    str_attr(file, "classes", &json(&c.classes))?;
    str_attr(file, "data", &json(&c.data))?;

    state_dict(&file.create_group("model")?, &c.tensors, &c.counters)?;
    if let Some(best) = &c.best_model {
        let group = file.create_group("best_model")?;
        num_attr(&group, "epoch", best.epoch as u64)?;
        state_dict(&group, &best.tensors, &best.counters)?;
    }

    let opt = file.create_group("optimizer")?;
    str_attr(&opt, "kind", c.optimizer.kind.name())?;
    str_attr(&opt, "hyper", &json(&c.optimizer.hyper))?;
    num_attr(&opt, "steps", c.optimizer.steps)?;
    let state = opt.create_group("state")?;
    for (name, s) in c.param_names.iter().zip(&c.optimizer.state) {
        let g = state.create_group(name)?;
        if !s.m.is_empty() {
            dataset(&g, "m", &[s.m.len()], &s.m)?;
        }
        if !s.v.is_empty() {
            dataset(&g, "v", &[s.v.len()], &s.v)?;
        }
    }

    let schedule = file.create_group("schedule")?;
    match &c.schedule {
        Some(s) => {
            str_attr(&schedule, "kind", s.spec.name())?;
            str_attr(&schedule, "spec", &s.spec.to_string())?;
            str_attr(&schedule, "state", &json(s))?;
        }
        None => str_attr(&schedule, "kind", "constant")?,
    }
    num_attr(&schedule, "lr", c.lr)?;
    let changes: Vec<u64> = c.lr_changes.iter().map(|x| x.0).collect();
    let values: Vec<f64> = c.lr_changes.iter().map(|x| x.1).collect();
    dataset(&schedule, "change_step", &[changes.len()], &changes)?;
    dataset(&schedule, "change_lr", &[values.len()], &values)?;

    dataset(file, "rng", &[4], &c.rng)?;

    let pos = file.create_group("position")?;
    let p = c.position;
    num_attr(&pos, "epoch", p.epoch as u64)?;
    num_attr(&pos, "batch", p.batch as u64)?;
    num_attr(&pos, "loss_sum", p.loss_sum)?;
    num_attr(&pos, "correct", p.correct)?;
    num_attr(&pos, "seen", p.seen)?;
    num_attr(&pos, "active_secs", p.active_secs)?;

    let history = file.create_group("history")?;
    let n = c.epochs.len();
    let col = |f: fn(&EpochMetrics) -> f64| c.epochs.iter().map(f).collect::<Vec<f64>>();
    dataset(
        &history,
        "epoch",
        &[n],
        &c.epochs.iter().map(|e| e.epoch as u64).collect::<Vec<_>>(),
    )?;
    dataset(&history, "train_loss", &[n], &col(|e| e.train_loss))?;
    dataset(&history, "train_accuracy", &[n], &col(|e| e.train_accuracy))?;
    dataset(&history, "val_loss", &[n], &col(|e| e.val_loss))?;
    dataset(&history, "val_accuracy", &[n], &col(|e| e.val_accuracy))?;
    dataset(&history, "epoch_lr", &[n], &col(|e| e.lr))?;
    dataset(&history, "images_per_sec", &[n], &col(|e| e.images_per_sec))?;
    let classes = c.classes.len();
    let per_class: Vec<f64> = c
        .epochs
        .iter()
        .flat_map(|e| e.val_class_accuracy.iter().copied())
        .collect();
    if per_class.len() == n * classes {
        dataset(&history, "val_class_accuracy", &[n, classes], &per_class)?;
    }
    // Where each class's images went wrong, as two [epoch, class] tables.
    let confusion: Vec<Confusion> = c
        .epochs
        .iter()
        .flat_map(|e| e.val_confusion.iter().copied())
        .collect();
    if n > 0 && confusion.len() == n * classes {
        let taken_for: Vec<u64> = confusion.iter().map(|x| x.class as u64).collect();
        let share: Vec<f64> = confusion.iter().map(|x| x.share).collect();
        dataset(&history, "val_taken_for", &[n, classes], &taken_for)?;
        dataset(&history, "val_taken_for_share", &[n, classes], &share)?;
    }
    let steps: Vec<u64> = c.lr_history.iter().map(|x| x.0).collect();
    let lrs: Vec<f64> = c.lr_history.iter().map(|x| x.1).collect();
    dataset(&history, "lr_step", &[steps.len()], &steps)?;
    dataset(&history, "lr", &[lrs.len()], &lrs)?;
    str_attr(&history, "remedies", &json(&c.remedies))?;
    str_attr(&history, "branches", &json(&c.branches))?;
    Ok(())
}

/// The user block: magic, header version, payload length, CRC32, format version, zeros.
/// The CRC covers every byte of the file except its own four.
fn header(payload_len: u64, crc: u32) -> [u8; USER_BLOCK] {
    let mut h = [0u8; USER_BLOCK];
    h[..16].copy_from_slice(MAGIC);
    h[16..20].copy_from_slice(&HEADER_VERSION.to_le_bytes());
    h[20..28].copy_from_slice(&payload_len.to_le_bytes());
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h[32..36].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

fn crc_of(
    block: &[u8],
    payload: impl FnOnce(&mut crc32fast::Hasher) -> std::io::Result<()>,
) -> std::io::Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&block[..28]);
    hasher.update(&block[32..USER_BLOCK]);
    payload(&mut hasher)?;
    Ok(hasher.finalize())
}

/// Fills in the user block and fsyncs the file.
fn seal(path: &Path) -> Result<u64, CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let payload_len = len.saturating_sub(USER_BLOCK as u64);
    f.seek(SeekFrom::Start(USER_BLOCK as u64)).map_err(io)?;
    let crc = crc_of(&header(payload_len, 0), |hasher| {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            hasher.update(&buf[..n]);
        }
    })
    .map_err(io)?;
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    f.write_all(&header(payload_len, crc)).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(len)
}

/// Checks the user block and the CRC before the HDF5 library parses anything: a damaged file
/// could crash or hang it.
pub fn verify(path: &Path) -> Result<(), CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    verify_bytes(path, &bytes)
}

pub fn verify_bytes(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let bad = |reason: &str| CheckpointError::Integrity {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    if bytes.len() < 36 || &bytes[..16] != MAGIC {
        let reason = if bytes.starts_with(b"\x89HDF\r\n\x1a\n") {
            "an HDF5 file without candletop's header".to_string()
        } else if bytes.len() >= 16 && bytes[..14] == MAGIC[..14] {
            return Err(bad("damaged header"));
        } else if bytes.is_empty() {
            "the file is empty".to_string()
        } else {
            "no candletop header".to_string()
        };
        return Err(CheckpointError::Foreign {
            path: path.to_path_buf(),
            reason,
        });
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if word(16) != HEADER_VERSION {
        return Err(bad("unknown header version"));
    }
    let declared = u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes"));
    if bytes.len() < USER_BLOCK || (bytes.len() - USER_BLOCK) as u64 != declared {
        return Err(bad(&match declared.checked_add(USER_BLOCK as u64) {
            Some(total) => format!("expected {total} bytes, found {}", bytes.len()),
            None => format!("its header declares {declared} bytes, more than any file"),
        }));
    }
    let crc = crc_of(&bytes[..USER_BLOCK], |h| {
        h.update(&bytes[USER_BLOCK..]);
        Ok(())
    })
    .expect("hashing memory cannot fail");
    if crc != word(28) {
        return Err(bad("CRC32 mismatch"));
    }
    let version = word(32);
    if version != FORMAT_VERSION {
        return Err(CheckpointError::Version {
            path: path.to_path_buf(),
            found: version,
        });
    }
    Ok(())
}

fn read_str(path: &Path, loc: &hdf5::Location, name: &str) -> Result<String, CheckpointError> {
    let v: VarLenUnicode = loc.attr(name).and_then(|a| a.read_scalar()).map_err(|e| {
        content(
            path,
            format!("missing or unreadable attribute '{name}': {e}"),
        )
    })?;
    // `as_str` would skip UTF-8 validation.
    std::str::from_utf8(v.as_bytes())
        .map(str::to_string)
        .map_err(|_| content(path, format!("attribute '{name}' is not valid UTF-8")))
}

fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    loc: &hdf5::Location,
    name: &str,
) -> Result<T, CheckpointError> {
    let s = read_str(path, loc, name)?;
    serde_json::from_str(&s).map_err(|e| content(path, format!("attribute '{name}': {e}")))
}

fn read_num<T: hdf5::H5Type>(
    path: &Path,
    loc: &hdf5::Location,
    name: &str,
) -> Result<T, CheckpointError> {
    loc.attr(name).and_then(|a| a.read_scalar()).map_err(|e| {
        content(
            path,
            format!("missing or unreadable attribute '{name}': {e}"),
        )
    })
}

/// Reads `/<group>/<name>` checking its shape first.
fn read_data<T: hdf5::H5Type>(
    path: &Path,
    g: &Group,
    group: &str,
    name: &str,
    shape: &[usize],
) -> Result<Vec<T>, CheckpointError> {
    let ds = g
        .dataset(name)
        .map_err(|_| content(path, format!("missing dataset {group}/{name}")))?;
    let found = ds.shape();
    if found != shape {
        return Err(content(
            path,
            format!("shape mismatch for {group}/{name}: file {found:?}, model {shape:?}"),
        ));
    }
    ds.read_raw::<T>()
        .map_err(|e| content(path, format!("reading {group}/{name}: {e}")))
}

fn read_vec<T: hdf5::H5Type>(
    path: &Path,
    g: &Group,
    group: &str,
    name: &str,
) -> Result<Vec<T>, CheckpointError> {
    let ds = g
        .dataset(name)
        .map_err(|_| content(path, format!("missing dataset {group}/{name}")))?;
    if ds.shape().len() != 1 {
        return Err(content(
            path,
            format!("{group}/{name} is not one-dimensional"),
        ));
    }
    ds.read_raw::<T>()
        .map_err(|e| content(path, format!("reading {group}/{name}: {e}")))
}

/// Reads a checkpoint: integrity first, then the layout above, checking names and shapes
/// against the model the file describes.
pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
    verify(path)?;
    let file = File::with_options()
        .with_fapl(|p| p.file_locking(false))
        .open(path)
        .map_err(|e| content(path, format!("HDF5: {e}")))?;
    let format = read_str(path, &file, "format")?;
    if format != FORMAT {
        return Err(CheckpointError::Foreign {
            path: path.into(),
            reason: format!("format is '{format}'"),
        });
    }
    let version: u32 = read_num(path, &file, "format_version")?;
    if version != FORMAT_VERSION {
        return Err(CheckpointError::Version {
            path: path.into(),
            found: version,
        });
    }
    let model_config: crate::model::ModelConfig = read_json(path, &file, "model_config")?;
    let train_config = read_json(path, &file, "train_config")?;
    let classes: Vec<String> = read_json(path, &file, "classes")?;
    let data: DataInfo = read_json(path, &file, "data")?;
    let created = read_str(path, &file, "created")?;
    let global_step: u64 = read_num(path, &file, "global_step")?;
    if classes.len() != model_config.classes {
        return Err(content(
            path,
            format!(
                "it lists {} class names but its model has {} outputs",
                classes.len(),
                model_config.classes
            ),
        ));
    }
    if model_config.input.contains(&0) || model_config.classes == 0 {
        return Err(content(
            path,
            format!("its model takes empty images ({:?})", model_config.input),
        ));
    }
    let group = |name: &str| {
        file.group(name)
            .map_err(|_| content(path, format!("missing group /{name}")))
    };
    let model = read_model(path, &group("model")?, &model_config)?;
    let optimizer = read_optimizer(path, &group("optimizer")?, &model)?;
    let schedule = read_schedule(path, &group("schedule")?)?;
    let rng_v: Vec<u64> = read_data(path, &file, "", "rng", &[4])?;
    let position = read_position(path, &group("position")?)?;
    let history = read_history(path, &group("history")?, classes.len())?;
    // Only with early stopping's restore_best.
    let best_model = match file.group("best_model") {
        Ok(g) => {
            let epoch: u64 = read_num(path, &g, "epoch")?;
            let part = read_model(path, &g, &model_config)?;
            Some(super::BestModel {
                epoch: epoch as usize,
                tensors: part.tensors,
                counters: part.counters,
            })
        }
        Err(_) => None,
    };
    Ok(Checkpoint {
        created,
        global_step,
        train_config,
        data,
        model_config,
        classes,
        tensors: model.tensors,
        counters: model.counters,
        param_names: model.param_names,
        optimizer,
        lr: schedule.lr,
        schedule: schedule.state,
        lr_changes: schedule.changes,
        rng: [rng_v[0], rng_v[1], rng_v[2], rng_v[3]],
        position,
        epochs: history.epochs,
        lr_history: history.lr,
        remedies: history.remedies,
        branches: history.branches,
        best_model,
    })
}

/// The model's tensors and counters, as the model the file describes lays them out.
struct ModelPart {
    tensors: Vec<NamedTensor>,
    counters: Vec<(String, i64)>,
    /// The trainable tensors' names.
    param_names: Vec<String>,
}

fn read_model(
    path: &Path,
    model: &hdf5::Group,
    config: &crate::model::ModelConfig,
) -> Result<ModelPart, CheckpointError> {
    let expected = crate::model::state_dict_layout(config).map_err(|e| content(path, e))?;
    let mut part = ModelPart {
        tensors: Vec::new(),
        counters: Vec::new(),
        param_names: Vec::new(),
    };
    for entry in &expected {
        match entry {
            crate::model::StateEntry::Tensor {
                name,
                shape,
                trainable,
            } => {
                let data = read_data::<f32>(path, model, "model", name, shape)?;
                if *trainable {
                    part.param_names.push(name.clone());
                }
                part.tensors.push(NamedTensor {
                    name: name.clone(),
                    shape: shape.clone(),
                    data,
                });
            }
            crate::model::StateEntry::Counter { name } => {
                let n = read_data::<i64>(path, model, "model", name, &[])?;
                part.counters
                    .push((name.clone(), n.first().copied().unwrap_or(0)));
            }
        }
    }
    Ok(part)
}

/// The optimizer: whatever buffers the file has, each the size of its parameter; whether they
/// are the ones the resumed optimizer needs is decided when resuming.
fn read_optimizer(
    path: &Path,
    opt: &hdf5::Group,
    model: &ModelPart,
) -> Result<Optimizer, CheckpointError> {
    let kind: OptimizerKind =
        serde_json::from_value(serde_json::Value::String(read_str(path, opt, "kind")?))
            .map_err(|e| content(path, format!("optimizer kind: {e}")))?;
    let state_group = opt
        .group("state")
        .map_err(|_| content(path, "missing group /optimizer/state"))?;
    let mut state = Vec::new();
    let params = model.tensors.iter();
    for t in params.filter(|t| model.param_names.contains(&t.name)) {
        let name = &t.name;
        let g = state_group
            .group(name)
            .map_err(|_| content(path, format!("missing group /optimizer/state/{name}")))?;
        let gp = format!("optimizer/state/{name}");
        let buffer = |b: &str| -> Result<Vec<f32>, CheckpointError> {
            if g.dataset(b).is_ok() {
                read_data(path, &g, &gp, b, &[t.data.len()])
            } else {
                Ok(Vec::new())
            }
        };
        state.push(ParamState {
            m: buffer("m")?,
            v: buffer("v")?,
        });
    }
    Ok(Optimizer {
        kind,
        hyper: read_json(path, opt, "hyper")?,
        steps: read_num(path, opt, "steps")?,
        state,
    })
}

struct SchedulePart {
    lr: f64,
    state: Option<crate::schedule::Schedule>,
    changes: Vec<(u64, f64)>,
}

fn read_schedule(path: &Path, schedule: &hdf5::Group) -> Result<SchedulePart, CheckpointError> {
    let state = if schedule.attr("state").is_ok() {
        Some(read_json(path, schedule, "state")?)
    } else {
        None
    };
    let change_step: Vec<u64> = read_vec(path, schedule, "schedule", "change_step")?;
    let change_lr: Vec<f64> = read_vec(path, schedule, "schedule", "change_lr")?;
    if change_step.len() != change_lr.len() {
        return Err(content(
            path,
            "schedule/change_step and change_lr differ in length",
        ));
    }
    Ok(SchedulePart {
        lr: read_num(path, schedule, "lr")?,
        state,
        changes: change_step.into_iter().zip(change_lr).collect(),
    })
}

fn read_position(path: &Path, pos: &hdf5::Group) -> Result<Position, CheckpointError> {
    Ok(Position {
        epoch: read_num::<u64>(path, pos, "epoch")? as usize,
        batch: read_num::<u64>(path, pos, "batch")? as usize,
        loss_sum: read_num(path, pos, "loss_sum")?,
        correct: read_num(path, pos, "correct")?,
        seen: read_num(path, pos, "seen")?,
        active_secs: read_num(path, pos, "active_secs")?,
    })
}

struct HistoryPart {
    epochs: Vec<EpochMetrics>,
    lr: Vec<(u64, f64)>,
    remedies: Vec<crate::protocol::RemedyRecord>,
    branches: Vec<crate::protocol::BranchRecord>,
}

fn read_history(
    path: &Path,
    history: &hdf5::Group,
    classes: usize,
) -> Result<HistoryPart, CheckpointError> {
    let epoch_no: Vec<u64> = read_vec(path, history, "history", "epoch")?;
    let n = epoch_no.len();
    let col = |name: &str| read_data::<f64>(path, history, "history", name, &[n]);
    let (tl, ta, vl, va, elr, ips) = (
        col("train_loss")?,
        col("train_accuracy")?,
        col("val_loss")?,
        col("val_accuracy")?,
        col("epoch_lr")?,
        col("images_per_sec")?,
    );
    let lr_step: Vec<u64> = read_vec(path, history, "history", "lr_step")?;
    let lr_values: Vec<f64> = read_data(path, history, "history", "lr", &[lr_step.len()])?;
    let per_class: Vec<f64> = if history.dataset("val_class_accuracy").is_ok() {
        read_data(
            path,
            history,
            "history",
            "val_class_accuracy",
            &[n, classes],
        )?
    } else {
        Vec::new()
    };
    // Files from before the confusion summary have none.
    let confusion: Vec<Confusion> = if history.dataset("val_taken_for").is_ok() {
        let shape = [n, classes];
        let taken_for: Vec<u64> = read_data(path, history, "history", "val_taken_for", &shape)?;
        let share: Vec<f64> = read_data(path, history, "history", "val_taken_for_share", &shape)?;
        if let Some(bad) = taken_for.iter().find(|&&c| c as usize >= classes) {
            return Err(content(
                path,
                format!("history/val_taken_for names class {bad} of {classes}"),
            ));
        }
        taken_for
            .into_iter()
            .zip(share)
            .map(|(class, share)| Confusion {
                class: class as usize,
                share,
            })
            .collect()
    } else {
        Vec::new()
    };
    // Files from before remedies have none.
    let remedies = if history.attr("remedies").is_ok() {
        read_json(path, history, "remedies")?
    } else {
        Vec::new()
    };
    // Files from before what-if branches have none.
    let branches = if history.attr("branches").is_ok() {
        read_json(path, history, "branches")?
    } else {
        Vec::new()
    };
    let epochs = (0..n)
        .map(|i| EpochMetrics {
            epoch: epoch_no[i] as usize,
            step: 0,
            train_loss: tl[i],
            train_accuracy: ta[i],
            val_loss: vl[i],
            val_accuracy: va[i],
            val_class_accuracy: per_class
                .get(i * classes..(i + 1) * classes)
                .map(<[f64]>::to_vec)
                .unwrap_or_default(),
            val_confusion: confusion
                .get(i * classes..(i + 1) * classes)
                .map(<[Confusion]>::to_vec)
                .unwrap_or_default(),
            lr: elr[i],
            images_per_sec: ips[i],
            elapsed_secs: 0.0,
        })
        .collect();
    Ok(HistoryPart {
        epochs,
        lr: lr_step.into_iter().zip(lr_values).collect(),
        remedies,
        branches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What hdf5-metno reported for a checkpoint written to a full disk (seen on a 3 MB tmpfs).
    const DISK_FULL: &str = "writing HDF5: H5Dwrite(): can't synchronously write data: file write failed: time = Tue Dec  1 02:45:43 2026, filename = 'r/checkpoints/.last.h5.tmp-13191', file descriptor = 6, errno = 28, error message = 'No space left on device', buf = 0x55a6cfa61750, total write size = 324096, bytes this sub-write = 324096, offset = 3137536";

    #[test]
    fn a_header_declaring_more_than_any_file_says_so_without_wrapping() {
        let mut bytes = vec![0u8; USER_BLOCK + 8];
        bytes[..16].copy_from_slice(MAGIC);
        bytes[16..20].copy_from_slice(&HEADER_VERSION.to_le_bytes());
        bytes[20..28].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = verify_bytes(Path::new("x.h5"), &bytes)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("declares 18446744073709551615 bytes, more than any file"),
            "{e}"
        );
        bytes[20..28].copy_from_slice(&100u64.to_le_bytes());
        let e = verify_bytes(Path::new("x.h5"), &bytes)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected 612 bytes, found 520"), "{e}");
    }

    #[test]
    fn a_failed_write_has_a_short_reason_and_keeps_the_whole_story() {
        let e = content(Path::new("r/checkpoints/.last.h5.tmp-1"), DISK_FULL);
        assert_eq!(e.reason(), "no space left on device");
        assert!(e.to_string().contains("offset = 3137536"));
        let io = CheckpointError::Io {
            path: "x.h5".into(),
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(io.reason(), "permission denied");
        let plain = content(Path::new("x.h5"), "missing dataset model/a");
        assert_eq!(plain.reason(), "missing dataset model/a");
        assert_eq!(errno_in("errno = x"), None);
        assert_eq!(errno_in("errno = 0, ..."), None);
        let long = content(Path::new("x.h5"), "y".repeat(500));
        assert_eq!(long.reason().len(), 123);
    }
}
