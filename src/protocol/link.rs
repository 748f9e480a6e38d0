//! The channels between the training thread and a watcher: the trainer never waits on them.

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};

use super::commands::Command;
use super::events::{Event, StepMetrics};

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
    /// A link nobody listens to (benchmarks and tests that drive single steps).
    pub fn detached() -> Self {
        link().0
    }

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
    /// watcher sees a step before the epoch that contains it, when there is room. False when
    /// nobody listens any more.
    pub fn send(&mut self, e: Event) -> bool {
        if let Some(p) = self.pending.take() {
            if let Err(TrySendError::Full(p)) = self.steps.try_send(p) {
                self.pending = Some(p);
            }
        }
        self.events.send(e).is_ok()
    }

    /// Events sent and not yet received: how far behind the watcher is.
    pub fn events_behind(&self) -> usize {
        self.events.len()
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
