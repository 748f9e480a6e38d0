//! The trainer's side of being watched: events and step metrics out (never waiting), commands
//! in, and the same record in `metrics.jsonl`.

use crate::protocol::{Command, Event, Record, StepMetrics, TrainerLink};
use crate::run_dir::MetricsLog;

pub struct Watchers {
    link: TrainerLink,
    log: Option<MetricsLog>,
    window: Window,
    /// Whether a step record was made: the first step of a run (or of its resumption) gets
    /// one, so that its first loss is known exactly.
    recorded: bool,
}

/// Training loss and accuracy since the last `step` record.
#[derive(Default)]
struct Window {
    loss: f64,
    loss_max: f64,
    correct: usize,
    seen: usize,
    steps: u64,
    /// A what-if branch's steps in the window (means over them, as the message folds them).
    branch: Option<crate::protocol::BranchStep>,
}

impl Watchers {
    /// Nobody watching and no log yet.
    pub fn detached() -> Self {
        Self {
            link: TrainerLink::detached(),
            log: None,
            window: Window::default(),
            recorded: false,
        }
    }

    pub fn attach(&mut self, link: TrainerLink) {
        self.link = link;
    }

    pub fn set_log(&mut self, log: MetricsLog) {
        self.log = Some(log);
    }

    /// Sends an event and records it in metrics.jsonl (all but sample images).
    pub fn emit(&mut self, step: u64, epoch: usize, e: Event) {
        // Pixels for a person to look at are not the run's record.
        if !matches!(e, Event::Samples { .. }) {
            self.record(step, epoch, &Record::Event(e.clone()));
        }
        self.link.send(e);
    }

    /// Sends a step's metrics; at the first step and every `log_every` steps a `step` record
    /// with the means since the last one goes to metrics.jsonl, and is returned (the doctor
    /// judges it, even when the log cannot be written).
    pub fn step(
        &mut self,
        m: StepMetrics,
        hits: usize,
        images: usize,
        log_every: u64,
    ) -> Option<StepMetrics> {
        let w = &mut self.window;
        w.loss += m.loss;
        w.loss_max = w.loss_max.max(m.loss);
        w.correct += hits;
        w.seen += images;
        w.steps += 1;
        if let Some(b) = m.branch {
            w.branch = Some(w.branch.map_or(b, |a| a.fold(b)));
        }
        let first = !std::mem::replace(&mut self.recorded, true);
        let record = if first || m.step % log_every == 0 {
            let w = std::mem::take(&mut self.window);
            let mut rec = m.clone();
            rec.steps = w.steps as u32;
            rec.loss = w.loss / w.steps as f64;
            rec.loss_max = w.loss_max;
            rec.accuracy = w.correct as f64 / w.seen.max(1) as f64;
            rec.branch = w.branch;
            self.record(m.step, m.epoch, &Record::Step(rec.clone()));
            Some(rec)
        } else {
            None
        };
        self.link.send_step(m);
        record
    }

    /// A failed write disables the log, says so once as a warning, and the run goes on.
    fn record(&mut self, step: u64, epoch: usize, record: &Record) {
        let Some(log) = &mut self.log else { return };
        if let Err(e) = log.write(step, epoch, record) {
            self.log = None;
            self.link.send(Event::Warning {
                step,
                message: format!(
                    "metrics are no longer recorded ({}: {}); training goes on",
                    e.path.display(),
                    e.source
                ),
            });
        }
    }

    pub fn try_command(&self) -> Option<Command> {
        self.link.try_command()
    }

    pub fn wait_command_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Command, crossbeam_channel::RecvTimeoutError> {
        self.link.wait_command_timeout(timeout)
    }
}
