//! Ending a run on its validation metrics: early stopping (with the best weights put back) and
//! a target accuracy, through the trainer, across a resume, and changed live. The faults are
//! provoked so that the outcome cannot depend on the trajectory: a min_delta no epoch can beat
//! after the first, a target every trained epoch passes.

mod common;

use std::path::Path;

use candletop::checkpoint::{self, Checkpoint};
use candletop::config::RunConfig;
use candletop::protocol::{link, Command, Event, FinishReason, Stopping};
use candletop::train::Trainer;
use common::{small_config, small_data, until};

fn cfg(early_stop: &str) -> RunConfig {
    RunConfig {
        epochs: 6,
        keep_last: 10,
        arch: "c4,f16".into(),
        early_stop: early_stop.parse().unwrap(),
        ..small_config()
    }
}

fn trainer_in(dir: &Path, cfg: RunConfig) -> Trainer {
    let mut t = Trainer::new(cfg, small_data(4 * 32, 64)).unwrap();
    t.set_run_dir(dir).unwrap();
    t
}

/// Runs to the end; its events.
fn run(t: Trainer) -> Vec<Event> {
    let (tl, m) = link();
    let h = t.spawn(tl);
    let events = until(&m, Event::is_terminal);
    h.join().unwrap();
    events
}

fn finish_reason(events: &[Event]) -> FinishReason {
    match events.last() {
        Some(Event::Finished { reason, .. }) => *reason,
        e => panic!("the run did not finish: {e:?}"),
    }
}

fn ckpt(dir: &Path, name: &str) -> Checkpoint {
    checkpoint::read(&dir.join("checkpoints").join(name)).unwrap()
}

#[test]
fn early_stopping_ends_the_run_and_puts_the_best_weights_back() {
    let tmp = tempfile::tempdir().unwrap();
    // No epoch can beat the first by 10: epochs 2 and 3 are without improvement.
    let events = run(trainer_in(
        tmp.path(),
        cfg("2:monitor=val_loss,min_delta=10,restore_best"),
    ));
    assert_eq!(finish_reason(&events), FinishReason::EarlyStopped);
    let stopped = events
        .iter()
        .find_map(|e| match e {
            Event::EarlyStopped {
                epoch,
                best_epoch,
                patience,
                restored,
                best,
                ..
            } => Some((*epoch, *best_epoch, *patience, *restored, *best)),
            _ => None,
        })
        .expect("an early_stopped event");
    let epochs: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Epoch(m) => Some(m.val_loss),
            _ => None,
        })
        .collect();
    assert_eq!(epochs.len(), 3, "epochs 1-3, then the stop");
    assert_eq!(stopped, (3, 1, 2, true, epochs[0]));
    // The test set is evaluated, with the best weights: last.h5 holds epoch 1's weights.
    assert!(events.iter().any(|e| matches!(e, Event::Evaluated(_))));
    let (last, first) = (
        ckpt(tmp.path(), "last.h5"),
        ckpt(tmp.path(), "epoch-001.h5"),
    );
    assert!(
        last.tensors == first.tensors,
        "last.h5 holds epoch 1's weights"
    );
    let third = ckpt(tmp.path(), "epoch-003.h5");
    assert!(
        last.tensors != third.tensors,
        "epoch-003.h5 holds epoch 3's own"
    );
    assert_eq!(last.global_step, 12);
}

/// A run stopped partway and resumed stops where the whole run does, with the same weights:
/// the count comes back from the epochs so far, the best weights from the checkpoint.
#[test]
fn early_stopping_resumes_exactly() {
    let spec = "3:monitor=val_acc,min_delta=10,restore_best";
    let whole = tempfile::tempdir().unwrap();
    let all = run(trainer_in(whole.path(), cfg(spec)));
    assert_eq!(finish_reason(&all), FinishReason::EarlyStopped);
    let part = tempfile::tempdir().unwrap();
    let first = run(trainer_in(
        part.path(),
        RunConfig {
            max_steps: 8,
            ..cfg(spec)
        },
    ));
    assert_eq!(finish_reason(&first), FinishReason::Stopped);
    let from = part.path().join("checkpoints/last.h5");
    let saved = checkpoint::read(&from).unwrap();
    assert_eq!(saved.best_model.as_ref().map(|b| b.epoch), Some(1));
    let rest_dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::resume(cfg(spec), small_data(4 * 32, 64), &saved, &from, &[]).unwrap();
    t.set_run_dir(rest_dir.path()).unwrap();
    let rest = run(t);
    assert_eq!(finish_reason(&rest), FinishReason::EarlyStopped);
    let stop = |events: &[Event]| {
        events.iter().find_map(|e| match e {
            Event::EarlyStopped {
                step,
                epoch,
                best,
                best_epoch,
                restored,
                ..
            } => Some((*step, *epoch, best.to_bits(), *best_epoch, *restored)),
            _ => None,
        })
    };
    assert_eq!(stop(&rest), stop(&all));
    assert_eq!(
        ckpt(rest_dir.path(), "last.h5").tensors,
        ckpt(whole.path(), "last.h5").tensors
    );
}

#[test]
fn a_target_is_reported_once_and_can_end_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let c = RunConfig {
        target_acc: 2.0,
        stop_at_target: true,
        ..cfg("off")
    };
    let events = run(trainer_in(tmp.path(), c));
    assert_eq!(finish_reason(&events), FinishReason::TargetReached);
    let reached: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::TargetReached { epoch, target, .. } => Some((*epoch, *target)),
            _ => None,
        })
        .collect();
    assert_eq!(reached, [(1, 2.0)]);
    assert!(events.iter().any(|e| matches!(e, Event::Evaluated(_))));
}

/// The editor's command: early stopping switched on mid-run counts from the first epoch.
#[test]
fn the_rules_change_live() {
    let tmp = tempfile::tempdir().unwrap();
    let (tl, m) = link();
    let h = trainer_in(tmp.path(), cfg("off")).spawn(tl);
    until(&m, |e| matches!(e, Event::Epoch(e) if e.epoch == 2));
    let stopping = Stopping {
        early_stop: "1:monitor=val_loss,min_delta=10".parse().unwrap(),
        target_acc: 99.5,
        stop_at_target: false,
    };
    m.commands.send(Command::SetStopping(stopping)).unwrap();
    let rest = until(&m, Event::is_terminal);
    h.join().unwrap();
    assert!(rest
        .iter()
        .any(|e| matches!(e, Event::StoppingChanged { stopping: s, .. } if *s == stopping)));
    assert_eq!(finish_reason(&rest), FinishReason::EarlyStopped);
    // Epochs 2 and on have not beaten epoch 1 by 10: it stops at the first epoch's end after
    // the change.
    let at = rest.iter().find_map(|e| match e {
        Event::EarlyStopped {
            epoch, best_epoch, ..
        } => Some((*epoch, *best_epoch)),
        _ => None,
    });
    assert!(matches!(at, Some((3, 1))), "{at:?}");
    // A bad rule is refused in words.
    let (tl, m) = link();
    let h = trainer_in(tempfile::tempdir().unwrap().path(), cfg("off")).spawn(tl);
    let bad = Stopping {
        stop_at_target: true,
        ..Stopping::default()
    };
    m.commands.send(Command::SetStopping(bad)).unwrap();
    let seen = until(&m, |e| matches!(e, Event::Refused { .. }));
    assert!(
        matches!(seen.last(), Some(Event::Refused { reason, .. }) if reason.contains("needs a target"))
    );
    m.commands.send(Command::Stop).unwrap();
    until(&m, Event::is_terminal);
    h.join().unwrap();
}

#[test]
fn bad_rules_are_one_line_and_exit_2() {
    use common::rejects;
    rejects(
        &["--headless", "--early-stop", "x"],
        "--early-stop x: 'x' is not a patience",
    );
    rejects(
        &["--headless", "--early-stop", "3:monitor=acc"],
        "--early-stop 3:monitor=acc: unknown monitor 'acc' (val_loss or val_acc)",
    );
    rejects(
        &["--headless", "--target-acc", "0.91"],
        "--target-acc 0.91: a percentage, e.g. 91 (for 91%)",
    );
    rejects(
        &["--headless", "--target-acc", "100"],
        "--target-acc 100: not a validation accuracy",
    );
    rejects(
        &["--headless", "--stop-at-target"],
        "--stop-at-target needs --target-acc",
    );
}

/// restore_best given with --resume after the best epoch: nothing to put back, said so.
#[test]
fn restore_best_set_after_the_best_epoch_says_the_last_weights_stay() {
    let part = tempfile::tempdir().unwrap();
    let first = run(trainer_in(
        part.path(),
        RunConfig {
            max_steps: 8,
            ..cfg("off")
        },
    ));
    assert_eq!(finish_reason(&first), FinishReason::Stopped);
    let from = part.path().join("checkpoints/last.h5");
    let saved = checkpoint::read(&from).unwrap();
    assert!(saved.best_model.is_none());
    let spec = cfg("1:monitor=val_acc,min_delta=10,restore_best");
    let rest_dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::resume(
        spec,
        small_data(4 * 32, 64),
        &saved,
        &from,
        &["early_stop".into()],
    )
    .unwrap();
    t.set_run_dir(rest_dir.path()).unwrap();
    let rest = run(t);
    assert_eq!(finish_reason(&rest), FinishReason::EarlyStopped);
    assert!(rest.iter().any(|e| matches!(e, Event::Warning { message, .. } if message.contains("the weights of epoch 1 were not kept"))));
    assert!(rest.iter().any(|e| matches!(
        e,
        Event::EarlyStopped {
            restored: false,
            best_epoch: 1,
            ..
        }
    )));
}
