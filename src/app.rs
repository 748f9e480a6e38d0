//! What each subcommand does, from a parsed command line to an exit code.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::checkpoint::{self, Checkpoint};
use crate::cli::{Cli, Cmd, EvalArgs, InspectArgs, Split, TrainArgs};
use crate::data::{DataSpec, DataSplits};
use crate::headless::{human_bytes, Outcome, Reporter};
use crate::model::Kernels;
use crate::train::Trainer;
use crate::{bench, protocol, run_dir, signals, tui, Error};

pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        None => train(&cli.train),
        Some(Cmd::Train(t)) => train(&t),
        Some(Cmd::Bench(b)) => bench::run(&b),
        Some(Cmd::Eval(e)) => eval(&e),
        Some(Cmd::Inspect(i)) => inspect(&i),
    }
}

/// Keeps freed memory in the process. Candle allocates fresh buffers for every tensor of every
/// step; with glibc's defaults the large ones are mapped and unmapped each time, and the page
/// faults cost more than the arithmetic. The same as
/// `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=2147483647:glibc.malloc.arena_max=1`:
/// one arena, so that the training thread's allocations get the same treatment as the main
/// thread's (with its own arena it ran about 1.45x slower).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Sizes the thread pools; they are made on first use, so this must run before any tensor
/// work. The fast kernels and gemm run on rayon's pool (RAYON_NUM_THREADS). Candle keeps a pool
/// of its own for its element-wise ops whose idle workers spin before they sleep; with the fast
/// kernels those ops are small, and a spinning worker takes a core from the rayon threads, so
/// candle's pool gets one thread (the caller) unless CANDLE_NUM_THREADS says otherwise: a
/// 300-step run took 7.1-7.4 s instead of 8.7-9.0 s. The stock ops keep candle's default.
pub fn set_threads(n: usize, kernels: Kernels) {
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    if kernels == Kernels::Fast && std::env::var_os(CANDLE_THREADS).is_none() {
        std::env::set_var(CANDLE_THREADS, "1");
        std::env::set_var(CANDLE_THREADS_SET_BY_US, "1");
    }
}

const CANDLE_THREADS: &str = "CANDLE_NUM_THREADS";
const CANDLE_THREADS_SET_BY_US: &str = "CANDLETOP_SET_CANDLE_NUM_THREADS";

/// The environment for a child process that runs the stock ops: candle's own default pool
/// unless the user chose one.
pub fn stock_child_env(cmd: &mut std::process::Command) {
    if std::env::var_os(CANDLE_THREADS_SET_BY_US).is_some() {
        cmd.env_remove(CANDLE_THREADS)
            .env_remove(CANDLE_THREADS_SET_BY_US);
    }
}

fn train(args: &TrainArgs) -> Result<ExitCode, Error> {
    let resumed: Option<(Checkpoint, &Path)> = match &args.resume {
        Some(path) => Some((checkpoint::read(path)?, path.as_path())),
        None => None,
    };
    let cfg = match &resumed {
        Some((ckpt, _)) => {
            // The checkpoint's settings, with a new run directory and no old step limit.
            let mut base = ckpt.train_config.clone();
            base.run_dir = None;
            base.max_steps = 0;
            args.resolve_over(base)?
        }
        None => args.resolve()?,
    };
    let ui = args.ui_options()?;
    set_threads(cfg.threads(), cfg.kernels);
    let data = DataSplits::load(&cfg.data, cfg.val_split, cfg.seed)?;
    let log_every = cfg.log_every;
    let mut trainer = match &resumed {
        Some((ckpt, path)) => Trainer::resume(cfg.clone(), data, ckpt, path)?,
        None => Trainer::new(cfg.clone(), data)?,
    };
    // The run directory is made only once the inputs are known to be good.
    let dir = run_dir::create(&cfg)?;
    trainer.set_run_dir(&dir)?;
    let signals = signals::spawn()?;
    let (trainer_link, monitor) = protocol::link();
    let handle = trainer.spawn(trainer_link);
    let outcome = if args.headless || !std::io::stdout().is_terminal() {
        Reporter::new(std::io::stdout().lock(), log_every).run(&monitor, &signals)
    } else {
        tui::run(&monitor, ui, signals)?
    };
    drop(monitor);
    // The trainer has ended or was told to stop; do not hang on one that is stuck.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !handle.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if handle.is_finished() {
        let _ = handle.join();
    }
    match outcome {
        Outcome::Finished(_) => Ok(ExitCode::SUCCESS),
        Outcome::Failed(message) => Err(Error::Training(message)),
    }
}

/// The model of a checkpoint on the data it names (or `--data`), ready to evaluate.
fn load_for_eval(
    path: &Path,
    data: Option<&str>,
    threads: Option<usize>,
) -> Result<(Trainer, Checkpoint), Error> {
    let ckpt = checkpoint::read(path)?;
    let mut cfg = ckpt.train_config.clone();
    cfg.run_dir = None;
    if let Some(t) = threads {
        cfg.threads = t;
    }
    set_threads(cfg.threads(), cfg.kernels);
    if let Some(d) = data {
        cfg.data = d.parse::<DataSpec>()?;
    }
    let data = DataSplits::load(&cfg.data, cfg.val_split, cfg.seed)?;
    let shape = [data.train.channels, data.train.height, data.train.width];
    if shape != ckpt.model_config.input || data.classes.len() != ckpt.model_config.classes {
        return Err(Error::Resume(format!(
            "{}: the model takes {:?} images in {} classes; --data {} has {:?} in {}",
            path.display(),
            ckpt.model_config.input,
            ckpt.model_config.classes,
            cfg.data,
            shape,
            data.classes.len()
        )));
    }
    let trainer = Trainer::resume(cfg, data, &ckpt, path)?;
    Ok((trainer, ckpt))
}

fn eval(args: &EvalArgs) -> Result<ExitCode, Error> {
    let (mut trainer, ckpt) = load_for_eval(&args.checkpoint, args.data.as_deref(), args.threads)?;
    let split = match args.split {
        Split::Train => trainer.train_set(),
        Split::Val => trainer.val_set(),
        Split::Test => trainer.test_set(),
    };
    let p = trainer.predict(&split)?;
    let classes = &ckpt.classes;
    let c = classes.len();
    let mut confusion = vec![vec![0usize; c]; c];
    for (&y, &yhat) in p.labels.iter().zip(&p.predicted) {
        confusion[y as usize][yhat as usize] += 1;
    }
    let n = p.labels.len();
    let correct: usize = (0..c).map(|i| confusion[i][i]).sum();
    let mut out = std::io::stdout().lock();
    let name = format!("{:?}", args.split).to_lowercase();
    let _ = writeln!(
        out,
        "{}: {} split of {}, {n} images",
        args.checkpoint.display(),
        name,
        trainer.info().data
    );
    let _ = writeln!(
        out,
        "loss {:.4}  accuracy {:.2}%",
        p.loss,
        100.0 * correct as f64 / n.max(1) as f64
    );
    let _ = writeln!(out, "\nper class:");
    let w = classes.iter().map(|s| s.len()).max().unwrap_or(5).max(5);
    for (i, name) in classes.iter().enumerate() {
        let total: usize = confusion[i].iter().sum();
        let _ = writeln!(
            out,
            "  {name:<w$}  {:6.2}%  ({}/{total})",
            100.0 * confusion[i][i] as f64 / total.max(1) as f64,
            confusion[i][i]
        );
    }
    let _ = writeln!(out, "\nconfusion matrix (rows: label, columns: predicted):");
    let _ = write!(out, "  {:<w$}", "");
    for i in 0..c {
        let _ = write!(out, " {i:>5}");
    }
    let _ = writeln!(out);
    for (i, row) in confusion.iter().enumerate() {
        let _ = write!(
            out,
            "  {:<w$}",
            format!("{i} {}", classes[i])
                .chars()
                .take(w)
                .collect::<String>()
        );
        for v in row {
            let _ = write!(out, " {v:>5}");
        }
        let _ = writeln!(out);
    }
    if let Some(csv) = &args.predictions {
        write_predictions(csv, &p, c)?;
        let _ = writeln!(out, "\npredictions: {}", csv.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn write_predictions(
    path: &Path,
    p: &crate::train::Predictions,
    classes: usize,
) -> Result<(), Error> {
    let io = |source| {
        Error::RunDir(run_dir::RunDirError {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    let header: Vec<String> = ["index", "label", "predicted"]
        .iter()
        .map(|s| s.to_string())
        .chain((0..classes).map(|i| format!("p{i}")))
        .collect();
    writeln!(f, "{}", header.join(",")).map_err(io)?;
    for i in 0..p.labels.len() {
        let probs: Vec<String> = p.probabilities[i * classes..(i + 1) * classes]
            .iter()
            .map(|x| format!("{x:.6}"))
            .collect();
        writeln!(
            f,
            "{i},{},{},{}",
            p.labels[i],
            p.predicted[i],
            probs.join(",")
        )
        .map_err(io)?;
    }
    f.flush().map_err(io)
}

fn inspect(args: &InspectArgs) -> Result<ExitCode, Error> {
    let path = &args.file;
    // Integrity first, as its own line: the most useful fact about a file that will not load.
    let integrity = checkpoint::h5::verify(path);
    let mut out = std::io::stdout().lock();
    if let Err(e) = integrity {
        return Err(e.into());
    }
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let c = checkpoint::read(path)?;
    let m = &c.model_config;
    let _ = writeln!(out, "{}  ({})", path.display(), human_bytes(size));
    let _ = writeln!(out, "  integrity   ok (CRC32 of the HDF5 payload matches)");
    let _ = writeln!(
        out,
        "  format      {} version {}, created {}",
        checkpoint::FORMAT,
        checkpoint::FORMAT_VERSION,
        c.created
    );
    let _ = writeln!(
        out,
        "  progress    {} epochs done, step {}; resumes at epoch {} batch {}",
        c.completed_epochs(),
        c.global_step,
        c.position.epoch,
        c.position.batch
    );
    let _ = writeln!(
        out,
        "  model       {}  input {}x{}x{}, {} classes, {} params",
        m.describe(),
        m.input[0],
        m.input[1],
        m.input[2],
        m.classes,
        crate::model::group_thousands(c.param_count())
    );
    let _ = writeln!(
        out,
        "  optimizer   {} after {} steps, lr {:.3e}, {}",
        c.optimizer.kind.name(),
        c.optimizer.steps,
        c.lr,
        serde_json::to_string(&c.optimizer.hyper).unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "  data        {} (mean {:.4}, std {:.4}), classes {}",
        c.data.source,
        c.data.mean,
        c.data.std,
        c.classes.join(", ")
    );
    if !c.lr_changes.is_empty() {
        let changes: Vec<String> = c
            .lr_changes
            .iter()
            .map(|(s, lr)| format!("{lr:.2e} at step {s}"))
            .collect();
        let _ = writeln!(out, "  lr changes  {}", changes.join(", "));
    }
    let _ = writeln!(out, "  tensors     {}", c.tensors.len() + c.counters.len());
    for t in &c.tensors {
        let _ = writeln!(out, "    /model/{:<28} {:?}", t.name, t.shape);
    }
    for (name, n) in &c.counters {
        let _ = writeln!(out, "    /model/{name:<28} int64 scalar = {n}");
    }
    if !c.epochs.is_empty() {
        let _ = writeln!(
            out,
            "  metrics (last {} of {} epochs)",
            c.epochs.len().min(5),
            c.epochs.len()
        );
        for e in c.epochs.iter().rev().take(5).rev() {
            let _ = writeln!(
                out,
                "    epoch {:>3}  train loss {:.4} acc {:6.2}%  val loss {:.4} acc {:6.2}%  lr {:.2e}",
                e.epoch,
                e.train_loss,
                100.0 * e.train_accuracy,
                e.val_loss,
                100.0 * e.val_accuracy,
                e.lr
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
