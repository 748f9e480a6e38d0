//! Command-line parsing (clap derive). `train` is the default subcommand; every training flag
//! may also come from `--config FILE.toml`, and flags override the file.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::config::{ConfigError, Form, RunConfig, SETTINGS};
use crate::protocol::{LearningRate, OnNonFinite};

#[derive(Debug, Parser)]
#[command(
    name = "candletop",
    version,
    about = "Train a CNN with Candle and watch and steer the run live in the terminal",
    args_conflicts_with_subcommands = true,
    allow_negative_numbers = true,
    after_long_help = EXIT_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Debug, Subcommand)]
// Parsed once per process: the size of the train variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Cmd {
    /// Train a model (the default when no subcommand is given).
    #[command(after_long_help = EXIT_HELP)]
    Train(TrainArgs),
    /// Measure training and evaluation throughput of the default model.
    Bench(BenchArgs),
    /// Evaluate a checkpoint: loss, accuracy, per-class accuracy, confusion matrix.
    Eval(EvalArgs),
    /// Summarise a checkpoint and check its integrity.
    Inspect(InspectArgs),
    /// The LR range test: from the initial weights, train while the LR grows exponentially,
    /// print the loss against the LR and suggest one.
    LrFind(LrFindArgs),
    /// What a dataset holds: source, shape, split sizes, images per class with a bar each,
    /// the normalisation, and a warning when the classes are unbalanced.
    DataInfo(DataInfoArgs),
    /// Replay a run's metrics.jsonl through the training doctor: the findings it raises and
    /// clears, with the step of each.
    Diagnose(DiagnoseArgs),
    /// Watch and steer a live run from this terminal (it may have been started in another):
    /// the run as it is, then live. `d` detaches, the run goes on.
    Attach(AttachArgs),
    /// The runs in a directory: live, finished, stopped or dead, with their progress.
    Ls(LsArgs),
    /// Open a run that has ended in the terminal UI, as it was: charts, LR trace, gradients,
    /// event log (from its metrics.jsonl; nothing to steer).
    View(ViewArgs),
    /// Draw a run as a figure to keep, SVG or PNG: loss, accuracy, learning rate and the
    /// gradient norm of every parameter over the steps, with the run's settings in a caption
    /// (from its metrics.jsonl; other runs overlaid with --compare).
    Plot(PlotArgs),
    /// Write a run's records as a CSV table (--csv), or a checkpoint's weights as a
    /// safetensors file under their state_dict names (--safetensors)
    #[command(after_long_help = crate::export::columns_help())]
    Export(ExportArgs),
    /// Print a completion script for a shell: `candletop completions bash >
    /// ~/.local/share/bash-completion/completions/candletop` (zsh: a file `_candletop` in a
    /// directory of $fpath; fish: ~/.config/fish/completions/candletop.fish)
    Completions(CompletionsArgs),
    /// Print the manual page (roff): `candletop man | man -l -`; with --dir, write a page for
    /// candletop and one for each subcommand into DIR (candletop.1, candletop-train.1, ...)
    Man(ManArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// A run directory (for --csv) or a checkpoint file (for --safetensors)
    #[arg(value_name = "RUN_DIR|CHECKPOINT")]
    pub source: PathBuf,

    /// Write the run's step, epoch and test records to FILE as CSV, a row each (the columns
    /// are listed below)
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "safetensors",
        conflicts_with = "safetensors"
    )]
    pub csv: Option<PathBuf>,

    /// Write the checkpoint's weights to FILE in safetensors format, named as the PyTorch
    /// model's state_dict (safetensors.torch.load_file, then load_state_dict), with the model,
    /// classes and normalisation in the header's metadata
    #[arg(long, value_name = "FILE")]
    pub safetensors: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// Write the pages into this directory (made if missing) instead of printing candletop(1)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// A run directory (with metrics.jsonl)
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,

    /// Another run to overlay (its run directory); give it again for more
    #[arg(long, value_name = "RUN_DIR")]
    pub compare: Vec<PathBuf>,

    /// The figure to write: a name ending in .svg or .png
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ViewArgs {
    /// A run directory (with metrics.jsonl)
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,

    /// Draw the charts with braille dots (finer; needs a font that has them)
    #[arg(long)]
    pub braille: bool,

    /// Draw another run's loss, accuracy and LR under this one's, in blue (its run directory)
    #[arg(long, value_name = "RUN_DIR")]
    pub compare: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct AttachArgs {
    /// A run directory [default: the newest live run under runs/]
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: Option<PathBuf>,

    /// Frames per second of the UI
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub fps: u32,

    /// Draw the charts with braille dots (finer; needs a font that has them)
    #[arg(long)]
    pub braille: bool,

    /// Draw another run's loss, accuracy and LR under this one's, in blue (its run directory)
    #[arg(long, value_name = "RUN_DIR")]
    pub compare: Option<PathBuf>,

    /// Ring the terminal's bell on a new warning and when the run ends (the key ! switches it)
    #[arg(long)]
    pub bell: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// The directory that holds the runs
    #[arg(value_name = "DIR", default_value = "runs")]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Default, Args)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    /// A TOML file with any of the settings below (keys as the flags, with '_' for '-').
    /// Flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The run's settings given on the command line (`config::SETTINGS` declares them).
    #[command(flatten)]
    pub settings: SettingFlags,

    /// Continue the run saved in a checkpoint (weights, optimizer, LR, RNG, position), with its
    /// settings; a run directory means its newest checkpoint (last.h5, else the newest file). A flag given here changes its setting from the resumed step on (--epochs and
    /// --max-steps count the run's total), or is refused when the checkpoint depends on it
    /// (--arch, --activation, --batch-norm, --seed, --val-split; --batch-size and --data only
    /// at an epoch's start)
    #[arg(long, value_name = "FILE.h5", conflicts_with = "config")]
    pub resume: Option<PathBuf>,

    /// Print progress lines instead of the terminal UI (the default when stdout is not a
    /// terminal)
    #[arg(long)]
    pub headless: bool,

    /// Run the trainer inside this process, as before runs could be attached to: the run ends
    /// with the terminal (by default the terminal UI starts the run as a process of its own
    /// and attaches to it; `d` detaches and the run goes on)
    #[arg(long)]
    pub foreground: bool,

    /// Draw another run's loss, accuracy and LR under this one's, in blue (its run directory)
    #[arg(long, value_name = "RUN_DIR")]
    pub compare: Option<PathBuf>,

    /// When the run ends, write its figure (as `candletop plot` draws it) to
    /// <run-dir>/figure.svg
    #[arg(long)]
    pub plot: bool,

    /// What a NaN or infinite loss or gradient does: pause (roll back to the last good state,
    /// kept every 100 steps, and wait for a key; the terminal UI's default), stop (save
    /// last.h5 and exit 3; headless's default), or rollback (roll back, cut the LR x0.1 and go
    /// on, at most --max-rollbacks times, then stop)
    #[arg(long, value_name = "POLICY", value_parser = parse_on_nan)]
    pub on_nan: Option<OnNonFinite>,

    /// Try a change on a fork of the run: from the first step (or the resumed one), a branch
    /// with CHANGE (config key=value settings joined by commas: lr, schedule, weight_decay,
    /// clip_grad_norm, label_smoothing, augment (on, off or a spec), class_weights, dropout)
    /// trains on the same batches (the same images, with its own augmentation) as the run for
    /// --branch-steps steps; both are validated, the verdict is printed and recorded, and the
    /// branch goes on only when its training loss is lower beyond the noise
    #[arg(long, value_name = "CHANGE", value_parser = parse_change)]
    pub branch: Option<BranchChange>,

    /// Steps the --branch comparison lasts [default: the rest of the epoch]
    #[arg(long, value_name = "N", requires = "branch", value_parser = clap::value_parser!(u64).range(1..))]
    pub branch_steps: Option<u64>,

    /// Run CMD (through sh -c, in the run directory) on a new warning, a non-finite loss, a
    /// rollback, early stopping, the target reached, the end of the run and a failure: the
    /// event as one JSON line on stdin, its type in CANDLETOP_EVENT, the run directory in
    /// CANDLETOP_RUN_DIR. In the background, 30 s at most each; a failure is a warning, once
    #[arg(long, value_name = "CMD", value_parser = parse_notify)]
    pub notify: Option<String>,

    /// Ring the terminal's bell on a new warning and when the run ends (the key ! switches it)
    #[arg(long)]
    pub bell: bool,

    /// Rollbacks --on-nan rollback makes before the run stops
    #[arg(long, value_name = "K", default_value_t = crate::train::DEFAULT_MAX_ROLLBACKS)]
    pub max_rollbacks: u32,

    /// Factor by which + and - change the learning rate in the UI
    #[arg(long, value_name = "F", default_value_t = 2.0, value_parser = parse_lr_step)]
    pub lr_step: f64,

    /// UI frames per second
    #[arg(long, value_name = "N", default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub fps: u32,

    /// Draw charts with braille dots (finer, but not every font has them) instead of blocks
    #[arg(long)]
    pub braille: bool,
}

const EXIT_HELP: &str = "Exit status:
  0  the run completed, or was stopped (q, Ctrl-C, SIGTERM, SIGHUP, --max-steps)
  1  the run failed (an error while training)
  2  bad input: a flag, a config file, a data file or a checkpoint (one line says which)
  3  the loss or a gradient turned NaN or infinite under --on-nan stop (headless's default),
     or more than --max-rollbacks times under rollback; the update was skipped and
     checkpoints/last.h5 holds the last good weights (the terminal UI pauses instead)";

/// A `--branch` change: config settings, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct BranchChange(pub Vec<crate::protocol::Setting>);

/// `key=value[,key=value...]`: a change as config settings.
fn parse_change(s: &str) -> Result<BranchChange, String> {
    crate::protocol::Setting::parse_change(s).map(BranchChange)
}

fn parse_notify(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err(
            "an empty command: give the command to run, e.g. 'notify-send candletop'".into(),
        );
    }
    if let Some(problem) = crate::format::control_character(s) {
        return Err(problem);
    }
    Ok(s.to_string())
}

fn parse_on_nan(s: &str) -> Result<OnNonFinite, String> {
    match s {
        "pause" => Ok(OnNonFinite::Pause),
        "stop" => Ok(OnNonFinite::Stop),
        "rollback" => Ok(OnNonFinite::Rollback),
        _ => Err(format!("'{s}' is not one of pause, stop, rollback")),
    }
}

fn parse_lr_step(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 1.0 => Ok(f),
        _ => Err(format!("'{s}' is not a number above 1")),
    }
}

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// The checkpoint to evaluate
    #[arg(long, value_name = "FILE.h5")]
    pub checkpoint: PathBuf,

    /// Dataset, as for train [default: the checkpoint's]
    #[arg(long, value_name = "SPEC")]
    pub data: Option<String>,

    /// Which split to evaluate
    #[arg(long, value_enum, default_value_t = Split::Test)]
    pub split: Split,

    /// Write index,label,predicted,p0..p{C-1} (softmax probabilities) per sample to this CSV
    #[arg(long, value_name = "FILE.csv")]
    pub predictions: Option<PathBuf>,

    /// Compute threads [default: all cores]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    Train,
    Val,
    Test,
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// The checkpoint to summarise
    #[arg(value_name = "FILE.h5")]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct LrFindArgs {
    /// The first LR of the sweep
    #[arg(long, value_name = "LR", default_value = "1e-7", value_parser = LearningRate::parse)]
    pub start_lr: LearningRate,

    /// The last LR of the sweep
    #[arg(long, value_name = "LR", default_value = "10", value_parser = LearningRate::parse)]
    pub end_lr: LearningRate,

    /// Steps of the sweep (the LR grows by the same factor each step)
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(13..=100_000))]
    pub sweep_steps: u32,

    /// The data, model and optimizer, as for train (--epochs and the schedule do not matter)
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DiagnoseArgs {
    /// A run directory (with metrics.jsonl and config.toml)
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct DataInfoArgs {
    /// The data and how it is read and split, as for train (--data, --val-split, --subset,
    /// --imbalance, --channels, --image-size, --skip-bad-images, --normalize, --seed)
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Timed training steps per configuration
    #[arg(long, default_value_t = 20)]
    pub steps: usize,

    /// Compute threads [default: all cores]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Only one part: kernels, checkpoints, data, doctor, ui or branch (a what-if branch's
    /// memory and time) [default: all of them]; or profile: the fast kernels' per-op table
    /// alone (part of kernels); or doctor-suite: the training doctor on
    /// provoked faults and healthy runs (minutes; a table); or time-to-accuracy: the README's
    /// fast recipe on the full Fashion-MNIST, timed to its test accuracy (minutes)
    #[arg(long, value_name = "PART", value_parser = ["kernels", "profile", "checkpoints", "data", "doctor", "ui", "branch", "doctor-suite", "time-to-accuracy"])]
    pub only: Option<String>,

    /// time-to-accuracy: the full data [default: fashion-mnist:/usr/share/datasets/fashion-mnist]
    #[arg(long, value_name = "SPEC")]
    pub data: Option<String>,

    /// doctor-suite: seeds per case and data
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub seeds: u32,

    /// doctor-suite: only the cases whose name contains TEXT (several: TEXT|TEXT)
    #[arg(long, value_name = "TEXT")]
    pub case: Option<String>,
}

impl TrainArgs {
    /// The run's configuration: defaults, then the config file, then the flags; validated.
    pub fn resolve(&self) -> Result<RunConfig, ConfigError> {
        let base = match &self.config {
            Some(path) => RunConfig::from_toml_file(path)?,
            None => RunConfig::default(),
        };
        self.resolve_over(base)
    }

    /// The flags given on the command line applied over `base` (the defaults and config file,
    /// or a resumed checkpoint's settings); validated.
    pub fn resolve_over(&self, base: RunConfig) -> Result<RunConfig, ConfigError> {
        let c = base.with_settings(&self.settings.given)?;
        c.validate()?;
        Ok(c)
    }

    /// The settings (config keys) the command line gives: what a resumed run changes.
    pub fn given(&self) -> Vec<String> {
        self.settings.given.iter().map(|(k, _)| k.clone()).collect()
    }
}

/// The settings the command line gives, as (config key, value) in the order of `SETTINGS`:
/// one flag per setting, made from its declaration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingFlags {
    pub given: Vec<(String, String)>,
}

/// The argument id of `--no-KEY`.
fn negation(key: &str) -> String {
    format!("no_{key}")
}

impl clap::FromArgMatches for SettingFlags {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut given = Vec::new();
        for s in SETTINGS {
            let value = match s.form {
                Form::Value(_) => m.get_one::<String>(s.key).cloned(),
                Form::Switch => m.get_flag(s.key).then(|| "true".to_string()),
                Form::Negatable if m.get_flag(s.key) => Some("true".into()),
                Form::Negatable => m.get_flag(&negation(s.key)).then(|| "false".to_string()),
                Form::File => None,
            };
            if let Some(v) = value {
                given.push((s.key.to_string(), v));
            }
        }
        Ok(Self { given })
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for SettingFlags {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        use clap::{Arg, ArgAction};
        for s in SETTINGS {
            let long = s.flag()[2..].to_string();
            let arg = Arg::new(s.key).long(long.clone()).help(s.help);
            let arg = match s.long_help {
                Some(h) => arg.long_help(h()),
                None => arg,
            };
            cmd = match s.form {
                Form::Value(name) => cmd.arg(arg.value_name(name).action(ArgAction::Set)),
                Form::Switch => cmd.arg(arg.action(ArgAction::SetTrue)),
                Form::Negatable => {
                    let no = negation(s.key);
                    cmd.arg(arg.action(ArgAction::SetTrue).overrides_with(no.clone()))
                        .arg(
                            Arg::new(no)
                                .long(format!("no-{long}"))
                                .help(format!("The opposite of --{long}"))
                                .action(ArgAction::SetTrue)
                                .overrides_with(s.key),
                        )
                }
                Form::File => cmd,
            };
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// The completion script for `shell`, made from the command line's definition.
pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "candletop", &mut out);
    out
}

/// candletop(1), in roff.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    Ok(out)
}

/// A page for candletop and one for each subcommand (candletop-train.1, ...) in `dir`.
pub fn write_man_pages(dir: &std::path::Path) -> std::io::Result<()> {
    clap_mangen::generate_to(Cli::command(), dir)
}

/// A clap error on one line: the problem and, when clap lists them, the possible values.
pub fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
        })
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::OptimizerKind;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("candletop").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn train_is_the_default_subcommand_and_flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "lr = 0.05\nepochs = 3\nbatch_norm = false\n").unwrap();
        let cli = parse(&["--config", file.to_str().unwrap(), "--lr", "0.2"]);
        assert!(cli.command.is_none());
        let c = cli.train.resolve().unwrap();
        assert_eq!((c.lr.get(), c.epochs, c.batch_norm), (0.2, 3, false));
        let cli = parse(&[
            "train",
            "--config",
            file.to_str().unwrap(),
            "--batch-norm",
            "--optimizer",
            "sgd",
        ]);
        let Some(Cmd::Train(t)) = cli.command else {
            panic!("not train")
        };
        let c = t.resolve().unwrap();
        assert!(c.batch_norm);
        assert_eq!(c.optimizer.kind, OptimizerKind::Sgd);
        assert_eq!(c.lr.get(), 0.05);
    }

    #[test]
    fn negative_and_zero_values_are_refused() {
        let e = parse(&["--lr", "-0.1"]).train.resolve().unwrap_err();
        assert_eq!(
            e.to_string(),
            "--lr -0.1: '-0.1' is not a positive learning rate"
        );
        let e = parse(&["--batch-size", "0"]).train.resolve().unwrap_err();
        assert_eq!(e.to_string(), "--batch-size 0: must be at least 1");
        let e = Cli::try_parse_from(["candletop", "--lr-step", "1"]).unwrap_err();
        assert!(one_line(&e).contains("'1' is not a number above 1"));
    }

    #[test]
    fn given_names_exactly_the_flags_on_the_command_line() {
        let t = parse(&["--lr", "0.01", "--no-batch-norm", "--momentum", "0.5"]).train;
        assert_eq!(t.given(), ["batch_norm", "lr", "momentum"]);
        assert!(parse(&[]).train.given().is_empty());
        // Every key it can name is a setting.
        let keys = RunConfig::keys();
        let all = parse(&[
            "--data",
            "embedded",
            "--val-split",
            "0.2",
            "--arch",
            "c8",
            "--activation",
            "tanh",
            "--batch-norm",
            "--dropout",
            "0.1",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--lr",
            "0.1",
            "--optimizer",
            "sgd",
            "--momentum",
            "0.5",
            "--nesterov",
            "--weight-decay",
            "0",
            "--label-smoothing",
            "0.1",
            "--schedule",
            "cosine",
            "--seed",
            "1",
            "--threads",
            "1",
            "--log-every",
            "5",
            "--run-dir",
            "r",
            "--keep-last",
            "1",
            "--best-metric",
            "val_loss",
            "--save-every-steps",
            "3",
            "--max-steps",
            "9",
            "--kernels",
            "stock",
        ])
        .train
        .given();
        assert_eq!(all.len(), 24);
        for k in &all {
            assert!(keys.contains(k), "{k}");
        }
    }

    #[test]
    fn help_states_the_real_defaults() {
        let help = Cli::command().render_long_help().to_string();
        let d = RunConfig::default();
        for want in [
            format!("[default: {}]", d.arch),
            format!("[default: {}]", d.lr.get()),
            format!("[default: {}]", d.batch_size),
            format!("[default: {}]", d.epochs),
            format!("[default: {}]", d.dropout),
            format!("[default: {}]", d.val_split),
            format!("[default: {}]", d.seed),
            format!("[default: {}]", d.optimizer.hyper.weight_decay),
            format!("[default: {}]", d.optimizer.hyper.momentum),
            format!("[default: {}]", d.log_every),
            format!("[default: {}]", d.data),
        ] {
            assert!(help.contains(&want), "help lacks {want}");
        }
        assert!(help.contains("[default: adamw]") && d.optimizer.kind == OptimizerKind::Adamw);
        assert!(
            help.contains("Exit status:") && help.contains("3  the loss or a gradient turned NaN")
        );
    }
}
