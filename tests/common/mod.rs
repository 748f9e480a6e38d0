#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use candletop::config::RunConfig;
use candletop::data::{DataOptions, DataSpec, DataSplits, Normalization};

/// The embedded data cut down to `train` training and `val` validation images.
pub fn small_data(train: usize, val: usize) -> DataSplits {
    let mut d = DataSplits::load(&DataSpec::Embedded, &DataOptions::new(0.1, 1)).unwrap();
    d.train = d.train.select(&(0..train).collect::<Vec<_>>());
    d.val = d.val.select(&(0..val).collect::<Vec<_>>());
    d.test = d.test.select(&(0..val).collect::<Vec<_>>());
    d.norm = Normalization::of(&d.train);
    d
}

/// A small, quick model.
pub fn small_config() -> RunConfig {
    RunConfig {
        arch: "c8,f32".into(),
        batch_size: 32,
        epochs: 1,
        threads: 2,
        ..RunConfig::default()
    }
}

/// Runs the binary in `cwd`.
pub fn candletop(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_candletop"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// Runs the binary in `dir`, which must succeed; returns stdout.
pub fn succeeds(dir: &Path, args: &[&str]) -> String {
    let out = candletop(args, dir);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The binary refuses `args` in a fresh directory: one line on stderr naming `want`, exit code
/// 2, no panic, no run directory.
pub fn rejects(args: &[&str], want: &str) {
    let dir = tempfile::tempdir().unwrap();
    rejects_in(dir.path(), args, want);
}

/// As `rejects`, in `dir`, where nothing new may appear.
pub fn rejects_in(dir: &Path, args: &[&str], want: &str) {
    let list = || {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = list();
    let out = candletop(args, dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(want), "{args:?}: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert_eq!(list(), before, "{args:?} left files behind");
}

pub fn write_idx(dir: &Path, name: &str, dims: &[usize], data: &[u8]) {
    std::fs::write(dir.join(name), candletop::data::idx::encode(dims, data)).unwrap();
}

/// Whether a test that needs `what` can run. Under CI (`CI` set) a missing tool is a failure,
/// since CI installs it; elsewhere the test says it is skipped.
pub fn available(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{what} is missing, and CI must provide it (.ci/run installs it)");
    }
    eprintln!("skipped: {what} is missing");
    false
}
