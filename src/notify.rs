//! Front end: `--notify CMD`, alerts that reach a person while nobody is attached. A watcher of
//! the run in its own process: on a new warning, a non-finite loss, a rollback, early stopping,
//! the target reached, the end of the run and a failure it runs CMD through `sh -c`, in the
//! run directory, with the event as one JSON line on stdin and `CANDLETOP_EVENT` (its type)
//! and `CANDLETOP_RUN_DIR` in the environment.
//!
//! The commands run one at a time on a thread of their own, each for at most
//! [`TIMEOUT`] (then its process group is killed); training never waits for them. A command
//! that fails (cannot start, exits non-zero, times out) is a warning in the run's record, once:
//! through the trainer while it runs, or appended to metrics.jsonl once it has ended when the
//! trainer had no step left to record it (the notifications of the end come then); and on
//! stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use crate::protocol::{Command, Event, MonitorLink, Record};
use crate::run_dir::{MetricsLog, RunDir};

/// How long one notification may take, unless `CANDLETOP_NOTIFY_TIMEOUT` (seconds) says.
pub const TIMEOUT: Duration = Duration::from_secs(30);

fn timeout() -> Duration {
    std::env::var("CANDLETOP_NOTIFY_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(TIMEOUT, Duration::from_secs_f64)
}

/// Notifications waiting beyond this are dropped (a command far slower than the run's events).
const QUEUE: usize = 64;

/// A notification to send: its type and its JSON line.
struct Job {
    kind: &'static str,
    line: String,
}

/// When the notifications of a run that has ended must be done: one timeout after its end.
/// Until then unset; the commands left share what remains, so that a failure is still
/// written down before the process leaves.
type Deadline = std::sync::Arc<std::sync::Mutex<Option<Instant>>>;

fn time_left(deadline: &Deadline) -> Option<Duration> {
    let at = (*deadline.lock().unwrap_or_else(|e| e.into_inner()))?;
    Some(at.saturating_duration_since(Instant::now()))
}

/// What is kept back from the end for writing a warning down.
const MARGIN: Duration = Duration::from_millis(300);

/// The watcher and the thread that runs the commands.
pub struct Notifier {
    watcher: Option<JoinHandle<()>>,
    deadline: Deadline,
}

impl Notifier {
    /// Starts watching the run `monitor` sees; `cmd` runs in `run_dir`.
    pub fn start(cmd: String, run_dir: PathBuf, monitor: MonitorLink) -> Self {
        let deadline = Deadline::default();
        let shared = deadline.clone();
        let watcher = std::thread::Builder::new()
            .name("candletop-notify".into())
            .spawn(move || watch(&cmd, &run_dir, monitor, shared))
            .ok();
        Self { watcher, deadline }
    }

    /// Waits for the notifications of the run's end to go out, at most [`TIMEOUT`] and a
    /// little; a command still running then is left to finish on its own.
    pub fn finish(mut self) {
        let deadline = {
            let mut d = self.deadline.lock().unwrap_or_else(|e| e.into_inner());
            *d.get_or_insert_with(|| Instant::now() + timeout())
        } + Duration::from_secs(1);
        if let Some(h) = self.watcher.take() {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

/// Reads the run's events until its end, queueing the notifications; the runner sends them.
fn watch(cmd: &str, run_dir: &Path, monitor: MonitorLink, deadline: Deadline) {
    let (jobs, queue) = crossbeam_channel::bounded::<Job>(QUEUE);
    let warn = monitor.commands.clone();
    let runner = {
        let (cmd, dir, shared) = (cmd.to_string(), run_dir.to_path_buf(), deadline.clone());
        std::thread::Builder::new()
            .name("candletop-notify-run".into())
            .spawn(move || run_all(&cmd, &dir, queue, warn, shared))
            .ok()
    };
    let mut dropped = false;
    let mut steps = monitor.steps.clone();
    loop {
        select! {
            recv(steps) -> s => if s.is_err() { steps = crossbeam_channel::never() },
            recv(monitor.events) -> e => {
                let Ok(e) = e else { break };
                let end = e.is_terminal();
                if end {
                    deadline
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert_with(|| Instant::now() + timeout());
                }
                if let Some(kind) = e.alert() {
                    let line = serde_json::to_string(&e).unwrap_or_default();
                    if jobs.try_send(Job { kind, line }).is_err() && !std::mem::replace(&mut dropped, true) {
                        let _ = monitor.commands.send(Command::Warn(format!(
                            "--notify: more than {QUEUE} notifications waiting for a slow command; later ones are dropped"
                        )));
                    }
                }
                if end {
                    break;
                }
            }
        }
    }
    drop(jobs);
    if let Some(r) = runner {
        let _ = r.join();
    }
}

/// Runs the command for each job in turn; the first failure is said once, as a warning.
fn run_all(cmd: &str, dir: &Path, queue: Receiver<Job>, warn: Sender<Command>, deadline: Deadline) {
    let mut said: Option<(String, u64, usize)> = None;
    for job in queue {
        // After the run's end, the commands left share one timeout.
        let limit = match time_left(&deadline) {
            None => timeout(),
            Some(left) => left.saturating_sub(MARGIN).min(timeout()),
        };
        if limit.is_zero() {
            continue;
        }
        let Err(problem) = notify(cmd, dir, &job, limit) else {
            continue;
        };
        if said.is_some() {
            continue;
        }
        let message = format!(
            "--notify failed on {}: {problem}; training goes on (said once)",
            job.kind
        );
        eprintln!("candletop: warning: {message}");
        let at = serde_json::from_str::<serde_json::Value>(&job.line).unwrap_or_default();
        let num = |k: &str| at.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let _ = warn.send(Command::Warn(message.clone()));
        said = Some((message, num("step"), num("epoch") as usize));
    }
    // The run has ended (the queue closes after its last event). A warning the trainer had
    // no step left to record joins the record after its last line: nobody else writes it now.
    if let Some((message, step, epoch)) = said {
        let run = RunDir::new(dir);
        let recorded = run
            .metrics_text()
            .is_ok_and(|text| text.lines().any(|l| l.contains(&message)));
        if !recorded {
            if let Ok(mut log) = MetricsLog::create(&run) {
                let _ = log.write(
                    step,
                    epoch,
                    &Record::Event(Event::Warning { step, message }),
                );
            }
        }
    }
}

/// One notification: `sh -c CMD` with the line on stdin, within `limit`.
fn notify(cmd: &str, dir: &Path, job: &Job, limit: Duration) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let mut child = Process::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .env("CANDLETOP_EVENT", job.kind)
        .env("CANDLETOP_RUN_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout ends whatever it started.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("sh: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is not a failure.
        let _ = stdin.write_all(format!("{}\n", job.line).as_bytes());
    }
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                // SAFETY: signals the process group this child leads; no memory is touched.
                unsafe {
                    libc::killpg(child.id() as i32, libc::SIGKILL);
                }
                let _ = child.wait();
                return Err(format!(
                    "still running after {} s, stopped",
                    limit.as_secs_f64()
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    let said = err.lines().next().unwrap_or("").trim();
    let code = match status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".into(),
    };
    Err(if said.is_empty() {
        code
    } else {
        format!("{code} ({})", crate::format::cut(said, 120))
    })
}
