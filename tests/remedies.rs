//! Going back: a non-finite step rolls back to the last good state kept in memory; a remedy
//! applied from a finding can be undone exactly, and its trial ends in a verdict; all of it is
//! recorded in metrics.jsonl and the checkpoint.

mod common;

use std::path::Path;

use candletop::checkpoint::{self, Checkpoint};
use candletop::config::RunConfig;
use candletop::protocol::{
    link, Command, Event, FindingKind, MonitorLink, OnNonFinite, Remedy, REMEDY_TRIAL_STEPS,
};
use candletop::train::Trainer;
use common::{candletop, small_config, small_data, until, WAIT};
use serde_json::Value;

/// Saves last.h5 now and reads it back.
fn saved(m: &MonitorLink, dir: &Path) -> Checkpoint {
    m.commands.send(Command::Save).unwrap();
    until(m, |e| matches!(e, Event::CheckpointSaved { .. }));
    checkpoint::read(&dir.join("checkpoints/last.h5")).unwrap()
}

/// The learning state of a checkpoint: weights, running statistics, optimizer, dropout RNG.
fn learning_state(c: &Checkpoint) -> impl PartialEq + std::fmt::Debug {
    (
        c.tensors.clone(),
        c.counters.clone(),
        c.optimizer.clone(),
        c.rng,
    )
}

fn records(dir: &Path, kind: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == kind)
        .collect()
}

#[test]
fn a_non_finite_step_rolls_back_and_a_remedy_is_undone_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cfg = RunConfig {
        save_every_steps: 100,
        epochs: 3,
        ..small_config()
    };
    let mut t = Trainer::new(cfg, small_data(6_400, 64)).unwrap();
    t.set_run_dir(dir).unwrap();
    t.set_on_non_finite(OnNonFinite::Pause, 3);
    let (tl, m) = link();
    let h = t.spawn(tl);

    // The state at step 100: saved, and kept in memory to roll back to.
    until(&m, |e| {
        matches!(e, Event::CheckpointSaved { step: 100, .. })
    });
    let good = checkpoint::read(&dir.join("checkpoints/last.h5")).unwrap();
    m.commands.send(Command::SetLr(1e6)).unwrap();
    let events = until(&m, |e| matches!(e, Event::Paused { .. }));
    let (rolled_back_to, then) = events
        .iter()
        .find_map(|e| match e {
            Event::NonFinite {
                rolled_back_to,
                then,
                ..
            } => Some((*rolled_back_to, *then)),
            _ => None,
        })
        .expect("a non-finite step");
    assert_eq!((rolled_back_to, then), (Some(100), OnNonFinite::Pause));
    // The doctor blames the LR and offers the cut on a key.
    let blamed = events.iter().any(|e| {
        matches!(e, Event::Finding { finding, cleared: false, .. }
            if finding.kind == FindingKind::LrTooHigh
                && finding.remedy == Some(Remedy::ScaleLr(0.1)))
    });
    assert!(blamed, "{events:?}");
    let back = saved(&m, dir);
    assert!(back.global_step > 100);
    assert_eq!(learning_state(&back), learning_state(&good));

    // A remedy, three steps, undo: exactly the state before it, LR included.
    m.commands.send(Command::SetLr(0.05)).unwrap();
    m.commands
        .send(Command::ApplyRemedy(Remedy::ScaleLr(0.1)))
        .unwrap();
    let applied = until(&m, |e| matches!(e, Event::RemedyApplied { .. }));
    let Some(Event::RemedyApplied {
        step, until: end, ..
    }) = applied.last().cloned()
    else {
        unreachable!()
    };
    assert_eq!(end, step + REMEDY_TRIAL_STEPS);
    for _ in 0..3 {
        m.commands.send(Command::Step).unwrap();
    }
    while m.steps.recv_timeout(WAIT).unwrap().step < step + 3 {}
    m.commands.send(Command::UndoRemedy).unwrap();
    let undone = until(&m, |e| matches!(e, Event::RemedyUndone { .. }));
    let lr_back = undone.iter().any(|e| {
        matches!(e, Event::LrChanged { old, new, .. } if (*old - 0.005).abs() < 1e-12 && *new == 0.05)
    });
    assert!(lr_back, "{undone:?}");
    let after_undo = saved(&m, dir);
    assert_eq!(after_undo.global_step, step + 3, "the step counter goes on");
    assert_eq!(learning_state(&after_undo), learning_state(&good));
    // Nothing to undo twice.
    m.commands.send(Command::UndoRemedy).unwrap();
    until(&m, |e| matches!(e, Event::Refused { .. }));

    // Applied again and left to run: the verdict comes after its trial.
    m.commands
        .send(Command::ApplyRemedy(Remedy::ScaleLr(0.1)))
        .unwrap();
    m.commands.send(Command::Resume).unwrap();
    let verdict = until(&m, |e| matches!(e, Event::RemedyVerdict { .. }));
    let Some(Event::RemedyVerdict { step: at, record }) = verdict.last().cloned() else {
        unreachable!()
    };
    assert_eq!(at, record.step + REMEDY_TRIAL_STEPS);
    let (before, during, _) = record.verdict.expect("a verdict");
    assert!(before.is_finite() && during.is_finite());
    m.commands.send(Command::Stop).unwrap();
    until(&m, |e| e.is_terminal());
    h.join().unwrap();

    // The history: metrics.jsonl and the checkpoint.
    assert_eq!(records(dir, "remedy_applied").len(), 2);
    assert_eq!(records(dir, "remedy_undone").len(), 1);
    assert_eq!(records(dir, "remedy_verdict").len(), 1);
    let path = dir.join("checkpoints/last.h5");
    let last = checkpoint::read(&path).unwrap();
    assert_eq!(last.remedies.len(), 2);
    assert_eq!(last.remedies[0].undone_at, Some(step + 3));
    assert!(last.remedies[1].verdict.is_some());

    // A resumed run keeps the history in its own checkpoints.
    let cfg = RunConfig {
        max_steps: last.global_step + 2,
        ..last.train_config.clone()
    };
    let mut t = Trainer::resume(cfg, small_data(6_400, 64), &last, &path, &[]).unwrap();
    let again = dir.join("again");
    t.set_run_dir(&again).unwrap();
    let (tl, m) = link();
    t.run(tl).unwrap();
    drop(m);
    let resumed = checkpoint::read(&again.join("checkpoints/last.h5")).unwrap();
    assert_eq!(resumed.global_step, last.global_step + 2);
    assert_eq!(resumed.remedies, last.remedies);
}

#[test]
fn a_remedy_no_finding_suggests_is_refused() {
    let (tl, m) = link();
    let mut t = Trainer::new(small_config(), small_data(640, 64)).unwrap();
    t.set_on_non_finite(OnNonFinite::Pause, 3);
    let h = t.spawn(tl);
    m.commands.send(Command::Pause).unwrap();
    m.commands
        .send(Command::ApplyRemedy(Remedy::ScaleLr(10.0)))
        .unwrap();
    let events = until(&m, |e| matches!(e, Event::Refused { .. }));
    let Some(Event::Refused { reason, .. }) = events.last() else {
        unreachable!()
    };
    assert_eq!(reason, "no finding in force suggests to raise the LR x10");
    m.commands.send(Command::Stop).unwrap();
    until(&m, |e| e.is_terminal());
    h.join().unwrap();
}

/// Headless, `--on-nan rollback`: back to the last good state with a tenth of the LR, at most
/// K times, then the run stops (exit 3) with finite weights in last.h5.
#[test]
fn headless_rollback_cuts_the_lr_k_times_then_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let out = candletop(
        &[
            "--headless",
            "--run-dir",
            "r",
            "--optimizer",
            "sgd",
            "--lr",
            "1e6",
            "--on-nan",
            "rollback",
            "--max-rollbacks",
            "2",
            "--max-steps",
            "60",
        ],
        tmp.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    let nans = records(&tmp.path().join("r"), "non_finite");
    let policy: Vec<(&str, Option<f64>)> = nans
        .iter()
        .map(|v| (v["then"].as_str().unwrap(), v["lr"].as_f64()))
        .collect();
    assert_eq!(
        policy,
        [
            ("rollback", Some(1e5)),
            ("rollback", Some(1e4)),
            ("stop", None)
        ],
        "{stdout}"
    );
    assert_eq!(nans[0]["rolled_back_to"].as_u64(), Some(0));
    assert!(
        stdout.contains(
            "rolled back to the weights and optimizer of step 0; going on with lr 1.00e5"
        ),
        "{stdout}"
    );
    let last = checkpoint::read(&tmp.path().join("r/checkpoints/last.h5")).unwrap();
    assert!(last
        .tensors
        .iter()
        .all(|t| t.data.iter().all(|x| x.is_finite())));
    // Pause needs someone at a keyboard.
    let out = candletop(&["--headless", "--on-nan", "pause"], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "candletop: --on-nan pause needs the terminal UI (headless: stop or rollback)"
    );
}

/// A finding that needs a restart (vanishing gradients in eight sigmoid layers without batch
/// norm): `d` writes `suggested.toml`, this run's settings with ReLU and batch norm, which
/// `--config` accepts.
#[test]
fn a_restart_remedy_writes_a_config_that_starts_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    let cfg = RunConfig {
        arch: "c8/none,c8/none,c8/none,c8/none,c8/none,c8/none,c8/none,c8".into(),
        activation: candletop::model::Activation::Sigmoid,
        batch_norm: false,
        max_steps: 300,
        epochs: 5,
        batch_size: 64,
        ..small_config()
    };
    let mut t = Trainer::new(cfg.clone(), small_data(6_400, 64)).unwrap();
    t.set_run_dir(&dir).unwrap();
    let (tl, m) = link();
    let h = t.spawn(tl);
    let events = until(&m, |e| {
        matches!(e, Event::Finding { finding, .. } if finding.kind == FindingKind::VanishingGradients)
            || e.is_terminal()
    });
    let Some(Event::Finding { finding, .. }) = events.last() else {
        panic!("no vanishing gradients: {events:?}")
    };
    let remedy = finding.remedy.clone().expect("a restart remedy");
    assert_eq!(
        remedy.describe(),
        "write a config to restart with activation relu, batch_norm true"
    );
    m.commands.send(Command::ApplyRemedy(remedy)).unwrap();
    let written = until(&m, |e| matches!(e, Event::ConfigSuggested { .. }));
    let Some(Event::ConfigSuggested { path, .. }) = written.last() else {
        unreachable!()
    };
    m.commands.send(Command::Stop).unwrap();
    until(&m, |e| e.is_terminal());
    h.join().unwrap();
    let suggested = RunConfig::from_toml_file(Path::new(path)).unwrap();
    let old = cfg;
    assert_eq!(suggested.activation, candletop::model::Activation::Relu);
    assert!(suggested.batch_norm);
    // Everything else as the run had it.
    assert_eq!(
        RunConfig {
            activation: old.activation,
            batch_norm: old.batch_norm,
            ..suggested.clone()
        },
        old
    );
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.starts_with("# Suggested by the doctor at step "),
        "{text}"
    );
    // The binary takes it.
    let out = candletop(
        &[
            "--headless",
            "--config",
            path,
            "--max-steps",
            "3",
            "--run-dir",
            "again",
        ],
        tmp.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
