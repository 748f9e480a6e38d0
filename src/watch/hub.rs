//! Several watchers of one run: the hub takes the trainer's messages, keeps a `RunState` of its
//! own (what a watcher that attaches later gets first), and passes every message on to each
//! watcher through a link of its own. The trainer never waits for any of them: each watcher's
//! steps fold when it lags (as the trainer's own channel does), and a watcher that stops
//! reading is dropped once `MAX_EVENTS_BEHIND` events wait for it. Commands from every watcher
//! go straight to the trainer.

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crossbeam_channel::{never, select, Receiver, Sender};

use super::RunState;
use crate::protocol::{link, Command, Event, MonitorLink, StepMetrics, TrainerLink};

/// Events a watcher may leave unread before the hub lets it go.
pub const MAX_EVENTS_BEHIND: usize = 10_000;

struct Shared {
    run: RunState,
    watchers: Vec<TrainerLink>,
    /// Watchers let go because they stopped reading.
    dropped: usize,
}

/// The run's messages, shared out. Clone it to subscribe from other threads.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Mutex<Shared>>,
    commands: Sender<Command>,
}

impl Hub {
    /// Takes over `trainer` (the trainer's messages): returns the hub and the thread that
    /// forwards them, which ends when the trainer's channels close.
    pub fn start(trainer: MonitorLink) -> (Hub, JoinHandle<()>) {
        let hub = Hub {
            shared: Arc::new(Mutex::new(Shared {
                run: RunState::default(),
                watchers: Vec::new(),
                dropped: 0,
            })),
            commands: trainer.commands.clone(),
        };
        let forward = hub.clone();
        let handle = std::thread::Builder::new()
            .name("candletop-hub".into())
            .spawn(move || forward.forward(trainer))
            .expect("spawning the hub thread");
        (hub, handle)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A watcher thread that panicked while holding the lock left whole data behind.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new watcher: the run as it is now, and a link that carries everything after it (no
    /// message is lost or repeated between the two). Its commands go to the trainer.
    pub fn subscribe(&self) -> (RunState, MonitorLink) {
        let (tx, mut rx) = link();
        rx.commands = self.commands.clone();
        let mut s = self.lock();
        s.watchers.push(tx);
        (s.run.clone(), rx)
    }

    /// Watchers attached now, and those let go for not reading (not those that hung up).
    pub fn counts(&self) -> (usize, usize) {
        let s = self.lock();
        (s.watchers.len(), s.dropped)
    }

    fn forward(&self, trainer: MonitorLink) {
        let mut steps: Receiver<StepMetrics> = trainer.steps.clone();
        let events: Receiver<Event> = trainer.events.clone();
        loop {
            select! {
                recv(steps) -> m => match m {
                    Ok(m) => {
                        let mut s = self.lock();
                        s.run.on_step(&m);
                        for w in &mut s.watchers {
                            w.send_step(m.clone());
                        }
                    }
                    Err(_) => steps = never(),
                },
                recv(events) -> e => match e {
                    Ok(e) => {
                        // Steps sent before this event go first, as the trainer sent them.
                        for m in steps.try_iter() {
                            let mut s = self.lock();
                            s.run.on_step(&m);
                            for w in &mut s.watchers {
                                w.send_step(m.clone());
                            }
                        }
                        let mut s = self.lock();
                        s.run.on_event(&e);
                        // Those that hung up go quietly; those that stopped reading are let go.
                        let mut lagging = 0;
                        s.watchers.retain_mut(|w| {
                            let listening = w.send(e.clone());
                            let keep = listening && w.events_behind() <= MAX_EVENTS_BEHIND;
                            lagging += usize::from(listening && !keep);
                            keep
                        });
                        s.dropped += lagging;
                        if lagging > 0 {
                            // The others hear of it (their logs say why a screen went quiet).
                            let warning = Event::Warning {
                                step: s.run.step,
                                message: format!(
                                    "a watcher {MAX_EVENTS_BEHIND} events behind was let go"
                                ),
                            };
                            s.run.on_event(&warning);
                            for w in &mut s.watchers {
                                w.send(warning.clone());
                            }
                        }
                    }
                    Err(_) => break,
                },
            }
        }
        // The trainer is gone: every watcher's channels close.
        let mut s = self.lock();
        s.run.on_trainer_gone();
        s.watchers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::link;

    fn step(i: u64) -> StepMetrics {
        StepMetrics {
            step: i,
            epoch: 1,
            steps: 1,
            loss: 1.0,
            loss_max: 0.0,
            accuracy: 0.5,
            lr: 0.1,
            grad_norms: vec![],
            update_ratios: vec![],
            images_per_sec: 1.0,
            branch: None,
        }
    }

    #[test]
    fn a_late_watcher_gets_the_state_then_every_message_after_it_and_commands_reach_the_trainer() {
        let (mut trainer, monitor) = link();
        let (hub, handle) = Hub::start(monitor);
        let (_, early) = hub.subscribe();
        trainer.send_step(step(1));
        trainer.send(Event::Paused { step: 1 });
        // Wait until the hub has taken both in.
        assert_eq!(early.events.recv().unwrap(), Event::Paused { step: 1 });
        let (state, late) = hub.subscribe();
        assert_eq!(state.step, 1);
        assert_eq!(state.status, crate::watch::Status::Paused);
        trainer.send(Event::Resumed { step: 1 });
        assert_eq!(late.events.recv().unwrap(), Event::Resumed { step: 1 });
        assert_eq!(early.steps.recv().unwrap().step, 1);
        late.commands.send(Command::Stop).unwrap();
        assert_eq!(trainer.try_command(), Some(Command::Stop));
        // A watcher that never reads is let go; the others are not held up.
        for i in 0..=MAX_EVENTS_BEHIND as u64 + 1 {
            trainer.send(Event::Paused { step: i });
            let _ = late.events.recv();
        }
        drop(trainer);
        handle.join().unwrap();
        assert_eq!(hub.counts(), (0, 1));
        assert!(early.events.try_iter().count() <= MAX_EVENTS_BEHIND + 1);
    }
}
