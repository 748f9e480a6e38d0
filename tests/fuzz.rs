//! Fuzzing every parser that a user's input reaches: IDX and CIFAR files, images, checkpoints,
//! config files, the specs of `--arch`, `--schedule`, `--augment`, `--normalize` and `--data`,
//! every setting as the command line and the editor give it, metrics.jsonl, and the socket's
//! frames and commands.
//!
//! Each target mutates valid inputs (bit flips, interesting numbers, insertions, deletions,
//! splices, tokens of its grammar) and keeps as new seeds the inputs that reach an outcome not
//! seen before: a coarse stand-in for coverage that needs no nightly compiler. An input fails a
//! target when the parser panics, when an error spans several lines, or when what it accepts
//! does not print back to itself. The input is then written to a file the failure names.
//!
//! In CI each target runs for a few seconds. The long form, every target for N seconds:
//!
//! ```text
//! CANDLETOP_FUZZ_SECS=150 cargo test --release --test fuzz -- --nocapture --test-threads 1
//! ```
//!
//! `CANDLETOP_FUZZ_SEED` picks another sequence of inputs (the default is 0, so a run repeats).

mod common;

use std::collections::HashSet;
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candletop::checkpoint;
use candletop::config::RunConfig;
use candletop::data::augment::AugmentSpec;
use candletop::data::cifar::{self, Layout};
use candletop::data::{idx, DataSpec, NormalizeSpec};
use candletop::model::arch::Arch;
use candletop::protocol::Command;
use candletop::rng::Rng;
use candletop::run_dir::Recorded;
use candletop::schedule::ScheduleSpec;
use candletop::socket::wire::{self, ClientMsg, Frame};
use candletop::train::Trainer;

/// How long each target runs.
fn budget() -> Duration {
    let secs = std::env::var("CANDLETOP_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

fn seed() -> u64 {
    std::env::var("CANDLETOP_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The most seeds a target keeps.
const CORPUS: usize = 2048;
const INTERESTING_BYTES: [u8; 9] = [0, 1, 2, 0x7f, 0x80, 0xfe, 0xff, b'0', b'9'];
const INTERESTING_WORDS: [u64; 12] = [
    0,
    1,
    2,
    255,
    256,
    65535,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX as u64,
    u64::MAX,
];

/// A mutation-based fuzzer for one parser.
struct Fuzzer {
    name: &'static str,
    rng: Rng,
    corpus: Vec<Vec<u8>>,
    /// Tokens of the input's grammar, inserted whole.
    dict: Vec<Vec<u8>>,
    /// Outcomes seen (an error's kind, or "ok" with a shape): a new one keeps its input.
    seen: HashSet<String>,
}

impl Fuzzer {
    fn new(name: &'static str, seeds: Vec<Vec<u8>>, dict: &[&str]) -> Self {
        assert!(!seeds.is_empty());
        Self {
            name,
            rng: Rng::derive(seed(), name, 0),
            corpus: seeds,
            dict: dict.iter().map(|t| t.as_bytes().to_vec()).collect(),
            seen: HashSet::new(),
        }
    }

    fn below(&mut self, n: usize) -> usize {
        self.rng.below(n.max(1) as u64) as usize
    }

    fn pick_seed(&mut self) -> Vec<u8> {
        let i = self.below(self.corpus.len());
        self.corpus[i].clone()
    }

    fn pick_token(&mut self) -> Vec<u8> {
        let i = self.below(self.dict.len());
        self.dict[i].clone()
    }

    fn mutate(&mut self) -> Vec<u8> {
        let mut x = self.pick_seed();
        let rounds = 1 + if self.below(4) == 0 {
            self.below(16)
        } else {
            self.below(3)
        };
        for _ in 0..rounds {
            self.mutate_once(&mut x);
        }
        x
    }

    fn mutate_once(&mut self, x: &mut Vec<u8>) {
        let at = self.below(x.len() + 1);
        match self.below(10) {
            0 if !x.is_empty() => {
                let i = self.below(x.len());
                x[i] ^= 1 << self.below(8);
            }
            1 if !x.is_empty() => {
                let i = self.below(x.len());
                x[i] = INTERESTING_BYTES[self.below(INTERESTING_BYTES.len())];
            }
            2 => {
                let n = 1 + self.below(8);
                for _ in 0..n {
                    x.insert(at, self.rng.next_u64() as u8);
                }
            }
            3 if !x.is_empty() => {
                let n = 1 + self.below(16.min(x.len()));
                let from = self.below(x.len() + 1 - n);
                x.drain(from..from + n);
            }
            4 if !x.is_empty() => {
                let n = 1 + self.below(64.min(x.len()));
                let from = self.below(x.len() + 1 - n);
                let chunk = x[from..from + n].to_vec();
                x.splice(at..at, chunk);
            }
            5 if !self.dict.is_empty() => {
                let t = self.pick_token();
                x.splice(at..at, t);
            }
            6 if x.len() >= 8 => {
                let w = INTERESTING_WORDS[self.below(INTERESTING_WORDS.len())];
                let (bytes, n) = match self.below(4) {
                    0 => ((w as u32).to_be_bytes().to_vec(), 4),
                    1 => ((w as u32).to_le_bytes().to_vec(), 4),
                    2 => (w.to_le_bytes().to_vec(), 8),
                    _ => (w.to_string().into_bytes(), 0),
                };
                let i = self.below(x.len() + 1 - n.min(x.len()));
                if n == 0 {
                    x.splice(i..i, bytes);
                } else {
                    x[i..i + n].copy_from_slice(&bytes);
                }
            }
            7 => x.truncate(at),
            8 => {
                let other = self.pick_seed();
                let from = self.below(other.len() + 1);
                x.truncate(at);
                x.extend_from_slice(&other[from..]);
            }
            _ => {
                // A token in place of a run of bytes.
                if !self.dict.is_empty() && !x.is_empty() {
                    let t = self.pick_token();
                    let n = 1 + self.below(8.min(x.len()));
                    let from = self.below(x.len() + 1 - n);
                    x.splice(from..from + n, t);
                }
            }
        }
    }

    /// Runs `target` on mutated inputs until the budget is spent. `target` returns the input's
    /// outcome, or `Err` with what is wrong with how it was handled.
    fn run(mut self, target: impl Fn(&[u8]) -> Result<String, String>) {
        let start = Instant::now();
        quiet_while_fuzzing();
        FUZZING.with(|f| f.set(true));
        // The seeds themselves first.
        let mut queue: Vec<Vec<u8>> = self.corpus.clone();
        let mut tried = 0u64;
        let failure = loop {
            let input = queue.pop().unwrap_or_else(|| self.mutate());
            tried += 1;
            let outcome = match catch_unwind(AssertUnwindSafe(|| target(&input))) {
                Ok(Ok(o)) => o,
                Ok(Err(wrong)) => break Some((input, wrong)),
                Err(panic) => break Some((input, format!("panicked: {}", panic_text(&panic)))),
            };
            // Once the corpus is full, outcomes are no longer kept (nor their memory).
            if self.corpus.len() < CORPUS && self.seen.insert(outcome) {
                self.corpus.push(input);
            }
            if start.elapsed() >= budget() && queue.is_empty() {
                break None;
            }
        };
        FUZZING.with(|f| f.set(false));
        eprintln!(
            "fuzz {:<12} {:>9} inputs in {:>5.1} s, {:>4} outcomes, {:>4} seeds",
            self.name,
            tried,
            start.elapsed().as_secs_f64(),
            self.seen.len(),
            self.corpus.len()
        );
        if let Some((input, wrong)) = failure {
            let path = std::env::temp_dir().join(format!("candletop-fuzz-{}.bin", self.name));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "{}: {wrong}\n  input ({} bytes) written to {}: {:?}",
                self.name,
                input.len(),
                path.display(),
                String::from_utf8_lossy(&input[..input.len().min(300)])
            );
        }
    }
}

thread_local! {
    /// Whether this thread is running inputs, whose panics are caught and reported.
    static FUZZING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Panics of inputs are caught and said once, with the input; any other panic (a test's own
/// failure, on this thread or another target's) is printed as usual.
fn quiet_while_fuzzing() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let usual = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !FUZZING.with(|f| f.get()) {
                usual(info)
            }
        }));
    });
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// An error's outcome: its text without numbers (so that each kind counts once), which must
/// be one line.
fn refused(e: impl std::fmt::Display) -> Result<String, String> {
    let text = e.to_string();
    if text.contains('\n') || text.trim().is_empty() {
        return Err(format!("an error that is not one line: {text:?}"));
    }
    // The words of the error, without what it quotes of the input.
    let mut quoted = false;
    Ok(text
        .chars()
        .filter(|&c| {
            if c == '\'' || c == '`' {
                quoted = !quoted;
            }
            !quoted && !c.is_ascii_digit()
        })
        .take(100)
        .collect())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A spec that parses must print to text that parses to the same spec.
fn round_trip<T, E>(input: &[u8], parse: impl Fn(&str) -> Result<T, E>) -> Result<String, String>
where
    T: std::fmt::Display + std::fmt::Debug + PartialEq,
    E: std::fmt::Display,
{
    match parse(&text(input)) {
        Err(e) => refused(e),
        Ok(spec) => {
            let printed = spec.to_string();
            match parse(&printed) {
                Ok(again) if again == spec => Ok(format!("ok {}", printed.len().min(8))),
                Ok(again) => Err(format!("prints as {printed:?}, which reads as {again:?}")),
                Err(e) => Err(format!("prints as {printed:?}, which is refused: {e}")),
            }
        }
    }
}

const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1e309",
    "-0",
    "NaN",
    "inf",
    "1e-320",
    "18446744073709551616",
    "4294967296",
    "0.5",
    "1e6",
    "00",
    ".",
    "+",
    "e",
];

fn with_numbers(tokens: &[&'static str]) -> Vec<&'static str> {
    tokens.iter().chain(NUMBERS).copied().collect()
}

fn seeds(texts: &[&str]) -> Vec<Vec<u8>> {
    texts.iter().map(|t| t.as_bytes().to_vec()).collect()
}

#[test]
fn arch_spec() {
    let dict = with_numbers(&["c", "f", "k", "s", "p", "/max", "/avg", "/none", ","]);
    Fuzzer::new(
        "arch",
        seeds(&[
            "c32,c64,f128",
            "c32k5,c64/avg,c128/none,f256,f64",
            "c8s2p0,f16",
        ]),
        &dict,
    )
    .run(|b| round_trip(b, |s| s.parse::<Arch>()));
}

#[test]
fn schedule_spec() {
    let dict = with_numbers(&[
        "warmup=",
        "+",
        ":",
        ",",
        "=",
        "constant",
        "step",
        "multistep",
        "exp",
        "cosine",
        "poly",
        "onecycle",
        "plateau",
        "max=",
        "min=",
        "power=",
        "patience=",
        "factor=",
        "pct=",
        "three_phase",
        "mode=",
        "max",
        "min",
        "t0=",
        "restarts",
        "div=",
    ]);
    let s = seeds(&[
        "constant",
        "step:3:0.5",
        "multistep:2,4:0.1",
        "exp:0.9",
        "cosine:min=1e-5",
        "warmup=100:1e-5+cosine",
        "poly:power=0.9,min=1e-5",
        "onecycle:max=3e-3",
        "plateau:patience=2,factor=0.5",
    ]);
    Fuzzer::new("schedule", s, &dict).run(|b| round_trip(b, |s| s.parse::<ScheduleSpec>()));
}

#[test]
fn augment_spec() {
    let dict = with_numbers(&[
        "crop", "pad-crop", "flip", "jitter", "rotate", "erase", "none", ":", "-", ",",
    ]);
    let s = seeds(&[
        "none",
        "pad-crop:4,flip",
        "crop:0.8,flip,jitter:0.2",
        "flip,rotate:15,erase",
        "crop:0.08-1:0.75-1.333,jitter:0.4:0.4:0.4:0.1",
    ]);
    Fuzzer::new("augment", s, &dict).run(|b| round_trip(b, |s| s.parse::<AugmentSpec>()));
}

#[test]
fn normalize_spec() {
    let dict = with_numbers(&["auto", "/", ","]);
    let s = seeds(&["auto", "0.5/0.25", "0.49,0.48,0.45/0.25,0.24,0.26"]);
    Fuzzer::new("normalize", s, &dict).run(|b| round_trip(b, |s| s.parse::<NormalizeSpec>()));
}

#[test]
fn data_spec() {
    let dict = [
        "embedded",
        "mnist",
        "fashion-mnist",
        "cifar10",
        "cifar100",
        "cifar100-coarse",
        "folder",
        ":",
        "/",
        "~",
        " ",
    ];
    let s = seeds(&["embedded", "mnist:/data/mnist", "cifar10:dir", "folder:a:b"]);
    Fuzzer::new("data", s, &dict).run(|b| round_trip(b, |s| s.parse::<DataSpec>()));
}

/// Every setting, as a flag's or the editor's text: one that is taken leaves a config that
/// either validates or is refused in one line, and prints to a config file that reads back.
#[test]
fn settings() {
    let keys: Vec<&str> = candletop::config::SETTINGS.iter().map(|s| s.key).collect();
    let defaults = RunConfig::default().values();
    let s: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| {
            let v = match defaults.get(*k) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            format!("{k}={v}").into_bytes()
        })
        .collect();
    let mut dict = with_numbers(&["=", "true", "false", ",", ":"]);
    dict.extend(keys.iter().copied());
    Fuzzer::new("settings", s, &dict).run(|b| {
        let t = text(b);
        let Some((key, value)) = t.split_once('=') else {
            return Ok("no =".into());
        };
        match RunConfig::default().with_settings(&[(key.into(), value.into())]) {
            Ok(cfg) => valid_and_read_back(&cfg).map(|o| format!("{o} {key}")),
            Err(e) => refused(e),
        }
    });
}

/// A config that was taken either validates or is refused in one line, and prints to a
/// config file that reads back the same.
fn valid_and_read_back(cfg: &RunConfig) -> Result<String, String> {
    if let Err(e) = cfg.validate() {
        return refused(e);
    }
    let again = RunConfig::from_toml(&cfg.to_toml())
        .map_err(|e| format!("prints a config file that is refused: {e}"))?;
    if again.to_toml() != cfg.to_toml() {
        return Err("prints a config file that reads back different".into());
    }
    Ok("ok".into())
}

#[test]
fn config_file() {
    let full = RunConfig::default().to_toml();
    let s = seeds(&[
        &full,
        "lr = 0.01\nschedule = \"cosine\"\n",
        "[section]\nx = 1\n",
        "epochs = 3\nbatch_size = 32\narch = \"c8,f16\"\n",
    ]);
    let dict = with_numbers(&[
        "=", "\"", "\n", "[", "]", "'''", "lr", "epochs", "seed", "arch",
    ]);
    Fuzzer::new("config", s, &dict).run(|b| match RunConfig::from_toml(&text(b)) {
        Ok(cfg) => valid_and_read_back(&cfg),
        Err(e) => refused(e),
    });
}

fn idx_bytes(kind: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, kind, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_files() {
    let images = idx_bytes(8, &[3, 4, 4], &[7; 48]);
    let labels = idx_bytes(8, &[3], &[0, 1, 2]);
    let s = vec![gzip(&images), images, labels.clone(), gzip(&labels)];
    let path = Path::new("train-images-idx3-ubyte");
    Fuzzer::new("idx", s, &[]).run(|b| {
        match candletop::data::parse_maybe_gzip(path, b) {
            Err(e) => refused(e),
            Ok(a) => {
                let n: usize = a.dims.iter().product();
                if n != a.data.len() {
                    return Err(format!("dims {:?} but {} values", a.dims, a.data.len()));
                }
                Ok(format!("ok {}", a.dims.len()))
            }
        }
        .and_then(|o| match idx::parse(b) {
            Err(e) => refused(e).map(|_| o),
            Ok(_) => Ok(o),
        })
    });
}

#[test]
fn cifar_files() {
    let layouts = [
        Layout::Cifar10,
        Layout::Cifar100Fine,
        Layout::Cifar100Coarse,
    ];
    let s = layouts
        .iter()
        .map(|l| {
            let mut one = vec![1u8; l.record()];
            one[0] = 3;
            one.repeat(2)
        })
        .collect();
    Fuzzer::new("cifar", s, &[]).run(|b| {
        let mut outcome = String::new();
        for l in layouts {
            match cifar::parse(b, l) {
                Err(e) => outcome += &refused(e)?,
                Ok((images, labels)) => {
                    if images.len() != labels.len() * 3072 {
                        return Err(format!(
                            "{} images bytes, {} labels",
                            images.len(),
                            labels.len()
                        ));
                    }
                    outcome += "ok";
                }
            }
        }
        Ok(outcome)
    });
}

fn encoded(format: image::ImageFormat, rgb: bool) -> Vec<u8> {
    let img = image::RgbImage::from_fn(6, 5, |x, y| image::Rgb([x as u8 * 40, y as u8 * 50, 90]));
    let img = if rgb {
        image::DynamicImage::ImageRgb8(img)
    } else {
        image::DynamicImage::ImageLuma8(image::DynamicImage::ImageRgb8(img).to_luma8())
    };
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// Images through the folder loader's decoder, as files (the decoder reads a path).
#[test]
fn images() {
    use image::ImageFormat::*;
    let mut s = Vec::new();
    for f in [Png, Jpeg, Bmp, Gif, WebP] {
        s.push(encoded(f, true));
        if f != WebP && f != Gif {
            s.push(encoded(f, false));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("image.png");
    let dict = [
        "IHDR", "IDAT", "IEND", "PLTE", "tRNS", "RIFF", "WEBP", "VP8L", "GIF89a", "BM",
    ];
    Fuzzer::new("image", s, &dict).run(|b| {
        std::fs::write(&file, b).unwrap();
        let mut outcome = String::new();
        for (channels, resize) in [(1, false), (3, true)] {
            match candletop::data::decode(&file, channels, (5, 6), resize) {
                Err(e) => outcome += &refused(format!("{e:?}"))?,
                Ok(px) if px.len() != channels * 30 => {
                    return Err(format!("{} bytes for {channels}x5x6", px.len()))
                }
                Ok(_) => outcome += "ok",
            }
        }
        Ok(outcome)
    });
}

/// A real checkpoint of a small model, as bytes.
fn a_checkpoint(dir: &Path) -> Vec<u8> {
    let trainer = Trainer::new(common::small_config(), common::small_data(64, 32)).unwrap();
    let path = dir.join("seed.h5");
    checkpoint::write(&trainer.snapshot().unwrap(), &path).unwrap();
    std::fs::read(path).unwrap()
}

/// Stamps the header's CRC for the bytes as they are, as the writer does.
fn restamp(b: &mut [u8]) {
    if b.len() < 512 || !b.starts_with(b"CANDLETOP-CKPT\n\0") {
        return;
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&b[..28]);
    h.update(&b[32..]);
    let crc = h.finalize();
    b[28..32].copy_from_slice(&crc.to_le_bytes());
    let payload = (b.len() - 512) as u64;
    b[20..28].copy_from_slice(&payload.to_le_bytes());
}

/// Checkpoints, both damaged (the header must catch it) and changed behind an intact header
/// (as a bug or a person with a hex editor would): HDF5's structure and candletop's layout in
/// it are then what is read. A checkpoint that reads must load into its model.
#[test]
fn checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let good = a_checkpoint(dir.path());
    let file: PathBuf = dir.path().join("fuzzed.h5");
    let dict = [
        "model",
        "optimizer",
        "schedule",
        "history",
        "{",
        "}",
        "\"lr\":",
        "null",
    ];
    let rng = std::cell::RefCell::new(Rng::new(seed()));
    Fuzzer::new("checkpoint", vec![good], &dict).run(|b| {
        let mut b = b.to_vec();
        // Most inputs keep a valid CRC, so that the reader goes past the header.
        if rng.borrow_mut().below(8) != 0 {
            restamp(&mut b);
        }
        std::fs::write(&file, &b).unwrap();
        match checkpoint::read(&file) {
            Err(e) => refused(e),
            Ok(ckpt) => match candletop::train::eval::load_model(&ckpt, &file) {
                Err(e) => refused(e),
                Ok(_) => Ok("ok".into()),
            },
        }
    });
}

/// metrics.jsonl as `view`, `plot`, `diagnose` and `ls` read it.
#[test]
fn metrics_records() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = common::candletop(
        &[
            "train",
            "--headless",
            "--arch",
            "c4,f8",
            "--max-steps",
            "40",
            "--log-every",
            "5",
            "--subset",
            "320",
            "--epochs",
            "2",
            "--run-dir",
            "run",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let records = std::fs::read(run.join("metrics.jsonl")).unwrap();
    let lines: Vec<Vec<u8>> = records
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| [l, b"\n"].concat())
        .collect();
    let mut s = vec![records.clone()];
    s.extend(lines.iter().take(12).cloned());
    let dict = with_numbers(&[
        "{",
        "}",
        "\"type\":",
        "\"step\"",
        "\"epoch\"",
        "null",
        "\n",
        ",",
    ]);
    let path = Path::new("metrics.jsonl");
    Fuzzer::new("metrics", s, &dict).run(|b| match Recorded::parse(&text(b), path) {
        Err(e) => refused(e),
        Ok(r) => Ok(format!("ok {}", r.torn.is_some())),
    });
}

/// The socket's frames and the commands in them, as the server reads a watcher's messages:
/// a frame is never longer than the limit, and a command that parses serialises back to
/// itself (so that what a watcher sends is what the trainer gets).
#[test]
fn socket_messages() {
    let commands = [
        r#"{"type":"hello","protocol":1}"#,
        r#"{"type":"command","command":{"command":"set_lr","value":0.01}}"#,
        r#"{"type":"command","command":{"command":"scale_lr","value":0.5}}"#,
        r#"{"type":"command","command":{"command":"set_schedule","value":"cosine"}}"#,
        r#"{"type":"command","command":{"command":"show_samples","value":16}}"#,
        r#"{"type":"command","command":{"command":"set_clip_grad_norm","value":1.0}}"#,
        r#"{"type":"command","command":{"command":"set_augment","value":true}}"#,
        r#"{"type":"command","command":{"command":"apply_remedy","value":"lower_lr"}}"#,
        r#"{"type":"command","command":{"command":"pause"}}"#,
    ];
    let s = vec![(commands.join("\n") + "\n").into_bytes()];
    let dict = with_numbers(&["{", "}", "\"", ":", ",", "\n", "null", "true", "[", "]"]);
    const LIMIT: usize = 256;
    Fuzzer::new("socket", s, &dict).run(|b| {
        let mut input = std::io::BufReader::with_capacity(16, Cursor::new(b));
        let mut outcome = String::new();
        loop {
            match wire::read_frame(&mut input, LIMIT).map_err(|e| e.to_string())? {
                Frame::Closed => return Ok(outcome),
                Frame::TooLong => outcome += "long ",
                Frame::Line(l) if l.len() > LIMIT => {
                    return Err(format!("a frame of {} bytes (limit {LIMIT})", l.len()))
                }
                Frame::Line(l) => match serde_json::from_slice::<ClientMsg>(&l) {
                    Err(_) => outcome += "bad ",
                    Ok(ClientMsg::Command { command }) => {
                        let again: Command =
                            serde_json::from_str(&serde_json::to_string(&command).unwrap())
                                .map_err(|e| format!("{command:?} does not read back: {e}"))?;
                        if again != command && !has_nan(&command) {
                            return Err(format!("{command:?} reads back as {again:?}"));
                        }
                        outcome += &format!("{:?} ", std::mem::discriminant(&command));
                    }
                    Ok(m) => outcome += &format!("{m:?} "),
                },
            }
        }
    });
}

fn has_nan(c: &Command) -> bool {
    matches!(c, Command::SetLr(v) | Command::ScaleLr(v) | Command::SetClipGradNorm(v) if v.is_nan())
}
