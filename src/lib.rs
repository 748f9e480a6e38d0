//! candletop: train a convolutional image classifier with Candle and watch and steer the run.
//!
//! Layers, each using only those below it:
//!
//! ```text
//! edges        app (subcommands), cli (flags), bench, error,     main.rs calls app
//!              runs (what `ls` shows)
//! front ends   tui, headless, socket (other processes watching),  talk to training only through protocol
//!              figure (a run drawn as SVG or PNG), export (its records as CSV),
//!              notify (--notify: a command run on the run's alerts)
//! watching     watch (RunState, the receive loop, Outcome, the hub that shares a run)
//! core         train -> checkpoint -> config -> data, model, optim, diagnose
//! plain data   protocol (messages, the run's record), run_dir (its files), schedule, stopping, format,
//!              rng, signals, runtime
//! ```
//!
//! The core knows nothing of how a run is shown; the front ends fold the trainer's events into
//! the same `watch::RunState`. `tests/layers.rs` checks that the imports keep to this.

pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod data;
pub mod diagnose;
pub mod error;
pub mod export;
pub mod figure;
pub mod format;
pub mod headless;
pub mod model;
pub mod notify;
pub mod optim;
pub mod protocol;
pub mod rng;
pub mod run_dir;
pub mod runs;
pub mod runtime;
pub mod schedule;
pub mod signals;
pub mod socket;
pub mod stopping;
pub mod train;
pub mod tui;
pub mod watch;
