//! `--resume` through the binary: flags given with it change their settings from the resumed
//! step on and the run says so, or they are refused in one line with the reason; the saved
//! optimizer state is checked against what the optimizer needs.

mod common;

use std::path::Path;

use candletop::checkpoint;
use common::{rejects_in, succeeds as ok, write_idx};
use serde_json::Value;

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// One small epoch (c4,f16), leaving `a/checkpoints/epoch-001.h5`, and a run stopped after
/// 3 steps, leaving `m/checkpoints/last.h5` in the middle of epoch 1.
fn two_checkpoints(dir: &Path) {
    let small = ["--headless", "--arch", "c4,f16", "--epochs", "1"];
    ok(dir, &[&small[..], &["--run-dir", "a"]].concat());
    ok(
        dir,
        &[&small[..], &["--max-steps", "3", "--run-dir", "m"]].concat(),
    );
}

#[test]
fn flags_given_with_resume_change_their_settings_from_the_resumed_step() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    two_checkpoints(d);
    let stdout = ok(
        d,
        &[
            "--headless",
            "--resume",
            "a/checkpoints/epoch-001.h5",
            "--lr",
            "0.01",
            "--epochs",
            "2",
            "--weight-decay",
            "0",
            "--batch-size",
            "32",
            "--run-dir",
            "b",
        ],
    );
    for want in [
        "  resumed from a/checkpoints/epoch-001.h5 at step 141\n",
        "  --lr 1.00e-3 -> 1.00e-2 (given with --resume)\n",
        "  --epochs 1 -> 2 (given with --resume)\n",
        "  --batch-size 64 -> 32 (given with --resume)\n",
        "  --weight-decay 0.01 -> 0 (given with --resume)\n",
        "  step    160/423  epoch 2/2  ",
        "\nepoch 2/2: ",
        "finished at step 423 ",
    ] {
        assert!(stdout.contains(want), "{want:?} in\n{stdout}");
    }
    // Every step after the resume ran at the new LR, in the new batches.
    let recs = records(&d.join("b/metrics.jsonl"));
    let steps: Vec<&Value> = recs.iter().filter(|r| r["type"] == "step").collect();
    assert!(!steps.is_empty());
    assert!(steps.iter().all(|r| r["lr"] == 0.01), "{steps:?}");
    // The first step after the resume has a record of its own (the doctor's first loss).
    assert_eq!(steps[0]["step"], 142);
    let started = recs.iter().find(|r| r["type"] == "started").unwrap();
    let changes = started["resumed"]["changes"].as_array().unwrap();
    let lr = changes.iter().find(|c| c["flag"] == "--lr").unwrap();
    assert_eq!(
        (&lr["old"], &lr["new"]),
        (&"1.00e-3".into(), &"1.00e-2".into())
    );
    let epoch = recs.iter().find(|r| r["type"] == "epoch").unwrap();
    assert_eq!(epoch["lr"], 0.01);
    // The run's files say the same: its settings, and the LR's history in the checkpoint.
    let config = std::fs::read_to_string(d.join("b/config.toml")).unwrap();
    assert!(
        config.contains("lr = 0.01\n") && config.contains("batch_size = 32\n"),
        "{config}"
    );
    let last = checkpoint::read(&d.join("b/checkpoints/last.h5")).unwrap();
    assert_eq!(last.lr, 0.01);
    assert_eq!(last.lr_changes, [(0, 0.001), (141, 0.01)]);
    assert_eq!(last.optimizer.hyper.weight_decay, 0.0);
    let inspect = ok(d, &["inspect", "b/checkpoints/last.h5"]);
    assert!(
        inspect.contains("lr history  1.00e-3 from step 1, 1.00e-2 from step 142"),
        "{inspect}"
    );
}

#[test]
fn what_the_checkpoint_depends_on_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    two_checkpoints(d);
    let epoch = ["--resume", "a/checkpoints/epoch-001.h5", "--epochs", "3"];
    let mid = ["--resume", "m/checkpoints/last.h5"];
    for (args, want) in [
        (
            &[&epoch[..], &["--arch", "c8,f16"]].concat(),
            "a/checkpoints/epoch-001.h5: --arch c8,f16: cannot change on resume (c4,f16 in the checkpoint): the checkpoint's weights fit only the model they were trained in",
        ),
        (
            &[&epoch[..], &["--activation", "tanh"]].concat(),
            "--activation tanh: cannot change on resume (relu in the checkpoint)",
        ),
        (
            &[&epoch[..], &["--no-batch-norm"]].concat(),
            "--batch-norm false: cannot change on resume (true in the checkpoint)",
        ),
        (
            &[&epoch[..], &["--seed", "7"]].concat(),
            "--seed 7: cannot change on resume (42 in the checkpoint): the seed chose the validation split",
        ),
        (
            &[&epoch[..], &["--val-split", "0.2"]].concat(),
            "--val-split 0.2: cannot change on resume (0.1 in the checkpoint): it would move images between training and validation",
        ),
        (
            &[&epoch[..], &["--dropout", "0"]].concat(),
            "--dropout 0: cannot change on resume (0.25 in the checkpoint): turning dropout on or off",
        ),
        (
            &[&mid[..], &["--batch-size", "32"]].concat(),
            "m/checkpoints/last.h5: --batch-size 32: cannot change on resume (64 in the checkpoint): the checkpoint is in the middle of epoch 1 (after batch 3); resume from an epoch checkpoint (epoch-NNN.h5) to change it",
        ),
        (
            &vec!["--resume", "a/checkpoints/epoch-001.h5"],
            "nothing left to train: the checkpoint has done 1 epochs and --epochs is 1 (the run's total); give a larger --epochs",
        ),
        (
            &[&mid[..], &["--max-steps", "2"]].concat(),
            "--max-steps 2: the checkpoint is at step 3 already (--max-steps counts the run's total)",
        ),
        (&[&mid[..], &["--lr", "0"]].concat(), "'0' is not a positive learning rate"),
        (
            &[&epoch[..], &["--normalize", "0.5/0.25"]].concat(),
            "--normalize 0.5/0.25: cannot change on resume (auto in the checkpoint): the model was trained on inputs normalised",
        ),
        (
            &[&mid[..], &["--sampler", "balanced"]].concat(),
            "--sampler balanced: cannot change on resume (shuffle in the checkpoint): the checkpoint is in the middle of epoch 1",
        ),
        (
            &[&mid[..], &["--subset", "100"]].concat(),
            "--subset 100: cannot change on resume (0 in the checkpoint): the checkpoint is in the middle of epoch 1",
        ),
    ] {
        rejects_in(d, args, want);
    }
    // Other data in the middle of an epoch, and data of another shape at any time.
    let small = d.join("small");
    std::fs::create_dir(&small).unwrap();
    let n = 200;
    let images = vec![7u8; n * 14 * 14];
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    for split in ["train", "t10k"] {
        write_idx(
            &small,
            &format!("{split}-images-idx3-ubyte"),
            &[n, 14, 14],
            &images,
        );
        write_idx(&small, &format!("{split}-labels-idx1-ubyte"), &[n], &labels);
    }
    rejects_in(
        d,
        &[&epoch[..], &["--data", "mnist:small"]].concat(),
        "a/checkpoints/epoch-001.h5: the model takes 1x28x28 images in 10 classes; --data mnist:small has 1x14x14 in 10",
    );
    rejects_in(
        d,
        &[&mid[..], &["--data", "mnist:small"]].concat(),
        "--data mnist:small: cannot change on resume (embedded in the checkpoint): the checkpoint is in the middle of epoch 1",
    );
}

#[test]
fn optimizer_state_the_checkpoint_lacks_starts_fresh_and_the_run_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let small = ["--headless", "--arch", "c4,f16", "--max-steps", "5"];
    ok(
        d,
        &[
            &small[..],
            &["--optimizer", "sgd", "--momentum", "0", "--run-dir", "s"],
        ]
        .concat(),
    );
    let before = checkpoint::read(&d.join("s/checkpoints/last.h5")).unwrap();
    assert!(before.optimizer.state.iter().all(|s| s.m.is_empty()));
    let stdout = ok(
        d,
        &[
            "--headless",
            "--resume",
            "s/checkpoints/last.h5",
            "--momentum",
            "0.9",
            "--max-steps",
            "10",
            "--run-dir",
            "s2",
        ],
    );
    for want in [
        "  --momentum 0 -> 0.9 (given with --resume)\n",
        "  note: the checkpoint has no momentum buffers (it was saved with momentum 0): they start at zero\n",
        "stopped at step 10 ",
    ] {
        assert!(stdout.contains(want), "{want:?} in\n{stdout}");
    }
    let after = checkpoint::read(&d.join("s2/checkpoints/last.h5")).unwrap();
    assert_eq!(after.optimizer.steps, 5, "five steps since the fresh start");
    for (s, t) in after.optimizer.state.iter().zip(&after.param_names) {
        let n = after
            .tensors
            .iter()
            .find(|x| &x.name == t)
            .unwrap()
            .data
            .len();
        assert_eq!(s.m.len(), n, "{t}");
        assert!(s.m.iter().any(|&x| x != 0.0), "{t}: momentum was used");
    }
    // An Adam checkpoint whose moments are missing (written by hand): fresh, and said.
    ok(d, &[&small[..], &["--run-dir", "a"]].concat());
    let mut adam = checkpoint::read(&d.join("a/checkpoints/last.h5")).unwrap();
    for s in &mut adam.optimizer.state {
        s.m.clear();
        s.v.clear();
    }
    checkpoint::write(&adam, &d.join("bare.h5")).unwrap();
    let stdout = ok(
        d,
        &[
            "--headless",
            "--resume",
            "bare.h5",
            "--max-steps",
            "8",
            "--run-dir",
            "a2",
        ],
    );
    assert!(
        stdout.contains("  note: the checkpoint has no Adam moments: they start at zero\n"),
        "{stdout}"
    );
    let after = checkpoint::read(&d.join("a2/checkpoints/last.h5")).unwrap();
    assert_eq!(after.optimizer.steps, 3);
    assert!(after.optimizer.state.iter().all(|s| !s.v.is_empty()));
    // Switching optimizer starts its state fresh too.
    let stdout = ok(
        d,
        &[
            "--headless",
            "--resume",
            "a/checkpoints/last.h5",
            "--optimizer",
            "sgd",
            "--max-steps",
            "7",
            "--run-dir",
            "a3",
        ],
    );
    assert!(
        stdout.contains("  --optimizer adamw -> sgd (given with --resume)\n")
            && stdout.contains(
                "  note: the optimizer changes from adamw to sgd: its state starts fresh\n"
            ),
        "{stdout}"
    );
}

#[test]
fn a_checkpoint_whose_class_names_do_not_fit_its_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(
        d,
        &[
            "--headless",
            "--arch",
            "c4,f16",
            "--max-steps",
            "2",
            "--run-dir",
            "r",
        ],
    );
    let mut c = checkpoint::read(&d.join("r/checkpoints/last.h5")).unwrap();
    c.classes.pop();
    checkpoint::write(&c, &d.join("nine.h5")).unwrap();
    let want = "nine.h5: it lists 9 class names but its model has 10 outputs";
    rejects_in(d, &["eval", "--checkpoint", "nine.h5"], want);
    rejects_in(d, &["inspect", "nine.h5"], want);
    rejects_in(d, &["--resume", "nine.h5"], want);
}

/// `--resume` with another `--schedule` starts it at the resumed step from the LR in force,
/// and says so; the checkpoint's schedule goes on otherwise.
#[test]
fn another_schedule_given_with_resume_starts_at_the_resumed_step() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    two_checkpoints(d);
    let stdout = ok(
        d,
        &[
            "--headless",
            "--resume",
            "a/checkpoints/epoch-001.h5",
            "--epochs",
            "2",
            "--schedule",
            "cosine:min=1e-5",
            "--log-every",
            "1",
            "--run-dir",
            "c",
        ],
    );
    for want in [
        "  --schedule constant -> cosine:min=0.00001 (given with --resume)\n",
        "  note: the schedule cosine to 1e-5 starts at step 142 from lr 1.00e-3\n",
    ] {
        assert!(stdout.contains(want), "{want:?} in\n{stdout}");
    }
    let lrs: Vec<f64> = records(&d.join("c/metrics.jsonl"))
        .iter()
        .filter(|r| r["type"] == "step")
        .map(|r| r["lr"].as_f64().unwrap())
        .collect();
    assert_eq!(lrs.len(), 141);
    assert_eq!(lrs[0], 1e-3, "the cosine begins from the LR in force");
    assert!(lrs.windows(2).all(|w| w[1] < w[0]), "and falls every step");
    assert!((lrs[140] - 1e-5) / 1e-5 < 0.05, "{}", lrs[140]);
    let last = candletop::checkpoint::read(&d.join("c/checkpoints/last.h5")).unwrap();
    let s = last.schedule.unwrap();
    assert_eq!((s.start_step, s.total_steps), (141, 282));
}
