//! The LR range test on the embedded data with the default model and Adam: its suggestion is
//! a learning rate that trains, better than far too small or far too large ones.

use candletop::config::RunConfig;
use candletop::data::{DataOptions, DataSpec, DataSplits};
use candletop::optim::{OptimizerConfig, OptimizerKind};
use candletop::protocol::{link, Event, LearningRate};
use candletop::train::{FinderSettings, Trainer};

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
    let (good, tiny, huge) = (one_epoch(lr), one_epoch(1e-6), one_epoch(3.0));
    eprintln!("one epoch: suggested {lr:.2e} -> {good:.4}, 1e-6 -> {tiny:.4}, 3.0 -> {huge:.4}");
    assert!(good > tiny && good > huge, "{good} vs {tiny} and {huge}");
}
