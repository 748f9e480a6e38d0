//! What-if branches, the engine: a line forked from the run with a change, trained on the same
//! batches as the main line, and the verdict on their losses over those batches. (The terminal
//! UI's `b` and the headless `--branch` build on it.)

mod common;

use candletop::checkpoint;
use candletop::config::RunConfig;
use candletop::data::{DataSpec, DataSplits};
use candletop::protocol::BranchCall as Call;
use candletop::protocol::Record;
use candletop::protocol::{link, Command, Event, Horizon, LearningRate, MonitorLink, Setting};
use candletop::run_dir::RunDir;
use candletop::train::branch::{Comparison, Verdict};
use candletop::train::Trainer;
use common::{small_config, small_data, until};

/// A headless run of the binary on 2,000 embedded images with a small, quick model.
const SMALL_HEADLESS: &[&str] = &[
    "--headless",
    "--subset",
    "2000",
    "--arch",
    "c8,f32",
    "--batch-size",
    "32",
];

/// A run on 2,000 embedded images at `lr` (Adam), not started.
fn trainer(lr: f64) -> Trainer {
    let cfg = RunConfig {
        data: DataSpec::Embedded,
        subset: 2000,
        lr: LearningRate::new(lr).unwrap(),
        ..small_config()
    };
    let data = DataSplits::load(&cfg.data, &cfg.data_options()).unwrap();
    Trainer::new(cfg, data).unwrap()
}

/// The main line (forked with no change) and a branch with `change`, `steps` steps on the
/// same batches of epoch 1: both lines' losses, and the verdict.
fn compare(t: &Trainer, change: &[Setting], steps: usize) -> (Vec<f64>, Vec<f64>, Verdict) {
    let mut main = t.fork_line(&[]).unwrap();
    let mut branch = t.fork_line(change).unwrap();
    let mut c = Comparison::default();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (i, batch) in t.training_batches(1).take(steps).enumerate() {
        let batch = batch.unwrap();
        let step = i as u64 + 1;
        a.push(main.step(&batch, step).unwrap().0);
        b.push(branch.step(&batch, step).unwrap().0);
        c.push(a[i], b[i]);
    }
    (a, b, c.verdict().unwrap())
}

#[test]
fn a_branch_without_a_change_trains_bit_for_bit_as_the_main_line() {
    let t = trainer(1e-3);
    let (a, b, v) = compare(&t, &[], 40);
    assert_eq!(a.len(), 40);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
    assert_eq!((v.diff, v.call), (0.0, Call::Same));
}

#[test]
fn an_lr_50x_too_high_is_worse_and_cutting_it_is_better() {
    // The default recipe's LR (1e-3) against 50x that on a branch.
    let (_, _, v) = compare(&trainer(1e-3), &[Setting::new("lr", 5e-2)], 60);
    assert_eq!(v.call, Call::Worse, "{v:?}");
    // A run at 50x, and a branch that cuts it back.
    let (_, _, v) = compare(&trainer(5e-2), &[Setting::new("lr", 1e-3)], 60);
    assert_eq!(v.call, Call::Better, "{v:?}");
    assert!(v.branch < v.main, "{v:?}");
}

#[test]
fn a_change_a_branch_cannot_make_names_itself() {
    let t = trainer(1e-3);
    let problem = |s: Setting| t.fork_line(&[s]).err().unwrap();
    assert_eq!(
        problem(Setting::new("batch_size", 16)),
        "batch_size: cannot change on a branch (these can: lr, schedule, weight_decay, clip_grad_norm, label_smoothing, augment, class_weights, dropout)"
    );
    // Dropout changes between non-zero values (off or on would remove or add layers).
    assert_eq!(
        problem(Setting::new("dropout", 0)),
        "dropout=0: must be above 0 and under 1 (turning dropout off removes layers)"
    );
    let line = t.fork_line(&[Setting::new("dropout", 0.5)]).unwrap();
    assert_eq!(line.learner.model.config().dropout, 0.5);
    assert_eq!(
        problem(Setting::new("lr", "fast")),
        "lr=fast: not a number of 0 or more"
    );
    assert_eq!(
        problem(Setting::new("label_smoothing", 1.5)),
        "label_smoothing=1.5: must be under 1"
    );
}

/// The headless form: `--branch CHANGE --branch-steps N` forks the run from its first step,
/// prints and records the verdict, and the better line goes on; bad changes are one line and
/// exit code 2.
#[test]
fn headless_branches_print_the_verdict_and_keep_the_better_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let run = |name: &str, extra: &[&str]| {
        let mut args = SMALL_HEADLESS.to_vec();
        args.extend(["--epochs", "1", "--run-dir", name]);
        args.extend(extra);
        common::succeeds(d, &args)
    };
    // The default LR against 50x on a branch: worse, and the run goes on as it was.
    let out = run("a", &["--branch", "lr=0.05", "--branch-steps", "40"]);
    assert!(
        out.contains(
            "branch lr=0.05: forked at step 0; both lines train on the same batches until step 40"
        ),
        "{out}"
    );
    assert!(
        out.contains("branch lr=0.05: worse on training loss over 40 steps on the same batches: ")
            && out.contains("; the main line goes on"),
        "{out}"
    );
    let records = std::fs::read_to_string(d.join("a/metrics.jsonl")).unwrap();
    let verdict: serde_json::Value = records
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["type"] == "branch_verdict")
        .expect("a branch_verdict record");
    assert_eq!(verdict["verdict"]["call"], "worse");
    assert_eq!(verdict["verdict"]["kept_branch"], false);
    assert_eq!(verdict["verdict"]["steps"], 40);
    // A run at 50x the LR, and a branch that cuts it: better, and the branch goes on: the
    // steps after the verdict train at its LR.
    let out = run(
        "b",
        &[
            "--lr",
            "0.05",
            "--branch",
            "lr=0.001",
            "--branch-steps",
            "40",
        ],
    );
    assert!(out.contains("; the branch goes on"), "{out}");
    let lr_after: Vec<f64> = std::fs::read_to_string(d.join("b/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "step" && v["step"].as_u64().unwrap() > 40)
        .map(|v| v["lr"].as_f64().unwrap())
        .collect();
    assert!(
        !lr_after.is_empty() && lr_after.iter().all(|&lr| lr == 0.001),
        "{lr_after:?}"
    );
    // Without --branch-steps: the rest of the epoch.
    let out = run("c", &["--branch", "weight_decay=0"]);
    assert!(
        out.contains("branch weight_decay=0: forked at step 0"),
        "{out}"
    );
    assert!(out.contains("branch weight_decay=0: "), "{out}");
    // Bad changes: one line, exit code 2, no run directory.
    common::rejects(
        &["--branch", "batch_size=16"],
        "--branch: batch_size: cannot change on a branch (these can: lr, schedule, weight_decay, clip_grad_norm, label_smoothing, augment, class_weights, dropout)",
    );
    common::rejects(
        &["--dropout", "0", "--branch", "dropout=0.5"],
        "--branch: dropout=0.5: this model has no dropout layers (adding them needs a new run)",
    );
    common::rejects(&["--branch", "lr"], "'lr' is not key=value");
    common::rejects(&["--branch", "lr=-1"], "lr=-1: not a number of 0 or more");
    common::rejects(&["--branch-steps", "10"], "--branch");
}

/// A trainer on 3,200 embedded images for `epochs` epochs, saving into `dir`, spawned: its
/// monitor and thread.
fn spawned(
    dir: &std::path::Path,
    epochs: usize,
    before: &[Command],
) -> (MonitorLink, std::thread::JoinHandle<()>) {
    let cfg = RunConfig {
        epochs,
        ..small_config()
    };
    let mut t = Trainer::new(cfg, small_data(3_200, 64)).unwrap();
    t.set_run_dir(dir).unwrap();
    let (tl, m) = link();
    for c in before {
        m.commands.send(c.clone()).unwrap();
    }
    (m, t.spawn(tl))
}

fn fork(change: &[Setting], horizon: Horizon, ask: bool) -> Command {
    Command::Fork {
        change: change.to_vec(),
        horizon,
        ask,
    }
}

/// The terminal UI's way: the comparison ends, the run pauses and waits (a resume is refused),
/// a watcher keeps the branch and saves the main line as a run of its own, which a resume can
/// train on; the decision is in the run's checkpoint history.
#[test]
fn a_watcher_keeps_a_line_and_the_other_is_saved_as_a_run_of_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    let change = [Setting::new("lr", "0.0003")];
    let (m, h) = spawned(&dir, 2, &[fork(&change, Horizon::Steps(12), true)]);
    let seen = until(&m, |e| matches!(e, Event::Paused { .. }));
    let verdict = seen
        .iter()
        .find_map(|e| match e {
            Event::BranchVerdict { step, verdict } => Some((*step, verdict.clone())),
            _ => None,
        })
        .expect("a verdict before the pause");
    assert_eq!(verdict.0, 12);
    assert_eq!((verdict.1.steps, verdict.1.awaiting), (12, true));
    assert!(!verdict.1.kept_branch);
    // Nothing goes on until a line is kept.
    m.commands.send(Command::Resume).unwrap();
    let refused = until(&m, |e| matches!(e, Event::Refused { .. }));
    let Some(Event::Refused { reason, .. }) = refused.last() else {
        unreachable!()
    };
    assert!(
        reason.contains("keep the main line (m) or the branch (b)"),
        "{reason}"
    );
    m.commands
        .send(Command::KeepLine {
            branch: true,
            save_other: true,
        })
        .unwrap();
    let kept = until(&m, |e| matches!(e, Event::BranchKept { .. }));
    let Some(Event::BranchKept {
        step,
        branch,
        saved: Some(saved),
        ..
    }) = kept.last()
    else {
        panic!("{kept:?}")
    };
    assert_eq!((*step, *branch), (12, true));
    assert!(saved.ends_with("r-main"), "{saved}");
    // The run goes on by itself, at the branch's LR.
    assert!(kept
        .iter()
        .any(|e| matches!(e, Event::LrChanged { new, .. } if *new == 0.0003)));
    until(&m, |e| matches!(e, Event::Resumed { .. }));
    // A line that cannot be saved (here a dangling link where its directory would go; a full
    // disk alike) is a warning: the decision stands and the run goes on.
    std::os::unix::fs::symlink(tmp.path().join("nowhere/x"), tmp.path().join("r-branch")).unwrap();
    m.commands
        .send(fork(&change, Horizon::Steps(3), true))
        .unwrap();
    until(&m, |e| matches!(e, Event::Paused { .. }));
    m.commands
        .send(Command::KeepLine {
            branch: false,
            save_other: true,
        })
        .unwrap();
    let kept = until(&m, |e| matches!(e, Event::BranchKept { .. }));
    assert!(
        kept.iter()
            .any(|e| matches!(e, Event::Warning { message, .. }
            if message.starts_with("the branch could not be saved as a run of its own: "))),
        "{kept:?}"
    );
    assert!(matches!(
        kept.last(),
        Some(Event::BranchKept {
            branch: false,
            saved: None,
            ..
        })
    ));
    until(&m, |e| matches!(e, Event::Resumed { .. }));
    m.commands.send(Command::Stop).unwrap();
    until(&m, |e| e.is_terminal());
    h.join().unwrap();

    // The main line as it was at step 12, with its own LR, and the records up to it.
    let other = checkpoint::read(&std::path::Path::new(saved).join("checkpoints/last.h5")).unwrap();
    assert_eq!(other.global_step, 12);
    assert_eq!(other.lr, 1e-3);
    let recorded = RunDir::new(saved).read_records().unwrap();
    assert!(recorded.records.iter().all(|r| r.step <= 12));
    assert!(matches!(
        recorded.records.last().map(|r| &r.record),
        Some(Record::Event(Event::Finished { step: 12, .. }))
    ));
    // The run's own history says what was decided.
    let last = checkpoint::read(&dir.join("checkpoints/last.h5")).unwrap();
    assert_eq!(last.branches.len(), 2, "{:?}", last.branches);
    assert_eq!(
        (last.branches[1].kept_branch, &last.branches[1].saved),
        (Some(false), &None)
    );
    let b = &last.branches[0];
    assert_eq!((b.forked_at, b.until, b.kept_branch), (0, 12, Some(true)));
    assert_eq!(b.saved.as_deref(), Some(saved.as_str()));
    assert_eq!(b.verdict.as_ref().map(|v| v.steps), Some(12));
    // The saved line resumes: a run of its own.
    let cfg = RunConfig {
        epochs: 1,
        ..other.train_config.clone()
    };
    let path = std::path::Path::new(saved).join("checkpoints/last.h5");
    let mut t = Trainer::resume(cfg, small_data(3_200, 64), &other, &path, &[]).unwrap();
    let (tl, m) = link();
    t.run(tl).unwrap();
    let events: Vec<Event> = m.events.try_iter().collect();
    // It knows it was forked, and where the other line went on.
    let Some(Event::Started(info)) = events.first() else {
        panic!("{events:?}")
    };
    let note = format!(
        "forked at step 0 with lr=0.0003: the main line went on, the other line is in {}",
        dir.display()
    );
    assert!(
        info.resumed.as_ref().unwrap().notes.contains(&note),
        "{:?}",
        info.resumed
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::BranchAbandoned { .. })));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Finished { step: 100, .. })),
        "{events:?}"
    );
}

/// A comparison that does not end: stopping records it as abandoned; a process killed during
/// it resumes from the main line's checkpoint taken at the fork, and the resumed run records
/// the branch as abandoned.
#[test]
fn a_comparison_cut_short_is_recorded_as_abandoned() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    let change = [Setting::new("weight_decay", "0")];
    let (m, h) = spawned(&dir, 2, &[fork(&change, Horizon::Open, true)]);
    // The fork saves last.h5: what a killed process would leave.
    until(&m, |e| matches!(e, Event::CheckpointSaved { step: 0, .. }));
    let at_fork = tmp.path().join("killed.h5");
    std::fs::copy(dir.join("checkpoints/last.h5"), &at_fork).unwrap();
    let ckpt = checkpoint::read(&at_fork).unwrap();
    assert_eq!(ckpt.branches.len(), 1);
    assert!(ckpt.branches[0].is_open());
    m.commands.send(Command::Stop).unwrap();
    let end = until(&m, |e| e.is_terminal());
    h.join().unwrap();
    let why = end.iter().find_map(|e| match e {
        Event::BranchAbandoned { why, .. } => Some(why.clone()),
        _ => None,
    });
    assert_eq!(
        why.as_deref(),
        Some("the run stopped during the comparison")
    );
    let last = checkpoint::read(&dir.join("checkpoints/last.h5")).unwrap();
    assert_eq!(last.branches[0].abandoned_at, Some(last.global_step));

    // The killed process's checkpoint, resumed.
    let cfg = RunConfig {
        max_steps: 3,
        ..ckpt.train_config.clone()
    };
    let mut t = Trainer::resume(cfg, small_data(3_200, 64), &ckpt, &at_fork, &[]).unwrap();
    let again = tmp.path().join("again");
    t.set_run_dir(&again).unwrap();
    let (tl, m) = link();
    t.run(tl).unwrap();
    let events: Vec<Event> = m.events.try_iter().collect();
    assert!(
        events.iter().any(
            |e| matches!(e, Event::BranchAbandoned { forked_at: 0, why, .. }
            if why == "the run was resumed from a checkpoint taken during the comparison")
        ),
        "{events:?}"
    );
    let resumed = checkpoint::read(&again.join("checkpoints/last.h5")).unwrap();
    assert_eq!(resumed.branches[0].abandoned_at, Some(0));
}

/// No change through the whole trainer, and changes beyond the learner's settings: dropout,
/// its own augmentation (the same images, made by a stream of its own), class weights and a
/// schedule, each compared over the same steps.
#[test]
fn dropout_augmentation_class_weights_and_schedules_can_be_tried_on_a_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trainer(1e-3);
    // The main line's own augmentation is no change: the branch uses its batches.
    assert!(t
        .fork_line(&[Setting::new("augment", "off")])
        .unwrap()
        .augment
        .is_none());
    let on = t.fork_line(&[Setting::new("augment", "on")]).unwrap();
    assert!(!on.augment.unwrap().transforms.is_empty());
    assert_eq!(
        t.fork_line(&[Setting::new("class_weights", "some")])
            .err()
            .unwrap(),
        "class_weights=some: none or balanced"
    );
    assert!(t
        .fork_line(&[Setting::new("schedule", "cosine:min=fast")])
        .err()
        .unwrap()
        .starts_with("schedule=cosine:min=fast: "));
    let changes = [
        vec![],
        vec![Setting::new("dropout", "0.5")],
        vec![Setting::new("augment", "pad-crop:2,flip")],
        vec![Setting::new("class_weights", "balanced")],
        vec![Setting::new("schedule", "cosine")],
    ];
    let before: Vec<Command> = changes
        .iter()
        .map(|c| fork(c, Horizon::Steps(6), false))
        .collect();
    let (m, h) = spawned(&tmp.path().join("r"), 1, &before[..1]);
    for (i, change) in changes.iter().enumerate() {
        let seen = until(&m, |e| matches!(e, Event::BranchVerdict { .. }));
        let Some(Event::BranchVerdict { verdict, .. }) = seen.last() else {
            unreachable!()
        };
        assert_eq!((&verdict.change, verdict.steps), (change, 6));
        assert!(verdict.branch_loss.is_finite() && verdict.branch_val_loss.is_finite());
        if change.is_empty() {
            // No change, through the whole trainer: the same losses to the last bit.
            assert_eq!((verdict.diff, verdict.noise), (0.0, 0.0), "{verdict:?}");
            assert_eq!(verdict.branch_val_loss, verdict.main_val_loss);
        }
        if let Some(next) = before.get(i + 1) {
            m.commands.send(next.clone()).unwrap();
        }
    }
    m.commands.send(Command::Stop).unwrap();
    until(&m, |e| e.is_terminal());
    h.join().unwrap();
}

#[test]
fn a_change_keeps_the_commas_of_a_spec() {
    let parse = |s: &str| Setting::parse_change(s);
    assert_eq!(
        parse("lr=0.01,schedule=multistep:5,7,augment=pad-crop:4,flip").unwrap(),
        vec![
            Setting::new("lr", "0.01"),
            Setting::new("schedule", "multistep:5,7"),
            Setting::new("augment", "pad-crop:4,flip"),
        ]
    );
    assert_eq!(
        parse("schedule=cosine:min=1e-5,restart=2,weight_decay=0").unwrap(),
        vec![
            Setting::new("schedule", "cosine:min=1e-5,restart=2"),
            Setting::new("weight_decay", "0"),
        ]
    );
    assert!(parse("lr=0.01,7")
        .unwrap_err()
        .contains("'7' is not key=value"));
    assert!(parse("").is_err());
}

/// The real binary killed (SIGKILL) during a comparison: the fork's `last.h5` is the main line
/// as it was, and the run resumed from it says the branch was abandoned and goes on.
#[test]
fn a_process_killed_during_a_comparison_resumes_with_the_branch_abandoned() {
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_candletop"))
        .args(SMALL_HEADLESS)
        .args([
            "--epochs",
            "500",
            "--threads",
            "1",
            "--run-dir",
            "k",
            "--branch",
            "weight_decay=0",
            "--branch-steps",
            "1000000",
        ])
        .current_dir(d)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(d.join("k/metrics.jsonl")).unwrap_or_default();
        if text.contains(r#""type":"forked""#) && text.contains("last.h5") {
            break;
        }
        assert!(Instant::now() < deadline, "no fork saved:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let ckpt = checkpoint::read(&d.join("k/checkpoints/last.h5")).unwrap();
    assert_eq!((ckpt.global_step, ckpt.branches.len()), (0, 1));
    assert!(ckpt.branches[0].is_open());
    let out = common::succeeds(
        d,
        &[
            "--headless",
            "--resume",
            "k/checkpoints/last.h5",
            "--epochs",
            "1",
            "--run-dir",
            "k2",
        ],
    );
    assert!(
        out.contains("branch weight_decay=0 forked at step 0: abandoned (the run was resumed from a checkpoint taken during the comparison); the main line goes on"),
        "{out}"
    );
    let resumed = checkpoint::read(&d.join("k2/checkpoints/last.h5")).unwrap();
    assert_eq!(resumed.branches[0].abandoned_at, Some(0));
    assert!(resumed.global_step > 0);
}

/// While a comparison runs, the main line is its control: a live change (here `l`'s exact LR)
/// goes to the branch, the record says so, and a remedy on the main line is refused.
#[test]
fn a_live_change_during_a_comparison_goes_to_the_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let before = [fork(&[], Horizon::Steps(60), false), Command::Pause];
    let (m, h) = spawned(&tmp.path().join("r"), 1, &before);
    until(&m, |e| matches!(e, Event::Paused { .. }));
    m.commands.send(Command::SetLr(0.05)).unwrap();
    let changed = until(&m, |e| {
        matches!(e, Event::BranchChanged { .. } | Event::Refused { .. })
    });
    assert!(
        matches!(changed.last(), Some(Event::BranchChanged { step: 0, change })
            if *change == vec![Setting::new("lr", 0.05)]),
        "{changed:?}"
    );
    m.commands
        .send(Command::ApplyRemedy(candletop::protocol::Remedy::ScaleLr(
            0.1,
        )))
        .unwrap();
    let refused = until(&m, |e| matches!(e, Event::Refused { .. }));
    let Some(Event::Refused { reason, .. }) = refused.last() else {
        unreachable!()
    };
    assert!(reason.contains("the main line is its control"), "{reason}");
    m.commands.send(Command::Resume).unwrap();
    let seen = until(&m, |e| matches!(e, Event::BranchVerdict { .. }));
    let Some(Event::BranchVerdict { verdict, .. }) = seen.last() else {
        unreachable!()
    };
    assert_eq!(verdict.change, vec![Setting::new("lr", 0.05)]);
    // 50x the LR on the branch: worse, and the main line kept its own LR throughout.
    assert_eq!(verdict.call, Call::Worse, "{verdict:?}");
    assert!(!seen.iter().any(|e| matches!(e, Event::LrChanged { .. })));
    let steps: Vec<_> = m.steps.try_iter().collect();
    assert!(!steps.is_empty() && steps.iter().all(|s| s.lr == 1e-3));
    m.commands.send(Command::Stop).unwrap();
    until(&m, |e| e.is_terminal());
    h.join().unwrap();
}
