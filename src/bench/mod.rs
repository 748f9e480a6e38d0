//! `candletop bench`: training and evaluation throughput of the default model on the embedded
//! data, printed as a table. Measures only; nothing here asserts a speed.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::BenchArgs;
use crate::config::RunConfig;
use crate::data::{DataSpec, DataSplits};
use crate::error::Error;
use crate::format::group_thousands;
use crate::model::gemm::{self, Threads};
use crate::model::{conv, profile, Kernels};
use crate::run_dir::RunDirError;
use crate::train::Trainer;
use crate::{headless, protocol, runtime, tui};

mod branch_cost;
mod doctor_suite;
mod output;
mod pytorch;
mod time_to_accuracy;

use output::{say, write_png_folder};

/// Set in the child process that measures the stock kernels at one batch size.
const STOCK_CHILD: &str = "CANDLETOP_BENCH_STOCK_BATCH";

pub fn run(args: &BenchArgs) -> Result<ExitCode, Error> {
    if args.only.as_deref() == Some("doctor-suite") {
        doctor_suite::run(args)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.only.as_deref() == Some("time-to-accuracy") {
        runtime::set_threads(
            runtime::threads_or_all(args.threads.unwrap_or(0)),
            Kernels::Fast,
        );
        time_to_accuracy::run(args)?;
        return Ok(ExitCode::SUCCESS);
    }
    let base = RunConfig {
        threads: args.threads.unwrap_or(0),
        ..RunConfig::default()
    };
    if let Some(batch) = std::env::var_os(STOCK_CHILD) {
        let batch = batch.to_string_lossy().parse().unwrap_or(base.batch_size);
        runtime::set_threads(base.threads(), Kernels::Stock);
        let data = DataSplits::load(&DataSpec::Embedded, &base.data_options())?;
        throughput(&base, &data, batch, Kernels::Stock, args.steps)?;
        return Ok(ExitCode::SUCCESS);
    }
    runtime::set_threads(base.threads(), Kernels::Fast);
    if branch_cost::child(&base)? {
        return Ok(ExitCode::SUCCESS);
    }
    let data = DataSplits::load(&DataSpec::Embedded, &base.data_options())?;
    say(&format!(
        "candletop bench: default model ({}), {} threads, {} timed steps",
        base.arch,
        base.threads(),
        args.steps
    ));
    let part = |name: &str| args.only.as_deref().is_none_or(|o| o == name);
    if part("kernels") {
        say("(stock kernels in a child process, with candle's thread pools as it sets them up)");
        say(&format!(
            "{:<28} {:>12} {:>12}",
            "what", "images/s", "ms/batch"
        ));
        // Interleaved, so that a change in the machine's load hits both kernels alike.
        for batch_size in [64, 256] {
            stock_in_child(args, batch_size)?;
            throughput(&base, &data, batch_size, Kernels::Fast, args.steps)?;
        }
        kernel_profile(&base, &data, args.steps)?;
        versus_pytorch(&base, &data, args.steps)?;
    } else if part("profile") {
        kernel_profile(&base, &data, args.steps)?;
    }
    if part("checkpoints") {
        checkpoints(&base, &data, args.steps.clamp(1, 5))?;
    }
    if part("data") {
        data_pipeline(&base, &data, args.steps)?;
    }
    if part("doctor") {
        doctor_cost(&base, &data)?;
    }
    if part("ui") {
        ui_overhead(&base, &data, args.steps)?;
    }
    if part("branch") {
        branch_cost::run(args)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Training and evaluation images/s of one kernel set at one batch size: two rows.
fn throughput(
    base: &RunConfig,
    data: &DataSplits,
    batch_size: usize,
    kernels: Kernels,
    steps: usize,
) -> Result<(), Error> {
    let k = match kernels {
        Kernels::Stock => "stock",
        Kernels::Fast => "fast",
    };
    let r = rates(base, data, batch_size, kernels, steps)?;
    let batches = data.val.len().div_ceil(batch_size) as f64;
    row(
        &format!("train, batch {batch_size}, {k}"),
        r.train,
        batch_size as f64 / r.train,
    );
    row(
        &format!("eval, batch {batch_size}, {k}"),
        r.eval,
        data.val.len() as f64 / r.eval / batches,
    );
    Ok(())
}

/// Training images/s over `steps` steps on one batch (after a warm-up), and evaluation
/// images/s over the validation set, at one batch size.
fn rates(
    base: &RunConfig,
    data: &DataSplits,
    batch_size: usize,
    kernels: Kernels,
    steps: usize,
) -> Result<pytorch::Rates, Error> {
    let cfg = RunConfig {
        batch_size,
        kernels,
        ..base.clone()
    };
    let mut trainer = Trainer::new(cfg, data.clone())?;
    let batch = trainer.training_batch(batch_size);
    // Warm-up: the first steps pay for fresh allocations (page faults) and thread start-up.
    for _ in 0..5 {
        trainer.step_once(&batch)?;
    }
    let t0 = Instant::now();
    for _ in 0..steps {
        trainer.step_once(&batch)?;
    }
    let train = (steps * batch_size) as f64 / t0.elapsed().as_secs_f64();
    let val = trainer.val_set();
    trainer.evaluate(&val, batch_size)?;
    let t0 = Instant::now();
    trainer.evaluate(&val, batch_size)?;
    let eval = val.len() as f64 / t0.elapsed().as_secs_f64();
    Ok(pytorch::Rates { train, eval })
}

/// candletop's fast kernels against PyTorch itself, in interleaved rounds at batch 64 and
/// 256, with the ratio of each row and their medians; without torch, why not.
fn versus_pytorch(base: &RunConfig, data: &DataSplits, steps: usize) -> Result<(), Error> {
    say("");
    let reference = match pytorch::Reference::find() {
        Ok(r) => r,
        Err(why) => {
            say(&format!(
                "PyTorch: not measured: {why}; {} names a python with torch",
                pytorch::PYTHON_VAR
            ));
            return Ok(());
        }
    };
    const ROUNDS: usize = 3;
    let threads = base.threads();
    say(&format!(
        "candletop against PyTorch {} (bench/pytorch_reference.py: the same model, AdamW, batch and {threads} threads), {ROUNDS} interleaved rounds",
        reference.version
    ));
    say(&format!(
        "{:<6} {:<16} {:>12} {:>12} {:>8}",
        "round", "images/s", "candletop", "PyTorch", "ratio"
    ));
    let mut ratios: Vec<(String, Vec<f64>)> = Vec::new();
    for round in 1..=ROUNDS {
        for batch in [64, 256] {
            let ours = rates(base, data, batch, Kernels::Fast, steps)?;
            let theirs = reference.measure(batch, steps, threads)?;
            for (what, a, b) in [
                ("train", ours.train, theirs.train),
                ("eval", ours.eval, theirs.eval),
            ] {
                let label = format!("{what}, batch {batch}");
                say(&format!(
                    "{round:<6} {label:<16} {a:>12.0} {b:>12.0} {:>7.2}x",
                    a / b
                ));
                match ratios.iter_mut().find(|(l, _)| *l == label) {
                    Some((_, v)) => v.push(a / b),
                    None => ratios.push((label, vec![a / b])),
                }
            }
        }
    }
    say("median of the rounds, candletop / PyTorch:");
    for (label, v) in ratios {
        let each: Vec<String> = v.iter().map(|r| format!("{r:.2}")).collect();
        say(&format!(
            "       {label:<16} {:>7.2}x   (rounds: {})",
            pytorch::median(v),
            each.join(", ")
        ));
    }
    Ok(())
}

/// The data pipeline: images/s of the loader threads alone with augmentation (Fashion-MNIST
/// with crop and flip; a 32x32 RGB image folder, decoded here from PNG files, with pad-crop,
/// flip and jitter), and of training fed by them with augmentation off and on.
fn data_pipeline(base: &RunConfig, data: &DataSplits, steps: usize) -> Result<(), Error> {
    use crate::data::batch::{epoch_order, LOADER_THREADS};
    use crate::data::{BatchStream, Dataset, Loader};
    say("");
    say(&format!(
        "{:<52} {:>12} {:>12}",
        "data pipeline (batches of 64)", "images/s", "ms/batch"
    ));
    let folder = std::env::temp_dir().join(format!("candletop-bench-{}", std::process::id()));
    // Each class tinted its own colour.
    let class_tint = |_: usize, class: usize| {
        [
            (class * 37 % 100) as f32 / 100.0,
            0.6,
            1.0 - (class * 53 % 100) as f32 / 100.0,
        ]
    };
    let written = write_png_folder(&folder, &data.train, 2_000, &|_, c| Some(c), &class_tint);
    let t0 = Instant::now();
    let rgb = written.and_then(|()| {
        let spec = DataSpec::Folder(folder.clone());
        DataSplits::load(&spec, &base.data_options()).map_err(Error::from)
    });
    let decode_secs = t0.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&folder);
    let rgb = rgb?;
    let n = rgb.train.len() + rgb.val.len();
    row_in(
        52,
        "decode a PNG folder (32x32 RGB, once per run)",
        n as f64 / decode_secs,
        0.0,
    );
    let pipeline = |what: &str, d: &Dataset, norm, spec: &str, workers| {
        let loader = Loader {
            norm,
            augment: spec.parse().expect("a valid spec"),
            seed: 1,
            epoch: 1,
            workers,
        };
        let d = Arc::new(d.clone());
        let t0 = Instant::now();
        let mut images = 0;
        // Two passes over the set, as many batches as that makes.
        for epoch in 0..2 {
            let order = epoch_order(d.len(), 1, epoch);
            for b in BatchStream::spawn(d.clone(), order, 64, 0, loader.clone()) {
                images += b.map_or(0, |b| b.len());
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let label = format!(
            "{what}, {workers} thread{}",
            if workers == 1 { "" } else { "s" }
        );
        row_in(
            52,
            &label,
            images as f64 / secs,
            secs / images.div_ceil(64) as f64,
        );
    };
    for workers in [1, LOADER_THREADS] {
        pipeline(
            "Fashion-MNIST 28x28, crop:0.8,flip",
            &data.train,
            data.norm.clone(),
            "crop:0.8,flip",
            workers,
        );
        pipeline(
            "RGB 32x32, pad-crop:4,flip,jitter:0.2",
            &rgb.train,
            rgb.norm.clone(),
            "pad-crop:4,flip,jitter:0.2",
            workers,
        );
    }
    // Training fed by the loader threads, augmentation off and on, alternated so that a
    // change in the machine's load hits both alike.
    // Within one epoch of the embedded set (140 batches).
    let steps = (steps * 5).clamp(100, 130);
    let mut rates = [Vec::new(), Vec::new()];
    for round in 0..6 {
        let on = round % 2 == 1;
        let cfg = RunConfig {
            augment: if on {
                "crop:0.8,flip".parse().expect("a valid spec")
            } else {
                Default::default()
            },
            ..base.clone()
        };
        let mut trainer = Trainer::new(cfg, data.clone())?;
        let train = trainer.train_set();
        let order = epoch_order(train.len(), 1, 1);
        let mut stream = BatchStream::spawn(train, order, 64, 0, trainer.loader(1));
        let mut next = || {
            stream
                .next()
                .expect("an epoch has more batches than the bench takes")
                .expect("images in memory")
        };
        for _ in 0..5 {
            trainer.step_once(&next())?;
        }
        let t0 = Instant::now();
        for _ in 0..steps {
            trainer.step_once(&next())?;
        }
        rates[on as usize].push((steps * 64) as f64 / t0.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (off, on) = (median(&mut rates[0]), median(&mut rates[1]));
    row_in(52, "train, batch 64, augmentation off", off, 64.0 / off);
    row_in(52, "train, batch 64, crop:0.8,flip", on, 64.0 / on);
    say(&format!(
        "augmentation costs training {:.1}% (medians of 3 runs of {} steps each, alternated)",
        100.0 * (1.0 - on / off),
        steps
    ));
    Ok(())
}

/// What the training doctor costs a step: its work on a step's metrics, timed over many
/// steps, against the time of a training step measured here.
fn doctor_cost(base: &RunConfig, data: &DataSplits) -> Result<(), Error> {
    use crate::diagnose::Doctor;
    use crate::protocol::StepMetrics;
    let mut trainer = Trainer::new(base.clone(), data.clone())?;
    let batch = trainer.training_batch(base.batch_size);
    for _ in 0..3 {
        trainer.step_once(&batch)?;
    }
    let t0 = Instant::now();
    for _ in 0..20 {
        trainer.step_once(&batch)?;
    }
    let step_secs = t0.elapsed().as_secs_f64() / 20.0;
    let info = trainer.info();
    // Records of one step each: the most work a step can give it (`--log-every 1`).
    let mut doctor = Doctor::for_run(info, base);
    let n = 20_000u64;
    let layers = info.layers.len();
    let t0 = Instant::now();
    for step in 1..=n {
        let wobble = (step % 7) as f64 * 0.01;
        let m = StepMetrics {
            step,
            epoch: 1,
            steps: 1,
            loss: 1.0 / (1.0 + step as f64 / 500.0) + wobble,
            loss_max: 1.0 / (1.0 + step as f64 / 500.0) + wobble,
            accuracy: 0.5,
            lr: 1e-3,
            grad_norms: vec![0.1 + wobble; layers],
            update_ratios: vec![1e-3; layers],
            images_per_sec: 2000.0,
            branch: None,
        };
        std::hint::black_box(doctor.on_record(&m));
    }
    let per_step = t0.elapsed().as_secs_f64() / n as f64;
    say("");
    say(&format!(
        "training doctor: {:.2} us a step against a {:.1} ms training step ({:.3}% of it)",
        per_step * 1e6,
        step_secs * 1000.0,
        100.0 * per_step / step_secs
    ));
    // What the run does every so many steps for the doctor and for rollbacks, amortised.
    let reps = 10;
    let t0 = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(trainer.probe_once(&batch)?);
    }
    let probe = t0.elapsed().as_secs_f64() / reps as f64;
    let t0 = Instant::now();
    for _ in 0..reps {
        trainer.keep_once()?;
    }
    let keep = t0.elapsed().as_secs_f64() / reps as f64;
    let (pe, ke) = (
        crate::protocol::ACTIVATION_EVERY as f64,
        crate::train::GOOD_STATE_EVERY as f64,
    );
    say(&format!(
        "activation statistics: {:.1} ms every {pe} steps ({:.2}% of training); last good state kept: {:.1} ms every {ke} steps ({:.2}%)",
        probe * 1000.0,
        100.0 * probe / (pe * step_secs),
        keep * 1000.0,
        100.0 * keep / (ke * step_secs)
    ));
    Ok(())
}

/// The stock rows for one batch size, from a child process: candle's thread pools are set up
/// once per process, and the fast kernels' setting would slow the stock ops.
fn stock_in_child(args: &BenchArgs, batch_size: usize) -> Result<(), Error> {
    let failed =
        |why: String| Error::Training(format!("bench: the stock-kernel run failed: {why}"));
    let exe = std::env::current_exe().map_err(|e| failed(e.to_string()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("bench").arg("--steps").arg(args.steps.to_string());
    if let Some(t) = args.threads {
        cmd.arg("--threads").arg(t.to_string());
    }
    cmd.env(STOCK_CHILD, batch_size.to_string());
    runtime::stock_child_env(&mut cmd);
    let out = cmd.output().map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(failed(err.trim().to_string()));
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        say(line);
    }
    Ok(())
}

/// Where a training step of the fast kernels goes, op by op, with the matrix products' rates
/// against the matrix-product peak measured here and now; then the conv layers by Winograd
/// against im2col on the same shapes, in interleaved rounds.
fn kernel_profile(base: &RunConfig, data: &DataSplits, steps: usize) -> Result<(), Error> {
    let one = gemm::peak_gflops(1024, Threads::One);
    let all = gemm::peak_gflops(1024, Threads::All);
    let bandwidth = copy_bandwidth();
    say("");
    say(&format!(
        "f32 matrix-product peak (1024^3, gemm): {one:.0} GFLOP/s on 1 thread, {all:.0} on {}",
        rayon::current_num_threads()
    ));
    say(&format!(
        "memory bandwidth (copying 128 MB on all threads, read + write): {bandwidth:.1} GB/s"
    ));
    for batch_size in [64, 256] {
        let cfg = RunConfig {
            batch_size,
            kernels: Kernels::Fast,
            ..base.clone()
        };
        let mut trainer = Trainer::new(cfg, data.clone())?;
        let batch = trainer.training_batch(batch_size);
        for _ in 0..3 {
            trainer.step_once(&batch)?;
        }
        // Rounds alternate the methods; each keeps its fastest round.
        let mut best: [Option<StepProfile>; 2] = [None, None];
        for _round in 0..2 {
            for (i, winograd) in [true, false].into_iter().enumerate() {
                conv::auto_fast(winograd);
                let p = StepProfile::measure(&mut trainer, &batch, steps);
                conv::auto_fast(true);
                let p = p?;
                if best[i].as_ref().is_none_or(|b| p.step_ms < b.step_ms) {
                    best[i] = Some(p);
                }
            }
        }
        let [Some(fast), Some(im2col)] = best else {
            unreachable!("two rounds ran");
        };
        fast.print(&format!("fast kernels, batch {batch_size}"), all);
        say(&format!(
            "{:<40} {:>8} {:>8} {:>8} {:>8}",
            "  the same step with im2col only", "fwd ms", "bwd ms", "ratio", ""
        ));
        for e in im2col
            .entries
            .iter()
            .filter(|e| e.label.starts_with("conv"))
        {
            let Some(w) = fast.entries.iter().find(|w| w.label == e.label) else {
                continue;
            };
            let (f, b) = (fast.per_step(e.forward), fast.per_step(e.backward));
            let total = |x: &profile::Entry| (x.forward + x.backward).as_secs_f64();
            say(&format!(
                "  {:<38} {f:>8.2} {b:>8.2} {:>7.2}x",
                e.label,
                total(e) / total(w).max(1e-12)
            ));
        }
        say(&format!(
            "  {:<38} {:>8.2} {:>8} {:>7.2}x",
            "whole step",
            im2col.step_ms,
            "",
            im2col.step_ms / fast.step_ms
        ));
    }
    Ok(())
}

/// The machine's memory bandwidth on all threads: bytes read and written per second copying
/// one 128 MB array into another, fastest of 3.
fn copy_bandwidth() -> f64 {
    use rayon::prelude::*;
    const LEN: usize = 32 << 20;
    const CHUNK: usize = 1 << 16;
    let src: Vec<f32> = (0..LEN).into_par_iter().map(|i| i as f32).collect();
    let mut dst = vec![0f32; LEN];
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t0 = Instant::now();
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| d.copy_from_slice(s));
        best = best.min(t0.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    (2 * LEN * std::mem::size_of::<f32>()) as f64 / best / 1e9
}

/// One timed stretch of training steps, op by op.
struct StepProfile {
    entries: Vec<profile::Entry>,
    step_ms: f64,
    steps: usize,
}

impl StepProfile {
    fn measure(
        trainer: &mut Trainer,
        batch: &crate::data::Batch,
        steps: usize,
    ) -> Result<Self, Error> {
        trainer.step_once(batch)?;
        profile::enable(true);
        let t0 = Instant::now();
        for _ in 0..steps {
            if let Err(e) = trainer.step_once(batch) {
                profile::enable(false);
                return Err(e.into());
            }
        }
        let step_ms = t0.elapsed().as_secs_f64() * 1000.0 / steps as f64;
        profile::enable(false);
        Ok(StepProfile {
            entries: profile::entries(),
            step_ms,
            steps,
        })
    }

    fn per_step(&self, d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0 / self.steps as f64
    }

    /// The table: per op its forward and backward time per step and rates, with `peak` the
    /// machine's product rate on all threads.
    fn print(&self, title: &str, peak: f64) {
        say("");
        say(&format!(
            "{:<40} {:>8} {:>8} {:>11} {:>11} {:>6} {:>8}",
            title, "fwd ms", "bwd ms", "fwd GFLOP/s", "bwd GFLOP/s", "GB/s", "of peak"
        ));
        let rate = |flops: f64, d: Duration| {
            if flops > 0.0 {
                format!("{:.0}", flops / d.as_secs_f64().max(1e-12) / 1e9)
            } else {
                "-".into()
            }
        };
        let mut accounted = 0.0;
        let mut step_flops = 0.0;
        for e in &self.entries {
            let (f, b) = (self.per_step(e.forward), self.per_step(e.backward));
            accounted += f + b;
            let flops = e.forward_flops + e.backward_flops;
            step_flops += flops / self.steps as f64;
            let share = if flops > 0.0 {
                let secs = (e.forward + e.backward).as_secs_f64().max(1e-12);
                format!("{:.0}%", 100.0 * flops / secs / 1e9 / peak)
            } else {
                "-".into()
            };
            let ms = |v: f64, calls: u32| {
                if calls > 0 {
                    format!("{v:.2}")
                } else {
                    "-".into()
                }
            };
            let bytes = e.forward_bytes + e.backward_bytes;
            let gbs = if bytes > 0.0 {
                let secs = (e.forward + e.backward).as_secs_f64().max(1e-12);
                format!("{:.1}", bytes / secs / 1e9)
            } else {
                "-".into()
            };
            say(&format!(
                "{:<40} {:>8} {:>8} {:>11} {:>11} {gbs:>6} {share:>8}",
                e.label,
                ms(f, e.forward_calls),
                ms(b, e.backward_calls),
                rate(e.forward_flops, e.forward),
                rate(e.backward_flops, e.backward),
            ));
        }
        say(&format!(
            "{:<40} {:>8.2}",
            "rest (loss, gradient sums, glue)",
            self.step_ms - accounted
        ));
        let whole = step_flops / (self.step_ms / 1000.0) / 1e9;
        say(&format!(
            "{:<40} {:>8.2} {:>8} {:>11} {:>11} {:>6} {:>8}",
            "whole step",
            self.step_ms,
            "",
            format!("{whole:.0}"),
            "",
            "",
            format!("{:.0}%", 100.0 * whole / peak)
        ));
    }
}

/// Counts the bytes the UI writes, after a warm-up (the first full frame is not steady state).
#[derive(Clone)]
struct CountingWriter {
    bytes: Arc<AtomicU64>,
    from: Instant,
}

impl Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.from.elapsed() >= UI_WARMUP {
            self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const UI_WARMUP: Duration = Duration::from_secs(2);
const UI_STEPS: usize = 300;

/// Training throughput with the terminal UI drawing a 120x40 screen at its frame rate, against
/// the headless reporter, interleaved; and the bytes the UI writes per second.
fn ui_overhead(base: &RunConfig, data: &DataSplits, steps: usize) -> Result<(), Error> {
    // Long enough to run well past the UI's warm-up at a few thousand images/s.
    let steps = steps.max(UI_STEPS);
    say("");
    say(&format!(
        "{:<30} {:>12} {:>16}",
        format!("front end (batch 64, {steps} steps)"),
        "images/s",
        "terminal KB/s"
    ));
    let mut results: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut kbps: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut socket_kbps = Vec::new();
    let sock_dir = std::env::temp_dir().join(format!("candletop-bench-{}", std::process::id()));
    std::fs::create_dir_all(&sock_dir)?;
    for _round in 0..3 {
        // Headless; the UI in this process; the UI attached over the run's socket.
        for i in 0..3 {
            let cfg = RunConfig {
                max_steps: steps as u64 + 3,
                epochs: 3, // the step limit ends the run
                ..base.clone()
            };
            let trainer = Trainer::new(cfg, data.clone())?;
            let (link, monitor) = protocol::link();
            let t0 = Instant::now();
            let handle = trainer.spawn(link);
            let counter = CountingWriter {
                bytes: Arc::new(AtomicU64::new(0)),
                from: Instant::now(),
            };
            let size = ratatui::layout::Rect::new(0, 0, 120, 40);
            let options = tui::UiOptions::default();
            match i {
                0 => {
                    headless::run(std::io::sink(), 20, &monitor, crossbeam_channel::never());
                }
                1 => {
                    tui::run_offscreen(&monitor, options, counter.clone(), size, None)?;
                }
                _ => {
                    let (hub, _forwarding) = crate::watch::hub::Hub::start(monitor);
                    let server =
                        crate::socket::Server::start(&crate::run_dir::RunDir::new(&sock_dir), hub)
                            .map_err(|e| Error::Usage(e.to_string()))?;
                    let attached = crate::socket::client::attach(&sock_dir)
                        .map_err(|e| Error::Usage(e.to_string()))?;
                    let t1 = Instant::now();
                    // From the snapshot, as `candletop attach` starts (without it the UI would
                    // not know the run's length and rescale its charts every frame).
                    tui::run_offscreen(
                        &attached.link,
                        options,
                        counter.clone(),
                        size,
                        Some(attached.state.clone()),
                    )?;
                    let kb = attached.bytes.load(Ordering::Relaxed) as f64 / 1000.0;
                    socket_kbps.push(kb / t1.elapsed().as_secs_f64().max(1e-9));
                    drop(server);
                }
            }
            if i > 0 {
                let secs = t0.elapsed().saturating_sub(UI_WARMUP).as_secs_f64();
                let kb = counter.bytes.load(Ordering::Relaxed) as f64 / 1000.0;
                kbps[i].push(kb / secs.max(1e-9));
            }
            let secs = t0.elapsed().as_secs_f64();
            let _ = handle.join();
            results[i].push(((steps + 3) * base.batch_size) as f64 / secs);
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0
    };
    let _ = std::fs::remove_dir_all(&sock_dir);
    let (h, t, a) = (
        median(&results[0]),
        median(&results[1]),
        median(&results[2]),
    );
    say(&format!("{:<30} {h:>12.0} {:>16}", "headless", "-"));
    say(&format!(
        "{:<30} {t:>12.0} {:>16.1}",
        "terminal UI, 120x40, 12 fps",
        median(&kbps[1])
    ));
    say(&format!(
        "{:<30} {a:>12.0} {:>16.1}",
        "UI attached over the socket",
        median(&kbps[2])
    ));
    say(&format!(
        "{:<30} {:>11.1}%",
        "UI slowdown",
        100.0 * (1.0 - t / h)
    ));
    say(&format!(
        "{:<30} {:>11.1}%",
        "attached slowdown vs in-process",
        100.0 * (1.0 - a / t)
    ));
    say(&format!(
        "{:<30} {:>11.1} KB/s (steps and events, local)",
        "socket to the watcher",
        median(&socket_kbps)
    ));
    snapshot_cost(base, data)?;
    Ok(())
}

/// Checkpoint cost for the default model and a 10M-parameter one: how long the snapshot holds
/// the training thread (against one training step), the background write, the file size.
fn checkpoints(base: &RunConfig, data: &DataSplits, steps: usize) -> Result<(), Error> {
    say("");
    say(&format!(
        "{:<30} {:>10} {:>12} {:>12} {:>12} {:>10}",
        "checkpoint", "params", "step ms", "hold ms", "write ms", "size MB"
    ));
    let dir = std::env::temp_dir().join(format!("candletop-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| RunDirError {
        path: dir.clone(),
        source,
    })?;
    for (label, arch) in [
        ("default (c32,c64,f128)", base.arch.as_str()),
        ("10M params (c32,c64,f3072)", "c32,c64,f3072"),
    ] {
        let cfg = RunConfig {
            arch: arch.into(),
            ..base.clone()
        };
        let mut trainer = Trainer::new(cfg, data.clone())?;
        let batch = trainer.training_batch(base.batch_size);
        trainer.step_once(&batch)?;
        let t0 = Instant::now();
        for _ in 0..steps {
            trainer.step_once(&batch)?;
        }
        let step_ms = t0.elapsed().as_secs_f64() * 1000.0 / steps as f64;
        let (mut hold, mut write, mut size) = (f64::MAX, f64::MAX, 0);
        for _ in 0..3 {
            let t0 = Instant::now();
            let ckpt = trainer.snapshot()?;
            hold = hold.min(t0.elapsed().as_secs_f64() * 1000.0);
            let t0 = Instant::now();
            size = crate::checkpoint::writer::write_atomic(&ckpt, &dir.join("bench.h5"))?;
            write = write.min(t0.elapsed().as_secs_f64() * 1000.0);
        }
        say(&format!(
            "{label:<30} {:>10} {step_ms:>12.1} {hold:>12.1} {write:>12.1} {:>10.1}",
            group_thousands(trainer.model().param_count()),
            size as f64 / 1e6
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn row(what: &str, ips: f64, secs_per_batch: f64) {
    row_in(28, what, ips, secs_per_batch);
}

/// A row with a label column `width` wide; "-" for a time per batch that does not apply.
fn row_in(width: usize, what: &str, ips: f64, secs_per_batch: f64) {
    let ms = if secs_per_batch > 0.0 {
        format!("{:.1}", secs_per_batch * 1000.0)
    } else {
        "-".into()
    };
    say(&format!("{what:<width$} {ips:>12.0} {ms:>12}"));
}

/// What attaching to a long run costs: the snapshot of a run of a million steps (the state is
/// bounded: series halve their resolution, the log keeps its newest lines), encoded by the
/// server and decoded by the watcher.
fn snapshot_cost(base: &RunConfig, data: &DataSplits) -> Result<(), Error> {
    use crate::protocol::{Event, StepMetrics};
    use crate::watch::RunState;
    let trainer = Trainer::new(base.clone(), data.clone())?;
    let mut run = RunState::default();
    run.on_event(&Event::Started(trainer.info().clone()));
    let layers = trainer.info().layers.len();
    let steps = 1_000_000u64;
    for step in 1..=steps {
        run.on_step(&StepMetrics {
            step,
            epoch: 1 + (step / 1000) as usize,
            steps: 1,
            loss: 1.0 / (1.0 + step as f64 / 1e4),
            loss_max: 0.0,
            accuracy: 0.9,
            lr: 1e-3,
            grad_norms: vec![0.1; layers],
            update_ratios: vec![1e-3; layers],
            images_per_sec: 2000.0,
            branch: None,
        });
    }
    let t0 = Instant::now();
    let bytes = serde_json::to_vec(&run).map_err(std::io::Error::other)?;
    let back: RunState = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
    let secs = t0.elapsed().as_secs_f64();
    std::hint::black_box(back);
    say(&format!(
        "{:<30} {:>11.0} KB, {:.1} ms to encode and decode",
        "attach snapshot, 1,000,000 steps",
        bytes.len() as f64 / 1000.0,
        secs * 1000.0
    ));
    // Drawing that run (every series full): one frame of the whole screen, the work the UI
    // thread does up to 12 times a second beside training.
    let mut app = tui::App::new(tui::UiOptions::default());
    app.run = run;
    let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40))
        .map_err(std::io::Error::other)?;
    let frames = 50;
    let t0 = Instant::now();
    for _ in 0..frames {
        // A fresh buffer each time: the whole frame is drawn, as after a change of axes.
        term.clear().map_err(std::io::Error::other)?;
        term.draw(|f| f.render_widget(&app, f.area()))
            .map_err(std::io::Error::other)?;
    }
    let ms = t0.elapsed().as_secs_f64() * 1000.0 / frames as f64;
    say(&format!(
        "{:<30} {:>11.2} ms ({:.1}% of a core at 12 fps)",
        "draw a 120x40 frame, full run",
        ms,
        ms * 12.0 / 10.0
    ));
    Ok(())
}
