//! The line reporter for non-terminals: the run's event log as lines, and a progress line every
//! N steps. It folds the trainer's messages into the same `RunState` as the terminal UI.

use std::io::Write;

use crossbeam_channel::Receiver;

use crate::protocol::{Command, MonitorLink, StepMetrics};
use crate::watch::{self, FrontEnd, LogKind, Outcome, RunState, Sources};

/// Progress since the last progress line.
#[derive(Default)]
struct Window {
    loss: f64,
    accuracy: f64,
    steps: u64,
}

pub struct Headless<W: Write> {
    out: W,
    log_every: u64,
    run: RunState,
    /// Log lines printed so far.
    printed: u64,
    window: Window,
    last_step: u64,
}

/// Prints the run on `out` until it ends. A signal (SIGTERM, SIGINT, SIGHUP) stops the
/// trainer, which saves `last.h5` and finishes; the reporter waits for that.
pub fn run<W: Write>(
    out: W,
    log_every: u64,
    link: &MonitorLink,
    signals: Receiver<i32>,
) -> Outcome {
    let mut h = Headless::new(out, log_every);
    let sources = Sources {
        signals,
        ..Sources::none()
    };
    watch::watch(&mut h, link, sources)
}

impl<W: Write> Headless<W> {
    pub fn new(out: W, log_every: u64) -> Self {
        Self {
            out,
            log_every: log_every.max(1),
            run: RunState::default(),
            printed: 0,
            window: Window::default(),
            last_step: 0,
        }
    }

    fn line(&mut self, s: &str) {
        // A closed stdout (e.g. piped into `head`) must not stop the run.
        let _ = writeln!(self.out, "{s}").and_then(|_| self.out.flush());
    }

    /// The log lines not printed yet: landmarks flush left, the rest indented under them.
    fn print_log(&mut self) {
        let lines: Vec<String> = self
            .run
            .log_since(self.printed)
            .map(|l| match l.kind {
                LogKind::Milestone => l.text.clone(),
                _ => format!("  {}", l.text),
            })
            .collect();
        self.printed = self.run.logged;
        for l in lines {
            self.line(&l);
        }
    }
}

impl<W: Write> FrontEnd for Headless<W> {
    type Input = ();

    fn state(&mut self) -> &mut RunState {
        &mut self.run
    }

    fn on_step(&mut self, m: &StepMetrics) {
        self.window.loss += m.loss * m.steps as f64;
        self.window.accuracy += m.accuracy * m.steps as f64;
        self.window.steps += m.steps as u64;
        // A progress line whenever the step count crosses a multiple of log_every.
        if m.step / self.log_every > self.last_step / self.log_every {
            let w = &self.window;
            let line = format!(
                "  step {:>6}/{}  epoch {}/{}  loss {:.4}  acc {:5.1}%  lr {:.2e}  {:.0} img/s",
                m.step,
                self.run.total_steps(),
                m.epoch,
                self.run.info.as_ref().map_or(0, |i| i.epochs),
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

    fn on_event(&mut self, _e: &crate::protocol::Event) {
        self.print_log();
    }

    fn on_trainer_gone(&mut self) {
        self.print_log();
    }

    fn on_signal(&mut self, _signal: i32) -> Vec<Command> {
        self.line("  signal received: stopping after the current step");
        vec![Command::Stop]
    }

    fn done(&mut self) -> bool {
        !self.run.status.is_live()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{link, EpochMetrics, Event, FinishReason, RunInfo};

    #[test]
    fn prints_progress_every_n_steps_and_the_event_log() {
        let (mut t, m) = link();
        t.send(Event::Started(RunInfo {
            stopping: Default::default(),
            clip_grad_norm: 0.0,
            data_facts: Default::default(),
            data: "d".into(),
            model: "m".into(),
            param_count: 1,
            optimizer: "o".into(),
            layers: vec![],
            classes: vec![],
            epochs: 2,
            steps_per_epoch: 5,
            total_steps: 10,
            batch_size: 8,
            run_dir: "r".into(),
            resumed: None,
            schedule: crate::schedule::Schedule::constant(0.01, 10, 5),
        }));
        for i in 1..=5u64 {
            t.send_step(StepMetrics {
                step: i,
                epoch: 1,
                steps: 1,
                loss: i as f64,
                loss_max: 0.0,
                accuracy: 0.5,
                lr: 0.01,
                grad_norms: vec![],
                update_ratios: vec![],
                images_per_sec: 100.0,
                branch: None,
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
            val_confusion: vec![],
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
        let outcome = run(&mut out, 2, &m, crossbeam_channel::never());
        assert_eq!(outcome, Outcome::Finished(FinishReason::Stopped));
        let text = String::from_utf8(out).unwrap();
        let want = "\
started: m on d
  o, lr 1.00e-2 constant; 2 epochs x 5 steps of 8; run dir r
  step      2/10  epoch 1/2  loss 1.5000  acc  50.0%  lr 1.00e-2  100 img/s
  step      4/10  epoch 1/2  loss 3.5000  acc  50.0%  lr 1.00e-2  100 img/s
epoch 1/2: val loss 0.2500 acc 90.00%, train loss 0.5000 acc 80.00%, lr 1.00e-2, 100 img/s, 1:05
stopped at step 5 after 1:06
";
        assert_eq!(text, want);
    }
}
