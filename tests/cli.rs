//! The binary end to end: a real run on the embedded data, and bad input.

mod common;

use std::path::Path;
use std::process::Command;

use common::{candletop, rejects, rejects_in, succeeds, write_idx};
use serde_json::Value;

#[test]
fn trains_on_the_embedded_data_and_writes_the_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = candletop(
        &[
            "--epochs",
            "1",
            "--arch",
            "c16,c32,f64",
            "--log-every",
            "50",
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\nepoch 1/1: val loss "), "{stdout}");
    // runs/<timestamp>/ in the working directory.
    let runs: Vec<_> = std::fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .collect();
    assert_eq!(runs.len(), 1);
    let run = runs[0].as_ref().unwrap().path();
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("arch = \"c16,c32,f64\""), "{config}");
    assert!(config.contains("data = \"embedded\""), "{config}");
    let lines: Vec<Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for l in &lines {
        assert!(
            l["type"].is_string()
                && l["step"].is_u64()
                && l["epoch"].is_u64()
                && l["time"].is_string(),
            "{l}"
        );
    }
    let kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"started"));
    assert_eq!(kinds.last(), Some(&"finished"));
    // The first step's record, then one every 50 steps.
    assert_eq!(kinds.iter().filter(|k| **k == "step").count(), 1 + 141 / 50);
    let epoch = lines
        .iter()
        .rev()
        .find(|l| l["type"] == "epoch")
        .expect("an epoch line");
    let val_acc = epoch["val_accuracy"].as_f64().unwrap();
    assert!(
        val_acc > 0.6,
        "validation accuracy {val_acc} is not far above chance (0.1)"
    );
    assert_eq!(epoch["val_class_accuracy"].as_array().unwrap().len(), 10);
    confusion_matches_the_predictions(&run, epoch);
}

/// The epoch record's confusion summary (each class: the class its validation images were
/// most often taken for, and the share) equals the one counted from `eval --split val`'s
/// per-image predictions with the epoch's checkpoint, and the checkpoint's history holds it.
fn confusion_matches_the_predictions(run: &Path, epoch: &Value) {
    let ckpt = run.join("checkpoints/epoch-001.h5");
    let csv = run.join("val.csv");
    succeeds(
        run,
        &[
            "eval",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--split",
            "val",
            "--predictions",
            csv.to_str().unwrap(),
        ],
    );
    let mut taken = [[0usize; 10]; 10];
    for row in std::fs::read_to_string(&csv).unwrap().lines().skip(1) {
        let f: Vec<usize> = row.split(',').take(3).map(|x| x.parse().unwrap()).collect();
        taken[f[1]][f[2]] += 1;
    }
    let want: Vec<(usize, f64)> = (0..10)
        .map(|c| {
            let total = taken[c].iter().sum::<usize>() as f64;
            // The most frequent wrong class, the lowest of equals; none: the class itself.
            (0..10)
                .filter(|&p| p != c && taken[c][p] > 0)
                .max_by_key(|&p| (taken[c][p], std::cmp::Reverse(p)))
                .map_or((c, 0.0), |p| (p, taken[c][p] as f64 / total))
        })
        .collect();
    let got: Vec<(usize, f64)> = epoch["val_confusion"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["class"].as_u64().unwrap() as usize,
                x["share"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), 10);
    for (c, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.0, w.0, "class {c}: {got:?} vs {want:?}");
        assert!((g.1 - w.1).abs() < 1e-9, "class {c}: {got:?} vs {want:?}");
    }
    assert!(got.iter().any(|g| g.1 > 0.0), "{got:?}");
    let saved = candletop::checkpoint::read(&ckpt).unwrap();
    let history: Vec<(usize, f64)> = saved.epochs[0]
        .val_confusion
        .iter()
        .map(|x| (x.class, x.share))
        .collect();
    assert_eq!(history, got);
}

#[test]
fn bad_flags_are_one_line_errors_with_exit_code_2() {
    rejects(&["--lr", "0"], "'0' is not a positive learning rate");
    rejects(&["--lr", "-0.5"], "'-0.5' is not a positive learning rate");
    rejects(
        &["--lr", "1e7"],
        "'1e7' is too large to be a learning rate (the most is 1e6)",
    );
    rejects(
        &["--lr", "1e-40"],
        "too small to be a learning rate (the least is 1.2e-38",
    );
    rejects(
        &["--clip-grad-norm", "1e-40"],
        "--clip-grad-norm 1e-40: must be zero (off)",
    );
    // A control character in a spec is refused, and shown as an escape: the error stays one
    // line and cannot move the terminal's cursor.
    rejects(
        &["--arch", "c32\u{1b}[2J,f64"],
        "--arch 'c32\\u{1b}[2J,f64': holds the control character \\u{1b}",
    );
    rejects(&["--batch-size", "0"], "--batch-size 0: must be at least 1");
    rejects(
        &["--seed", "18446744073709551615"],
        "--seed 18446744073709551615: not a whole number",
    );
    rejects(&["--threads", "100000"], "--threads 100000: at most");
    rejects(
        &["--val-split", "1.5"],
        "--val-split 1.5: must be strictly between 0 and 1",
    );
    rejects(&["--val-split", "0"], "--val-split 0");
    rejects(&["--arch", "c32,x9"], "--arch 'c32,x9': layer 2 'x9'");
    rejects(&["--arch", "c8,c8,c8,c8,c8"], "layer 5 shrinks");
    // Too large for the memory there is: refused before anything is allocated.
    rejects(&["--arch", "f1048576,f1048576"], "training it takes about");
    rejects(
        &["--arch", "c1048576k1048576"],
        "sizes multiply past any memory",
    );
    rejects(&["--data", "cifar:/tmp"], "unknown data kind 'cifar'");
    rejects(&["--optimizer", "lbfgs"], "lbfgs");
    rejects(&["--config", "/nonexistent/c.toml"], "/nonexistent/c.toml");
}

/// A run directory that cannot be one (here a file; a read-only directory is the same to the
/// user, but root, which CI may be, writes there anyway) is the user's input: exit 2.
#[test]
fn a_run_directory_that_cannot_be_made_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), "").unwrap();
    let args = [
        "--headless",
        "--arch",
        "c4,f8",
        "--max-steps",
        "1",
        "--run-dir",
        "f",
    ];
    rejects_in(dir.path(), &args, "f: File exists");
}

#[test]
fn bad_data_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = format!("mnist:{}", d.display());
    rejects(&["--data", &spec], "no train images file");
    let images: Vec<u8> = (0..4 * 4 * 4).map(|i| i as u8).collect();
    write_idx(d, "train-images-idx3-ubyte", &[4, 4, 4], &images);
    write_idx(d, "train-labels-idx1-ubyte", &[3], &[0, 1, 2]);
    write_idx(d, "t10k-images-idx3-ubyte", &[4, 4, 4], &images);
    write_idx(d, "t10k-labels-idx1-ubyte", &[4], &[0, 1, 2, 3]);
    rejects(&["--data", &spec], "has 4 images but");
    write_idx(d, "train-labels-idx1-ubyte", &[4], &[0, 1, 12, 3]);
    rejects(
        &["--data", &spec],
        "train-labels-idx1-ubyte: label 12 at index 2 is out of range",
    );
    // Truncated and wrong magic, in the other spelling, gzipped.
    std::fs::remove_file(d.join("train-labels-idx1-ubyte")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &[0, 0, 8, 1, 0, 0, 0, 4, 1, 2]).unwrap();
    std::fs::write(d.join("train-labels.idx1-ubyte.gz"), gz.finish().unwrap()).unwrap();
    rejects(&["--data", &spec], "train-labels.idx1-ubyte.gz: truncated");
    std::fs::write(d.join("train-labels.idx1-ubyte.gz"), b"\x1f\x8b\x08garbage").unwrap();
    rejects(
        &["--data", &spec],
        "train-labels.idx1-ubyte.gz: not valid gzip",
    );
    std::fs::write(
        d.join("train-images-idx3-ubyte"),
        [0x12, 0x34, 0x56, 0x78, 0, 0],
    )
    .unwrap();
    rejects(
        &["--data", &spec],
        "train-images-idx3-ubyte: wrong magic number",
    );
}

#[test]
fn trains_on_an_idx_directory_in_either_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut rng = candletop::rng::Rng::new(3);
    let n = 40;
    let images: Vec<u8> = (0..n * 28 * 28).map(|_| rng.below(256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    write_idx(d, "train-images.idx3-ubyte", &[n, 28, 28], &images);
    write_idx(d, "train-labels.idx1-ubyte", &[n], &labels);
    write_idx(d, "t10k-images-idx3-ubyte", &[n, 28, 28], &images);
    write_idx(d, "t10k-labels-idx1-ubyte", &[n], &labels);
    let spec = format!("mnist:{}", d.display());
    let run = d.join("run");
    let out = candletop(
        &[
            "--data",
            &spec,
            "--epochs",
            "1",
            "--arch",
            "c4,f8",
            "--run-dir",
            run.to_str().unwrap(),
            "--val-split",
            "0.25",
        ],
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("30 train / 10 val / 40 test"), "{stdout}");
    assert!(run.join("metrics.jsonl").exists());
    // A test set of another size is refused at load, not found when the run ends.
    let small: Vec<u8> = (0..n * 20 * 20).map(|_| rng.below(256) as u8).collect();
    write_idx(d, "t10k-images-idx3-ubyte", &[n, 20, 20], &small);
    rejects(
        &["--data", &spec, "--val-split", "0.25"],
        "the test images are 1x20x20 but the training images are 1x28x28",
    );
}

#[test]
fn checkpoints_resume_evaluate_and_inspect_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        "--headless",
        "--arch",
        "c4,f16",
        "--epochs",
        "1",
        "--run-dir",
        "first",
    ];
    let out = candletop(&args, d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ckpts = d.join("first/checkpoints");
    for f in ["epoch-001.h5", "best.h5", "last.h5"] {
        assert!(ckpts.join(f).is_file(), "{f} missing");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("saved") && stdout.contains("last.h5"),
        "{stdout}"
    );
    // Resuming the epoch-1 checkpoint with --epochs 2 trains one more epoch.
    let epoch1 = ckpts.join("epoch-001.h5");
    let out = candletop(
        &[
            "--headless",
            "--resume",
            epoch1.to_str().unwrap(),
            "--epochs",
            "2",
            "--run-dir",
            "second",
        ],
        d,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("epoch 1/2:"), "{stdout}");
    assert!(stdout.contains("\nepoch 2/2: "), "{stdout}");
    assert!(stdout.contains("finished at step 282"), "{stdout}");
    // inspect
    let last = d.join("second/checkpoints/last.h5");
    let out = candletop(&["inspect", last.to_str().unwrap()], d);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for want in [
        "integrity   ok",
        "version 1",
        "2 epochs done, step 282",
        "c4,f16",
        "adamw",
        "/model/features.0.weight",
        "epoch   2",
    ] {
        assert!(text.contains(want), "inspect lacks {want:?}:\n{text}");
    }
    // eval with predictions
    let csv = d.join("p.csv");
    let out = candletop(
        &[
            "eval",
            "--checkpoint",
            last.to_str().unwrap(),
            "--predictions",
            csv.to_str().unwrap(),
        ],
        d,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("test split")
            && text.contains("confusion matrix")
            && text.contains("Ankle boot"),
        "{text}"
    );
    let rows: Vec<String> = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        rows[0],
        "index,label,predicted,p0,p1,p2,p3,p4,p5,p6,p7,p8,p9"
    );
    assert_eq!(rows.len(), 2001);
    let probs: f64 = rows[1]
        .split(',')
        .skip(3)
        .map(|p| p.parse::<f64>().unwrap())
        .sum();
    assert!((probs - 1.0).abs() < 1e-4, "{probs}");
    // The accuracy printed is the share of CSV rows whose prediction is the label.
    let right = rows[1..].iter().filter(|r| {
        let f: Vec<&str> = r.split(',').collect();
        f[1] == f[2]
    });
    let acc = 100.0 * right.count() as f64 / 2000.0;
    assert!(
        text.contains(&format!("accuracy {acc:.2}%")),
        "{acc} in {text}"
    );
}

/// The default model (fast kernels) stopped after 70 steps and resumed on one thread ends at
/// step 160 with the same weights and optimizer state, bit for bit, as 160 steps straight
/// through on two threads (the run crosses an epoch boundary at step 141).
#[test]
fn the_default_model_resumes_exactly_on_another_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        let out = candletop(args, d);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let common = ["--headless", "--epochs", "2"];
    let straight = ["--max-steps", "160", "--threads", "2", "--run-dir", "a"];
    run(&[&common[..], &straight[..]].concat());
    let part = ["--max-steps", "70", "--threads", "2", "--run-dir", "b"];
    run(&[&common[..], &part[..]].concat());
    let from = d.join("b/checkpoints/last.h5");
    let from = from.to_str().unwrap();
    let rest = [
        "--resume",
        from,
        "--max-steps",
        "160",
        "--threads",
        "1",
        "--run-dir",
        "c",
    ];
    run(&[&["--headless"][..], &rest[..]].concat());
    let read =
        |run: &str| candletop::checkpoint::read(&d.join(run).join("checkpoints/last.h5")).unwrap();
    let (a, c) = (read("a"), read("c"));
    assert_eq!((a.global_step, c.global_step), (160, 160));
    for (x, y) in a.tensors.iter().zip(&c.tensors) {
        assert!(x == y, "{} differs after the resume", x.name);
    }
    assert_eq!(a.tensors.len(), c.tensors.len());
    assert!(a.optimizer == c.optimizer, "optimizer state differs");
}

#[test]
fn damaged_checkpoints_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = candletop(
        &[
            "--headless",
            "--arch",
            "c4,f16",
            "--max-steps",
            "3",
            "--run-dir",
            "r",
        ],
        d,
    );
    assert!(out.status.success());
    let good = std::fs::read(d.join("r/checkpoints/last.h5")).unwrap();
    let bad = d.join("bad.h5");
    std::fs::write(&bad, &good[..good.len() / 2]).unwrap();
    let b = bad.to_str().unwrap();
    rejects(&["--resume", b], "bad.h5: integrity check failed");
    rejects(&["inspect", b], "bad.h5: integrity check failed");
    rejects(
        &["eval", "--checkpoint", b],
        "bad.h5: integrity check failed",
    );
    std::fs::write(&bad, b"just text").unwrap();
    rejects(&["inspect", b], "bad.h5: not a candletop checkpoint");
    rejects(&["inspect", "/nonexistent.h5"], "/nonexistent.h5");
    let good_path = d.join("r/checkpoints/last.h5");
    rejects(
        &["--resume", good_path.to_str().unwrap(), "--arch", "c8,f16"],
        "--arch c8,f16: cannot change on resume (c4,f16 in the checkpoint)",
    );
}

#[test]
fn sigterm_in_headless_mode_stops_cleanly_with_last_h5() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_candletop"))
        .args([
            "--headless",
            "--arch",
            "c4,f16",
            "--epochs",
            "50",
            "--log-every",
            "5",
            "--run-dir",
            "r",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait for training to be under way.
    let first = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains("step      5/"))
        .expect("a progress line");
    assert!(first.contains("epoch 1/50"));
    // SAFETY: sending a signal to our own child process.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?} {rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("signal received")),
        "{rest:?}"
    );
    assert!(
        rest.last().unwrap().starts_with("stopped at step"),
        "{rest:?}"
    );
    assert!(candletop::checkpoint::read(&dir.path().join("r/checkpoints/last.h5")).is_ok());
}

/// Runs the binary to its end or `limit`, whichever comes first (a hang fails the test instead
/// of hanging it). `setup` runs in the child before it starts (resource limits).
fn run_within(
    args: &[&str],
    cwd: &Path,
    limit: std::time::Duration,
    setup: Option<fn() -> std::io::Result<()>>,
) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_candletop"));
    cmd.args(args)
        .current_dir(cwd)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(f) = setup {
        // SAFETY: the closure only makes async-signal-safe system calls (setrlimit, signal).
        unsafe {
            cmd.pre_exec(f);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{args:?} still running after {limit:?}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Headless, nobody can press a key: a non-finite loss ends the run at once with exit status
/// 3, and `last.h5` holds the last good weights.
#[test]
fn a_headless_non_finite_loss_ends_the_run_with_status_3() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        "--headless",
        "--optimizer",
        "sgd",
        "--lr",
        "50",
        "--no-batch-norm",
        "--run-dir",
        "r",
    ];
    let out = run_within(&args, d, std::time::Duration::from_secs(120), None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let bad = lines
        .iter()
        .find(|l| {
            l.contains("; the update was skipped and the run stops with the last good weights")
        })
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(bad.contains("is NaN") || bad.contains("is inf"), "{bad}");
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("stopped on a non-finite loss at step "),
        "{stdout}"
    );
    let step: u64 = last["stopped on a non-finite loss at step ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ckpt = candletop::checkpoint::read(&d.join("r/checkpoints/last.h5")).unwrap();
    assert_eq!(ckpt.global_step, step);
    assert!(ckpt
        .tensors
        .iter()
        .all(|t| t.data.iter().all(|x| x.is_finite())));
    let recs: Vec<Value> = std::fs::read_to_string(d.join("r/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let nf = recs.iter().find(|r| r["type"] == "non_finite").unwrap();
    assert_eq!(nf["then"], "stop");
    let end = recs.last().unwrap();
    assert_eq!(
        (&end["type"], &end["reason"]),
        (&"finished".into(), &"non_finite".into())
    );
}

/// metrics.jsonl on a full disk: one warning, and the run goes on to its end (exit 0).
#[test]
fn a_metrics_log_on_a_full_disk_warns_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("r")).unwrap();
    std::os::unix::fs::symlink("/dev/full", d.join("r/metrics.jsonl")).unwrap();
    let args = [
        "--headless",
        "--arch",
        "c4,f16",
        "--max-steps",
        "30",
        "--run-dir",
        "r",
    ];
    let out = run_within(&args, d, std::time::Duration::from_secs(120), None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let warnings: Vec<&str> = stdout.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(
        warnings,
        ["  warning: metrics are no longer recorded (r/metrics.jsonl: No space left on device (os error 28)); training goes on"],
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("  step     20/")),
        "{stdout}"
    );
    assert!(stdout.contains("\nstopped at step 30 after "), "{stdout}");
}

fn limit_file_size_to_1mb() -> std::io::Result<()> {
    limit_file_size(1 << 20)
}

fn limit_file_size_to_64kb() -> std::io::Result<()> {
    limit_file_size(64 << 10)
}

fn limit_file_size(bytes: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: plain system calls on this (forked) process; SIGXFSZ ignored, so that a write
    // past the limit fails with EFBIG instead of killing the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A checkpoint that the file system will not take (here: past a 1 MB file-size limit; the
/// default model's is 5 MB): one short line, training goes on, the whole story in
/// metrics.jsonl, and no partial file.
/// metrics.jsonl reaching the end of the disk mid-line: the torn line is cut back, so the log
/// ends in a whole line and every reader takes all of it.
#[test]
fn a_metrics_log_cut_off_mid_line_keeps_its_whole_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        "--headless",
        "--arch",
        "c4,f16",
        "--max-steps",
        "200",
        "--log-every",
        "1",
        "--run-dir",
        "r",
    ];
    let limit = std::time::Duration::from_secs(120);
    let out = run_within(&args, d, limit, Some(limit_file_size_to_64kb));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("metrics are no longer recorded"),
        "{stdout}"
    );
    let log = std::fs::read_to_string(d.join("r/metrics.jsonl")).unwrap();
    assert!(
        log.len() > 32 << 10 && log.ends_with('\n'),
        "{} bytes",
        log.len()
    );
    for (i, l) in log.lines().enumerate() {
        assert!(
            serde_json::from_str::<Value>(l).is_ok(),
            "line {}: {l}",
            i + 1
        );
    }
    let view = candletop(&["diagnose", "r"], d);
    let said = String::from_utf8_lossy(&view.stderr);
    assert!(view.status.success() && !said.contains("torn"), "{said}");
}

#[test]
fn a_save_the_disk_refuses_is_one_line_and_training_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        "--headless",
        "--max-steps",
        "20",
        "--save-every-steps",
        "10",
        "--run-dir",
        "r",
    ];
    let out = run_within(
        &args,
        d,
        std::time::Duration::from_secs(120),
        Some(limit_file_size_to_1mb),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("could not save"))
        .collect();
    assert_eq!(
        failed, ["  could not save last.h5: file too large; training goes on"; 3],
        "{stdout}"
    );
    assert!(stdout.contains("\nstopped at step 20 "), "{stdout}");
    assert!(stdout.lines().all(|l| l.len() < 200), "{stdout}");
    let ckpts: Vec<_> = std::fs::read_dir(d.join("r/checkpoints"))
        .unwrap()
        .collect();
    assert!(ckpts.is_empty(), "partial files left: {ckpts:?}");
    let log = std::fs::read_to_string(d.join("r/metrics.jsonl")).unwrap();
    let rec: Value = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["type"] == "checkpoint_failed")
        .unwrap();
    assert_eq!(rec["reason"], "file too large");
    // Refused before HDF5 starts a file it could not finish.
    assert!(
        rec["detail"].as_str().unwrap().contains("(os error 27)"),
        "{rec}"
    );
}

/// `candletop lr-find`: the table, the plot and the suggestion; bad ranges refused.
#[test]
fn lr_find_prints_the_curve_and_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = succeeds(
        dir.path(),
        &[
            "lr-find",
            "--arch",
            "c8,f32",
            "--optimizer",
            "adam",
            "--sweep-steps",
            "40",
        ],
    );
    assert!(
        stdout.starts_with("LR range test: c8,f32 relu bn dropout 0.25"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  step        lr      loss  smoothed\n     1   1.00e-7  "),
        "{stdout}"
    );
    assert!(stdout.contains("<- suggested"), "{stdout}");
    assert!(
        stdout.contains("│ 1e-7 ") && stdout.contains("1e1│"),
        "{stdout}"
    );
    let last = stdout.lines().rev().nth(1).unwrap();
    assert!(last.starts_with("suggested lr: "), "{stdout}");
    assert!(
        stdout
            .trim_end()
            .ends_with("never far below the run's LR without a fall to show for it."),
        "{stdout}"
    );
    assert!(
        !dir.path().join("runs").exists(),
        "lr-find writes no run directory"
    );
    rejects(
        &["lr-find", "--start-lr", "1", "--end-lr", "0.1"],
        "--start-lr 1 (--end-lr 0.1): must be below --end-lr",
    );
    rejects(
        &["lr-find", "--end-lr", "-2"],
        "'-2' is not a positive learning rate",
    );
    rejects(
        &["lr-find", "--sweep-steps", "5"],
        "5 is not in 13..=100000",
    );
}

/// Bad schedules: one line naming the part at fault, exit status 2, nothing written.
#[test]
fn bad_schedules_are_one_line_errors() {
    rejects(
        &["--schedule", "step:7:x"],
        "--schedule 'step:7:x': at 'step:7:x': 'x' is not a number (gamma)",
    );
    rejects(
        &["--schedule", "cosine:min=1e-5,warm=3"],
        "at 'warm=3': unknown parameter 'warm' (known: min, restart, mult)",
    );
    rejects(
        &["--schedule", "multistep:3,20", "--epochs", "10"],
        "--schedule 'multistep:3,20:0.1': milestone 20 is at or after the run's last epoch (10 epochs)",
    );
    rejects(
        &["--schedule", "plateau:monitor=train_acc"],
        "no metric 'train_acc' to monitor (val_loss or val_acc)",
    );
    rejects(
        &["--schedule", "warmup=5000+cosine", "--epochs", "2"],
        "the warm-up of 5000 steps is not shorter than the 282 steps left",
    );
    rejects(
        &["--schedule", "onecycle:max=0"],
        "the peak LR must be above 0",
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "schedule = \"exp:2\"\n").unwrap();
    rejects(
        &["--config", file.to_str().unwrap()],
        "gamma must be in (0, 1]",
    );
}

/// A schedule through the binary: every step's LR in metrics.jsonl follows it, headless says
/// what it is, and `inspect` shows it in the checkpoint.
#[test]
fn a_schedule_sets_the_lr_of_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let stdout = succeeds(
        d,
        &[
            "--headless",
            "--arch",
            "c4,f16",
            "--epochs",
            "2",
            "--log-every",
            "1",
            "--lr",
            "0.002",
            "--schedule",
            "step:1:0.5",
            "--run-dir",
            "r",
        ],
    );
    assert!(
        stdout.contains("\n  AdamW wd 0.01, lr 2.00e-3 step x0.5 every 1 ep; 2 epochs x 141 steps of 64; run dir r\n"),
        "{stdout}"
    );
    let steps: Vec<Value> = std::fs::read_to_string(d.join("r/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "step")
        .collect();
    assert_eq!(steps.len(), 282);
    for s in &steps {
        let want = if s["step"].as_u64().unwrap() <= 141 {
            0.002
        } else {
            0.001
        };
        assert_eq!(s["lr"].as_f64().unwrap(), want, "{s}");
    }
    let out = candletop(&["inspect", "r/checkpoints/last.h5"], d);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("  schedule    step x0.5 every 1 ep (step:1:0.5), next step's lr 5.000e-4"),
        "{text}"
    );
}

#[test]
fn resume_takes_a_run_directory_for_its_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let small = ["--headless", "--subset", "300", "--arch", "c4,f16"];
    let mut first = small.to_vec();
    first.extend(["--epochs", "1", "--run-dir", "a"]);
    succeeds(d, &first);
    let mut again = small.to_vec();
    again.extend(["--resume", "a", "--epochs", "2", "--run-dir", "b"]);
    succeeds(d, &again);
    let log = std::fs::read_to_string(d.join("b/metrics.jsonl")).unwrap();
    let started: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(started["resumed"]["from"], "a/checkpoints/last.h5");
    std::fs::create_dir(d.join("empty")).unwrap();
    rejects_in(
        d,
        &["--headless", "--resume", "empty"],
        "--resume empty: no checkpoint in its checkpoints/; give a checkpoint file",
    );
}
