//! Watching a run from another terminal: the training process listens on a Unix socket in its
//! run directory (`candletop.sock`, mode 0600; a peer of another user id is refused), and a
//! watcher (`candletop attach`) speaks `wire`'s protocol over it: the run as it is, then every
//! step and event, while its keys go back as commands. A watcher can never stop or slow the
//! run: the hub drops one that stops reading, and anything malformed gets an error reply.

pub mod client;
pub mod wire;

use std::io::{BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Sender};

use crate::protocol::{Command, MonitorLink, StepMetrics};
use crate::run_dir::RunDir;
use crate::watch::hub::Hub;
use wire::{read_frame, write_msg, ClientMsg, Frame, ServerMsg, MAX_FRAME, PROTOCOL_VERSION};

/// How long a watcher has to say hello, and a write may block before the watcher is let go.
const PATIENCE: Duration = Duration::from_secs(5);

/// At most one step message per this long to a watcher (steps in between are folded in).
pub const STEP_INTERVAL: Duration = Duration::from_millis(50);

/// How often the server checks that its socket file is still there.
const SOCKET_CHECK: Duration = Duration::from_secs(1);

/// A socket listening at `path`, for its user only, not blocking.
fn listen(path: &Path) -> std::io::Result<UnixListener> {
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The listening socket of a run; removed when dropped.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Why the socket could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct SocketError {
    pub path: PathBuf,
    pub problem: String,
}

impl Server {
    /// Listens in `dir` for watchers of the run `hub` shares. A socket left by a process that
    /// died is replaced; one a live process answers on is an error.
    pub fn start(dir: &RunDir, hub: Hub) -> Result<Server, SocketError> {
        let path = dir.socket();
        let err = |problem: String| SocketError {
            path: path.clone(),
            problem,
        };
        if path.exists() {
            if UnixStream::connect(&path).is_ok() {
                return Err(err("another candletop process serves this run".into()));
            }
            std::fs::remove_file(&path).map_err(|e| err(e.to_string()))?;
        }
        let mut listener = listen(&path).map_err(|e| err(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let run_dir = dir.path().display().to_string();
        let log = dir.socket_log();
        let stopping = stop.clone();
        let socket = path.clone();
        let thread = std::thread::Builder::new()
            .name("candletop-socket".into())
            .spawn(move || {
                let mut checked = Instant::now();
                while !stopping.load(Ordering::Relaxed) {
                    // A socket file removed by hand would leave the run unreachable, and
                    // dead to `ls`: it is made again.
                    if checked.elapsed() >= SOCKET_CHECK {
                        checked = Instant::now();
                        if !socket.exists() {
                            match listen(&socket) {
                                Ok(l) => {
                                    listener = l;
                                    note(&log, "the socket file was gone; made it again");
                                }
                                Err(e) => note(&log, &format!("the socket file was gone: {e}")),
                            }
                        }
                    }
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (hub, run_dir, log) = (hub.clone(), run_dir.clone(), log.clone());
                            let _ = std::thread::Builder::new()
                                .name("candletop-watcher".into())
                                .spawn(move || serve(stream, &hub, &run_dir, &log));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })
            .map_err(|e| err(e.to_string()))?;
        Ok(Server {
            path,
            stop,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The user id of the process at the other end of `stream`.
pub fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Whether a peer of user `peer` may watch a run of user `owner`.
pub fn may_attach(peer: u32, owner: u32) -> bool {
    peer == owner
}

fn note(log: &Path, line: &str) {
    let stamp = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(f, "{stamp} {line}");
    }
}

/// The socket's writing side, shared by the forwarder and the reader's replies.
type Out = Arc<Mutex<UnixStream>>;

fn send_on(out: &Out, msg: &ServerMsg) -> bool {
    let mut s = out.lock().unwrap_or_else(|e| e.into_inner());
    write_msg(&mut *s, msg).is_ok()
}

/// One watcher, from hello to hang-up.
fn serve(stream: UnixStream, hub: &Hub, run_dir: &str, log: &Path) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(PATIENCE));
    if !admit(&stream, log) {
        return;
    }
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let out: Out = Arc::new(Mutex::new(stream));
    let hello = ServerMsg::Hello {
        protocol: PROTOCOL_VERSION,
        run_dir: run_dir.to_string(),
        pid: std::process::id(),
    };
    if !send_on(&out, &hello) {
        return;
    }
    let mut input = BufReader::new(read_half);
    if !handshake(&mut input, &out) {
        return;
    }
    let (state, link) = hub.subscribe();
    if !send_on(
        &out,
        &ServerMsg::Snapshot {
            state: Box::new(state),
        },
    ) {
        return;
    }
    let reader = read_commands(input, link.commands.clone(), out.clone());
    forward(&link, &out);
    drop(link);
    // Closing our side ends the reader too.
    let s = out.lock().unwrap_or_else(|e| e.into_inner());
    let _ = s.shutdown(std::net::Shutdown::Both);
    drop(s);
    let _ = reader.join();
}

/// Whether the peer is the run's own user; a refusal is said to the peer and logged.
fn admit(stream: &UnixStream, log: &Path) -> bool {
    // SAFETY: geteuid has no preconditions.
    let owner = unsafe { libc::geteuid() };
    match peer_uid(stream) {
        Ok(uid) if may_attach(uid, owner) => true,
        Ok(uid) => {
            note(
                log,
                &format!("refused a watcher of user id {uid} (the run's user is {owner})"),
            );
            let mut s = stream;
            let message = "refused: only the user who started the run may watch it".into();
            let _ = write_msg(&mut s, &ServerMsg::Error { message });
            false
        }
        Err(e) => {
            note(
                log,
                &format!("refused a watcher whose user is unknown: {e}"),
            );
            false
        }
    }
}

/// The watcher's hello, within `PATIENCE`, in this run's protocol.
fn handshake(input: &mut BufReader<UnixStream>, out: &Out) -> bool {
    let _ = input.get_ref().set_read_timeout(Some(PATIENCE));
    let refuse = |message: String| send_on(out, &ServerMsg::Error { message });
    match read_frame(input, MAX_FRAME) {
        Ok(Frame::Line(line)) => match serde_json::from_slice::<ClientMsg>(&line) {
            Ok(ClientMsg::Hello { protocol }) if protocol == PROTOCOL_VERSION => {}
            Ok(ClientMsg::Hello { protocol }) => {
                refuse(format!(
                    "protocol {protocol} is not spoken here (this run speaks {PROTOCOL_VERSION})"
                ));
                return false;
            }
            Ok(_) => {
                refuse("the first message must be a hello".into());
                return false;
            }
            Err(e) => {
                refuse(format!("not a message: {e}"));
                return false;
            }
        },
        _ => return false,
    }
    let _ = input.get_ref().set_read_timeout(None);
    true
}

/// The watcher's messages, on a thread of their own: commands to the trainer, anything else
/// refused.
fn read_commands(
    mut input: BufReader<UnixStream>,
    commands: Sender<Command>,
    replies: Out,
) -> JoinHandle<()> {
    std::thread::spawn(move || loop {
        let reply = |message: String| {
            send_on(&replies, &ServerMsg::Error { message });
        };
        match read_frame(&mut input, MAX_FRAME) {
            Ok(Frame::Line(line)) => match serde_json::from_slice::<ClientMsg>(&line) {
                Ok(ClientMsg::Command { command }) => {
                    if commands.send(command).is_err() {
                        return;
                    }
                }
                Ok(ClientMsg::Hello { .. }) => reply("hello was already said".into()),
                Err(e) => reply(format!("not a message: {e}")),
            },
            Ok(Frame::TooLong) => reply(format!("a message over {MAX_FRAME} bytes")),
            Ok(Frame::Closed) | Err(_) => return,
        }
    })
}

/// Everything the run says, until it ends or the watcher goes. Steps are folded to at most
/// one message per `STEP_INTERVAL` (a screen draws at about that rate); events go at once,
/// after the steps before them.
fn forward(link: &MonitorLink, out: &Out) {
    let send = |msg: &ServerMsg| send_on(out, msg);
    let (mut steps, events) = (link.steps.clone(), link.events.clone());
    let mut pending: Option<StepMetrics> = None;
    let mut last_sent = Instant::now();
    let flush = |pending: &mut Option<StepMetrics>, last_sent: &mut Instant| -> bool {
        *last_sent = Instant::now();
        match pending.take() {
            Some(metrics) => send(&ServerMsg::Step { metrics }),
            None => true,
        }
    };
    loop {
        let wait = STEP_INTERVAL.saturating_sub(last_sent.elapsed());
        let sent = select! {
            recv(steps) -> m => match m {
                Ok(m) => {
                    match &mut pending {
                        Some(p) => p.fold(m),
                        None => pending = Some(m),
                    }
                    last_sent.elapsed() < STEP_INTERVAL || flush(&mut pending, &mut last_sent)
                }
                Err(_) => { steps = crossbeam_channel::never(); true }
            },
            recv(events) -> e => match e {
                Ok(event) => {
                    flush(&mut pending, &mut last_sent) && send(&ServerMsg::Event { event })
                }
                Err(_) => break,
            },
            default(wait) => flush(&mut pending, &mut last_sent),
        };
        if !sent {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_runs_own_user_may_attach() {
        assert!(may_attach(1000, 1000));
        assert!(!may_attach(1001, 1000));
        assert!(!may_attach(0, 1000), "not even root, through this socket");
    }
}
