//! `candletop bench --only doctor-suite`: the training doctor measured on runs with a fault
//! provoked in them, and on healthy runs. Each run is the real binary, headless, on real data
//! (the embedded set, short and whole; the full Fashion-MNIST when it is installed; image
//! folders the suite writes), with several seeds. For each fault the table gives how often the
//! doctor warned of it, how soon, whether its first warning named the fault (not a symptom of
//! it), and whether the remedy it offered is the one that answers it; for healthy runs, the
//! warnings and notes they got. Every run is also replayed from its metrics.jsonl through
//! the doctor, as `candletop diagnose` does, and must give the same findings at the same steps.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::cli::BenchArgs;
use crate::config::RunConfig;
use crate::data::{DataSpec, DataSplits};
use crate::diagnose::replay;
use crate::error::Error;
use crate::protocol::{Event, FindingKind, Record, Remedy, Severity};
use crate::run_dir::RunDir;

use super::output::{say, write_png_folder};

/// Names another candletop binary to run the cases with (an older build, to compare); the
/// doctor that replays them is this one's.
const SUITE_EXE: &str = "CANDLETOP_DOCTOR_SUITE_EXE";

/// Where the full Fashion-MNIST is when the system package is installed.
const FASHION_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Where a case's data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// 3,600 embedded training images: 57 steps an epoch.
    Short,
    /// All 9,000 embedded training images: 141 steps an epoch.
    Long,
    /// The full Fashion-MNIST: 844 steps an epoch (step faults only, for 400 steps).
    Fashion,
    /// 32x32 colour images the suite writes (2,700 to train on).
    Colour,
    /// Fashion-MNIST images as a folder where one class holds another's images (a class that
    /// cannot be told apart: it falls far behind the others).
    Twins,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Short => "embedded 3.6k",
            Source::Long => "embedded 9k",
            Source::Fashion => "fashion-mnist 54k",
            Source::Colour => "colour folder",
            Source::Twins => "twin-class folder",
        }
    }

    fn args(self, dir: &Path) -> Vec<String> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match self {
            Source::Short => s(&["--subset", "3600"]),
            Source::Long => Vec::new(),
            Source::Fashion => vec!["--data".into(), format!("fashion-mnist:{FASHION_DIR}")],
            Source::Colour => vec![
                "--data".into(),
                format!("folder:{}", dir.join("colour").display()),
            ],
            Source::Twins => vec![
                "--data".into(),
                format!("folder:{}", dir.join("twins").display()),
            ],
        }
    }
}

/// When a fault shows: before the first step, in the steps, or at the end of epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Start,
    Step,
    Epoch,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Start => "start",
            Level::Step => "step",
            Level::Epoch => "epoch",
        }
    }
}

/// The remedy that answers a fault.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    Scale(f64),
    Clip,
    Augment,
    ClassWeights,
    /// A restart that sets this key.
    Restart(&'static str),
    /// No live change answers it (the labels must be fixed).
    Nothing,
}

impl Answer {
    /// What answers `kind` when a case accepts it as another name for its fault.
    fn of(kind: FindingKind) -> Answer {
        match kind {
            K::LrTooHigh | K::DeadUnits => Answer::Scale(0.1),
            K::LrTooLow => Answer::Scale(10.0),
            K::ExplodingGradients => Answer::Clip,
            K::VanishingGradients | K::SaturatedActivations => Answer::Restart("activation"),
            K::Overfitting => Answer::Augment,
            K::Underfitting => Answer::Restart("arch"),
            K::ClassImbalance => Answer::ClassWeights,
            K::UnnormalisedInput => Answer::Restart("normalize"),
            _ => Answer::Nothing,
        }
    }

    fn fits(self, r: Option<&Remedy>) -> bool {
        match (self, r) {
            (Answer::Scale(want), Some(Remedy::ScaleLr(f))) => (f - want).abs() < 1e-9,
            (Answer::Clip, Some(Remedy::ClipGradNorm(_))) => true,
            (Answer::Augment, Some(Remedy::Augment(true))) => true,
            (Answer::ClassWeights, Some(Remedy::ClassWeights(true))) => true,
            (Answer::Restart(key), Some(Remedy::Restart(s))) => s.iter().any(|x| x.key == key),
            (Answer::Nothing, None) => true,
            _ => false,
        }
    }
}

/// One kind of run: a fault (the findings that name it) or a healthy recipe.
struct Case {
    name: &'static str,
    /// The findings that name the fault, its own first; empty: a healthy run.
    causes: &'static [FindingKind],
    level: Level,
    answer: Answer,
    args: &'static [&'static str],
    sources: &'static [Source],
    /// Epochs of each run (the full Fashion-MNIST runs 400 steps instead).
    epochs: usize,
}

use FindingKind as K;
use Source::{Colour, Fashion, Long, Short, Twins};

const STEPS: &[Source] = &[Short, Long, Fashion];
const DEEP_SIGMOID: &str = "c8/none,c8/none,c8/none,c8/none,c8/none,c8/none,c8/none,c8";

#[rustfmt::skip]
const CASES: &[Case] = &[
    Case { name: "LR far too high", causes: &[K::LrTooHigh], level: Level::Step, answer: Answer::Scale(0.1),
        args: &["--lr", "0.05"], sources: STEPS, epochs: 2 },
    Case { name: "LR far too low (SGD)", causes: &[K::LrTooLow], level: Level::Step, answer: Answer::Scale(10.0),
        args: &["--optimizer", "sgd", "--lr", "1e-6"], sources: STEPS, epochs: 2 },
    Case { name: "LR far too low (Adam)", causes: &[K::LrTooLow], level: Level::Step, answer: Answer::Scale(10.0),
        args: &["--optimizer", "adam", "--lr", "1e-8"], sources: STEPS, epochs: 2 },
    Case { name: "vanishing gradients", causes: &[K::VanishingGradients, K::SaturatedActivations], level: Level::Step,
        answer: Answer::Restart("batch_norm"),
        args: &["--arch", DEEP_SIGMOID, "--activation", "sigmoid", "--no-batch-norm"], sources: STEPS, epochs: 2 },
    Case { name: "exploding gradients", causes: &[K::ExplodingGradients, K::LrTooHigh], level: Level::Step, answer: Answer::Clip,
        args: &["--arch", "c32/none,c32/none,c32/none,c32,f128", "--no-batch-norm", "--optimizer", "sgd", "--lr", "0.5", "--momentum", "0.9"],
        sources: STEPS, epochs: 2 },
    Case { name: "dying ReLU", causes: &[K::DeadUnits, K::LrTooHigh], level: Level::Step, answer: Answer::Scale(0.1),
        args: &["--lr", "0.02", "--no-batch-norm"], sources: STEPS, epochs: 2 },
    Case { name: "saturation", causes: &[K::SaturatedActivations, K::VanishingGradients], level: Level::Step,
        answer: Answer::Restart("activation"),
        args: &["--activation", "sigmoid", "--no-batch-norm", "--lr", "0.02"], sources: STEPS, epochs: 2 },
    Case { name: "overfitting", causes: &[K::Overfitting], level: Level::Epoch, answer: Answer::Augment,
        args: &["--subset", "500", "--batch-size", "16", "--dropout", "0", "--weight-decay", "0"], sources: &[Long], epochs: 12 },
    Case { name: "underfitting (tiny model)", causes: &[K::Underfitting], level: Level::Epoch, answer: Answer::Restart("arch"),
        args: &["--arch", "f1", "--lr", "3e-4"], sources: &[Short, Long], epochs: 6 },
    Case { name: "class imbalance", causes: &[K::ClassImbalance], level: Level::Start, answer: Answer::ClassWeights,
        args: &["--imbalance", "20", "--max-steps", "20"], sources: &[Short, Long], epochs: 1 },
    Case { name: "a class far behind", causes: &[K::WeakClass], level: Level::Epoch, answer: Answer::Nothing,
        args: &[], sources: &[Twins], epochs: 6 },
    Case { name: "label noise (50%)", causes: &[K::LabelNoise], level: Level::Epoch, answer: Answer::Nothing,
        args: &["--label-noise", "0.5"], sources: &[Short, Long], epochs: 3 },
    Case { name: "labels do not match", causes: &[K::LabelNoise], level: Level::Epoch, answer: Answer::Nothing,
        args: &["--label-noise", "0.9"], sources: &[Short, Long], epochs: 2 },
    Case { name: "unnormalised input", causes: &[K::UnnormalisedInput], level: Level::Start, answer: Answer::Restart("normalize"),
        args: &["--normalize", "0/0.00392", "--max-steps", "20"], sources: &[Short, Long], epochs: 1 },
    Case { name: "too much weight decay", causes: &[K::TooMuchRegularisation], level: Level::Epoch,
        answer: Answer::Restart("weight_decay"),
        args: &["--weight-decay", "20"], sources: &[Short, Long], epochs: 3 },
    Case { name: "too much dropout", causes: &[K::TooMuchRegularisation], level: Level::Epoch,
        answer: Answer::Restart("dropout"),
        args: &["--dropout", "0.9"], sources: &[Short, Long], epochs: 3 },
    Case { name: "batch norm on batches of 2", causes: &[K::SmallBatchNorm], level: Level::Start, answer: Answer::Nothing,
        args: &["--batch-size", "2", "--max-steps", "20"], sources: &[Short], epochs: 1 },
    Case { name: "healthy: default", causes: &[], level: Level::Epoch, answer: Answer::Nothing,
        args: &[], sources: &[Short, Long], epochs: 4 },
    Case { name: "healthy: one-cycle", causes: &[], level: Level::Epoch, answer: Answer::Nothing,
        args: &["--schedule", "onecycle:max=3e-3"], sources: &[Short, Long], epochs: 4 },
    Case { name: "healthy: augmentation", causes: &[], level: Level::Epoch, answer: Answer::Nothing,
        args: &["--augment", "pad-crop:3,flip"], sources: &[Short, Long], epochs: 4 },
    Case { name: "healthy: colour 32x32", causes: &[], level: Level::Epoch, answer: Answer::Nothing,
        args: &["--augment", "pad-crop:4,flip"], sources: &[Colour], epochs: 4 },
];

/// A finding as a run recorded it (or a replay found it).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    step: u64,
    kind: FindingKind,
    severity: Severity,
    cleared: bool,
    remedy: Option<Remedy>,
}

/// One run of a case.
struct Run {
    case: usize,
    source: Source,
    seed: u64,
    steps_per_epoch: u64,
    live: Vec<Seen>,
    replayed: Vec<Seen>,
    failed: Option<String>,
}

impl Run {
    fn key(v: &[Seen]) -> Vec<(u64, FindingKind, Severity, bool)> {
        v.iter()
            .map(|s| (s.step, s.kind, s.severity, s.cleared))
            .collect()
    }

    fn replay_agrees(&self) -> bool {
        Self::key(&self.live) == Self::key(&self.replayed)
    }

    fn warnings(&self) -> impl Iterator<Item = &Seen> {
        self.live
            .iter()
            .filter(|s| !s.cleared && s.severity == Severity::Warning)
    }

    /// The first warning that names one of `causes`.
    fn first_of(&self, causes: &[FindingKind]) -> Option<&Seen> {
        self.warnings().find(|s| causes.contains(&s.kind))
    }
}

pub fn run(args: &BenchArgs) -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("candletop-doctor-suite-{}", std::process::id()));
    let _cleanup = Cleanup(dir.clone());
    std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
    write_folders(&dir)?;
    let fashion = Path::new(FASHION_DIR)
        .join("train-images-idx3-ubyte.gz")
        .exists();
    let seeds = args.seeds.max(1) as u64;
    let mut jobs = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let wanted = |c: &str| c.split('|').any(|part| case.name.contains(part));
        if args.case.as_deref().is_some_and(|c| !wanted(c)) {
            continue;
        }
        for &source in case.sources {
            if source == Fashion && !fashion {
                continue;
            }
            for seed in 1..=seeds {
                jobs.push((i, source, seed));
            }
        }
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    say(&format!(
        "doctor suite: {} runs ({} seeds, {} at a time, one thread each){}",
        jobs.len(),
        seeds,
        workers,
        if fashion {
            String::new()
        } else {
            format!(
                "; the full Fashion-MNIST is not installed at {FASHION_DIR}: its rows are left out"
            )
        }
    ));
    let queue = Mutex::new(jobs.into_iter().enumerate().collect::<Vec<_>>());
    let done = Mutex::new(Vec::new());
    // The binary whose runs are measured: this one, or another build to compare with.
    let exe = match std::env::var_os(SUITE_EXE) {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe().map_err(|e| io_error(Path::new("candletop"), e))?,
    };
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some((n, (case, source, seed))) = queue.lock().unwrap().pop() else {
                    break;
                };
                let run = one_run(&exe, &dir, n, case, source, seed);
                done.lock().unwrap().push(run);
            });
        }
    });
    let mut runs = done.into_inner().unwrap();
    runs.sort_by_key(|r| (r.case, r.source.label(), r.seed));
    table(&runs);
    Ok(())
}

/// Removes the suite's folder when it ends, however it ends.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::RunDir(crate::run_dir::RunDirError {
        path: path.to_path_buf(),
        source: e,
    })
}

/// The image folders: colour images, and a set where Trouser holds Bag images.
fn write_folders(dir: &Path) -> Result<(), Error> {
    let base = RunConfig::default();
    let data = DataSplits::load(&DataSpec::Embedded, &base.data_options())?;
    let d = &data.train;
    let n = 3_000.min(d.len());
    // Each image its own tint: colour says nothing of the class, as in CIFAR.
    let tint = |i: usize, _: usize| {
        [
            0.3 + (i * 37 % 70) as f32 / 100.0,
            0.3 + (i * 53 % 70) as f32 / 100.0,
            0.3 + (i * 71 % 70) as f32 / 100.0,
        ]
    };
    write_png_folder(&dir.join("colour"), d, n, &|_, c| Some(c), &tint)?;
    // Trouser (1) gets every other Bag (8) image; its own are left out.
    let (trouser, bag) = (1usize, 8usize);
    let twin = |i: usize, c: usize| match c {
        c if c == trouser => None,
        c if c == bag && i % 2 == 0 => Some(trouser),
        c => Some(c),
    };
    write_png_folder(&dir.join("twins"), d, n, &twin, &|_, _| [1.0, 1.0, 1.0])
}

/// Runs one case headless in its own directory, then replays its records.
fn one_run(exe: &Path, dir: &Path, n: usize, case: usize, source: Source, seed: u64) -> Run {
    let c = &CASES[case];
    let run_dir = dir.join(format!("run-{n:04}"));
    let mut cmd = Command::new(exe);
    cmd.args(["--headless", "--threads", "1", "--log-every", "20"])
        .arg("--seed")
        .arg(seed.to_string())
        .arg("--run-dir")
        .arg(&run_dir)
        .args(source.args(dir))
        .args(c.args);
    if source == Fashion {
        cmd.args(["--max-steps", "400"]);
    } else {
        cmd.arg("--epochs").arg(c.epochs.to_string());
    }
    let mut run = Run {
        case,
        source,
        seed,
        steps_per_epoch: 1,
        live: Vec::new(),
        replayed: Vec::new(),
        failed: None,
    };
    let out = cmd.output();
    let status_ok = out.as_ref().is_ok_and(|o| o.status.success());
    let stopped_on_nan = out
        .as_ref()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("non-finite"));
    if !status_ok && !stopped_on_nan {
        run.failed = Some(match out {
            Ok(o) => String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
                .to_string(),
            Err(e) => e.to_string(),
        });
        return run;
    }
    if let Err(e) = read_run(&run_dir, &mut run) {
        run.failed = Some(e);
    }
    let _ = std::fs::remove_dir_all(&run_dir);
    run
}

/// The run's findings as recorded, and as the doctor finds them again from its records.
fn read_run(run_dir: &Path, run: &mut Run) -> Result<(), String> {
    let rd = RunDir::new(run_dir);
    let recorded = rd.read_records().map_err(|e| e.to_string())?;
    let cfg = RunConfig::from_toml_file(&rd.config()).map_err(|e| e.to_string())?;
    for s in &recorded.records {
        match &s.record {
            Record::Event(Event::Started(info)) => {
                run.steps_per_epoch = info.steps_per_epoch.max(1) as u64;
            }
            Record::Event(Event::Finding {
                step,
                finding,
                cleared,
            }) => run.live.push(Seen {
                step: *step,
                kind: finding.kind,
                severity: finding.severity,
                cleared: *cleared,
                remedy: finding.remedy.clone(),
            }),
            _ => {}
        }
    }
    let replayed = replay(
        recorded.records.iter().map(|s| (s.step, &s.record)),
        &cfg,
        |_| None,
    )
    .map_err(|_| "a step record before the run started".to_string())?;
    run.replayed = replayed
        .changes
        .into_iter()
        .map(|(step, c)| Seen {
            step,
            kind: c.finding.kind,
            severity: c.finding.severity,
            cleared: c.cleared,
            remedy: c.finding.remedy,
        })
        .collect();
    Ok(())
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// The finished runs of each case and source, in the table's order: the faults' or the
/// healthy recipes'.
fn rows(runs: &[Run], healthy: bool) -> Vec<(&'static Case, Source, Vec<&Run>)> {
    let mut out = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        if case.causes.is_empty() != healthy {
            continue;
        }
        for &source in case.sources {
            let rs: Vec<&Run> = runs
                .iter()
                .filter(|r| r.case == i && r.source == source && r.failed.is_none())
                .collect();
            if !rs.is_empty() {
                out.push((case, source, rs));
            }
        }
    }
    out
}

fn share(n: usize, of: usize) -> String {
    format!("{n}/{of}")
}

/// The fault table and the healthy table, and the runs that failed.
fn table(runs: &[Run]) {
    say("");
    say(&format!(
        "{:<28} {:<18} {:>5} {:>8} {:>22} {:>10} {:>7} {:>7}",
        "fault",
        "data",
        "level",
        "detected",
        "first warning (median)",
        "root cause",
        "remedy",
        "replay"
    ));
    let mut totals = (0, 0, 0, 0);
    for (case, source, rs) in rows(runs, false) {
        let n = rs.len();
        let found: Vec<&Seen> = rs.iter().filter_map(|r| r.first_of(case.causes)).collect();
        let root = rs
            .iter()
            .filter(|r| {
                r.warnings()
                    .next()
                    .is_some_and(|w| case.causes.contains(&w.kind))
            })
            .count();
        // The remedy of the case's own finding, or of the other name it was given.
        let answer = |k: FindingKind| {
            if k == case.causes[0] {
                case.answer
            } else {
                Answer::of(k)
            }
        };
        let remedy = rs
            .iter()
            .filter(|r| {
                r.first_of(case.causes)
                    .is_some_and(|s| answer(s.kind).fits(s.remedy.as_ref()))
            })
            .count();
        let replay = rs.iter().filter(|r| r.replay_agrees()).count();
        let spe = rs[0].steps_per_epoch as f64;
        let latency = median(found.iter().map(|s| s.step as f64).collect())
            .map_or("-".to_string(), |m| {
                format!("{m:.0} steps ({:.2} ep)", m / spe)
            });
        totals.0 += n;
        totals.1 += found.len();
        totals.2 += root;
        totals.3 += remedy;
        say(&format!(
            "{:<28} {:<18} {:>5} {:>8} {:>22} {:>10} {:>7} {:>7}",
            case.name,
            source.label(),
            case.level.word(),
            share(found.len(), n),
            latency,
            share(root, n),
            share(remedy, n),
            share(replay, n)
        ));
    }
    say(&format!(
        "all faults: detected {}, first warning names the fault {}, right remedy {}",
        share(totals.1, totals.0),
        share(totals.2, totals.0),
        share(totals.3, totals.0)
    ));
    say("");
    say(&format!(
        "{:<28} {:<18} {:>5} {:>9} {:>6} {:>7}  notes raised",
        "healthy run", "data", "runs", "warnings", "notes", "replay"
    ));
    for (case, source, rs) in rows(runs, true) {
        let warnings: usize = rs.iter().map(|r| r.warnings().count()).sum();
        let notes: Vec<String> = rs
            .iter()
            .flat_map(|r| {
                r.live
                    .iter()
                    .filter(|s| !s.cleared && s.severity == Severity::Info)
                    .map(|s| format!("{} (seed {}, step {})", s.kind.title(), r.seed, s.step))
            })
            .collect();
        let replay = rs.iter().filter(|r| r.replay_agrees()).count();
        say(&format!(
            "{:<28} {:<18} {:>5} {:>9} {:>6} {:>7}  {}",
            case.name,
            source.label(),
            rs.len(),
            warnings,
            notes.len(),
            share(replay, rs.len()),
            notes.join(", ")
        ));
    }
    for r in runs.iter().filter(|r| r.failed.is_some()) {
        say(&format!(
            "failed: {} on {} seed {}: {}",
            CASES[r.case].name,
            r.source.label(),
            r.seed,
            r.failed.as_deref().unwrap_or("")
        ));
    }
    // What a person reads to check a row: every warning of the fault runs that named
    // something else first, and every warning of a healthy run.
    for r in runs.iter().filter(|r| r.failed.is_none()) {
        let case = &CASES[r.case];
        let first = r.warnings().next();
        let wrong = match first {
            Some(w) => case.causes.is_empty() || !case.causes.contains(&w.kind),
            None => !case.causes.is_empty(),
        };
        if wrong || !r.replay_agrees() {
            let ws: Vec<String> = r
                .warnings()
                .map(|w| format!("{} at {}", w.kind.title(), w.step))
                .collect();
            say(&format!(
                "  {} on {} seed {}: warnings [{}]{}",
                case.name,
                r.source.label(),
                r.seed,
                ws.join(", "),
                if r.replay_agrees() {
                    String::new()
                } else {
                    format!(
                        "; replay differs: live {:?} replay {:?}",
                        Run::key(&r.live),
                        Run::key(&r.replayed)
                    )
                }
            ));
        }
    }
}
