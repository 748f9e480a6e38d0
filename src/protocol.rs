//! The messages between the training thread and whoever watches it (the TUI, the headless line
//! reporter, tests). Plain data only: no candle or ratatui type crosses a channel.
//!
//! Two channels carry events out of the trainer: a bounded one for per-step metrics, where a
//! full channel makes the trainer fold the step into the next message instead of waiting, and an
//! unbounded one for state events (epoch results, pauses, errors, the end), which are rare and
//! never dropped. Commands go the other way on an unbounded channel the trainer polls between
//! steps.

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};
use serde::Serialize;

/// What the user asks of the trainer. Applied between two steps.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    SetLr(f64),
    ScaleLr(f64),
    Pause,
    Resume,
    /// One step while paused.
    Step,
    /// Save `last.h5` now.
    Save,
    /// Finish the current step, then end cleanly.
    Stop,
}

/// Static facts about the run, sent once at the start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    pub data: String,
    pub model: String,
    pub param_count: usize,
    pub optimizer: String,
    /// Names of the parameters, in the order of every per-layer vector below.
    pub layers: Vec<String>,
    pub classes: Vec<String>,
    pub epochs: usize,
    pub steps_per_epoch: usize,
    pub batch_size: usize,
    pub run_dir: String,
    /// The checkpoint this run continues, if any.
    pub resumed_from: Option<String>,
}

/// Metrics of one training step, or of several folded together when the receiver lagged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepMetrics {
    /// Global step (1-based) of the latest step included.
    pub step: u64,
    /// Epoch (1-based) of that step.
    pub epoch: usize,
    /// How many steps this message covers (1 unless folded).
    pub steps: u32,
    /// Mean training loss and batch accuracy over the steps covered.
    pub loss: f64,
    pub accuracy: f64,
    /// Learning rate of the latest step.
    pub lr: f64,
    /// Per-parameter gradient L2 norm and ||update|| / ||weight|| of the latest step.
    pub grad_norms: Vec<f64>,
    pub update_ratios: Vec<f64>,
    /// Training throughput, images per second, measured over recent steps.
    pub images_per_sec: f64,
}

impl StepMetrics {
    /// Folds a newer step into this one: means for loss and accuracy, the latest for the rest.
    pub fn fold(&mut self, newer: StepMetrics) {
        let (a, b) = (self.steps as f64, newer.steps as f64);
        self.loss = (self.loss * a + newer.loss * b) / (a + b);
        self.accuracy = (self.accuracy * a + newer.accuracy * b) / (a + b);
        self.steps += newer.steps;
        self.step = newer.step;
        self.epoch = newer.epoch;
        self.lr = newer.lr;
        self.grad_norms = newer.grad_norms;
        self.update_ratios = newer.update_ratios;
        self.images_per_sec = newer.images_per_sec;
    }
}

/// Results of one finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub step: u64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    /// Validation accuracy of each class, in the order of `RunInfo::classes`.
    pub val_class_accuracy: Vec<f64>,
    pub lr: f64,
    pub images_per_sec: f64,
    pub elapsed_secs: f64,
}

/// An evaluation of a whole split (the test set at the end of the run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalMetrics {
    pub split: String,
    pub loss: f64,
    pub accuracy: f64,
    pub class_accuracy: Vec<f64>,
    pub images_per_sec: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// All epochs done.
    Completed,
    /// A stop command.
    Stopped,
}

/// Who changed the learning rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSource {
    User,
}

/// Everything the trainer reports except per-step metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Started(RunInfo),
    Epoch(EpochMetrics),
    Evaluated(EvalMetrics),
    LrChanged {
        step: u64,
        old: f64,
        new: f64,
        source: LrSource,
    },
    Paused {
        step: u64,
    },
    Resumed {
        step: u64,
    },
    /// The loss or a gradient norm was NaN or infinite: the step was skipped and the run paused.
    NonFinite {
        step: u64,
        epoch: usize,
        what: String,
    },
    /// A checkpoint was written: its size, how long the background write took and how long
    /// the snapshot held the training thread.
    CheckpointSaved {
        step: u64,
        path: String,
        bytes: u64,
        write_secs: f64,
        hold_ms: f64,
    },
    /// A checkpoint could not be written; training goes on and earlier files stay intact.
    CheckpointFailed {
        step: u64,
        path: String,
        error: String,
    },
    Finished {
        step: u64,
        epoch: usize,
        reason: FinishReason,
        elapsed_secs: f64,
    },
    Error {
        message: String,
    },
}

impl Event {
    /// True for the events that end the stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Event::Finished { .. } | Event::Error { .. })
    }
}

/// Capacity of the per-step channel: about a second of steps at full speed.
pub const STEP_CHANNEL_CAPACITY: usize = 64;

/// The trainer's side of the channels.
pub struct TrainerLink {
    steps: Sender<StepMetrics>,
    events: Sender<Event>,
    commands: Receiver<Command>,
    /// A step that did not fit in the channel, waiting to be folded into the next one.
    pending: Option<StepMetrics>,
}

/// The watcher's side of the channels.
pub struct MonitorLink {
    pub steps: Receiver<StepMetrics>,
    pub events: Receiver<Event>,
    pub commands: Sender<Command>,
}

pub fn link() -> (TrainerLink, MonitorLink) {
    let (steps_tx, steps_rx) = bounded(STEP_CHANNEL_CAPACITY);
    let (events_tx, events_rx) = unbounded();
    let (cmd_tx, cmd_rx) = unbounded();
    (
        TrainerLink {
            steps: steps_tx,
            events: events_tx,
            commands: cmd_rx,
            pending: None,
        },
        MonitorLink {
            steps: steps_rx,
            events: events_rx,
            commands: cmd_tx,
        },
    )
}

impl TrainerLink {
    /// Sends step metrics without ever blocking; folds them into the next step when full.
    pub fn send_step(&mut self, m: StepMetrics) {
        let m = match self.pending.take() {
            Some(mut p) => {
                p.fold(m);
                p
            }
            None => m,
        };
        match self.steps.try_send(m) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(m)) => self.pending = Some(m),
        }
    }

    /// Sends a state event (never dropped, never blocks). Pending step metrics go first so the
    /// watcher sees a step before the epoch that contains it, when there is room.
    pub fn send(&mut self, e: Event) {
        if let Some(p) = self.pending.take() {
            if let Err(TrySendError::Full(p)) = self.steps.try_send(p) {
                self.pending = Some(p);
            }
        }
        let _ = self.events.send(e);
    }

    pub fn try_command(&self) -> Option<Command> {
        self.commands.try_recv().ok()
    }

    /// Waits up to `timeout` for a command (used while paused).
    pub fn wait_command_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Command, crossbeam_channel::RecvTimeoutError> {
        self.commands.recv_timeout(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(i: u64, loss: f64) -> StepMetrics {
        StepMetrics {
            step: i,
            epoch: 1,
            steps: 1,
            loss,
            accuracy: 0.5,
            lr: 0.1,
            grad_norms: vec![i as f64],
            update_ratios: vec![0.0],
            images_per_sec: 1.0,
        }
    }

    #[test]
    fn a_full_channel_folds_steps_instead_of_blocking() {
        let (mut t, m) = link();
        for i in 1..=(STEP_CHANNEL_CAPACITY as u64 + 10) {
            t.send_step(step(i, i as f64));
        }
        t.send(Event::Paused { step: 74 });
        let got: Vec<StepMetrics> = m.steps.try_iter().collect();
        assert_eq!(got.len(), STEP_CHANNEL_CAPACITY);
        // Once there is room again, the folded steps arrive as one message.
        t.send_step(step(75, 75.0));
        let folded = m.steps.try_recv().unwrap();
        assert_eq!(folded.steps, 11);
        assert_eq!(folded.step, 75);
        assert_eq!(folded.grad_norms, vec![75.0]);
        assert!((folded.loss - (65..=75).sum::<u64>() as f64 / 11.0).abs() < 1e-9);
        let total: u32 = got.iter().map(|s| s.steps).sum::<u32>() + folded.steps;
        assert_eq!(total, 75);
        assert_eq!(m.events.try_recv().unwrap(), Event::Paused { step: 74 });
    }
}
