//! The LR range test on the embedded data with the default model and Adam: its suggestion is
//! a learning rate that trains, better than far too small or far too large ones.

use candletop::config::RunConfig;
use candletop::data::{DataOptions, DataSpec, DataSplits};
use candletop::optim::{OptimizerConfig, OptimizerKind};
use candletop::protocol::{link, Event, LearningRate};
use candletop::train::{FinderSettings, Trainer};

mod common;

fn adam(lr: f64) -> RunConfig {
    RunConfig {
        lr: LearningRate::new(lr).unwrap(),
        optimizer: OptimizerConfig {
            kind: OptimizerKind::Adam,
            ..OptimizerConfig::default()
        },
        epochs: 1,
        threads: 2,
        ..RunConfig::default()
    }
}

fn data() -> DataSplits {
    DataSplits::load(&DataSpec::Embedded, &DataOptions::new(0.1, 42)).unwrap()
}

/// Validation accuracy after one epoch at `lr`.
fn one_epoch(lr: f64) -> f64 {
    let (t, m) = link();
    let h = Trainer::new(adam(lr), data()).unwrap().spawn(t);
    let mut acc = None;
    loop {
        let e = m.events.recv().unwrap();
        if let Event::Epoch(ep) = &e {
            acc = Some(ep.val_accuracy);
        }
        if e.is_terminal() {
            break;
        }
    }
    h.join().unwrap();
    acc.expect("an epoch")
}

#[test]
fn the_suggestion_trains_better_than_too_small_or_too_large() {
    let mut trainer = Trainer::new(adam(1e-3), data()).unwrap();
    let mut seen = 0;
    let finding = trainer
        .lr_find(&FinderSettings::default(), &mut |done| {
            seen = done;
            true
        })
        .unwrap();
    let i = finding.suggestion.unwrap_or_else(|| panic!("{finding:?}"));
    let lr = finding.points[i].lr;
    assert!(
        (1e-4..=1e-1).contains(&lr),
        "suggested {lr}: {}",
        finding.how
    );
    // The sweep grows the LR exponentially from 1e-7 and stops once the loss diverges.
    let p = &finding.points;
    assert!((p[0].lr - 1e-7).abs() < 1e-18);
    assert!(p
        .windows(2)
        .all(|w| (w[1].lr / w[0].lr - (1e8f64).powf(1.0 / 99.0)).abs() < 1e-9));
    assert!(finding.stopped.is_some(), "diverges before 10");
    // Progress was heard of every step before the one where the loss diverged.
    assert_eq!(seen, p.len() - 1);
    // A sweep of one-epoch runs, half a decade apart: the suggestion is within 3x of the
    // best of them.
    let sweep: Vec<(f64, f64)> = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
        .into_iter()
        .map(|lr| (lr, one_epoch(lr)))
        .collect();
    let best = sweep
        .iter()
        .copied()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
        .0;
    eprintln!("suggested {lr:.2e}; one epoch at each LR: {sweep:?}");
    assert!(
        (best / 3.0..=best * 3.0).contains(&lr),
        "suggested {lr:.2e}, best of the sweep {best:.0e}: {sweep:?} ({})",
        finding.how
    );
}

/// The suggestion after two epochs of a healthy run (`lr-find --resume`, as `f` mid-run): the
/// loss no longer falls clearly at any LR, and the run's own LR is not cut tenfold or more
/// without a fall to show for it.
#[test]
fn mid_run_the_suggestion_does_not_undercut_the_runs_lr_without_evidence() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    common::succeeds(
        d,
        &[
            "--headless",
            "--epochs",
            "2",
            "--subset",
            "3600",
            "--run-dir",
            "r",
        ],
    );
    let out = common::succeeds(
        d,
        &[
            "lr-find",
            "--resume",
            "r/checkpoints/last.h5",
            "--sweep-steps",
            "60",
        ],
    );
    assert!(
        out.starts_with("LR range test from r/checkpoints/last.h5 (step 114, lr 1.00e-3)"),
        "{out}"
    );
    let lr: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("suggested lr: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{out}"))
        .parse()
        .unwrap();
    assert!(lr >= 1e-4, "suggested {lr:.2e} mid-run at 1e-3:\n{out}");
}
