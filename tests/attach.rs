//! Runs other terminals can watch: a training process serves its run on a Unix socket in the
//! run directory; `candletop attach` (here its library side, and the binary for errors) gets the
//! run as it is and then live, and steers it; `candletop ls` lists runs live, stopped or dead.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use candletop::protocol::{Command, Event};
use candletop::run_dir::RunDir;
use candletop::socket::client;
use common::{candletop, until};

/// A headless run of the small model in `dir/r`, long enough to be watched.
fn start_run(dir: &Path) -> Child {
    let child = Process::new(env!("CARGO_BIN_EXE_candletop"))
        .args([
            "--headless",
            "--arch",
            "c8,f32",
            "--epochs",
            "50",
            "--threads",
            "1",
            "--run-dir",
            "r",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_until_live(&dir.join("r"));
    child
}

fn ls(dir: &Path) -> String {
    let out = candletop(&["ls", "."], dir);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn a_watcher_attaches_steers_and_stops_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let mut run = start_run(tmp.path());
    let dir = tmp.path().join("r");
    let a = client::attach(&dir).unwrap();
    assert!(a.state.info.is_some(), "the snapshot carries the run");
    assert!(ls(tmp.path()).contains("./r  live"), "{}", ls(tmp.path()));
    // A second watcher sees the first one's command.
    let b = client::attach(&dir).unwrap();
    a.link.commands.send(Command::ScaleLr(2.0)).unwrap();
    for w in [&a, &b] {
        let seen = until(&w.link, |e| matches!(e, Event::LrChanged { .. }));
        assert!(
            matches!(seen.last(), Some(Event::LrChanged { new, .. }) if (*new - 2e-3).abs() < 1e-12)
        );
    }
    // Steps keep coming live.
    let s1 = a
        .link
        .steps
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .step;
    let s2 = a
        .link
        .steps
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .step;
    assert!(s2 > s1);
    drop(b);
    b_is_gone_and_training_goes_on(&a);
    a.link.commands.send(Command::Stop).unwrap();
    until(&a.link, |e| matches!(e, Event::Finished { .. }));
    let status = run.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let last = candletop::checkpoint::read(&dir.join("checkpoints/last.h5")).unwrap();
    assert!(last.global_step > 0);
    assert!(
        !RunDir::new(&dir).socket().exists(),
        "the socket is removed"
    );
    assert!(
        ls(tmp.path()).contains("./r  stopped"),
        "{}",
        ls(tmp.path())
    );
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"type\":\"lr_changed\""));
}

fn b_is_gone_and_training_goes_on(a: &client::Attached) {
    let before = a
        .link
        .steps
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .step;
    let after = a
        .link
        .steps
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .step;
    assert!(after > before);
}

/// Bytes that are not the protocol get an error reply; the run goes on and serves others.
/// A second run may not take a live run's directory, nor (unless it resumes into it) a
/// finished one's: each is refused in one line, exit 2, and the first run's files are as
/// they were.
#[test]
fn a_run_directory_in_use_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut run = start_run(tmp.path());
    let dir = tmp.path().join("r");
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let second = [
        "--headless",
        "--arch",
        "c8,f16",
        "--max-steps",
        "3",
        "--run-dir",
        "r",
    ];
    let out = candletop(&second, tmp.path());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--run-dir r: a live run is using it"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("config.toml")).unwrap(),
        config
    );
    let a = client::attach(&dir).unwrap();
    a.link.commands.send(Command::Save).unwrap();
    a.link.commands.send(Command::Stop).unwrap();
    until(&a.link, |e| e.is_terminal());
    run.wait().unwrap();
    // Finished: a fresh run is refused, a resume goes on in it.
    let out = candletop(&second, tmp.path());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--run-dir r: it holds a run already"), "{err}");
    let last = RunDir::new(&dir).checkpoints().join("last.h5");
    let step = candletop::checkpoint::read(&last).unwrap().global_step;
    let steps = (step + 2).to_string();
    let resume = [
        "--headless",
        "--max-steps",
        &steps,
        "--resume",
        last.to_str().unwrap(),
    ];
    let out = candletop(&[&resume[..], &["--run-dir", "r"]].concat(), tmp.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A socket file removed by hand is made again: the run stays live to `ls` and attachable.
#[test]
fn a_deleted_socket_file_is_made_again() {
    let tmp = tempfile::tempdir().unwrap();
    let mut run = start_run(tmp.path());
    let dir = tmp.path().join("r");
    std::fs::remove_file(RunDir::new(&dir).socket()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !client::is_live(&dir) {
        assert!(Instant::now() < deadline, "the socket never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ls(tmp.path()).contains("./r  live"), "{}", ls(tmp.path()));
    let a = client::attach(&dir).unwrap();
    a.link.commands.send(Command::Stop).unwrap();
    until(&a.link, |e| e.is_terminal());
    run.wait().unwrap();
    let log = std::fs::read_to_string(dir.join("socket.log")).unwrap();
    assert!(
        log.contains("the socket file was gone; made it again"),
        "{log}"
    );
}

#[test]
fn malformed_messages_are_refused_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let mut run = start_run(tmp.path());
    let dir = tmp.path().join("r");
    let mut s = UnixStream::connect(RunDir::new(&dir).socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut input = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    input.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("{\"type\":\"hello\",\"protocol\":1,"),
        "{line}"
    );
    // A command before hello: refused, connection closed.
    s.write_all(b"{\"type\":\"command\",\"command\":{\"command\":\"stop\"}}\n")
        .unwrap();
    line.clear();
    input.read_line(&mut line).unwrap();
    assert!(line.contains("the first message must be a hello"), "{line}");
    // A hello whose protocol number does not fit: said as such, not as a missing hello.
    let mut s = UnixStream::connect(RunDir::new(&dir).socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut input = BufReader::new(s.try_clone().unwrap());
    input.read_line(&mut line).unwrap();
    s.write_all(b"{\"type\":\"hello\",\"protocol\":99999999999999999999}\n")
        .unwrap();
    line.clear();
    input.read_line(&mut line).unwrap();
    assert!(
        line.contains("not a message: ") && line.contains("expected u32"),
        "{line}"
    );
    // A proper watcher then sends garbage of every kind.
    let mut s = UnixStream::connect(RunDir::new(&dir).socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut input = BufReader::new(s.try_clone().unwrap());
    s.write_all(b"{\"type\":\"hello\",\"protocol\":1}\n")
        .unwrap();
    let mut errors = 0;
    let junk: Vec<Vec<u8>> = vec![
        b"not json\n".to_vec(),
        vec![0xff; 100_000],
        b"\n".to_vec(),
        b"{\"type\":\"command\",\"command\":{\"command\":\"set_lr\",\"value\":\"x\"}}\n".to_vec(),
        b"{\"type\":\"hello\",\"protocol\":1}\n".to_vec(),
        b"{\"type\":\"command\",\"command\":{\"command\":\"scale_lr\",\"value\":-1.0}}\n".to_vec(),
    ];
    for j in &junk {
        s.write_all(j).unwrap();
    }
    s.write_all(b"\n").unwrap();
    // Read until the replies and the refusal of the negative factor have come.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut refused = false;
    while Instant::now() < deadline && !(errors >= 5 && refused) {
        let mut line = String::new();
        if input.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.starts_with("{\"type\":\"error\"") {
            errors += 1;
        }
        if line.contains("\"type\":\"refused\"") {
            refused = true;
        }
    }
    assert!(errors >= 5 && refused, "errors {errors}, refused {refused}");
    drop(s);
    // The run is unharmed: a new watcher attaches and sees steps advance.
    let a = client::attach(&dir).unwrap();
    b_is_gone_and_training_goes_on(&a);
    a.link.commands.send(Command::Stop).unwrap();
    assert!(run.wait().unwrap().success());
}

/// A run whose process was killed: `ls` says dead, `attach` says so in one line (exit 2).
#[test]
fn a_killed_run_is_dead_to_ls_and_attach() {
    let tmp = tempfile::tempdir().unwrap();
    let mut run = start_run(tmp.path());
    run.kill().unwrap();
    run.wait().unwrap();
    let listing = ls(tmp.path());
    assert!(listing.contains("./r  dead"), "{listing}");
    assert!(
        listing.contains("ended without a word (killed?)"),
        "{listing}"
    );
    let out = candletop(&["attach", "r"], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "candletop: r: the run's process is gone (its socket is stale); `candletop ls` names its newest checkpoint to --resume from"
    );
    let out = candletop(&["attach"], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    let out = candletop(&["attach", "nowhere"], tmp.path());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no live run here"));
}

/// A run's metrics.jsonl folds back into the state a watcher had: `view` draws from it.
#[test]
fn a_recorded_run_replays_into_the_state_its_watcher_had() {
    let tmp = tempfile::tempdir().unwrap();
    let out = candletop(
        &[
            "--headless",
            "--arch",
            "c8,f32",
            "--max-steps",
            "60",
            "--log-every",
            "10",
            "--run-dir",
            "r",
        ],
        tmp.path(),
    );
    assert!(out.status.success());
    let recorded = RunDir::new(tmp.path().join("r")).read_records().unwrap();
    let run = candletop::watch::RunState::replay(recorded.records.iter().map(|s| &s.record));
    assert_eq!(run.step, 60);
    assert_eq!(
        run.status,
        candletop::watch::Status::Finished(candletop::protocol::FinishReason::Stopped)
    );
    assert!(run.info.is_some());
    // A point per step record: the first step's, then every 10.
    assert_eq!(run.train_loss.points().len(), 7, "a point per step record");
    assert!(run
        .log
        .iter()
        .any(|l| l.text.starts_with("stopped at step 60")));
    // A last line cut short (a full disk) is read up to, and said.
    let text = std::fs::read_to_string(tmp.path().join("r/metrics.jsonl")).unwrap();
    let torn = format!("{text}{{\"type\":\"step\",\"st");
    std::fs::write(tmp.path().join("r/metrics.jsonl"), &torn).unwrap();
    let plot = candletop(&["plot", "r", "-o", "r.svg"], tmp.path());
    assert!(plot.status.success(), "{plot:?}");
    let lines = text.lines().count() + 1;
    assert_eq!(
        String::from_utf8_lossy(&plot.stderr),
        format!("candletop: warning: r/metrics.jsonl: line {lines} is cut short (a full disk or a killed writer?): read up to it\n")
    );
    // Errors: a line that is not JSON names its line; a live run is for attach.
    std::fs::write(tmp.path().join("r/metrics.jsonl"), format!("{text}oops\n")).unwrap();
    let bad = candletop(&["view", "r"], tmp.path());
    assert_eq!(bad.status.code(), Some(2));
    let lines = text.lines().count() + 1;
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains(&format!("metrics.jsonl: line {lines}: not JSON")),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let other = tempfile::tempdir().unwrap();
    let mut live = start_run(other.path());
    let out = candletop(&["view", "r"], other.path());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the run is live"));
    live.kill().unwrap();
    live.wait().unwrap();
}

/// Another user cannot watch: the run directory's and the socket's modes keep them out, and
/// when those are opened the run checks the peer's user id, refuses with a reason, and notes it
/// in socket.log. (Needs root to act as
/// another user; skipped otherwise, and said so.)
#[test]
fn another_user_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: acting as another user needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut run = start_run(tmp.path());
    let dir = tmp.path().join("r");
    let socket = RunDir::new(&dir).socket();
    let path = std::ffi::CString::new(socket.to_str().unwrap()).unwrap();
    // The exit status of a child that connects as user `nobody`: 0 refused by the run, 4 no
    // connection at all.
    let as_nobody = || -> i32 {
        // SAFETY: the child only calls async-signal-safe functions, then _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe {
                if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    libc::_exit(3);
                }
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                let mut addr: libc::sockaddr_un = std::mem::zeroed();
                addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
                for (i, b) in path.as_bytes().iter().enumerate() {
                    addr.sun_path[i] = *b as libc::c_char;
                }
                let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
                if libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) != 0 {
                    libc::_exit(4);
                }
                let mut buf = [0u8; 512];
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                let refused = n > 0 && buf[..n as usize].windows(8).any(|w| w == b"refused:");
                libc::_exit(if refused { 0 } else { 5 });
            }
        }
        let mut status = 0;
        // SAFETY: waiting for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "{status}");
        libc::WEXITSTATUS(status)
    };
    // The run directory (0700) and the socket (0600) keep others out...
    assert_eq!(as_nobody(), 4, "another user reached the socket");
    // ...and with the modes opened, the run's own check refuses them.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(as_nobody(), 0, "the other user was not refused");
    let log = std::fs::read_to_string(dir.join("socket.log")).unwrap();
    assert!(log.contains("refused a watcher of user id 65534"), "{log}");
    // The owner still gets in.
    let a = client::attach(&dir).unwrap();
    a.link.commands.send(Command::Stop).unwrap();
    assert!(run.wait().unwrap().success());
}
