//! Every command a watcher can send, with extreme values (0, subnormal, huge, negative, and
//! what JSON cannot carry: NaN, infinities, numbers beyond f64), sent over the socket to a live
//! run served as the terminal UI starts it. After each one the run still trains, the LR its
//! steps use is the one the events last announced (and the one its checkpoint will resume
//! with), and its next checkpoint reads back.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use candletop::checkpoint;
use candletop::protocol::{Command, Event, Remedy, Setting, MAX_SAMPLES};
use candletop::run_dir::RunDir;
use candletop::socket::client::{self, Attached};
use common::until;

/// A served run, killed when the test ends early (a failed assertion), so that none is left
/// behind: a paused one would wait for ever.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The small model, served (as the terminal UI starts its training process): a non-finite
/// step pauses the run for somebody to decide.
fn serve(dir: &Path) -> Served {
    let child = Process::new(env!("CARGO_BIN_EXE_candletop"))
        .args([
            "--arch",
            "c8,f32",
            "--subset",
            "960",
            "--epochs",
            "1000",
            "--threads",
            "1",
            "--run-dir",
            "r",
        ])
        .env("CANDLETOP_SERVE_RUN_DIR", "r")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_until_live(&dir.join("r"));
    Served(child)
}

/// What the test knows of the run from its events.
struct Seen {
    /// The LR the events last announced.
    lr: f64,
    /// Whether the schedule is constant (so that the LR stays as announced).
    constant: bool,
    paused: bool,
}

impl Seen {
    fn take(&mut self, events: &[Event]) {
        for e in events {
            match e {
                Event::LrChanged { new, .. } => self.lr = *new,
                Event::NonFinite { lr: Some(lr), .. } => self.lr = *lr,
                Event::ScheduleChanged { schedule, step, .. } => {
                    self.constant = schedule.spec.to_string() == "constant";
                    self.lr = schedule.lr_at(step + 1);
                }
                Event::Paused { .. } => self.paused = true,
                Event::Resumed { .. } => self.paused = false,
                Event::Finished { .. } | Event::Error { .. } => panic!("the run ended: {e:?}"),
                _ => {}
            }
        }
    }
}

/// Sends `command`, then a save; returns the events up to the save, which must read back.
/// Between them goes a marker, a command refused and unique to this call, so that the events
/// of `command` are told from those of an epoch's end before it.
fn send(a: &Attached, dir: &Path, seen: &mut Seen, command: Command) -> Vec<Event> {
    static MARKS: AtomicU64 = AtomicU64::new(1);
    let mark = -(MARKS.fetch_add(1, Ordering::Relaxed) as f64);
    a.link.commands.send(command.clone()).unwrap();
    a.link.commands.send(Command::ScaleLr(mark)).unwrap();
    a.link.commands.send(Command::Save).unwrap();
    let mut events = until(
        &a.link,
        |e| matches!(e, Event::Refused { command: Command::ScaleLr(m), .. } if *m == mark),
    );
    events.extend(until(&a.link, |e| match e {
        Event::CheckpointSaved { path, .. } => path.ends_with("last.h5"),
        e => matches!(e, Event::CheckpointFailed { .. }),
    }));
    seen.take(&events);
    let Some(Event::CheckpointSaved { path, step, .. }) = events.last() else {
        panic!("after {command:?}: {events:?}");
    };
    // The path as the run names it: relative to where it was started.
    let ckpt = checkpoint::read(&dir.parent().unwrap().join(path))
        .unwrap_or_else(|e| panic!("after {command:?}, the checkpoint: {e}"));
    // An epoch's end may have saved last.h5 again since.
    assert!(ckpt.global_step >= *step);
    if seen.constant {
        let resumes_with = ckpt.schedule.as_ref().unwrap().lr_at(ckpt.global_step + 1);
        assert_eq!(
            resumes_with, seen.lr,
            "after {command:?}: the LR it resumes with"
        );
    }
    events
}

/// Steps arrive, past `after`, each at the LR the events announced. A step that came out
/// non-finite pauses the run (at its last good step): the person watching then sets a sane LR
/// and goes on, as they would in the terminal UI.
fn trains(a: &Attached, dir: &Path, seen: &mut Seen, after: u64, what: &Command) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "after {what:?}: no step");
        let events: Vec<Event> = a.link.events.try_iter().collect();
        seen.take(&events);
        if seen.paused {
            let events = send(a, dir, seen, Command::SetLr(1e-3));
            assert!(events.iter().any(|e| matches!(e, Event::LrChanged { .. })));
            send(a, dir, seen, Command::Resume);
            assert!(!seen.paused, "after {what:?}");
        }
        let Ok(m) = a.link.steps.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if m.step > after + 1 {
            if seen.constant {
                assert_eq!(m.lr, seen.lr, "after {what:?}: step {}", m.step);
            }
            return;
        }
    }
}

/// JSON no Rust value serialises to: the server answers each with an error, and the run goes on.
fn beyond_json(dir: &Path) {
    let mut s = UnixStream::connect(RunDir::new(dir).socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut input = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    input.read_line(&mut line).unwrap();
    s.write_all(b"{\"type\":\"hello\",\"protocol\":1}\n")
        .unwrap();
    let frames = [
        r#"{"command":"set_lr","value":1e400}"#,
        r#"{"command":"set_lr","value":-1e400}"#,
        r#"{"command":"set_lr","value":null}"#,
        r#"{"command":"set_lr","value":"NaN"}"#,
        r#"{"command":"scale_lr","value":1e400}"#,
        r#"{"command":"set_clip_grad_norm","value":1e400}"#,
        r#"{"command":"show_samples","value":-1}"#,
        r#"{"command":"show_samples","value":4294967296}"#,
        r#"{"command":"show_samples","value":1.5}"#,
        r#"{"command":"set_augment","value":2}"#,
        r#"{"command":"apply_remedy","value":{"scale_lr":1e400}}"#,
        r#"{"command":"set_schedule","value":null}"#,
    ];
    for f in frames {
        s.write_all(format!("{{\"type\":\"command\",\"command\":{f}}}\n").as_bytes())
            .unwrap();
    }
    let mut errors = 0;
    while errors < frames.len() {
        line.clear();
        assert!(input.read_line(&mut line).unwrap() > 0, "the run hung up");
        if line.starts_with("{\"type\":\"error\"") {
            errors += 1;
        }
    }
}

fn extremes() -> Vec<Command> {
    use Command::*;
    let numbers = [
        0.0,
        -0.0,
        -1.0,
        1e-320,
        f64::MIN_POSITIVE,
        1e-300,
        3e-3,
        1e300,
        f64::MAX,
        -f64::MAX,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    let mut out = Vec::new();
    for &v in &numbers {
        out.extend([SetLr(v), SetLr(1e-3), ScaleLr(v), SetLr(1e-3)]);
        out.extend([
            SetClipGradNorm(v),
            ApplyRemedy(Remedy::ScaleLr(v)),
            SetLr(1e-3),
        ]);
        out.push(ApplyRemedy(Remedy::ClipGradNorm(v)));
    }
    out.push(SetClipGradNorm(0.0));
    for n in [0, 1, MAX_SAMPLES, MAX_SAMPLES + 1, u32::MAX] {
        out.push(ShowSamples(n));
    }
    let long = "cosine,".repeat(10_000);
    for spec in [
        "",
        "step:0",
        "step:18446744073709551615:0.5",
        "multistep:1,2,3,18446744073709551615",
        "exp:0",
        "exp:1e308",
        "warmup=18446744073709551615+cosine",
        "warmup=5:1e-320+constant",
        "poly:power=1e308,min=1e-320",
        "onecycle:max=1e308",
        "onecycle:max=1e-320",
        "plateau:patience=18446744073709551615,factor=1e-320",
        "cos\u{1b}[2Jine",
        &long,
        "cosine",
        "constant",
    ] {
        out.push(SetSchedule(spec.into()));
    }
    out.extend([
        SetAugment(true),
        SetAugment(false),
        SetClassWeights(true),
        SetClassWeights(false),
        ApplyRemedy(Remedy::Augment(true)),
        UndoRemedy,
        UndoRemedy,
        ApplyRemedy(Remedy::ClassWeights(true)),
        ApplyRemedy(Remedy::Restart(vec![
            Setting::new("arch", "c100000000"),
            Setting::new("no_such_key", 1),
            Setting::new("epochs", "18446744073709551615"),
            Setting::new("lr\n", "\u{1b}[2J"),
        ])),
        ApplyRemedy(Remedy::Restart(vec![])),
        ProbeActivations,
        FindLr,
        SetLr(1e-3),
    ]);
    out
}

#[test]
fn every_command_with_extreme_values_leaves_a_run_that_trains_and_saves() {
    let tmp = tempfile::tempdir().unwrap();
    let mut run = serve(tmp.path());
    let dir = tmp.path().join("r");
    let a = client::attach(&dir).unwrap();
    let mut seen = Seen {
        lr: 1e-3,
        constant: true,
        paused: false,
    };
    for command in extremes() {
        let events = send(&a, &dir, &mut seen, command.clone());
        if std::env::var_os("CANDLETOP_TEST_VERBOSE").is_some() {
            eprintln!("{command:?}: {events:?}");
        }
        if let Command::ShowSamples(n) = command {
            let shown = events.iter().find_map(|e| match e {
                Event::Samples { grid, .. } => Some(grid.images.len()),
                _ => None,
            });
            assert!(shown.unwrap_or(0) <= MAX_SAMPLES as usize, "{n}: {shown:?}");
        }
        let step = match a.link.steps.try_iter().last() {
            Some(m) => m.step,
            None => 0,
        };
        trains(&a, &dir, &mut seen, step, &command);
    }
    beyond_json(&dir);
    // Pause, single steps, resume.
    send(&a, &dir, &mut seen, Command::Pause);
    assert!(seen.paused);
    // Three single steps, each taken once the commands queued with it are carried out: the
    // saves that follow reach exactly three steps on, and never more (the run is paused).
    let last = dir.join("checkpoints/last.h5");
    let before = checkpoint::read(&last).unwrap().global_step;
    for _ in 0..3 {
        send(&a, &dir, &mut seen, Command::Step);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        send(&a, &dir, &mut seen, Command::Save);
        let now = checkpoint::read(&last).unwrap().global_step;
        assert!(now <= before + 3, "{now} after 3 steps from {before}");
        if now == before + 3 {
            break;
        }
        assert!(Instant::now() < deadline, "{now}: the steps were not taken");
        std::thread::sleep(Duration::from_millis(100));
    }
    send(&a, &dir, &mut seen, Command::Resume);
    trains(&a, &dir, &mut seen, 0, &Command::Resume);
    a.link.commands.send(Command::Stop).unwrap();
    until(&a.link, |e| matches!(e, Event::Finished { .. }));
    assert!(run.0.wait().unwrap().success());
    checkpoint::read(&dir.join("checkpoints/last.h5")).unwrap();
}
