//! The run directory: every file a run leaves, named here once (`RunDir`), and its record,
//! `metrics.jsonl`: one `Record` a line, written by `MetricsLog` and read back by `read_records`
//! for every reader (view, replay, diagnose, ls, plot).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Map, Value};

use crate::protocol::{Record, RecordProblem};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct RunDirError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl RunDirError {
    /// True when the directory the user chose is at fault (not theirs to write, read-only, a
    /// file), rather than the machine.
    pub fn is_usage(&self) -> bool {
        use std::io::ErrorKind::*;
        matches!(
            self.source.kind(),
            PermissionDenied | ReadOnlyFilesystem | NotADirectory | IsADirectory | AlreadyExists
        )
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunDirError + '_ {
    move |source| RunDirError {
        path: path.to_path_buf(),
        source,
    }
}

/// The socket's file name (error messages name it).
pub const SOCKET: &str = "candletop.sock";

/// A run's directory and the names of what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The directory given, else a new `runs/<timestamp>` (numbered if taken).
    pub fn choose(given: Option<&Path>) -> Self {
        if let Some(d) = given {
            return Self::new(d);
        }
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
        let base = PathBuf::from("runs");
        let mut dir = base.join(&stamp);
        let mut n = 2;
        while dir.exists() {
            dir = base.join(format!("{stamp}-{n}"));
            n += 1;
        }
        Self::new(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How legends and listings name the run: the directory's own name.
    pub fn name(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().to_string(),
        )
    }

    /// The resolved configuration (`candletop --config` repeats the run from it).
    pub fn config(&self) -> PathBuf {
        self.path.join("config.toml")
    }

    /// The run's record, one `Record` a line.
    pub fn metrics(&self) -> PathBuf {
        self.path.join("metrics.jsonl")
    }

    /// `epoch-NNN.h5`, `best.h5` and `last.h5`.
    pub fn checkpoints(&self) -> PathBuf {
        self.path.join("checkpoints")
    }

    /// Where a run that outlives its terminal is served (mode 0600).
    pub fn socket(&self) -> PathBuf {
        self.path.join(SOCKET)
    }

    /// The socket's refusals (another user, bad frames).
    pub fn socket_log(&self) -> PathBuf {
        self.path.join("socket.log")
    }

    /// What a served run prints (its headless lines, and anything on stderr).
    pub fn trainer_log(&self) -> PathBuf {
        self.path.join("trainer.log")
    }

    /// The doctor's restart remedy: a config for a new run.
    pub fn suggested(&self) -> PathBuf {
        self.path.join("suggested.toml")
    }

    /// What `--plot` draws when the run ends.
    pub fn figure(&self) -> PathBuf {
        self.path.join("figure.svg")
    }

    /// Makes the directory; one candletop makes is its user's alone (it holds the socket).
    pub fn create(&self) -> Result<(), RunDirError> {
        let new = !self.path.exists();
        fs::create_dir_all(&self.path).map_err(io_err(&self.path))?;
        if new {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700))
                .map_err(io_err(&self.path))?;
        }
        Ok(())
    }

    /// Writes `text` to `path` whole or not at all: beside it, fsync, rename.
    pub fn write_atomic(path: &Path, text: &str) -> Result<(), RunDirError> {
        let name = path
            .file_name()
            .map_or_else(|| "file".into(), |n| n.to_string_lossy().to_string());
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err(path)(e)
        })
    }

    /// Every record of metrics.jsonl (see `Recorded`).
    pub fn read_records(&self) -> Result<Recorded, RecordError> {
        let path = self.metrics();
        Recorded::parse(&self.metrics_text()?, &path)
    }

    /// The text of metrics.jsonl.
    pub fn metrics_text(&self) -> Result<String, RecordError> {
        let path = self.metrics();
        fs::read_to_string(&path).map_err(|source| RecordError::Io { path, source })
    }
}

/// Appends records to `metrics.jsonl`, each line starting with its type, the global step, the
/// epoch, the wall time (ISO 8601) and the seconds since the run started.
pub struct MetricsLog {
    path: PathBuf,
    out: File,
    /// The file's length after the last whole line: a write that fails partway (a full
    /// disk) is cut back to it, so that the file never ends in a torn line.
    whole: u64,
    started: Instant,
}

impl MetricsLog {
    pub fn create(dir: &RunDir) -> Result<Self, RunDirError> {
        let path = dir.metrics();
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let whole = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            path,
            out: file,
            whole,
            started: Instant::now(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one record at `step` of `epoch` (a record's own step and epoch win).
    pub fn write(&mut self, step: u64, epoch: usize, record: &Record) -> Result<(), RunDirError> {
        let mut obj = match serde_json::to_value(record) {
            Ok(Value::Object(m)) => m,
            Ok(other) => Map::from_iter([("value".to_string(), other)]),
            Err(e) => Map::from_iter([("error".to_string(), Value::String(e.to_string()))]),
        };
        let mut line = Map::new();
        line.insert(
            "type".into(),
            obj.remove("type").unwrap_or_else(|| "unknown".into()),
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
        let text = Value::Object(line).to_string() + "\n";
        match self.out.write_all(text.as_bytes()) {
            Ok(()) => {
                self.whole += text.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Whatever part of the line reached the file goes again.
                if self.out.metadata().is_ok_and(|m| m.is_file()) {
                    let _ = self.out.set_len(self.whole);
                }
                Err(io_err(&self.path)(e))
            }
        }
    }
}

/// A line of metrics.jsonl that cannot be read, or the file itself.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {problem}")]
    Malformed {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

/// A record and where it stands in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped {
    /// 1-based line number.
    pub line: usize,
    /// The line's step and epoch (every record has them).
    pub step: u64,
    pub epoch: usize,
    /// The wall time it was written (ISO 8601) and the seconds since the run (or its
    /// resumption) started, when the line has them.
    pub time: Option<String>,
    pub elapsed_secs: Option<f64>,
    pub record: Record,
}

/// What metrics.jsonl holds: its records in order, with what was passed over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorded {
    pub records: Vec<Stamped>,
    /// Records of types this version does not know (a newer candletop wrote them), by type.
    pub unknown: BTreeMap<String, usize>,
    /// The line number of a last line cut short (a full disk, a killed writer): the records
    /// before it are read.
    pub torn: Option<usize>,
}

impl Recorded {
    /// Reads `text` (the contents of `path`, which errors name). A malformed line is an
    /// error, except a last line cut short, which is left out and said in `torn`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, RecordError> {
        match Self::parse_until_damage(text, path) {
            (_, Some(e)) => Err(e),
            (records, None) => Ok(records),
        }
    }

    /// As `parse`, but keeps the records before a malformed line, with the error (for a
    /// listing that shows what it can).
    pub fn parse_until_damage(text: &str, path: &Path) -> (Self, Option<RecordError>) {
        let mut out = Recorded::default();
        let complete = text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |problem: String| RecordError::Malformed {
                path: path.to_path_buf(),
                line: i + 1,
                problem,
            };
            let last = i + 1 == lines.len();
            let value: Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) if e.is_eof() && last && !complete => {
                    out.torn = Some(i + 1);
                    break;
                }
                Err(e) => return (out, Some(bad(format!("not JSON: {e}")))),
            };
            let num = |k: &str| value.get(k).and_then(Value::as_u64);
            let (Some(step), Some(epoch)) = (num("step"), num("epoch")) else {
                return (out, Some(bad("a record without its step and epoch".into())));
            };
            match Record::from_value(value.clone()) {
                Ok(record) => out.records.push(Stamped {
                    line: i + 1,
                    step,
                    epoch: epoch as usize,
                    time: value
                        .get("time")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    elapsed_secs: value.get("elapsed_secs").and_then(Value::as_f64),
                    record,
                }),
                Err(RecordProblem::Unknown(kind)) => *out.unknown.entry(kind).or_default() += 1,
                Err(RecordProblem::Malformed(problem)) => return (out, Some(bad(problem))),
            }
        }
        (out, None)
    }

    /// What a reader should be told besides the records: a torn last line, unknown types.
    pub fn remarks(&self, path: &Path) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(line) = self.torn {
            out.push(format!(
                "{}: line {line} is cut short (a full disk or a killed writer?): read up to it",
                path.display()
            ));
        }
        if !self.unknown.is_empty() {
            let n: usize = self.unknown.values().sum();
            let kinds: Vec<&str> = self.unknown.keys().map(String::as_str).collect();
            out.push(format!(
                "{}: skipped {n} record{} of a type this version does not know ({})",
                path.display(),
                if n == 1 { "" } else { "s" },
                kinds.join(", ")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Event, StepMetrics};

    fn step(n: u64) -> StepMetrics {
        StepMetrics {
            step: n,
            epoch: 1,
            steps: 20,
            loss: 0.5,
            loss_max: 0.0,
            accuracy: 0.75,
            lr: 1e-3,
            grad_norms: vec![0.25, 2.0],
            update_ratios: vec![1e-3, 2e-3],
            images_per_sec: 1000.0,
            branch: None,
        }
    }

    #[test]
    fn records_have_type_step_epoch_and_time_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::new(tmp.path().join("r"));
        dir.create().unwrap();
        let mut log = MetricsLog::create(&dir).unwrap();
        let written = [
            Record::Step(step(20)),
            Record::Event(Event::Paused { step: 21 }),
        ];
        log.write(20, 1, &written[0]).unwrap();
        log.write(7, 2, &written[1]).unwrap();
        let text = fs::read_to_string(dir.metrics()).unwrap();
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
        let back = dir.read_records().unwrap();
        let records: Vec<Record> = back.records.into_iter().map(|s| s.record).collect();
        assert_eq!(records, written);
        assert_eq!(back.torn, None);
        assert!(back.unknown.is_empty());
    }

    #[test]
    fn a_newer_type_is_skipped_and_counted_a_torn_last_line_is_left_out() {
        let path = Path::new("r/metrics.jsonl");
        let text = concat!(
            r#"{"type":"paused","step":3,"epoch":1}"#,
            "\n",
            r#"{"type":"from_the_future","step":4,"epoch":1,"x":1}"#,
            "\n",
            r#"{"type":"from_the_future","step":5,"epoch":1}"#,
            "\n",
            r#"{"type":"resumed","step":6,"epoch":1}"#,
            "\n",
            r#"{"type":"step","step":7,"epoch":1,"lo"#,
        );
        let r = Recorded::parse(text, path).unwrap();
        assert_eq!(r.records.len(), 2);
        assert_eq!(r.records[1].line, 4);
        assert_eq!(r.unknown.get("from_the_future"), Some(&2));
        assert_eq!(r.torn, Some(5));
        assert_eq!(
            r.remarks(path),
            [
                "r/metrics.jsonl: line 5 is cut short (a full disk or a killed writer?): read up to it",
                "r/metrics.jsonl: skipped 2 records of a type this version does not know (from_the_future)",
            ]
        );
    }

    #[test]
    fn a_malformed_line_is_one_error_naming_the_file_and_the_line() {
        let path = Path::new("r/metrics.jsonl");
        for (text, want) in [
            (
                "{\"type\":\"paused\",\"step\":1,\"epoch\":1}\nnot json\n",
                "r/metrics.jsonl: line 2: not JSON",
            ),
            (
                "{\"type\":\"paused\",\"step\":\"x\",\"epoch\":1}\n",
                "r/metrics.jsonl: line 1: a record without its step and epoch",
            ),
            (
                "{\"type\":\"step\",\"step\":1,\"epoch\":1,\"loss\":\"low\"}\n",
                "r/metrics.jsonl: line 1: a step record: ",
            ),
            (
                "{\"step\":1,\"epoch\":1}\n",
                "r/metrics.jsonl: line 1: a record without a type",
            ),
            // Cut short but not the last line: the file was damaged, not torn.
            (
                "{\"type\":\"paused\",\"st\n{\"type\":\"paused\",\"step\":1,\"epoch\":1}\n",
                "r/metrics.jsonl: line 1: not JSON",
            ),
        ] {
            let e = Recorded::parse(text, path).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
        }
        // A listing keeps what comes before the damage.
        let (before, e) = Recorded::parse_until_damage(
            "{\"type\":\"paused\",\"step\":1,\"epoch\":1}\nnot json\n{\"type\":\"resumed\",\"step\":2,\"epoch\":1}\n",
            path,
        );
        assert_eq!(before.records.len(), 1);
        assert!(e
            .unwrap()
            .to_string()
            .starts_with("r/metrics.jsonl: line 2: not JSON"));
    }
}
