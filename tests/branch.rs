//! What-if branches, the engine: a line forked from the run with a change, trained on the same
//! batches as the main line, and the verdict on their losses over those batches. (The terminal
//! UI's `b` and the headless `--branch` build on it.)

mod common;

use candletop::config::RunConfig;
use candletop::data::{DataSpec, DataSplits};
use candletop::protocol::BranchCall as Call;
use candletop::protocol::{LearningRate, Setting};
use candletop::train::branch::{Comparison, Verdict};
use candletop::train::Trainer;
use common::small_config;

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
        a.push(main.step(&batch, step).unwrap());
        b.push(branch.step(&batch, step).unwrap());
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
        problem(Setting::new("dropout", 0.5)),
        "dropout: cannot change on a branch (these can: lr, weight_decay, clip_grad_norm, label_smoothing)"
    );
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
        let mut args = vec![
            "--headless",
            "--subset",
            "2000",
            "--arch",
            "c8,f32",
            "--batch-size",
            "32",
            "--epochs",
            "1",
            "--run-dir",
            name,
        ];
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
        &["--branch", "dropout=0.5"],
        "--branch: dropout: cannot change on a branch (these can: lr, weight_decay, clip_grad_norm, label_smoothing)",
    );
    common::rejects(&["--branch", "lr"], "'lr' is not key=value");
    common::rejects(&["--branch", "lr=-1"], "lr=-1: not a number of 0 or more");
    common::rejects(&["--branch-steps", "10"], "--branch");
}
