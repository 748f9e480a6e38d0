//! What each subcommand does, from a parsed command line to an exit code. The one place that
//! wires the core (data, model, training, checkpoints) to a front end.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checkpoint;
use crate::cli::{
    AttachArgs, Cli, Cmd, DataInfoArgs, DiagnoseArgs, EvalArgs, InspectArgs, LrFindArgs, LsArgs,
    PlotArgs, Split, TrainArgs, ViewArgs,
};
use crate::config::RunConfig;
use crate::data::{DataSpec, DataSplits};
use crate::error::Error;
use crate::format::{group_thousands, human_bytes};
use crate::protocol::{self, OnNonFinite};
use crate::run_dir::{Recorded, RunDir, RunDirError};
use crate::train::{eval, lr_find, FinderSettings, TrainError, Trainer};
use crate::watch::hub::Hub;
use crate::watch::Outcome;
use crate::{bench, figure, headless, runs, runtime, signals, socket, tui};

pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        None => train(&cli.train),
        Some(Cmd::Train(t)) => train(&t),
        Some(Cmd::Bench(b)) => bench::run(&b),
        Some(Cmd::Eval(e)) => eval(&e),
        Some(Cmd::Inspect(i)) => inspect(&i),
        Some(Cmd::LrFind(f)) => find_lr(&f),
        Some(Cmd::DataInfo(d)) => data_info(&d),
        Some(Cmd::Diagnose(d)) => diagnose(&d),
        Some(Cmd::Attach(a)) => attach(&a),
        Some(Cmd::Ls(l)) => ls(&l),
        Some(Cmd::View(v)) => view(&v),
        Some(Cmd::Plot(p)) => plot(&p),
    }
}

fn ui_options(args: &TrainArgs, cfg: &RunConfig) -> tui::UiOptions {
    // NO_COLOR set to anything but "" turns colour off.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    tui::UiOptions {
        lr_step: args.lr_step,
        fps: args.fps,
        color: !no_color,
        braille: args.braille,
        quit_when_done: false,
        // What x turns clipping on to: the run's norm, or 1 (a common choice).
        clip_grad_norm: if cfg.clip_grad_norm > 0.0 {
            cfg.clip_grad_norm
        } else {
            1.0
        },
        attached: false,
    }
}

fn train(args: &TrainArgs) -> Result<ExitCode, Error> {
    let resumed = match &args.resume {
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
    // Set in the training process the terminal UI starts: it serves this run directory.
    let serving = std::env::var_os(SERVE_ENV).map(std::path::PathBuf::from);
    let headless = args.headless || !std::io::stdout().is_terminal();
    // Read before anything starts: a bad --compare is bad input.
    let compare = match (&args.compare, headless) {
        (Some(dir), false) => Some(comparison(dir)?),
        _ => None,
    };
    if serving.is_none() && !headless && !args.foreground {
        return launch_and_attach(args, &cfg, compare);
    }
    let cfg = match &serving {
        Some(dir) => RunConfig {
            run_dir: Some(dir.clone()),
            ..cfg
        },
        None => cfg,
    };
    // Somebody is attached to a served run: it may pause for them.
    let headless = headless && serving.is_none();
    let on_nan = args.on_nan.unwrap_or(if headless {
        OnNonFinite::Stop
    } else {
        OnNonFinite::Pause
    });
    // Nobody can press a key to resume a headless run.
    if headless && on_nan == OnNonFinite::Pause {
        return Err(Error::Usage(
            "--on-nan pause needs the terminal UI (headless: stop or rollback)".into(),
        ));
    }
    runtime::set_threads(cfg.threads(), cfg.kernels);
    let data = load_data(&cfg)?;
    let mut trainer = match &resumed {
        Some((ckpt, path)) => Trainer::resume(cfg.clone(), data, ckpt, path, &args.given())?,
        None => Trainer::new(cfg.clone(), data)?,
    };
    trainer.set_on_non_finite(on_nan, args.max_rollbacks);
    // The run directory is made only once the inputs are known to be good.
    let dir = RunDir::choose(cfg.run_dir.as_deref());
    dir.create()?;
    cfg.save_in(&dir)?;
    trainer.set_run_dir(dir.path())?;
    let signals = signals::spawn()?;
    let (trainer_link, trainer_monitor) = protocol::link();
    let handle = trainer.spawn(trainer_link);
    // This process's front end is one watcher; `candletop attach` adds others over the socket.
    let (hub, _forwarding) = Hub::start(trainer_monitor);
    let (_, monitor) = hub.subscribe();
    let server = match socket::Server::start(&dir, hub) {
        Ok(s) => Some(s),
        Err(e) if serving.is_some() => return Err(Error::Usage(e.to_string())),
        Err(e) => {
            eprintln!("candletop: warning: other terminals cannot attach: {e}");
            None
        }
    };
    if serving.is_some() {
        // Listening: from here the terminal that started us may go; our words go to the log.
        redirect_output(&dir.trainer_log())?;
    }
    let outcome = if headless || serving.is_some() {
        headless::run(std::io::stdout().lock(), cfg.log_every, &monitor, signals)
    } else {
        tui::run(&monitor, ui_options(args, &cfg), signals, None, compare)?
    };
    drop(monitor);
    drop(server);
    // The trainer has ended or was told to stop; do not hang on one that is stuck.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !handle.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if handle.is_finished() {
        let _ = handle.join();
    }
    if args.plot {
        // The run is over and metrics.jsonl complete. A figure that cannot be written is said,
        // not a failed run.
        let path = dir.figure();
        match recorded(dir.path())
            .map_err(|e| e.to_string())
            .and_then(|state| {
                figure::write(
                    &path,
                    &[figure::Run {
                        name: dir.name(),
                        state,
                    }],
                )
            }) {
            Ok(()) => eprintln!("candletop: figure written to {}", path.display()),
            Err(e) => eprintln!("candletop: warning: no figure: {e}"),
        }
    }
    match outcome {
        Outcome::Failed(message) => Err(Error::Training(message)),
        o => Ok(o.exit_code()),
    }
}

/// `candletop plot RUN_DIR [--compare OTHER ...] -o FILE`: the run as a figure.
fn plot(args: &PlotArgs) -> Result<ExitCode, Error> {
    let mut runs = Vec::new();
    for dir in std::iter::once(&args.run_dir).chain(&args.compare) {
        runs.push(figure::Run {
            name: RunDir::new(dir).name(),
            state: recorded(dir)?,
        });
    }
    figure::write(&args.output, &runs).map_err(Error::Usage)?;
    println!("wrote {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}

/// Set (to the run directory) in the training process the terminal UI starts.
const SERVE_ENV: &str = "CANDLETOP_SERVE_RUN_DIR";

/// The terminal UI's way: start the run as a process of its own (a new session, no terminal),
/// wait until it listens, and attach to it. Bad input is the run's first word: printed here,
/// with its exit status.
fn launch_and_attach(
    args: &TrainArgs,
    cfg: &RunConfig,
    compare: Option<tui::Comparison>,
) -> Result<ExitCode, Error> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let dir = RunDir::choose(cfg.run_dir.as_deref()).path().to_path_buf();
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(std::env::args_os().skip(1))
        .env(SERVE_ENV, &dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    // The pipe closes when the run listens (its output goes to its log) or when it ends.
    let mut said = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut said);
    }
    eprint!("{said}");
    if !socket::client::is_live(&dir) {
        let status = child.wait()?;
        let code = status.code().unwrap_or(1).clamp(0, 255) as u8;
        return Ok(ExitCode::from(if code == 0 { 1 } else { code }));
    }
    let ui = AttachArgs {
        run_dir: Some(dir),
        fps: args.fps,
        braille: args.braille,
        compare: None,
    };
    attach_with(&ui, ui_options(args, cfg), compare)
}

/// Points stdout and stderr at `path` (created), for a process that outlives its terminal.
fn redirect_output(path: &Path) -> Result<(), Error> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::create(path).map_err(|source| {
        Error::RunDir(RunDirError {
            path: path.to_path_buf(),
            source,
        })
    })?;
    // SAFETY: dup2 on descriptors this process owns; the file stays open through the copies.
    unsafe {
        libc::dup2(file.as_raw_fd(), 1);
        libc::dup2(file.as_raw_fd(), 2);
    }
    Ok(())
}

/// `candletop attach [RUN_DIR]`: a terminal UI on a run of another process.
fn attach(args: &AttachArgs) -> Result<ExitCode, Error> {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let options = tui::UiOptions {
        fps: args.fps,
        color: !no_color,
        braille: args.braille,
        ..tui::UiOptions::default()
    };
    let compare = args.compare.as_deref().map(comparison).transpose()?;
    attach_with(args, options, compare)
}

fn attach_with(
    args: &AttachArgs,
    options: tui::UiOptions,
    compare: Option<tui::Comparison>,
) -> Result<ExitCode, Error> {
    let dir = match &args.run_dir {
        Some(d) => d.clone(),
        None => runs::newest_live(Path::new("runs")).ok_or_else(|| {
            Error::Usage("no live run under runs/ (candletop ls lists them; give a RUN_DIR)".into())
        })?,
    };
    let attached = socket::client::attach(&dir).map_err(|e| Error::Usage(e.to_string()))?;
    let signals = signals::spawn()?;
    let options = tui::UiOptions {
        attached: true,
        ..options
    };
    let outcome = tui::run(
        &attached.link,
        options,
        signals,
        Some(attached.state),
        compare,
    )?;
    match outcome {
        Outcome::Left => {
            println!(
                "detached; the run goes on (pid {}): candletop attach {}",
                attached.pid,
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Failed(message) => Err(Error::Training(message)),
        o => Ok(o.exit_code()),
    }
}

/// `candletop view RUN_DIR`: a run that has ended, in the terminal UI, read-only.
fn view(args: &ViewArgs) -> Result<ExitCode, Error> {
    let dir = &args.run_dir;
    if socket::client::is_live(dir) {
        return Err(Error::Usage(format!(
            "{}: the run is live: candletop attach {}",
            dir.display(),
            dir.display()
        )));
    }
    let compare = args.compare.as_deref().map(comparison).transpose()?;
    let mut state = recorded(dir)?;
    // A run that ended without a word (killed) is shown as such.
    state.on_trainer_gone();
    // Nobody at the other end: the channels are closed from the start.
    let (trainer, monitor) = protocol::link();
    drop(trainer);
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let options = tui::UiOptions {
        color: !no_color,
        braille: args.braille,
        ..tui::UiOptions::default()
    };
    let signals = signals::spawn()?;
    tui::run(&monitor, options, signals, Some(state), compare)?;
    Ok(ExitCode::SUCCESS)
}

/// A run as its metrics.jsonl recorded it (live or not).
fn recorded(dir: &Path) -> Result<crate::watch::RunState, Error> {
    let path = RunDir::new(dir).metrics();
    let recorded = read_records(dir)?;
    let state = crate::watch::RunState::replay(recorded.records.iter().map(|s| &s.record));
    if state.info.is_none() {
        return Err(Error::Usage(format!(
            "{}: no started record: is this a candletop run directory?",
            path.display()
        )));
    }
    Ok(state)
}

/// Every record of a run's metrics.jsonl; what was passed over (a torn last line, records of
/// a newer version) is said on stderr.
fn read_records(dir: &Path) -> Result<Recorded, Error> {
    let run = RunDir::new(dir);
    let recorded = run.read_records()?;
    for remark in recorded.remarks(&run.metrics()) {
        eprintln!("candletop: warning: {remark}");
    }
    Ok(recorded)
}

/// The run `--compare` names, to draw under this one.
fn comparison(dir: &Path) -> Result<tui::Comparison, Error> {
    // The directory's own name: the charts' legend is short.
    Ok(tui::Comparison {
        name: RunDir::new(dir).name(),
        run: recorded(dir)?,
    })
}

/// `candletop ls [DIR]`: the runs in DIR, newest first.
fn ls(args: &LsArgs) -> Result<ExitCode, Error> {
    let runs =
        runs::list(&args.dir).map_err(|e| Error::Usage(format!("{}: {e}", args.dir.display())))?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", runs::table(&runs));
    Ok(ExitCode::SUCCESS)
}

/// `candletop diagnose RUN_DIR`: the run's recorded steps and epochs through the doctor.
fn diagnose(args: &DiagnoseArgs) -> Result<ExitCode, Error> {
    use crate::diagnose::{Doctor, Patient, Thresholds};
    use crate::protocol::{Event, Record};
    let dir = &args.run_dir;
    let cfg = RunConfig::from_toml_file(&RunDir::new(dir).config())?;
    let recorded = read_records(dir)?;
    let mut doctor: Option<Doctor> = None;
    let mut out = std::io::stdout().lock();
    let (mut steps, mut epochs) = (0u64, 0usize);
    for stamped in &recorded.records {
        let changes = match (&stamped.record, doctor.as_mut()) {
            (Record::Event(Event::Started(info)), _) => {
                let mut d = Doctor::new(
                    Patient::of(info, &cfg.arch, cfg.activation, cfg.batch_norm),
                    Thresholds::default(),
                );
                let changes = d.on_start();
                doctor = Some(d);
                changes
            }
            (Record::Step(_) | Record::Event(Event::Epoch(_)), None) => {
                return Err(Error::Usage(format!(
                    "{}: line {}: a step or epoch record before the run started",
                    RunDir::new(dir).metrics().display(),
                    stamped.line
                )));
            }
            (Record::Step(m), Some(d)) => {
                steps = m.step;
                d.on_step(m)
            }
            (Record::Event(Event::Epoch(m)), Some(d)) => {
                epochs = m.epoch;
                d.on_epoch(m)
            }
            (Record::Event(Event::Activations { layers, .. }), Some(d)) => d.on_activations(layers),
            (Record::Event(Event::NonFinite { step, what, .. }), Some(d)) => {
                d.on_non_finite(*step, what)
            }
            _ => Vec::new(),
        };
        let step = stamped.step;
        for c in changes {
            let f = &c.finding;
            let line = if c.cleared {
                format!("step {step:>6}  resolved: {}", f.kind.title())
            } else {
                format!(
                    "step {step:>6}  {}: {}: {}; try {}",
                    f.severity.word(),
                    f.kind.title(),
                    f.evidence,
                    f.action
                )
            };
            let _ = writeln!(out, "{line}");
        }
    }
    let Some(d) = doctor else {
        return Err(Error::Usage(format!(
            "{}: no started record: is this a candletop run directory?",
            RunDir::new(dir).metrics().display()
        )));
    };
    let open = d.findings();
    let _ = writeln!(
        out,
        "{}: {epochs} epochs, {steps} steps (step records every {} steps: the doctor sees their means); {} in force at the end{}",
        dir.display(),
        cfg.log_every,
        match open.len() {
            0 => "no finding".to_string(),
            1 => "1 finding".to_string(),
            n => format!("{n} findings"),
        },
        if open.is_empty() {
            String::new()
        } else {
            format!(
                ": {}",
                open.iter()
                    .map(|f| f.kind.title())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn data_info(args: &DataInfoArgs) -> Result<ExitCode, Error> {
    let cfg = args.train.resolve()?;
    runtime::set_threads(cfg.threads(), cfg.kernels);
    let data = load_data(&cfg)?;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(data_report(&data, &cfg).as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// `candletop data-info`'s report.
pub fn data_report(data: &DataSplits, cfg: &RunConfig) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let t = &data.train;
    let _ = writeln!(
        o,
        "source     {} ({}x{}x{}, {} classes)",
        data.source,
        t.channels,
        t.height,
        t.width,
        data.classes.len()
    );
    let n = crate::format::group_thousands;
    let _ = writeln!(
        o,
        "splits     {} train / {} val / {} test",
        n(data.train.len()),
        n(data.val.len()),
        n(data.test.len())
    );
    let how = match cfg.normalize {
        crate::data::NormalizeSpec::Auto => "of the training set",
        _ => "given",
    };
    let _ = writeln!(o, "normalise  {} ({how})", data.norm.describe());
    let _ = writeln!(o, "augment    {}", cfg.augment);
    if !data.skipped.is_empty() {
        let _ = writeln!(
            o,
            "skipped    {} images that do not decode",
            data.skipped.len()
        );
    }
    let counts = data.counts();
    let max = counts.train.iter().copied().max().unwrap_or(0).max(1);
    let w = data
        .classes
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 24);
    const BAR: usize = 24;
    let _ = writeln!(
        o,
        "\n{:<w$}  {:>8} {:<BAR$}  {:>7}  {:>7}",
        "class", "train", "", "val", "test"
    );
    for (i, name) in data.classes.iter().enumerate() {
        let name: String = name.chars().take(w).collect();
        let tr = counts.train[i];
        let _ = writeln!(
            o,
            "{name:<w$}  {:>8} {:<BAR$}  {:>7}  {:>7}",
            n(tr),
            bar(tr as f64 / max as f64, BAR),
            n(counts.val[i]),
            n(counts.test[i])
        );
    }
    let ratio = crate::data::balance::imbalance_ratio(&counts.train);
    let empty = counts.train.iter().filter(|&&c| c == 0).count();
    if empty > 0 {
        let _ = writeln!(
            o,
            "\nwarning: {empty} classes have no training images; the model cannot learn them"
        );
    }
    if ratio >= 1.5 {
        let _ = writeln!(
            o,
            "\nwarning: the training set is unbalanced: its largest class has {ratio:.1}x the images of its smallest; --class-weights balanced or --sampler balanced make every class count the same"
        );
    }
    o
}

/// A horizontal bar of `share` (0..1) of `width` cells, in eighths.
fn bar(share: f64, width: usize) -> String {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = (share.clamp(0.0, 1.0) * width as f64 * 8.0).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    if eighths % 8 > 0 {
        s.push(PARTS[eighths % 8]);
    }
    s
}

/// The data `cfg` names, saying on stderr what a slow load is about to do and which files
/// `--skip-bad-images` left out.
fn load_data(cfg: &RunConfig) -> Result<DataSplits, Error> {
    let data = DataSplits::load_noting(&cfg.data, &cfg.data_options(), &mut |note| {
        eprintln!("{note}");
    })?;
    if !data.skipped.is_empty() {
        eprintln!(
            "skipped {} images that do not decode (--skip-bad-images):",
            data.skipped.len()
        );
        for b in data.skipped.iter().take(20) {
            eprintln!("  {}: {}", b.path.display(), b.problem);
        }
        if data.skipped.len() > 20 {
            eprintln!(
                "  ... and {} more (all in metrics.jsonl)",
                data.skipped.len() - 20
            );
        }
    }
    Ok(data)
}

fn find_lr(args: &LrFindArgs) -> Result<ExitCode, Error> {
    if args.train.resume.is_some() {
        return Err(crate::config::ConfigError::Invalid {
            flag: "--resume",
            value: String::new(),
            problem: "lr-find starts from the initial weights; it takes no checkpoint",
        }
        .into());
    }
    let (start, end) = (args.start_lr.get(), args.end_lr.get());
    if start >= end {
        return Err(crate::config::ConfigError::Invalid {
            flag: "--start-lr",
            value: format!("{start} (--end-lr {end})"),
            problem: "must be below --end-lr",
        }
        .into());
    }
    let cfg = args.train.resolve()?;
    runtime::set_threads(cfg.threads(), cfg.kernels);
    let data = load_data(&cfg)?;
    let mut trainer = Trainer::new(cfg.clone(), data)?;
    let settings = FinderSettings {
        start_lr: start,
        end_lr: end,
        steps: args.sweep_steps as usize,
        ..FinderSettings::default()
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "LR range test: {} on {}, {}, batch {}; lr {start:.1e} to {end:.1e} over {} steps",
        trainer.info().model,
        trainer.info().data,
        trainer.info().optimizer,
        cfg.batch_size,
        settings.steps
    );
    let mut err = std::io::stderr();
    let show = err.is_terminal();
    let finding = trainer.lr_find(&settings, &mut |done| {
        if show {
            let _ = write!(err, "\r  {done}/{} steps", settings.steps);
        }
        true
    })?;
    if show {
        let _ = writeln!(err);
    }
    let _ = writeln!(out, "\n  step        lr      loss  smoothed");
    for (i, p) in finding.points.iter().enumerate() {
        let mark = if finding.suggestion == Some(i) {
            "  <- suggested"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {:>4}  {:>8.2e}  {:>8.4}  {:>8.4}{mark}",
            i + 1,
            p.lr,
            p.loss,
            p.smoothed
        );
    }
    if let Some(why) = &finding.stopped {
        let _ = writeln!(out, "  (ended early: {why})");
    }
    let _ = writeln!(out);
    let chart = tui::widgets::FinderChart {
        finding: &finding,
        pick: finding.suggestion,
        theme: tui::theme::Theme { color: false },
    };
    for line in tui::text_of(chart, 78, 20) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out);
    match finding.suggestion {
        Some(i) => {
            let _ = writeln!(
                out,
                "suggested lr: {:.2e} ({})\nchosen as {}.",
                finding.points[i].lr,
                finding.how,
                lr_find::METHOD
            );
        }
        None => {
            let _ = writeln!(out, "no suggestion: {}", finding.how);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn eval(args: &EvalArgs) -> Result<ExitCode, Error> {
    let path = &args.checkpoint;
    let ckpt = checkpoint::read(path)?;
    let mut cfg = ckpt.train_config.clone();
    if let Some(t) = args.threads {
        cfg.threads = t;
    }
    runtime::set_threads(cfg.threads(), cfg.kernels);
    if let Some(d) = &args.data {
        cfg.data = d.parse::<DataSpec>()?;
    }
    let data = load_data(&cfg)?;
    let shape = [data.train.channels, data.train.height, data.train.width];
    let model_cfg = &ckpt.model_config;
    if shape != model_cfg.input || data.classes.len() != model_cfg.classes {
        return Err(TrainError::Mismatch {
            path: path.clone(),
            problem: format!(
                "the model takes {:?} images in {} classes; --data {} has {:?} in {}",
                model_cfg.input,
                model_cfg.classes,
                cfg.data,
                shape,
                data.classes.len()
            ),
        }
        .into());
    }
    let described = data.describe();
    let name = format!("{:?}", args.split).to_lowercase();
    let split = Arc::new(match args.split {
        Split::Train => data.train,
        Split::Val => data.val,
        Split::Test => data.test,
    });
    let mut model = eval::load_model(&ckpt, path)?;
    if split.is_empty() {
        return Err(Error::Data(crate::data::DataError::Spec {
            spec: cfg.data.to_string(),
            problem: format!("no {name} split (an image folder needs {name}/ beside train/)"),
        }));
    }
    // The normalisation the model was trained with.
    let p = eval::predict(&mut model, &split, &ckpt.data.norm(), eval::EVAL_BATCH)?;
    let classes = &ckpt.classes;
    let c = classes.len();
    let mut confusion = vec![vec![0usize; c]; c];
    for (&y, &yhat) in p.labels.iter().zip(&p.predicted) {
        confusion[y as usize][yhat as usize] += 1;
    }
    let n = p.labels.len();
    let correct: usize = (0..c).map(|i| confusion[i][i]).sum();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}: {} split of {}, {n} images",
        args.checkpoint.display(),
        name,
        described
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

fn write_predictions(path: &Path, p: &eval::Predictions, classes: usize) -> Result<(), Error> {
    let io = |source| {
        Error::RunDir(RunDirError {
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
        group_thousands(c.param_count())
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
        "  data        {} ({}), classes {}",
        c.data.source,
        c.data.norm().describe(),
        c.classes.join(", ")
    );
    let augment = &c.train_config.augment;
    let _ = writeln!(
        out,
        "  augment     {} ({})",
        if augment.is_empty() {
            "none".into()
        } else {
            augment.to_string()
        },
        match c.data.augmenting {
            Some(true) => "on",
            Some(false) => "switched off",
            None if augment.is_empty() => "off",
            None => "on",
        }
    );
    if let Some(s) = &c.schedule {
        let _ = writeln!(
            out,
            "  schedule    {} ({}), next step's lr {:.3e}",
            s.spec.describe(),
            s.spec,
            s.lr_at(c.global_step + 1)
        );
    }
    if !c.lr_changes.is_empty() {
        let changes: Vec<String> = c
            .lr_changes
            .iter()
            .map(|(s, lr)| format!("{lr:.2e} from step {}", s + 1))
            .collect();
        let _ = writeln!(out, "  lr history  {}", changes.join(", "));
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
