//! `candletop` and `candletop train`: a run, launched the way the flags and the terminal say.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::checkpoint::{self, Checkpoint};
use crate::cli::{AttachArgs, TrainArgs};
use crate::config::RunConfig;
use crate::error::Error;
use crate::notify::Notifier;
use crate::protocol::{self, OnNonFinite};
use crate::run_dir::{RunDir, RunDirError};
use crate::train::Trainer;
use crate::watch::hub::Hub;
use crate::watch::Outcome;
use crate::{figure, headless, runtime, signals, socket, tui};

use super::attach::{attach_with, ui_options};
use super::data_info::load_data;
use super::recorded::{comparison, recorded};

/// How a run is launched: decided once, from the flags, the terminal and the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Launch {
    /// The terminal UI's way: the run in a process of its own, this terminal attached to it.
    Attached,
    /// That process: it serves the run in this directory, its output in trainer.log.
    Serve(PathBuf),
    /// Progress lines, no terminal UI (`--headless`, or stdout is not a terminal).
    Headless,
    /// The terminal UI and the trainer in this process (`--foreground`).
    Foreground,
}

impl Launch {
    fn of(args: &TrainArgs) -> Self {
        // Set in the training process the terminal UI starts.
        if let Some(dir) = std::env::var_os(SERVE_ENV) {
            return Launch::Serve(PathBuf::from(dir));
        }
        if args.headless || !std::io::stdout().is_terminal() {
            Launch::Headless
        } else if args.foreground {
            Launch::Foreground
        } else {
            Launch::Attached
        }
    }

    /// What a non-finite step does unless `--on-nan` says: nobody can press a key headless.
    fn on_nan(&self, given: Option<OnNonFinite>) -> Result<OnNonFinite, Error> {
        match (self, given) {
            (Launch::Headless, Some(OnNonFinite::Pause)) => Err(Error::Usage(
                "--on-nan pause needs the terminal UI (headless: stop or rollback)".into(),
            )),
            (_, Some(p)) => Ok(p),
            (Launch::Headless, None) => Ok(OnNonFinite::Stop),
            // Somebody is (or will be) attached to a served run: it may pause for them.
            (_, None) => Ok(OnNonFinite::Pause),
        }
    }
}

/// Whether a new run may use `dir` as its `--run-dir`: not while a live run uses it, and,
/// for a fresh run, not when it holds another run's records (its log would interleave two
/// runs). A resumed run may go on in a finished run's directory: it appends to the log.
fn free_to_use(dir: &Path, resuming: bool) -> Result<(), Error> {
    let shown = dir.display();
    if socket::client::is_live(dir) {
        return Err(Error::Usage(format!(
            "--run-dir {shown}: a live run is using it; candletop attach {shown} watches it, or choose another --run-dir"
        )));
    }
    let records = std::fs::metadata(RunDir::new(dir).metrics());
    if !resuming && records.is_ok_and(|m| m.is_file() && m.len() > 0) {
        return Err(Error::Usage(format!(
            "--run-dir {shown}: it holds a run already; choose another --run-dir, or continue that run with --resume {} --run-dir {shown}",
            RunDir::new(dir).checkpoints().join("last.h5").display()
        )));
    }
    Ok(())
}

/// The run's configuration: the flags over the defaults and `--config`, or over a resumed
/// checkpoint's settings (with a new run directory and no old step limit).
pub(super) fn configure(
    args: &TrainArgs,
    resumed: Option<&Checkpoint>,
) -> Result<RunConfig, Error> {
    Ok(match resumed {
        Some(ckpt) => {
            let mut base = ckpt.train_config.clone();
            base.run_dir = None;
            base.max_steps = 0;
            args.resolve_over(base)?
        }
        None => args.resolve()?,
    })
}

/// The checkpoint `--resume` names: a file, or a run directory's newest checkpoint (its
/// `last.h5`, else the newest file, as `candletop ls` suggests for a killed run).
pub(super) fn resume_file(path: &Path) -> Result<PathBuf, Error> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    crate::runs::newest_checkpoint(&RunDir::new(path).checkpoints()).ok_or_else(|| {
        Error::Usage(format!(
            "--resume {}: no checkpoint in its checkpoints/; give a checkpoint file",
            path.display()
        ))
    })
}

pub(super) fn train(args: &TrainArgs) -> Result<ExitCode, Error> {
    let resume = args.resume.as_deref().map(resume_file).transpose()?;
    let resumed = match &resume {
        Some(path) => Some(checkpoint::read(path)?),
        None => None,
    };
    let mut cfg = configure(args, resumed.as_ref())?;
    if let Some(dir) = &cfg.run_dir {
        free_to_use(dir, resumed.is_some())?;
    }
    let launch = Launch::of(args);
    // Read before anything starts: a bad --compare is bad input.
    let compare = match (&args.compare, &launch) {
        (Some(dir), Launch::Attached | Launch::Foreground) => Some(comparison(dir)?),
        _ => None,
    };
    match &launch {
        Launch::Attached => return launch_and_attach(args, &cfg, compare),
        Launch::Serve(dir) => cfg.run_dir = Some(dir.clone()),
        Launch::Headless | Launch::Foreground => {}
    }
    let on_nan = launch.on_nan(args.on_nan)?;
    runtime::set_threads(cfg.threads(), cfg.kernels);
    let data = load_data(&cfg)?;
    let mut trainer = match (&resumed, &resume) {
        (Some(ckpt), Some(path)) => Trainer::resume(cfg.clone(), data, ckpt, path, &args.given())?,
        _ => Trainer::new(cfg.clone(), data)?,
    };
    trainer.set_on_non_finite(on_nan, args.max_rollbacks);
    // A change a branch cannot make is bad input, found before anything starts.
    if let Some(change) = &args.branch {
        trainer
            .fork_line(&change.0)
            .map_err(|problem| Error::Usage(format!("--branch: {problem}")))?;
    }
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
    // Alerts go out from the process that trains, attached or not.
    let notifier = args
        .notify
        .clone()
        .map(|cmd| Notifier::start(cmd, dir.path().to_path_buf(), hub.subscribe().1));
    if let Some(change) = &args.branch {
        let horizon = args
            .branch_steps
            .map_or(protocol::Horizon::Epoch, protocol::Horizon::Steps);
        let _ = monitor.commands.send(protocol::Command::Fork {
            change: change.0.clone(),
            horizon,
            ask: false,
        });
    }
    let serving = matches!(launch, Launch::Serve(_));
    let server = match socket::Server::start(&dir, hub) {
        Ok(s) => Some(s),
        Err(e) if serving => return Err(Error::Usage(e.to_string())),
        Err(e) => {
            eprintln!("candletop: warning: other terminals cannot attach: {e}");
            None
        }
    };
    if serving {
        // Listening: from here the terminal that started us may go; our words go to the log.
        redirect_output(&dir.trainer_log())?;
    }
    let outcome = match launch {
        Launch::Foreground => tui::run(&monitor, ui_options(args, &cfg), signals, None, compare)?,
        _ => headless::run(std::io::stdout().lock(), cfg.log_every, &monitor, signals),
    };
    drop(monitor);
    drop(server);
    if let Some(n) = notifier {
        n.finish();
    }
    // The trainer has ended or was told to stop; do not hang on one that is stuck.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !handle.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if handle.is_finished() {
        let _ = handle.join();
    }
    if args.plot {
        write_figure(&dir);
    }
    match outcome {
        Outcome::Failed(message) => Err(Error::Training(message)),
        o => Ok(o.exit_code()),
    }
}

/// `--plot`: the run's figure, once metrics.jsonl is complete. A figure that cannot be written
/// is said, not a failed run.
fn write_figure(dir: &RunDir) {
    let path = dir.figure();
    let drawn = recorded(dir.path())
        .map_err(|e| e.to_string())
        .and_then(|state| {
            figure::write(
                &path,
                &[figure::Run {
                    name: dir.name(),
                    state,
                }],
            )
        });
    match drawn {
        Ok(()) => eprintln!("candletop: figure written to {}", path.display()),
        Err(e) => eprintln!("candletop: warning: no figure: {e}"),
    }
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
        bell: args.bell,
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
