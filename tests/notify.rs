//! `--notify CMD`: the run's alerts reach a command, in the background, and a command that
//! fails, is missing or hangs never stops the run.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{candletop, rejects};
use serde_json::Value;

/// A short headless run that early stopping ends after epoch 2 (no epoch beats the first by
/// 10), with `--notify CMD`; its exit status and how long it took.
fn run_with(d: &Path, cmd: &str, env: &[(&str, &str)]) -> (Option<i32>, Duration) {
    let t0 = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_candletop"))
        .args([
            "--headless",
            "--epochs",
            "4",
            "--subset",
            "300",
            "--arch",
            "c4,f16",
            "--run-dir",
            "run",
            "--early-stop",
            "1:monitor=val_loss,min_delta=10",
            "--notify",
            cmd,
        ])
        .envs(env.iter().copied())
        .current_dir(d)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    (out.status.code(), t0.elapsed())
}

fn records(d: &Path) -> Vec<Value> {
    std::fs::read_to_string(d.join("run/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn warnings(d: &Path) -> Vec<String> {
    records(d)
        .iter()
        .filter(|r| r["type"] == "warning")
        .map(|r| r["message"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn each_alert_reaches_the_command_as_a_json_line_in_the_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cmd = r#"cat >> alerts.jsonl; echo "$CANDLETOP_EVENT $(basename "$CANDLETOP_RUN_DIR") $(basename "$PWD")" >> env.txt"#;
    let (code, _) = run_with(d, cmd, &[]);
    assert_eq!(code, Some(0));
    let lines: Vec<Value> = std::fs::read_to_string(d.join("run/alerts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let env = std::fs::read_to_string(d.join("run/env.txt")).unwrap();
    let kinds: Vec<&str> = env.lines().map(|l| l.split(' ').next().unwrap()).collect();
    // One line per alert, in order, each the event as the run's record has it.
    assert_eq!(lines.len(), kinds.len());
    assert_eq!(
        kinds[kinds.len() - 2..],
        ["early_stopped", "finished"],
        "{env}"
    );
    assert!(env.lines().all(|l| l.ends_with(" run run")), "{env}");
    let all = records(d);
    let recorded = all.iter().find(|r| r["type"] == "early_stopped").unwrap();
    let stopped = lines.iter().find(|l| l["type"] == "early_stopped").unwrap();
    assert_eq!(stopped["best_epoch"], recorded["best_epoch"]);
    assert_eq!(stopped["step"], recorded["step"]);
    // Every warning the run recorded was an alert too.
    let warned = kinds.iter().filter(|k| **k == "warning").count();
    let raised = records(d)
        .iter()
        .filter(|r| {
            (r["type"] == "finding" && r["severity"] == "warning" && r["cleared"] == false)
                || r["type"] == "warning"
        })
        .count();
    assert_eq!(warned, raised);
}

#[test]
fn a_failing_missing_or_hanging_command_is_one_warning_and_the_run_goes_on() {
    for (cmd, said) in [
        ("echo nope >&2; exit 3", "exit status 3 (nope)"),
        ("/no/such/notifier", "exit status 127"),
        ("sleep 100", "still running after "),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (code, took) = run_with(d, cmd, &[("CANDLETOP_NOTIFY_TIMEOUT", "1")]);
        assert_eq!(code, Some(0), "{cmd}");
        // Not a speed limit: the run does not wait out a command of 100 s.
        assert!(took < Duration::from_secs(90), "{cmd}: {took:?}");
        let w: Vec<String> = warnings(d)
            .into_iter()
            .filter(|m| m.starts_with("--notify"))
            .collect();
        assert_eq!(w.len(), 1, "{cmd}: {w:?}");
        assert!(w[0].contains(said), "{cmd}: {w:?}");
        assert!(w[0].ends_with("training goes on (said once)"), "{w:?}");
        assert!(records(d).iter().any(|r| r["type"] == "finished"));
    }
}

#[test]
fn an_empty_notify_command_is_refused() {
    rejects(&["--headless", "--notify", " "], "--notify");
    let out = candletop(
        &["--headless", "--notify", ""],
        tempfile::tempdir().unwrap().path(),
    );
    assert_eq!(out.status.code(), Some(2));
}
