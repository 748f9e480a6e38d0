//! SIGTERM, SIGINT and SIGHUP as messages on a channel, so that every front end can stop the
//! trainer cleanly (and save `last.h5`) instead of dying mid-step.

use crossbeam_channel::{unbounded, Receiver};
pub use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// Starts a thread that forwards the three signals; their default actions no longer apply.
pub fn spawn() -> std::io::Result<Receiver<i32>> {
    let (tx, rx) = unbounded();
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP, SIGINT])?;
    std::thread::Builder::new()
        .name("candletop-signals".into())
        .spawn(move || {
            for s in signals.forever() {
                if tx.send(s).is_err() {
                    return;
                }
            }
        })?;
    Ok(rx)
}
