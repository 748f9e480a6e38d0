//! The line reporter for non-terminals: a progress line every N steps and one line per epoch,
//! fed by the same events as the terminal UI.

use std::io::Write;

use crossbeam_channel::{select, Receiver};

use crate::protocol::{Event, FinishReason, MonitorLink, RunInfo, StepMetrics};

/// How the run ended, as seen by the reporter.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished(FinishReason),
    Failed(String),
}

/// Progress since the last progress line.
#[derive(Default)]
struct Window {
    loss: f64,
    accuracy: f64,
    steps: u64,
}

pub struct Reporter<W: Write> {
    out: W,
    log_every: u64,
    info: Option<RunInfo>,
    window: Window,
    last_step: u64,
}

impl<W: Write> Reporter<W> {
    pub fn new(out: W, log_every: u64) -> Self {
        Self {
            out,
            log_every: log_every.max(1),
            info: None,
            window: Window::default(),
            last_step: 0,
        }
    }

    /// Reads events until the run ends. A signal (SIGTERM, SIGINT, SIGHUP) stops the trainer,
    /// which saves `last.h5` and finishes; the reporter waits for that.
    pub fn run(mut self, link: &MonitorLink, signals: &Receiver<i32>) -> Outcome {
        let mut signals = signals.clone();
        loop {
            select! {
                recv(signals) -> s => match s {
                    Ok(_) => {
                        self.line("  signal received: stopping after the current step");
                        let _ = link.commands.send(crate::protocol::Command::Stop);
                    }
                    Err(_) => signals = crossbeam_channel::never(),
                },
                recv(link.steps) -> m => if let Ok(m) = m {
                    // `Started` precedes every step; select may still pick the step first.
                    if self.info.is_none() {
                        if let Ok(e) = link.events.try_recv() {
                            if let Some(outcome) = self.on_event(&e) {
                                return outcome;
                            }
                        }
                    }
                    self.on_step(&m)
                },
                recv(link.events) -> e => match e {
                    Ok(e) => {
                        // Steps sent before this event are shown before it (none precede `Started`).
                        if !matches!(e, Event::Started(_)) {
                            for m in link.steps.try_iter() {
                                self.on_step(&m);
                            }
                        }
                        if let Some(outcome) = self.on_event(&e) {
                            return outcome;
                        }
                    }
                    Err(_) => return Outcome::Failed("the training thread ended without a word".into()),
                },
            }
        }
    }

    fn total_steps(&self) -> u64 {
        self.info
            .as_ref()
            .map(|i| (i.epochs * i.steps_per_epoch) as u64)
            .unwrap_or(0)
    }

    fn on_step(&mut self, m: &StepMetrics) {
        self.window.loss += m.loss * m.steps as f64;
        self.window.accuracy += m.accuracy * m.steps as f64;
        self.window.steps += m.steps as u64;
        // A progress line whenever the step count crosses a multiple of log_every.
        if m.step / self.log_every > self.last_step / self.log_every {
            let epochs = self.info.as_ref().map(|i| i.epochs).unwrap_or(0);
            let w = &self.window;
            let line = format!(
                "  step {:>6}/{}  epoch {}/{}  loss {:.4}  acc {:5.1}%  lr {:.2e}  {:.0} img/s",
                m.step,
                self.total_steps(),
                m.epoch,
                epochs,
                w.loss / w.steps as f64,
                100.0 * w.accuracy / w.steps as f64,
                m.lr,
                m.images_per_sec
            );
            self.line(&line);
            self.window = Window::default();
        }
        self.last_step = m.step;
    }

    fn on_event(&mut self, e: &Event) -> Option<Outcome> {
        match e {
            Event::Started(info) => {
                let line = format!(
                    "candletop: {} on {}\n  {}, {} epochs x {} steps of {}; run dir {}",
                    info.model,
                    info.data,
                    info.optimizer,
                    info.epochs,
                    info.steps_per_epoch,
                    info.batch_size,
                    info.run_dir
                );
                self.line(&line);
                if let Some(from) = &info.resumed_from {
                    self.line(&format!("  resumed from {from}"));
                }
                self.info = Some(info.clone());
            }
            Event::Epoch(m) => {
                let epochs = self.info.as_ref().map(|i| i.epochs).unwrap_or(m.epoch);
                let line = format!(
                    "epoch {:>3}/{}  train loss {:.4} acc {:6.2}%  val loss {:.4} acc {:6.2}%  lr {:.2e}  {:.0} img/s  elapsed {}",
                    m.epoch,
                    epochs,
                    m.train_loss,
                    100.0 * m.train_accuracy,
                    m.val_loss,
                    100.0 * m.val_accuracy,
                    m.lr,
                    m.images_per_sec,
                    clock(m.elapsed_secs)
                );
                self.line(&line);
            }
            Event::Evaluated(m) => {
                let line = format!(
                    "{}  loss {:.4}  acc {:6.2}%",
                    m.split,
                    m.loss,
                    100.0 * m.accuracy
                );
                self.line(&line);
            }
            Event::LrChanged { step, old, new, .. } => {
                self.line(&format!("  lr {old:.2e} -> {new:.2e} at step {step}"));
            }
            Event::CheckpointSaved {
                path,
                bytes,
                write_secs,
                ..
            } => self.line(&format!(
                "  saved {path} ({}, {:.0} ms)",
                human_bytes(*bytes),
                write_secs * 1000.0
            )),
            Event::CheckpointFailed { path, error, .. } => self.line(&format!(
                "  could not save {path}: {error}; training goes on"
            )),
            Event::Paused { step } => self.line(&format!("  paused at step {step}")),
            Event::Resumed { step } => self.line(&format!("  resumed at step {step}")),
            Event::NonFinite { step, what, .. } => self.line(&format!(
                "  step {step}: {what}; the update was skipped and the run paused"
            )),
            Event::Finished {
                reason,
                step,
                elapsed_secs,
                ..
            } => {
                let how = match reason {
                    FinishReason::Completed => "finished",
                    FinishReason::Stopped => "stopped",
                };
                self.line(&format!(
                    "{how} at step {step} after {}",
                    clock(*elapsed_secs)
                ));
                return Some(Outcome::Finished(*reason));
            }
            Event::Error { message } => {
                self.line(&format!("error: {message}"));
                return Some(Outcome::Failed(message.clone()));
            }
        }
        None
    }

    fn line(&mut self, s: &str) {
        // A closed stdout (e.g. piped into `head`) must not stop the run.
        let _ = writeln!(self.out, "{s}").and_then(|_| self.out.flush());
    }
}

/// `1.7 MB` style.
pub fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

/// `m:ss` or `h:mm:ss`.
pub fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{link, EpochMetrics};

    #[test]
    fn prints_progress_every_n_steps_and_a_line_per_epoch() {
        let (mut t, m) = link();
        t.send(Event::Started(RunInfo {
            data: "d".into(),
            model: "m".into(),
            param_count: 1,
            optimizer: "o".into(),
            layers: vec![],
            classes: vec![],
            epochs: 2,
            steps_per_epoch: 5,
            batch_size: 8,
            run_dir: "r".into(),
            resumed_from: None,
        }));
        for i in 1..=5u64 {
            t.send_step(StepMetrics {
                step: i,
                epoch: 1,
                steps: 1,
                loss: i as f64,
                accuracy: 0.5,
                lr: 0.01,
                grad_norms: vec![],
                update_ratios: vec![],
                images_per_sec: 100.0,
            });
        }
        t.send(Event::Epoch(EpochMetrics {
            epoch: 1,
            step: 5,
            train_loss: 0.5,
            train_accuracy: 0.8,
            val_loss: 0.25,
            val_accuracy: 0.9,
            val_class_accuracy: vec![],
            lr: 0.01,
            images_per_sec: 100.0,
            elapsed_secs: 65.0,
        }));
        t.send(Event::Finished {
            step: 5,
            epoch: 1,
            reason: FinishReason::Stopped,
            elapsed_secs: 66.0,
        });
        let mut out = Vec::new();
        let outcome = Reporter::new(&mut out, 2).run(&m, &crossbeam_channel::never());
        assert_eq!(outcome, Outcome::Finished(FinishReason::Stopped));
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[2].contains("step      2/10") && lines[2].contains("loss 1.5000"),
            "{text}"
        );
        assert!(
            lines[3].contains("step      4/10") && lines[3].contains("loss 3.5000"),
            "{text}"
        );
        assert!(
            lines[4].starts_with(
                "epoch   1/2  train loss 0.5000 acc  80.00%  val loss 0.2500 acc  90.00%"
            ),
            "{text}"
        );
        assert!(lines[4].ends_with("elapsed 1:05"), "{text}");
        assert_eq!(lines[5], "stopped at step 5 after 1:06");
    }
}
