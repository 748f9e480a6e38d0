//! The watcher's side: connect to a run's socket, say hello, take the snapshot, and turn the
//! connection into the same `MonitorLink` a front end watches in the training process.

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded};

use super::wire::{read_frame, write_msg, ClientMsg, Frame, ServerMsg, PROTOCOL_VERSION};
use crate::protocol::{Event, MonitorLink, STEP_CHANNEL_CAPACITY};
use crate::run_dir::RunDir;
use crate::watch::RunState;

/// The largest snapshot a watcher accepts (bounded histories make them a few hundred KB).
const MAX_SNAPSHOT: usize = 64 * 1024 * 1024;

/// A run attached to: as it was on attaching, then the live link.
pub struct Attached {
    pub state: RunState,
    pub link: MonitorLink,
    /// The training process.
    pub pid: u32,
    /// Bytes received since the snapshot (what watching costs the socket).
    pub bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Why a run could not be attached to, in a line that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("{dir}: no live run here (no {socket}); `candletop ls` lists the runs", socket = crate::run_dir::SOCKET)]
    NoSocket { dir: PathBuf },
    #[error("{dir}: the run's process is gone (its socket is stale); `candletop ls` names its newest checkpoint to --resume from")]
    Dead { dir: PathBuf },
    #[error("{dir}: {problem}")]
    Protocol { dir: PathBuf, problem: String },
}

/// Whether a live process answers on the run directory's socket.
pub fn is_live(dir: &Path) -> bool {
    UnixStream::connect(RunDir::new(dir).socket()).is_ok()
}

pub fn attach(dir: &Path) -> Result<Attached, AttachError> {
    let path = RunDir::new(dir).socket();
    let proto = |problem: String| AttachError::Protocol {
        dir: dir.to_path_buf(),
        problem,
    };
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(_) if !path.exists() => {
            return Err(AttachError::NoSocket {
                dir: dir.to_path_buf(),
            })
        }
        Err(_) => {
            return Err(AttachError::Dead {
                dir: dir.to_path_buf(),
            })
        }
    };
    let io = |e: std::io::Error| proto(e.to_string());
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let mut input = BufReader::new(stream.try_clone().map_err(io)?);
    let mut next = |what: &str| -> Result<ServerMsg, AttachError> {
        match read_frame(&mut input, MAX_SNAPSHOT).map_err(io)? {
            Frame::Line(line) => serde_json::from_slice(&line)
                .map_err(|e| proto(format!("{what} does not read: {e}"))),
            Frame::TooLong => Err(proto(format!("{what} is over {MAX_SNAPSHOT} bytes"))),
            Frame::Closed => Err(proto(format!(
                "the run closed the connection before {what}"
            ))),
        }
    };
    let pid = match next("its hello")? {
        ServerMsg::Hello { protocol, pid, .. } if protocol == PROTOCOL_VERSION => pid,
        ServerMsg::Hello { protocol, .. } => {
            return Err(proto(format!(
                "the run speaks protocol {protocol}, this candletop {PROTOCOL_VERSION}: attach with the candletop that started it"
            )))
        }
        ServerMsg::Error { message } => return Err(proto(message)),
        _ => return Err(proto("the run did not say hello".into())),
    };
    let mut out = stream.try_clone().map_err(io)?;
    write_msg(
        &mut out,
        &ClientMsg::Hello {
            protocol: PROTOCOL_VERSION,
        },
    )
    .map_err(io)?;
    let state = match next("the snapshot")? {
        ServerMsg::Snapshot { state } => *state,
        ServerMsg::Error { message } => return Err(proto(message)),
        _ => return Err(proto("the run sent no snapshot".into())),
    };
    stream.set_read_timeout(None).map_err(io)?;
    let (steps_tx, steps) = bounded(STEP_CHANNEL_CAPACITY);
    let (events_tx, events) = unbounded();
    let (commands, commands_rx) = unbounded();
    let bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = bytes.clone();
    std::thread::Builder::new()
        .name("candletop-attach-read".into())
        .spawn(move || loop {
            let msg = match read_frame(&mut input, MAX_SNAPSHOT) {
                Ok(Frame::Line(line)) => {
                    let n = line.len() as u64 + 1;
                    counted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    serde_json::from_slice::<ServerMsg>(&line).ok()
                }
                Ok(Frame::TooLong) => None,
                Ok(Frame::Closed) | Err(_) => return,
            };
            let delivered = match msg {
                Some(ServerMsg::Step { metrics }) => steps_tx.send(metrics).is_ok(),
                Some(ServerMsg::Event { event }) => events_tx.send(event).is_ok(),
                Some(ServerMsg::Error { message }) => events_tx
                    .send(Event::Warning {
                        step: 0,
                        message: format!("the run refused a message: {message}"),
                    })
                    .is_ok(),
                _ => true,
            };
            if !delivered {
                return;
            }
        })
        .map_err(io)?;
    std::thread::Builder::new()
        .name("candletop-attach-write".into())
        .spawn(move || {
            for command in commands_rx {
                if write_msg(&mut out, &ClientMsg::Command { command }).is_err() {
                    return;
                }
            }
            let _ = out.shutdown(std::net::Shutdown::Both);
        })
        .map_err(io)?;
    Ok(Attached {
        state,
        link: MonitorLink {
            steps,
            events,
            commands,
        },
        pid,
        bytes,
    })
}
