//! The runs in a directory, as `candletop ls` shows them: each run directory's state (a live
//! process answers on its socket; else its metrics.jsonl says how it ended, or that it ended
//! without a word) and progress, read from its metrics.jsonl.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::format::{cut, sci};
use crate::protocol::{Event, FinishReason, Record};
use crate::run_dir::{Recorded, RunDir};
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
    /// Early stopping ended it.
    StoppedEarly,
    /// It reached --target-acc under --stop-at-target.
    ReachedTarget,
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
            Self::StoppedEarly => "stopped early",
            Self::ReachedTarget => "reached target",
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
    /// Why its metrics.jsonl could not be read (the rest of the row is then what is known).
    pub problem: Option<String>,
}

/// Reads one run directory; None when it holds no metrics.jsonl.
pub fn summarise(dir: &Path) -> Option<RunSummary> {
    let run = RunDir::new(dir);
    let metrics = run.metrics();
    let modified = std::fs::metadata(&metrics)
        .and_then(|m| m.modified())
        .ok()?;
    let age_secs = SystemTime::now()
        .duration_since(modified)
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
        problem: None,
    };
    let mut ended = None;
    let (recorded, damage) = match run.metrics_text() {
        Ok(text) => Recorded::parse_until_damage(&text, &metrics),
        Err(e) => (Recorded::default(), Some(e)),
    };
    s.problem = damage.map(|e| e.to_string());
    for r in &recorded.records {
        s.step = s.step.max(r.step);
        match &r.record {
            Record::Event(Event::Started(info)) => {
                s.data = info.data.clone();
                s.model = info.model.clone();
                s.epochs = info.epochs as u64;
                s.total_steps = info.total_steps;
                ended = None;
            }
            Record::Step(m) => s.lr = Some(m.lr),
            Record::Event(Event::Epoch(e)) => {
                s.epoch = e.epoch as u64;
                let a = e.val_accuracy;
                s.best_val_accuracy = Some(s.best_val_accuracy.map_or(a, |b| b.max(a)));
            }
            Record::Event(Event::Finished { reason, .. }) => {
                ended = Some(match reason {
                    FinishReason::Completed => RunStatus::Finished,
                    FinishReason::NonFinite => RunStatus::NonFinite,
                    FinishReason::Stopped => RunStatus::Stopped,
                    FinishReason::EarlyStopped => RunStatus::StoppedEarly,
                    FinishReason::TargetReached => RunStatus::ReachedTarget,
                })
            }
            Record::Event(Event::Error { .. }) => ended = Some(RunStatus::Failed),
            _ => {}
        }
    }
    s.status = if client::is_live(dir) {
        RunStatus::Live
    } else {
        ended.unwrap_or(RunStatus::Dead)
    };
    s.last_checkpoint = newest_checkpoint(&run.checkpoints());
    Some(s)
}

/// The checkpoint to resume from: last.h5, else the newest file in `dir`.
pub fn newest_checkpoint(dir: &Path) -> Option<PathBuf> {
    let last = dir.join(crate::checkpoint::SaveKind::Last.file_name());
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
/// The widest a data or model cell gets: a long architecture is cut, not the table.
const WIDEST: usize = 40;

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
                cut(r.data.split(" (").next().unwrap_or_default(), WIDEST),
                cut(r.model.split(" (").next().unwrap_or_default(), WIDEST),
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
        if let Some(problem) = &r.problem {
            out.push(format!("unreadable: {problem}"));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_with_a_very_long_model_is_listed_with_the_model_cut() {
        let run = |dir: &str, model: String| RunSummary {
            dir: dir.into(),
            status: RunStatus::Finished,
            data: "embedded".into(),
            model,
            epoch: 1,
            epochs: 1,
            step: 10,
            total_steps: 10,
            best_val_accuracy: Some(0.5),
            lr: Some(1e-3),
            age_secs: 5.0,
            last_checkpoint: None,
            problem: None,
        };
        let long = "c8,".repeat(30_000) + "f10";
        let out = table(&[run("runs/a", long), run("runs/b", "c32,f10".into())]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[1].ends_with("c8,c8,c8,c8,c8,c8,c8,c8,c8,c8,c8,c8,c8,…"),
            "{}",
            lines[1]
        );
        assert!(lines[2].ends_with("c32,f10"), "{}", lines[2]);
        assert!(lines.iter().all(|l| l.chars().count() < 140), "{out}");
    }
}
