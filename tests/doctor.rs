//! The training doctor on provoked runs: each scenario, a few dozen to a few hundred steps of
//! real training on the embedded data, must raise its finding as a warning in metrics.jsonl
//! within the documented window, and no warning unrelated to it; `candletop diagnose` must give
//! the same findings at the same steps from the run's records; a healthy default run raises no
//! warning. (`candletop bench --only doctor-suite` measures the same over seeds and data.)

mod common;

use std::path::Path;

use candletop::protocol::FindingKind;
use common::{candletop, succeeds};
use serde_json::Value;

/// The finding records of a run: (step, kind, severity, cleared).
fn findings(run: &Path) -> Vec<(u64, String, String, bool)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "finding")
        .map(|v| {
            (
                v["step"].as_u64().unwrap(),
                v["kind"].as_str().unwrap().to_string(),
                v["severity"].as_str().unwrap().to_string(),
                v["cleared"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Runs `args` headless in `dir/name`: the run directory and what it printed.
fn headless(dir: &Path, name: &str, args: &[&str]) -> (std::path::PathBuf, String) {
    let mut all = vec!["--headless", "--run-dir", name];
    all.extend(args);
    let out = succeeds(dir, &all);
    (dir.join(name), out)
}

/// `candletop diagnose` on a finished run gives the findings the live doctor recorded, at the
/// same steps: (step, "warning"/"note"/"resolved", title) of each line.
fn replay_matches_live(dir: &Path, run: &Path) {
    let out = succeeds(dir, &["diagnose", run.to_str().unwrap()]);
    let replayed: Vec<(u64, String, String)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("step "))
        .map(|l| {
            let (step, rest) = l.trim_start().split_once("  ").unwrap();
            let (word, rest) = rest.split_once(": ").unwrap();
            let title = rest.split(": ").next().unwrap().to_string();
            (step.parse().unwrap(), word.to_string(), title)
        })
        .collect();
    let live: Vec<(u64, String, String)> = findings(run)
        .into_iter()
        .map(|(step, kind, severity, cleared)| {
            let word = if cleared {
                "resolved".to_string()
            } else if severity == "warning" {
                "warning".to_string()
            } else {
                "note".to_string()
            };
            let kind: FindingKind = serde_json::from_value(Value::String(kind)).unwrap();
            (step, word, kind.title().to_string())
        })
        .collect();
    assert_eq!(
        live,
        replayed,
        "{}: replay differs from live\n{out}",
        run.display()
    );
}

/// The epoch records of a run: (epoch, step, validation accuracy).
fn epochs(run: &Path) -> Vec<(usize, u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "epoch")
        .map(|v| {
            (
                v["epoch"].as_u64().unwrap() as usize,
                v["step"].as_u64().unwrap(),
                v["val_accuracy"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// The step of the first epoch at which the run's validation accuracy had not beaten its best
/// for `patience` epochs (matching the best is not beating it), computed from its records.
fn plateau_due(run: &Path, patience: usize) -> Option<u64> {
    plateau_due_in(&epochs(run), patience)
}

/// The same over epoch records (epoch, step, validation accuracy).
fn plateau_due_in(epochs: &[(usize, u64, f64)], patience: usize) -> Option<u64> {
    let mut best: Option<(usize, f64)> = None;
    for &(epoch, step, acc) in epochs {
        if best.is_none_or(|(_, b)| acc > b) {
            best = Some((epoch, acc));
        }
        if epoch - best.unwrap().0 >= patience {
            return Some(step);
        }
    }
    None
}

/// Runs `args` headless in `dir/name`; the warning `want` must appear by step `by`, and any
/// other warning must be among `related`.
fn provoke(dir: &Path, name: &str, args: &[&str], want: &str, by: u64, related: &[&str]) {
    provoke_as(dir, name, args, (want, "warning"), by, related)
}

/// As `provoke`, for a finding that may stay a note (the run still improves a little).
fn provoke_as(
    dir: &Path,
    name: &str,
    args: &[&str],
    (want, severity): (&str, &str),
    by: u64,
    related: &[&str],
) {
    let (run, out) = headless(dir, name, args);
    replay_matches_live(dir, &run);
    let f = findings(&run);
    let warnings: Vec<&(u64, String, String, bool)> =
        f.iter().filter(|x| x.2 == "warning" && !x.3).collect();
    let first = f
        .iter()
        .find(|x| x.1 == want && !x.3 && (severity != "warning" || x.2 == "warning"));
    assert!(
        first.is_some_and(|x| x.0 <= by),
        "{name}: no {want} {severity} by step {by}: {f:?}\n{out}"
    );
    for w in &warnings {
        assert!(
            w.1 == want || related.contains(&w.1.as_str()),
            "{name}: an unrelated warning {w:?}\n{out}"
        );
    }
    // The headless reporter prints it too.
    let line = format!(
        "  {}: ",
        if severity == "warning" {
            "warning"
        } else {
            "note"
        }
    );
    assert!(out.contains(&line), "{out}");
}

#[test]
fn provoked_runs_raise_their_finding_and_nothing_unrelated() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // LR 50x the default: the loss climbs far above where it started, in the first window
    // (the first step record, then the one at step 20).
    provoke(
        d,
        "high",
        &["--lr", "0.05", "--max-steps", "60"],
        "lr_too_high",
        20,
        &["dead_units"],
    );
    // LR 1e-8 with Adam: updates a ten-millionth of the weights from the first step, the loss
    // where it began: said at the first window.
    provoke(
        d,
        "low",
        &["--lr", "1e-8", "--optimizer", "adam", "--max-steps", "60"],
        "lr_too_low",
        20,
        &[],
    );
    // Eight sigmoid conv layers without batch norm: the first layer's gradient is a millionth
    // of the last's from the first steps.
    provoke(
        d,
        "vanish",
        &[
            "--arch",
            "c8/none,c8/none,c8/none,c8/none,c8/none,c8/none,c8/none,c8",
            "--activation",
            "sigmoid",
            "--no-batch-norm",
            "--max-steps",
            "60",
        ],
        "vanishing_gradients",
        20,
        &["saturated_activations"],
    );
    // A 20:1 skewed training set, batch norm on batches of 2, and raw 0-255 inputs: said
    // before the first step.
    provoke(
        d,
        "skewed",
        &["--imbalance", "20", "--max-steps", "5"],
        "class_imbalance",
        0,
        &[],
    );
    provoke(
        d,
        "bn2",
        &["--batch-size", "2", "--max-steps", "5"],
        "small_batch_norm",
        0,
        &[],
    );
    provoke(
        d,
        "raw",
        &["--normalize", "0/0.00392", "--max-steps", "5"],
        "unnormalised_input",
        0,
        &["lr_too_high", "exploding_gradients"],
    );
    // Adam at 0.01 (10x) without batch norm: most ReLUs die (activations are measured at the
    // first step, every 20 steps to 80, then every 100).
    provoke(
        d,
        "dead",
        &["--lr", "0.01", "--no-batch-norm", "--max-steps", "100"],
        "dead_units",
        100,
        &["vanishing_gradients", "lr_too_high"],
    );
    // Sigmoid without batch norm at 0.02: the hidden layer's inputs leave [-5, 5].
    provoke(
        d,
        "saturated",
        &[
            "--activation",
            "sigmoid",
            "--no-batch-norm",
            "--lr",
            "0.02",
            "--max-steps",
            "100",
        ],
        "saturated_activations",
        100,
        &["vanishing_gradients"],
    );
    // Dropout 0.9 on 3,600 images: training accuracy below validation from the first epoch.
    provoke(
        d,
        "dropout",
        &["--dropout", "0.9", "--subset", "3600", "--epochs", "1"],
        "too_much_regularisation",
        57,
        // Dropout 0.9 scales the kept activations 10x: the first loss is far above ln(10).
        &["initial_loss"],
    );
    // Labels that do not match the images (90% changed to another class): the loss stays at
    // its start and validation accuracy at chance for two epochs.
    provoke(
        d,
        "mismatch",
        &["--label-noise", "0.9", "--subset", "3600", "--epochs", "2"],
        "label_noise",
        114,
        &["dead_units", "vanishing_gradients", "lr_too_low"],
    );
    // A one-unit hidden layer: both accuracies stay low and flat (a note from epoch 3, a
    // warning once the loss stops falling).
    provoke(
        d,
        "underfit",
        &["--arch", "f1", "--epochs", "6", "--lr", "3e-4"],
        "underfitting",
        6 * 141,
        &[],
    );
    // The LR cut a million-fold after the first epoch, without batch norm (whose running
    // statistics would still move): the model stops changing, so validation accuracy cannot
    // beat epoch 1 and the plateau is due at epoch 4 on any machine.
    provoke_as(
        d,
        "frozen",
        &[
            "--subset",
            "2000",
            "--epochs",
            "5",
            "--no-batch-norm",
            "--schedule",
            "exp:1e-6",
        ],
        ("plateau", "note"),
        4 * 32,
        &["weak_class", "lr_too_low"],
    );
    // 2000 images at a low LR: validation accuracy may stop rising by epoch 8 while the
    // training loss still falls. Whether it does depends on the last bits of the kernels, so
    // the run's own records decide: a plateau note exactly when its validation accuracy has
    // not beaten its best for three epochs, and none otherwise.
    let (run, out) = headless(
        d,
        "plateau",
        &["--subset", "2000", "--epochs", "8", "--lr", "3e-4"],
    );
    let due = plateau_due(&run, 3);
    let raised = findings(&run)
        .into_iter()
        .find(|x| x.1 == "plateau" && !x.3)
        .map(|x| x.0);
    assert_eq!(
        raised,
        due,
        "plateau: raised at {raised:?}, due at {due:?} by the validation accuracy {:?}\n{out}",
        epochs(&run)
    );
    // 500 training images, no dropout or weight decay, no augmentation, many epochs.
    provoke(
        d,
        "overfit",
        &[
            "--subset",
            "500",
            "--batch-size",
            "16",
            "--dropout",
            "0",
            "--weight-decay",
            "0",
            "--epochs",
            "12",
        ],
        "overfitting",
        12 * 32,
        &["weak_class", "plateau", "dead_units"],
    );
}

#[test]
fn healthy_default_runs_raise_no_warning() {
    let tmp = tempfile::tempdir().unwrap();
    for seed in ["1", "2"] {
        let run = format!("seed{seed}");
        succeeds(
            tmp.path(),
            &[
                "--headless",
                "--epochs",
                "2",
                "--seed",
                seed,
                "--run-dir",
                &run,
            ],
        );
        let f = findings(&tmp.path().join(&run));
        assert!(
            f.iter().all(|x| x.2 != "warning"),
            "seed {seed}: a warning on a healthy run: {f:?}"
        );
    }
}

#[test]
fn diagnose_replays_a_finished_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    succeeds(
        d,
        &[
            "--headless",
            "--lr",
            "1e-8",
            "--optimizer",
            "adam",
            "--max-steps",
            "200",
            "--run-dir",
            "r",
        ],
    );
    let out = succeeds(d, &["diagnose", "r"]);
    assert!(
        out.contains(
            "step     20  warning: learning rate too low: the median update/weight ratio is"
        ),
        "{out}"
    );
    assert!(
        out.contains("r: 1 epochs, 200 steps (step records every 20 steps, windows of 8)"),
        "{out}"
    );
    replay_matches_live(d, &d.join("r"));
    let missing = candletop(&["diagnose", "nowhere"], d);
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("nowhere/config.toml"), "{err}");
}

/// A run resumed into a new directory: its doctor knows the epochs before the resume (from the
/// checkpoint), and so does `candletop diagnose`, reading them from the checkpoint it resumed
/// from; once that checkpoint is gone it says the epoch rules judged from the resume on.
#[test]
fn diagnose_knows_the_epochs_before_a_resume_into_a_new_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // An LR of 1e-9 without batch norm (whose running statistics would still move): the
    // validation accuracy stays where it is, a plateau from epoch 4 on.
    let first = [
        "--arch",
        "c8,f16",
        "--subset",
        "1000",
        "--no-batch-norm",
        "--optimizer",
        "adam",
        "--lr",
        "1e-9",
        "--epochs",
        "2",
    ];
    headless(d, "a", &first);
    let (b, out) = headless(
        d,
        "b",
        &["--resume", "a/checkpoints/last.h5", "--epochs", "6"],
    );
    let mut all = epochs(&d.join("a"));
    all.extend(epochs(&b));
    assert_eq!(all.len(), 6, "{out}");
    let due = plateau_due_in(&all, 3).expect("no plateau in 6 epochs at LR 1e-9");
    let plateau = findings(&b)
        .into_iter()
        .find(|f| f.1 == "plateau" && !f.3)
        .map(|f| f.0);
    assert_eq!(plateau, Some(due), "{out}");
    replay_matches_live(d, &b);
    std::fs::remove_dir_all(d.join("a")).unwrap();
    let out = succeeds(d, &["diagnose", "b"]);
    assert!(
        out.contains(
            "(the epochs before the resume are in a/checkpoints/last.h5, which cannot be read now"
        ),
        "{out}"
    );
}
