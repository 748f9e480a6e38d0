#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use candletop::config::RunConfig;
#[allow(unused_imports)]
pub use candletop::data::cifar::Layout;
use candletop::data::{DataOptions, DataSpec, DataSplits, Normalization};

/// How long a test waits for the trainer's next event before it calls the trainer stuck.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Waits for the first event matching `pred`, returning everything up to it.
pub fn until(
    m: &candletop::protocol::MonitorLink,
    pred: impl Fn(&candletop::protocol::Event) -> bool,
) -> Vec<candletop::protocol::Event> {
    let mut seen = Vec::new();
    loop {
        let e = m.events.recv_timeout(WAIT).expect("an event");
        let done = pred(&e);
        seen.push(e);
        if done {
            return seen;
        }
    }
}

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

/// Image `i` of `d` (28x28 grayscale) as a 32x32 RGB image in channel planes: padded by 2 and
/// tinted by its class, so that colour carries information as in real RGB data.
pub fn rgb32(d: &candletop::data::Dataset, i: usize) -> Vec<u8> {
    let label = d.labels[i] as usize;
    let tint = [
        [1.0, 0.6, 0.3],
        [0.3, 1.0, 0.6],
        [0.6, 0.3, 1.0],
        [1.0, 1.0, 0.3],
        [0.3, 1.0, 1.0],
        [1.0, 0.3, 1.0],
        [0.8, 0.8, 0.8],
        [1.0, 0.5, 0.5],
        [0.5, 1.0, 0.5],
        [0.5, 0.5, 1.0],
    ][label % 10];
    let src = d.image(i);
    let mut out = vec![0u8; 3 * 32 * 32];
    for (c, t) in tint.iter().enumerate() {
        for y in 0..28 {
            for x in 0..28 {
                out[c * 1024 + (y + 2) * 32 + x + 2] = (src[y * 28 + x] as f32 * t) as u8;
            }
        }
    }
    out
}

/// Embedded Fashion-MNIST repacked in CIFAR's binary layout in `dir`: `per_file` training images
/// in each file (5 for CIFAR-10, 1 for CIFAR-100) and `test` test images, with the names files.
/// CIFAR-100 records get coarse label = the class, fine label = 10 x the class.
pub fn write_cifar(
    dir: &Path,
    layout: candletop::data::cifar::Layout,
    per_file: usize,
    test: usize,
) {
    use candletop::data::cifar::{encode, Layout};
    let d = DataSplits::load(&DataSpec::Embedded, &DataOptions::new(0.1, 1)).unwrap();
    let pack = |src: &candletop::data::Dataset, from: usize, n: usize| {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in from..from + n {
            images.extend(rgb32(src, i));
            labels.push((src.labels[i], src.labels[i] * 10));
        }
        encode(&images, &labels, layout)
    };
    let names: Vec<String> = candletop::data::FASHION_MNIST_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    match layout {
        Layout::Cifar10 => {
            for f in 0..5 {
                let bytes = pack(&d.train, f * per_file, per_file);
                std::fs::write(dir.join(format!("data_batch_{}.bin", f + 1)), bytes).unwrap();
            }
            std::fs::write(dir.join("test_batch.bin"), pack(&d.test, 0, test)).unwrap();
            std::fs::write(dir.join("batches.meta.txt"), names.join("\n") + "\n\n").unwrap();
        }
        _ => {
            std::fs::write(dir.join("train.bin"), pack(&d.train, 0, per_file)).unwrap();
            std::fs::write(dir.join("test.bin"), pack(&d.test, 0, test)).unwrap();
            let coarse: Vec<String> = (0..20).map(|c| format!("super{c}")).collect();
            let fine: Vec<String> = (0..100).map(|c| format!("fine{c}")).collect();
            std::fs::write(dir.join("coarse_label_names.txt"), coarse.join("\n")).unwrap();
            std::fs::write(dir.join("fine_label_names.txt"), fine.join("\n")).unwrap();
        }
    }
}

/// Embedded Fashion-MNIST written as an image folder: `train/<class>/NNNN.png` (and `val/`,
/// `test/` when their counts are not 0), `per_class` images of each class per split, as 32x32
/// RGB (`rgb` true) or 28x28 grayscale PNGs. Class folders are named "NN-<class>" so their
/// sorted order is the class order. Returns the folder names.
pub fn write_folder(dir: &Path, rgb: bool, per_class: [usize; 3]) -> Vec<String> {
    let d = DataSplits::load(&DataSpec::Embedded, &DataOptions::new(0.1, 1)).unwrap();
    let names: Vec<String> = candletop::data::FASHION_MNIST_CLASSES
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{i:02}-{}", s.replace('/', "-")))
        .collect();
    let sources = [(&d.train, "train"), (&d.val, "val"), (&d.test, "test")];
    for ((src, split), want) in sources.into_iter().zip(per_class) {
        if want == 0 {
            continue;
        }
        let mut written = [0usize; 10];
        for i in 0..src.len() {
            let c = src.labels[i] as usize;
            if written[c] == want {
                continue;
            }
            let folder = dir.join(split).join(&names[c]);
            std::fs::create_dir_all(&folder).unwrap();
            let path = folder.join(format!("{i:05}.png"));
            if rgb {
                let planes = rgb32(src, i);
                let mut px = Vec::with_capacity(3 * 1024);
                for p in 0..1024 {
                    px.extend([planes[p], planes[1024 + p], planes[2048 + p]]);
                }
                image::RgbImage::from_raw(32, 32, px)
                    .unwrap()
                    .save(&path)
                    .unwrap();
            } else {
                image::GrayImage::from_raw(28, 28, src.image(i).to_vec())
                    .unwrap()
                    .save(&path)
                    .unwrap();
            }
            written[c] += 1;
        }
    }
    names
}

/// The validation accuracy of the last epoch a run recorded in `<run>/metrics.jsonl`.
pub fn last_val_accuracy(run: &Path) -> f64 {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "epoch")
        .and_then(|v| v["val_accuracy"].as_f64())
        .expect("an epoch record in metrics.jsonl")
}

/// Waits (up to a minute) until the run in `run_dir` answers on its socket.
pub fn wait_until_live(run_dir: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !candletop::socket::client::is_live(run_dir) {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
