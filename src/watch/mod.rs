//! Watching a run: what a watcher knows of it (`RunState`, folded from the trainer's messages),
//! the one receive loop every front end runs on (`watch`), and how the run ended (`Outcome`).
//!
//! The loop blocks on one `select` over the trainer's step and event channels, the front end's
//! input, signals and a tick. Messages are folded into the front end's `RunState` in the order
//! the trainer sent them (the steps before an event, then the event), and the front end is told
//! what changed; it answers with commands for the trainer.

pub mod chart;
pub mod hub;
pub mod outcome;
pub mod state;
pub mod words;

use std::time::Instant;

use crossbeam_channel::{never, select, Receiver};

pub use outcome::Outcome;
pub use state::{BranchOutcome, BranchView, LogLine, LrFinder, RunState, Series, Status};
pub use words::LogKind;

use crate::protocol::{Command, Event, MonitorLink, StepMetrics};

/// A way of showing a run. Its state changes only here; drawing or printing reads it.
pub trait FrontEnd {
    /// What the user sends (keys), if anything.
    type Input;

    fn state(&mut self) -> &mut RunState;
    /// After a step message was folded into the state.
    fn on_step(&mut self, _m: &StepMetrics) {}
    /// After an event was folded into the state.
    fn on_event(&mut self, _e: &Event) {}
    /// After the trainer's channels closed (the state says how).
    fn on_trainer_gone(&mut self) {}
    fn on_input(&mut self, _input: Self::Input) -> Vec<Command> {
        Vec::new()
    }
    /// SIGTERM, SIGINT or SIGHUP.
    fn on_signal(&mut self, signal: i32) -> Vec<Command>;
    fn on_tick(&mut self) {}
    /// Called before each wait: draw, check deadlines.
    fn before_wait(&mut self) -> Vec<Command> {
        Vec::new()
    }
    /// True when the front end is finished with the run (checked before each wait).
    fn done(&mut self) -> bool;
}

/// Where a front end's own messages come from.
pub struct Sources<I> {
    pub input: Receiver<I>,
    pub signals: Receiver<i32>,
    pub tick: Receiver<Instant>,
}

impl<I> Sources<I> {
    /// No input, no signals, no tick.
    pub fn none() -> Self {
        Self {
            input: never(),
            signals: never(),
            tick: never(),
        }
    }
}

/// Runs `front` until it is done; returns how the run ended as far as it saw.
pub fn watch<F: FrontEnd>(
    front: &mut F,
    link: &MonitorLink,
    sources: Sources<F::Input>,
) -> Outcome {
    let Sources {
        mut input,
        mut signals,
        tick,
    } = sources;
    let mut steps: Receiver<StepMetrics> = link.steps.clone();
    let mut events: Receiver<Event> = link.events.clone();
    let send = |cmds: Vec<Command>| {
        for c in cmds {
            let _ = link.commands.send(c);
        }
    };
    loop {
        send(front.before_wait());
        if front.done() {
            break;
        }
        select! {
            recv(steps) -> m => match m {
                Ok(m) => {
                    // `Started` comes before every step, but select may pick the step first.
                    if front.state().info.is_none() {
                        if let Ok(e) = events.try_recv() {
                            fold_event(front, &e);
                        }
                    }
                    fold_step(front, &m);
                    // A burst is folded at once.
                    for m in steps.try_iter() {
                        fold_step(front, &m);
                    }
                }
                Err(_) => steps = never(),
            },
            recv(events) -> e => match e {
                Ok(e) => {
                    // Steps sent before this event are folded before it.
                    if !matches!(e, Event::Started(_)) {
                        for m in steps.try_iter() {
                            fold_step(front, &m);
                        }
                    }
                    fold_event(front, &e);
                }
                Err(_) => {
                    events = never();
                    front.state().on_trainer_gone();
                    front.on_trainer_gone();
                }
            },
            recv(input) -> i => match i {
                Ok(i) => send(front.on_input(i)),
                Err(_) => input = never(),
            },
            recv(signals) -> s => match s {
                Ok(s) => send(front.on_signal(s)),
                Err(_) => signals = never(),
            },
            recv(tick) -> _ => front.on_tick(),
        }
    }
    Outcome::of(front.state())
}

fn fold_step<F: FrontEnd>(front: &mut F, m: &StepMetrics) {
    front.state().on_step(m);
    front.on_step(m);
}

fn fold_event<F: FrontEnd>(front: &mut F, e: &Event) {
    front.state().on_event(e);
    front.on_event(e);
}
