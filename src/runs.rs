//! The runs in a directory, as `candletop ls` shows them: each run directory's state (a live
//! process answers on its socket; else its metrics.jsonl says how it ended, or that it ended
//! without a word) and progress, read from its metrics.jsonl.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

use crate::format::sci;
use crate::socket::client;

/// How a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Its process answers on the socket.
    Live,
    Finished,
    Stopped,
    /// Stopped on a non-finite loss.
    NonFinite,
    Failed,
    /// Ended without a word: its process was killed (or lost power).
    Dead,
}

impl RunStatus {
    pub fn word(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Finished => "finished",
            Self::Stopped => "stopped",
            Self::NonFinite => "stopped (NaN)",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
}

/// One run directory, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub dir: PathBuf,
    pub status: RunStatus,
    pub data: String,
    pub model: String,
    pub epoch: u64,
    pub epochs: u64,
    pub step: u64,
    pub total_steps: u64,
    pub best_val_accuracy: Option<f64>,
    pub lr: Option<f64>,
    /// Seconds since metrics.jsonl last changed.
    pub age_secs: f64,
    /// The newest checkpoint to resume from, for a dead run.
    pub last_checkpoint: Option<PathBuf>,
}

/// Reads one run directory; None when it holds no metrics.jsonl.
pub fn summarise(dir: &Path) -> Option<RunSummary> {
    let metrics = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&metrics).ok()?;
    let age_secs = std::fs::metadata(&metrics)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    let mut s = RunSummary {
        dir: dir.to_path_buf(),
        status: RunStatus::Dead,
        data: String::new(),
        model: String::new(),
        epoch: 0,
        epochs: 0,
        step: 0,
        total_steps: 0,
        best_val_accuracy: None,
        lr: None,
        age_secs,
        last_checkpoint: None,
    };
    let mut ended = None;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let num = |k: &str| v[k].as_u64();
        if let Some(step) = num("step") {
            s.step = s.step.max(step);
        }
        match v["type"].as_str() {
            Some("started") => {
                s.data = v["data"].as_str().unwrap_or_default().to_string();
                s.model = v["model"].as_str().unwrap_or_default().to_string();
                s.epochs = num("epochs").unwrap_or(0);
                s.total_steps = num("total_steps").unwrap_or(0);
                ended = None;
            }
            Some("step") => s.lr = v["lr"].as_f64(),
            Some("epoch") => {
                s.epoch = num("epoch").unwrap_or(s.epoch);
                if let Some(a) = v["val_accuracy"].as_f64() {
                    s.best_val_accuracy = Some(s.best_val_accuracy.map_or(a, |b: f64| b.max(a)));
                }
            }
            Some("finished") => {
                ended = Some(match v["reason"].as_str() {
                    Some("completed") => RunStatus::Finished,
                    Some("non_finite") => RunStatus::NonFinite,
                    _ => RunStatus::Stopped,
                })
            }
            Some("error") => ended = Some(RunStatus::Failed),
            _ => {}
        }
    }
    s.status = if client::is_live(dir) {
        RunStatus::Live
    } else {
        ended.unwrap_or(RunStatus::Dead)
    };
    s.last_checkpoint = newest_checkpoint(&dir.join("checkpoints"));
    Some(s)
}

/// The checkpoint to resume from: last.h5, else the newest file in `dir`.
fn newest_checkpoint(dir: &Path) -> Option<PathBuf> {
    let last = dir.join("last.h5");
    if last.exists() {
        return Some(last);
    }
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "h5"))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// Every run directory in `dir`, newest first (by metrics.jsonl's last change).
pub fn list(dir: &Path) -> std::io::Result<Vec<RunSummary>> {
    let mut runs: Vec<RunSummary> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| summarise(&e.path()))
        .collect();
    runs.sort_by(|a, b| a.age_secs.total_cmp(&b.age_secs));
    Ok(runs)
}

/// The newest run in `dir` whose process answers.
pub fn newest_live(dir: &Path) -> Option<PathBuf> {
    list(dir)
        .ok()?
        .into_iter()
        .find(|r| r.status == RunStatus::Live)
        .map(|r| r.dir)
}

fn age(secs: f64) -> String {
    match secs as u64 {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// The listing as a table, with what to do about live and dead runs.
pub fn table(runs: &[RunSummary]) -> String {
    if runs.is_empty() {
        return "no runs here".into();
    }
    let rows: Vec<[String; 9]> = runs
        .iter()
        .map(|r| {
            [
                r.dir.display().to_string(),
                r.status.word().to_string(),
                format!("{}/{}", r.epoch, r.epochs),
                format!("{}/{}", r.step, r.total_steps),
                r.best_val_accuracy
                    .map_or("-".into(), |a| format!("{:.2}%", 100.0 * a)),
                r.lr.map_or("-".into(), sci),
                age(r.age_secs),
                r.data.split(" (").next().unwrap_or_default().to_string(),
                r.model.split(" (").next().unwrap_or_default().to_string(),
            ]
        })
        .collect();
    let head = [
        "RUN", "STATE", "EPOCHS", "STEPS", "BEST VAL", "LR", "UPDATED", "DATA", "MODEL",
    ];
    let widths: Vec<usize> = (0..9)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(&head.map(String::from))];
    out.extend(rows.iter().map(|r| line(r)));
    for r in runs {
        match r.status {
            RunStatus::Live => out.push(format!("attach: candletop attach {}", r.dir.display())),
            RunStatus::Dead => out.push(format!(
                "{} ended without a word (killed?) at step {}{}",
                r.dir.display(),
                r.step,
                r.last_checkpoint
                    .as_ref()
                    .map(|c| format!("; resume: candletop --resume {}", c.display()))
                    .unwrap_or_default()
            )),
            _ => {}
        }
    }
    out.join("\n")
}
