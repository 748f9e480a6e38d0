//! The run directory: `config.toml` (the resolved configuration) and `metrics.jsonl` (one JSON
//! object per line: every epoch, every N steps, every user action and notable event).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::RunConfig;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct RunDirError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunDirError + '_ {
    move |source| RunDirError {
        path: path.to_path_buf(),
        source,
    }
}

/// The run directory a run will use: the one given, else a new `runs/<timestamp>`.
pub fn choose(config: &RunConfig) -> PathBuf {
    match &config.run_dir {
        Some(d) => d.clone(),
        None => {
            let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
            let base = PathBuf::from("runs");
            let mut dir = base.join(&stamp);
            let mut n = 2;
            while dir.exists() {
                dir = base.join(format!("{stamp}-{n}"));
                n += 1;
            }
            dir
        }
    }
}

/// Creates the run directory (`choose`) and writes `config.toml`.
pub fn create(config: &RunConfig) -> Result<PathBuf, RunDirError> {
    let dir = choose(config);
    let new = !dir.exists();
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    // A run directory candletop makes is its user's alone: it holds the run's socket.
    if new {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io_err(&dir))?;
    }
    // Without the run directory, so that `--config <this file>` repeats the run in a new one
    // rather than writing over this one.
    let mut resolved = config.clone();
    resolved.run_dir = None;
    let text = format!(
        "# The resolved configuration of the run in {}.\n# `candletop --config <this file>` repeats it in a new run directory.\n\n{}",
        dir.display(),
        resolved.to_toml()
    );
    let path = dir.join("config.toml");
    fs::write(&path, text).map_err(io_err(&path))?;
    Ok(dir)
}

/// Writes `<dir>/suggested.toml`, a config for a new run, with `note` (one line) on top; the
/// file is whole or absent (written beside, then renamed).
pub fn write_suggested(dir: &Path, config: &RunConfig, note: &str) -> Result<PathBuf, RunDirError> {
    let path = dir.join("suggested.toml");
    let tmp = dir.join(".suggested.toml.tmp");
    let mut resolved = config.clone();
    resolved.run_dir = None;
    let text = format!(
        "# {note}\n# `candletop --config {}` starts it in a new run directory.\n\n{}",
        path.display(),
        resolved.to_toml()
    );
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    };
    write().map_err(io_err(&path))?;
    Ok(path)
}

/// Appends records to `metrics.jsonl`, each with its type, the global step, the epoch, the wall
/// time (ISO 8601) and the seconds since the run started.
pub struct MetricsLog {
    path: PathBuf,
    out: BufWriter<File>,
    started: Instant,
}

impl MetricsLog {
    pub fn create(dir: &Path) -> Result<Self, RunDirError> {
        let path = dir.join("metrics.jsonl");
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(Self {
            path,
            out: BufWriter::new(file),
            started: Instant::now(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `record` (a struct or a `type`-tagged enum) with the common fields added.
    pub fn write(
        &mut self,
        kind: &str,
        step: u64,
        epoch: usize,
        record: &impl Serialize,
    ) -> Result<(), RunDirError> {
        let mut obj = match serde_json::to_value(record) {
            Ok(Value::Object(m)) => m,
            Ok(other) => Map::from_iter([("value".to_string(), other)]),
            Err(e) => Map::from_iter([("error".to_string(), Value::String(e.to_string()))]),
        };
        // Events carry their own `type`; the first keys of every line are the same.
        let mut line = Map::new();
        line.insert(
            "type".into(),
            obj.remove("type").unwrap_or_else(|| kind.into()),
        );
        line.insert(
            "step".into(),
            obj.remove("step").unwrap_or_else(|| step.into()),
        );
        line.insert(
            "epoch".into(),
            obj.remove("epoch").unwrap_or_else(|| epoch.into()),
        );
        line.insert(
            "time".into(),
            chrono::Local::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
                .into(),
        );
        line.insert(
            "elapsed_secs".into(),
            ((self.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0).into(),
        );
        // The common fields come first and win over a record's own (e.g. `elapsed_secs`).
        for (k, v) in obj {
            line.entry(k).or_insert(v);
        }
        let text = Value::Object(line).to_string();
        writeln!(self.out, "{text}")
            .and_then(|_| self.out.flush())
            .map_err(io_err(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_type_step_epoch_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let run = create(&RunConfig {
            run_dir: Some(dir.path().join("r")),
            ..Default::default()
        })
        .unwrap();
        let back = RunConfig::from_toml_file(&run.join("config.toml")).unwrap();
        assert_eq!(back.run_dir, None);
        assert_eq!(back.lr, RunConfig::default().lr);
        let mut log = MetricsLog::create(&run).unwrap();
        log.write("step", 20, 1, &serde_json::json!({"loss": 0.5}))
            .unwrap();
        log.write(
            "ignored",
            7,
            2,
            &crate::protocol::Event::Paused { step: 21 },
        )
        .unwrap();
        let text = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["type"], "step");
        assert_eq!(lines[0]["step"], 20);
        assert_eq!(lines[0]["loss"], 0.5);
        assert_eq!(lines[1]["type"], "paused");
        assert_eq!(lines[1]["step"], 21);
        assert_eq!(lines[1]["epoch"], 2);
        assert!(lines[1]["time"].as_str().unwrap().contains('T'));
    }
}
