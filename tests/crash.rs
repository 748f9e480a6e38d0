//! Crash consistency: a run killed with SIGKILL at a random moment, while it saves a
//! checkpoint every few steps and ends an epoch every few more, in both ways a run goes (headless,
//! and served as the terminal UI starts it). After each kill, `ls` calls the run dead and
//! recommends a checkpoint; that checkpoint must read, and the run must resume from it and train.
//! Its metrics.jsonl must still be readable by `diagnose`.
//!
//! CI kills 6 runs. The long form:
//!
//! ```text
//! CANDLETOP_KILLS=100 cargo test --release --test crash -- --nocapture
//! ```

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use candletop::checkpoint;
use candletop::rng::Rng;
use candletop::run_dir::RunDir;
use candletop::runs::{summarise, RunStatus};
use candletop::socket::client;
use common::candletop;

fn kills() -> u64 {
    std::env::var("CANDLETOP_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
}

/// The small model on 640 images at batch 32: 18 steps an epoch, a checkpoint every 3 steps.
const RUN: &[&str] = &[
    "--arch",
    "c8,f32",
    "--subset",
    "640",
    "--batch-size",
    "32",
    "--epochs",
    "1000",
    "--save-every-steps",
    "3",
    "--keep-last",
    "2",
    "--threads",
    "1",
];

fn start(cwd: &Path, name: &str, served: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_candletop"));
    cmd.args(RUN)
        .args(["--run-dir", name])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if served {
        // As the terminal UI starts its training process.
        cmd.env("CANDLETOP_SERVE_RUN_DIR", name);
    } else {
        cmd.arg("--headless");
    }
    cmd.spawn().unwrap()
}

#[test]
fn a_run_killed_anywhere_resumes_from_the_checkpoint_ls_recommends() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(
        std::env::var("CANDLETOP_KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    );
    let mut resumed = 0;
    for i in 0..kills() {
        let served = i % 2 == 1;
        let name = format!("r{i}");
        let dir = tmp.path().join(&name);
        let mut child = start(tmp.path(), &name, served);
        // Once it trains (a step record is in its log), kill it 0-1.5 s later.
        let deadline = Instant::now() + Duration::from_secs(60);
        while summarise(&dir).is_none_or(|s| s.step == 0) {
            assert!(Instant::now() < deadline, "run {i} never trained");
            std::thread::sleep(Duration::from_millis(20));
        }
        let wait = Duration::from_millis(rng.below(1500));
        std::thread::sleep(wait);
        child.kill().unwrap();
        child.wait().unwrap();
        if served {
            // Its socket file is left behind; it must not pass for a live run.
            assert!(!client::is_live(&dir), "run {i}: a killed run answers");
        }
        let s = summarise(&dir).expect("a run directory");
        assert_eq!(s.status, RunStatus::Dead, "run {i}");
        let listed =
            String::from_utf8_lossy(&candletop(&["ls", "."], tmp.path()).stdout).to_string();
        let Some(ckpt) = s.last_checkpoint else {
            assert!(!listed.contains("resume:"), "{listed}");
            continue;
        };
        let relative = ckpt.strip_prefix(tmp.path()).unwrap();
        let recommended = format!("resume: candletop --resume ./{}", relative.display());
        assert!(listed.contains(&recommended), "run {i}: {listed}");
        let read =
            checkpoint::read(&ckpt).unwrap_or_else(|e| panic!("run {i}, killed {wait:?} in: {e}"));
        // It resumes and trains 4 steps more, into its own directory.
        let until = (read.global_step + 4).to_string();
        let ckpt = ckpt.display().to_string();
        let run_dir = dir.display().to_string();
        let args = [
            "--headless",
            "--resume",
            &ckpt,
            "--max-steps",
            &until,
            "--run-dir",
            &run_dir,
        ];
        let out = candletop(&args, tmp.path());
        assert!(
            out.status.success(),
            "run {i}: resume from {ckpt} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = checkpoint::read(&RunDir::new(&dir).checkpoints().join("last.h5")).unwrap();
        assert_eq!(last.global_step, read.global_step + 4, "run {i}");
        let out = candletop(&["diagnose", &run_dir], tmp.path());
        assert!(
            out.status.success(),
            "run {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        resumed += 1;
        // Keep the disk small over a long form.
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("{resumed} of {} killed runs resumed", kills());
    assert!(resumed * 2 >= kills(), "too few kills came after a save");
}
