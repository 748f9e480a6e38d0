//! The real binary in a real pseudo-terminal: keys change the run on screen, quitting and
//! hanging up end the process and leave the terminal restored.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{native_pty_system, Child, CommandBuilder, MasterPty, PtySize};

struct Session {
    screen: Arc<Mutex<vt100::Parser>>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn Child + Send + Sync>,
    _master: Box<dyn MasterPty + Send>,
    /// The working directory; the run is `run` in it.
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Session {
    fn start() -> Session {
        Self::start_with(&["--arch", "c8,f32", "--epochs", "50", "--threads", "1"])
    }

    /// A training run with `args` in a new directory.
    fn start_with(args: &[&str]) -> Session {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut args = args.to_vec();
        let run = dir.join("run").display().to_string();
        args.extend(["--run-dir", &run]);
        let mut s = Self::command_in(&dir, &args);
        s._tmp = Some(tmp);
        s
    }

    /// The binary with `args` (no run directory added) in `dir`.
    fn command_in(dir: &Path, args: &[&str]) -> Session {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 36,
                cols: 120,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_candletop"));
        cmd.args(args);
        cmd.cwd(dir);
        cmd.env("TERM", "xterm-256color");
        let child = pair.slave.spawn_command(cmd).unwrap();
        drop(pair.slave);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            std::num::NonZeroU16::new(36).unwrap(),
            std::num::NonZeroU16::new(120).unwrap(),
            0,
        )));
        let mut reader = pair.master.try_clone_reader().unwrap();
        let feed = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                feed.lock().unwrap().process(&buf[..n]);
            }
        });
        let writer = pair.master.take_writer().unwrap();
        Session {
            screen,
            writer,
            child,
            _master: pair.master,
            dir: dir.to_path_buf(),
            _tmp: None,
        }
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    fn wait_for(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.contents().contains(what) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{what:?} never appeared on screen:\n{}", self.contents());
    }

    fn press(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Waits for the process to end; `None` if it is still running after `limit` (a hang).
    fn wait_exit(&mut self, limit: Duration) -> Option<portable_pty::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }

    /// The last checkpoint the run left, read back.
    fn assert_last_checkpoint(&self) {
        let path = self.dir.join("run/checkpoints/last.h5");
        let c =
            candletop::checkpoint::read(&path).unwrap_or_else(|e| panic!("no good last.h5: {e}"));
        assert!(c.global_step > 0);
    }

    /// `q`, `y`: the process ends with success and the terminal restored.
    fn quit_and_check(&mut self) {
        self.press("q");
        self.wait_for("Stop training and quit?");
        self.press("y");
        let status = self
            .wait_exit(Duration::from_secs(30))
            .expect("the process ends after q y");
        assert!(status.success(), "{status:?}");
        self.assert_restored();
    }

    fn assert_restored(&self) {
        // Give the reader thread a moment to take in the last bytes.
        std::thread::sleep(Duration::from_millis(300));
        let p = self.screen.lock().unwrap();
        assert!(
            !p.screen().alternate_screen(),
            "still on the alternate screen"
        );
        assert!(!p.screen().hide_cursor(), "the cursor is still hidden");
    }
}

#[test]
fn keys_steer_the_run_and_quit_restores_the_terminal() {
    let mut s = Session::start();
    s.wait_for("RUNNING");
    s.wait_for("lr 1.00e-3");
    s.press("+");
    s.wait_for("lr 2.00e-3");
    // Marked in the LR chart (the event log's line may scroll away as epochs end).
    s.wait_for("constant  ▲ 1");
    s.press("p");
    s.wait_for("PAUSED");
    s.press("s");
    s.wait_for("saved last.h5");
    s.press("?");
    s.wait_for("multiply / divide the LR by --lr-step");
    s.press("x");
    // The schedule editor: cosine from here, its plan shown; applied.
    s.press("e");
    s.wait_for("◀ constant ▶");
    s.press("\x1b[C\x1b[C\x1b[C\x1b[C");
    s.wait_for("◀ cosine ▶");
    s.wait_for("spec cosine");
    s.press("\r");
    s.wait_for("schedule cosine to 0 from step");
    s.wait_for("lr 2.00e-3 cosine to 0");
    // The data switches and views: augmentation on (the default recipe), the images it makes,
    // the per-class view, class weights on.
    s.press("a");
    s.wait_for("augmentation on from step");
    s.wait_for("aug pad-crop flip");
    s.press("g");
    s.wait_for("augmented as the model sees them");
    s.press("x");
    s.press("c");
    s.wait_for("Validation accuracy per class");
    s.press("x");
    s.press("w");
    s.wait_for("weights balanced");
    // The LR finder on a copy of the model: its curve and suggestion; discarded.
    s.press("f");
    s.wait_for("suggested ");
    // Mid-run, at an LR of 2e-3 that trains: the valley, not the noise of the flat start
    // (which once gave 1e-6, a thousandfold cut).
    let screen = s.contents();
    let shown = screen.split("suggested ").nth(1).unwrap();
    let lr: f64 = shown.split(':').next().unwrap().trim().parse().unwrap();
    assert!(lr >= 1e-4, "suggested {lr}:\n{screen}");
    s.wait_for("lr finder: ");
    s.quit_and_check();
    s.assert_last_checkpoint();
}

#[test]
fn a_hangup_detaches_and_the_run_goes_on_for_another_terminal_to_attach() {
    // Long enough to outlast the test on a fast machine (it is stopped at the end).
    let mut s = Session::start_with(&["--arch", "c8,f32", "--epochs", "500", "--threads", "1"]);
    s.wait_for("RUNNING");
    s.wait_for("img/s");
    let pid = s.child.process_id().unwrap() as libc::pid_t;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    assert!(
        s.wait_exit(Duration::from_secs(20)).is_some(),
        "still running after SIGHUP"
    );
    // The run goes on without its terminal: steps advance in metrics.jsonl.
    let run = s.dir.join("run");
    let last_step = || {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["step"].as_u64())
            .max()
            .unwrap_or(0)
    };
    let before = last_step();
    let deadline = Instant::now() + Duration::from_secs(60);
    while last_step() <= before + 100 {
        assert!(
            Instant::now() < deadline,
            "the run stopped with its terminal"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let ls = |dir: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_candletop"))
            .args(["ls", "."])
            .current_dir(dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // Two terminals attach; a key on one shows on both and in metrics.jsonl.
    let mut a = Session::command_in(&s.dir, &["attach", "run"]);
    let b = Session::command_in(&s.dir, &["attach", "run"]);
    a.wait_for("RUNNING");
    b.wait_for("RUNNING");
    a.wait_for("lr 1.00e-3");
    a.press("+");
    a.wait_for("lr 2.00e-3");
    b.wait_for("lr 2.00e-3");
    // The change marked in the other's LR chart (its title counts them; the event log's line
    // scrolls away as fast as epochs end).
    b.wait_for("constant  ▲ 1");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"type\":\"lr_changed\""));
    // d detaches one; the other stays; ls shows the run live.
    a.press("d");
    let status = a.wait_exit(Duration::from_secs(20)).expect("d detaches");
    assert!(status.success());
    a.assert_restored();
    assert!(ls(&s.dir).contains("live"), "{}", ls(&s.dir));
    // The other stops the run from its quit prompt: a valid last.h5.
    let mut b = b;
    b.quit_and_check();
    s.assert_last_checkpoint();
    assert!(ls(&s.dir).contains("stopped"), "{}", ls(&s.dir));
    // Over, it can still be opened as it was: its curves, log and end, nothing to steer.
    let mut v = Session::command_in(&s.dir, &["view", "run"]);
    v.wait_for("STOPPED");
    v.wait_for("lr 2.00e-3 constant");
    v.wait_for("stopped at step");
    v.press("+");
    v.wait_for("the run has ended: nothing to steer");
    v.press("q");
    assert!(v
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    v.assert_restored();
}

/// A what-if branch forked from one terminal: both terminals draw it and its result, the
/// other keeps the branch, and the run goes on at the branch's LR.
#[test]
fn a_branch_forked_on_one_terminal_is_kept_from_another() {
    let mut a = Session::start_with(&["--arch", "c8,f32", "--epochs", "500", "--threads", "1"]);
    a.wait_for("RUNNING");
    a.wait_for("lr 1.00e-3");
    let mut b = Session::command_in(&a.dir, &["attach", "run"]);
    b.wait_for("RUNNING");
    a.press("b");
    a.wait_for("What-if branch");
    // The menu's second line, "cut the LR /3", over 50 steps.
    a.press("\x1b[B\x1b[C");
    a.wait_for("[50 steps]");
    a.press("\r");
    a.wait_for("branch lr=3.33e-4: forked at step");
    // The comparison's end pauses the run for a decision, on both screens.
    b.wait_for("Branch result");
    a.wait_for("Branch result");
    let result = b.contents();
    assert!(
        result.contains("lr=3.33e-4 forked at step")
            && result.contains("50 steps on the same batches"),
        "{result}"
    );
    b.press("b");
    // The header's LR says it on both screens. (Not the event log's "the branch goes on": this
    // small model runs an epoch in half a second once it resumes, and the epochs' lines can
    // scroll it away between two looks at a busy machine's screen; CI saw that once.)
    a.wait_for("lr 3.33e-4");
    b.wait_for("lr 3.33e-4");
    let records: Vec<serde_json::Value> = std::fs::read_to_string(a.dir.join("run/metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let of = |kind: &str| records.iter().filter(|r| r["type"] == kind).count();
    assert_eq!(
        (of("forked"), of("branch_verdict"), of("branch_kept")),
        (1, 1, 1)
    );
    let verdict = records
        .iter()
        .find(|r| r["type"] == "branch_verdict")
        .unwrap();
    assert_eq!(verdict["verdict"]["steps"], 50);
    assert_eq!(verdict["verdict"]["awaiting"], true);
    // The step records of the comparison carry the branch's loss.
    assert!(records
        .iter()
        .any(|r| r["type"] == "step" && r["branch"]["loss"].as_f64().is_some()));
    b.press("d");
    assert!(b.wait_exit(Duration::from_secs(20)).is_some());
    a.quit_and_check();
    a.assert_last_checkpoint();
    let last = candletop::checkpoint::read(&a.dir.join("run/checkpoints/last.h5")).unwrap();
    assert_eq!(last.branches.len(), 1);
    assert_eq!(last.branches[0].kept_branch, Some(true));
}

#[test]
fn sigterm_stops_cleanly() {
    let mut s = Session::start();
    s.wait_for("RUNNING");
    let pid = s.child.process_id().unwrap() as libc::pid_t;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = s
        .wait_exit(Duration::from_secs(30))
        .expect("the process ends after SIGTERM");
    assert!(status.success(), "{status:?}");
    s.assert_restored();
}

/// A NaN in the terminal UI: the run rolls back and pauses, the doctor blames the LR, `r` cuts
/// it (a remedy, kept in memory), `u` takes it back; `i` measures the activations.
#[test]
fn a_nan_rolls_back_and_pauses_and_the_doctor_remedy_is_undone() {
    let mut s = Session::start_with(&[
        "--arch",
        "c8,f32",
        "--epochs",
        "50",
        "--threads",
        "1",
        "--optimizer",
        "sgd",
        "--lr",
        "1e6",
    ]);
    s.wait_for("PAUSED");
    // The event log enlarged (the focus to it, Enter): its lines whole.
    s.press("\t\t\t\t\t\r");
    s.wait_for("weights and optimizer of step 0; paused");
    s.press("\r");
    s.wait_for("r cut the LR x0.1");
    s.press("r");
    s.wait_for("lr 1.00e5");
    s.wait_for("u undoes: cut the LR x0.1");
    s.press("\r");
    s.wait_for("remedy for learning rate too high");
    s.press("u");
    s.wait_for("undone: cut the LR x0.1");
    s.wait_for("lr 1.00e6");
    s.press("\r");
    // The activations at the next step: the gradient panel gains its dead/saturated columns.
    s.press("i");
    s.press("n");
    s.wait_for("dead sat");
    s.quit_and_check();
    let metrics = std::fs::read_to_string(s.dir.join("run/metrics.jsonl")).unwrap();
    for record in [
        "non_finite",
        "remedy_applied",
        "remedy_undone",
        "activations",
    ] {
        assert!(
            metrics.contains(&format!("\"type\":\"{record}\"")),
            "no {record} record"
        );
    }
}
