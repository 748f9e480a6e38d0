//! Command-line parsing (clap derive). `train` is the default subcommand; every training flag
//! may also come from `--config FILE.toml`, and flags override the file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{ConfigError, RunConfig};
use crate::data::DataSpec;
use crate::model::Activation;
use crate::optim::OptimizerKind;
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

    /// Dataset: embedded, mnist:DIR, fashion-mnist:DIR, cifar10:DIR, cifar100:DIR,
    /// cifar100-coarse:DIR or folder:DIR [default: embedded]
    #[arg(long, value_name = "SPEC", long_help = DATA_HELP)]
    pub data: Option<String>,

    /// Share of the training set held out for validation, stratified by class (unless the
    /// image folder has a val/ of its own) [default: 0.1]
    #[arg(long, value_name = "F")]
    pub val_split: Option<f64>,

    /// Image folders: 1 (grayscale) or 3 (RGB) channels [default: what the images are]
    #[arg(long, value_name = "C")]
    pub channels: Option<usize>,

    /// Image folders: resize every image to N (square) or WxH pixels [default: the first
    /// image's size; all must match]
    #[arg(long, value_name = "N|WxH")]
    pub image_size: Option<String>,

    /// Image folders: skip files that do not decode, and list them, instead of stopping
    #[arg(long)]
    pub skip_bad_images: bool,

    /// Image folders: read the images from disk as the loaders need them instead of decoding
    /// them into memory once (the default for a set that would take more than half the
    /// memory available)
    #[arg(long)]
    pub stream_images: bool,

    /// Train on a stratified subset of N training images [default: 0, all]
    #[arg(long, value_name = "N")]
    pub subset: Option<usize>,

    /// Skew the training set: class k keeps a share decaying geometrically, so the first class
    /// has RATIO times the images of the last (validation and test stay as they are) [default:
    /// 0, none]
    #[arg(long, value_name = "RATIO")]
    pub imbalance: Option<f64>,

    /// Input normalisation: auto (each channel's mean and std over the training set) or
    /// MEAN/STD, e.g. 0.5/0.25 or 0.49,0.48,0.45/0.25,0.24,0.26 [default: auto]
    #[arg(long, value_name = "SPEC")]
    pub normalize: Option<String>,

    /// Augmentation of training images, e.g. crop:0.8,flip,jitter:0.2 or pad-crop:4,flip
    /// (see --help) [default: none]; the key a toggles it live
    #[arg(long, value_name = "SPEC", long_help = AUGMENT_HELP)]
    pub augment: Option<String>,

    /// Weights of the classes in the loss: none, or balanced (inverse class frequency, as
    /// scikit-learn) [default: none]; the key w toggles it live
    #[arg(long, value_enum)]
    pub class_weights: Option<crate::data::ClassWeights>,

    /// How an epoch visits the training images: shuffle (each once), or balanced (with
    /// replacement, weighted by inverse class frequency) [default: shuffle]
    #[arg(long, value_enum)]
    pub sampler: Option<crate::data::Sampler>,

    /// Layers, comma-separated [default: c32,c64,f128]
    #[arg(long, value_name = "LAYERS", long_help = ARCH_HELP)]
    pub arch: Option<String>,

    /// Activation after every conv and hidden layer [default: relu]
    #[arg(long, value_enum)]
    pub activation: Option<Activation>,

    /// Batch norm after every conv layer [default: on]
    #[arg(long, overrides_with = "no_batch_norm")]
    pub batch_norm: bool,

    /// No batch norm
    #[arg(long, overrides_with = "batch_norm")]
    pub no_batch_norm: bool,

    /// Dropout probability after the conv blocks and after every hidden layer [default: 0.25]
    #[arg(long, value_name = "P")]
    pub dropout: Option<f32>,

    /// Number of epochs [default: 10]
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,

    /// Images per training step [default: 64]
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,

    /// Learning rate [default: 0.001]
    #[arg(long, value_name = "LR", value_parser = LearningRate::parse)]
    pub lr: Option<LearningRate>,

    /// How the learning rate moves: constant, step, multistep, exp, cosine, onecycle, plateau,
    /// with an optional warmup [default: constant]
    #[arg(long, value_name = "SPEC", long_help = SCHEDULE_HELP)]
    pub schedule: Option<String>,

    /// Optimizer [default: adamw]
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,

    /// SGD momentum [default: 0.9]
    #[arg(long, value_name = "M")]
    pub momentum: Option<f32>,

    /// Nesterov momentum for SGD [default: off]
    #[arg(long)]
    pub nesterov: bool,

    /// Weight decay: L2 for SGD and Adam, decoupled for AdamW [default: 0.01]
    #[arg(long, value_name = "WD")]
    pub weight_decay: Option<f32>,

    /// Clip the gradients' global L2 norm to N before each update (PyTorch's clip_grad_norm_);
    /// the key x switches clipping off and on [default: 0, off]
    #[arg(long, value_name = "N")]
    pub clip_grad_norm: Option<f64>,

    /// Label smoothing of the cross-entropy loss [default: 0]
    #[arg(long, value_name = "EPS")]
    pub label_smoothing: Option<f64>,

    /// Seed of every random choice (init, dropout, split, batch order) [default: 42]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Compute threads [default: all cores]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Steps between progress records in metrics.jsonl and progress lines [default: 20]
    #[arg(long, value_name = "N")]
    pub log_every: Option<u64>,

    /// Directory for config.toml, metrics.jsonl and checkpoints/ [default: runs/<timestamp>]
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,

    /// Continue the run saved in a checkpoint (weights, optimizer, LR, RNG, position), with its
    /// settings. A flag given here changes its setting from the resumed step on (--epochs and
    /// --max-steps count the run's total), or is refused when the checkpoint depends on it
    /// (--arch, --activation, --batch-norm, --seed, --val-split; --batch-size and --data only
    /// at an epoch's start)
    #[arg(long, value_name = "FILE.h5", conflicts_with = "config")]
    pub resume: Option<PathBuf>,

    /// Epoch checkpoints (checkpoints/epoch-NNN.h5) kept; older ones are deleted [default: 3]
    #[arg(long, value_name = "K")]
    pub keep_last: Option<usize>,

    /// The validation metric that decides checkpoints/best.h5 [default: val_acc]
    #[arg(long, value_enum)]
    pub best_metric: Option<crate::config::BestMetric>,

    /// Also save checkpoints/last.h5 every N steps [default: 0, never]
    #[arg(long, value_name = "N")]
    pub save_every_steps: Option<u64>,

    /// Stop after N steps in total [default: 0, no limit]
    #[arg(long, value_name = "N")]
    pub max_steps: Option<u64>,

    /// Hot-path implementation: candle's stock ops, or candletop's fused custom ops (batch norm)
    /// [default: fast]
    #[arg(long, value_enum)]
    pub kernels: Option<crate::model::Kernels>,

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

const ARCH_HELP: &str = "Layers, comma-separated [default: c32,c64,f128]

  cOUT[kK][sS][pP][/POOL]   convolution with OUT channels, kernel K (default 3), stride S
                            (default 1), padding P (default K/2); then batch norm (unless
                            --no-batch-norm), the activation, and 2x2 pooling POOL: max
                            (default), avg or none
  fUNITS                    hidden fully connected layer (after the convolutions)

The last layer, one output per class, is always added.
Example: c32k5,c64/avg,c128/none,f256,f64";

const DATA_HELP: &str = "Dataset [default: embedded]

  embedded              a 6,000-image Fashion-MNIST subset built into the binary
  mnist:DIR             MNIST IDX files (train-images-idx3-ubyte[.gz], t10k-..., gzipped or not)
  fashion-mnist:DIR     Fashion-MNIST IDX files, as MNIST
  cifar10:DIR           CIFAR-10 binary version: data_batch_1..5.bin, test_batch.bin,
                        batches.meta.txt (in DIR or DIR/cifar-10-batches-bin)
  cifar100:DIR          CIFAR-100 binary version: train.bin, test.bin, fine_label_names.txt
                        (in DIR or DIR/cifar-100-binary); 100 fine classes
  cifar100-coarse:DIR   CIFAR-100 with its 20 coarse classes (coarse_label_names.txt)
  folder:DIR            images (png, jpg, jpeg, bmp, gif, webp) in DIR/train/<class>/ with
                        DIR/val/<class>/ and DIR/test/<class>/ when present, or in DIR/<class>/
                        (validation split off by --val-split); classes are the sorted folder
                        names; see --channels, --image-size, --skip-bad-images

`candletop data-info --data SPEC` shows what a source holds.";

const AUGMENT_HELP: &str = "Augmentation of training images, per sample, with torchvision's
semantics [default: none]. SPEC is none or transforms separated by commas, applied in the
order written; normalisation comes after them:

  crop[:S1[-S2]][:R1-R2]  RandomResizedCrop back to the input size: a box of S1..S2 of the area
                          (0.08-1) with aspect ratio R1..R2 (0.75-1.333), bilinear
  pad-crop[:P]            RandomCrop of the input size after zero padding of P pixels (4)
  flip[:P]                RandomHorizontalFlip with probability P (0.5)
  jitter:B[:C[:S[:H]]]    ColorJitter: brightness B, contrast C (B), saturation S (B), hue H (0,
                          at most 0.5); saturation and hue only change RGB images
  rotate[:DEG]            RandomRotation by up to DEG degrees either way (10), nearest, zero fill
  erase[:P]               RandomErasing with probability P (0.5): a box of 2-33% of the area,
                          aspect 0.3-3.3, set to 0 after normalisation (the mean)

Each sample's draws depend only on the seed, the epoch and its place in the epoch: runs repeat
and resume exactly. In the UI, a turns augmentation off and on (without --augment, on means
pad-crop by an eighth of the side and flip) and g shows augmented samples.
Examples: pad-crop:4,flip   crop:0.8,flip,jitter:0.2   flip,rotate:15,erase";

const SCHEDULE_HELP: &str = "How the learning rate moves over the run [default: constant]

  SPEC = [warmup=STEPS[:START]+]KIND, KIND one of:
  constant
  step:EVERY[:GAMMA]        x GAMMA (0.1) after every EVERY epochs (PyTorch StepLR)
  multistep:E1,E2,..[:GAMMA]
                            x GAMMA (0.1) after epochs E1, E2, ... (MultiStepLR)
  exp:GAMMA                 x GAMMA after every epoch (ExponentialLR)
  cosine[:min=LR][,restart=EPOCHS][,mult=N]
                            cosine from --lr down to min (0) over the run's steps
                            (CosineAnnealingLR); with restart, periods of EPOCHS epochs, each
                            N (1) times longer than the last (CosineAnnealingWarmRestarts)
  onecycle[:max=LR][,pct=0.3][,div=25][,final_div=1e4][,anneal=cos|linear][,three_phase]
          [,momentum=0.85-0.95|off]
                            up from max/div to max (--lr when not given) over the first pct of
                            the steps, then down to max/div/final_div; momentum (SGD) or Adam's
                            beta1 cycles the other way (OneCycleLR)
  plateau[:monitor=val_loss|val_acc][,mode=min|max][,factor=0.1][,patience=10][,threshold=1e-4]
         [,threshold_mode=rel|abs][,cooldown=0][,min_lr=0][,eps=1e-8]
                            x factor when the monitored validation metric has not improved
                            for patience epochs (ReduceLROnPlateau, PyTorch's defaults)
  warmup=STEPS[:START]+     first a linear ramp over STEPS steps from START (0.01) times the
                            schedule's first LR (LinearLR, then the schedule: SequentialLR)

Units: step, multistep and exp change the LR at the end of an epoch; cosine and onecycle every
step; warmup counts steps; plateau decides at the end of each epoch.
Examples: step:7:0.1  cosine:min=1e-5  onecycle:max=0.01  plateau:patience=3,factor=0.5
          warmup=500+cosine";

const EXIT_HELP: &str = "Exit status:
  0  the run completed, or was stopped (q, Ctrl-C, SIGTERM, SIGHUP, --max-steps)
  1  the run failed (an error while training)
  2  bad input: a flag, a config file, a data file or a checkpoint (one line says which)
  3  the loss or a gradient turned NaN or infinite under --on-nan stop (headless's default),
     or more than --max-rollbacks times under rollback; the update was skipped and
     checkpoints/last.h5 holds the last good weights (the terminal UI pauses instead)";

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

    /// Only one part: kernels, checkpoints, data, doctor or ui [default: all]
    #[arg(long, value_name = "PART", value_parser = ["kernels", "checkpoints", "data", "doctor", "ui"])]
    pub only: Option<String>,
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
        let mut c = base;
        if let Some(d) = &self.data {
            c.data = d.parse::<DataSpec>()?;
        }
        if let Some(s) = &self.schedule {
            c.schedule = s.parse()?;
        }
        if let Some(a) = &self.augment {
            c.augment = a.parse()?;
        }
        if let Some(n) = &self.normalize {
            c.normalize = n.parse().map_err(ConfigError::Data)?;
        }
        if let Some(s) = &self.image_size {
            c.image_size = Some(s.parse().map_err(|_| ConfigError::Invalid {
                flag: "--image-size",
                value: s.clone(),
                problem: "expected N or WxH, each 1 to 4096 pixels",
            })?);
        }
        if self.skip_bad_images {
            c.skip_bad_images = true;
        }
        if self.stream_images {
            c.stream_images = true;
        }
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field.clone() { c.$field = v; } )* };
        }
        set!(
            val_split,
            arch,
            activation,
            dropout,
            epochs,
            batch_size,
            lr,
            label_smoothing
        );
        set!(
            seed,
            threads,
            log_every,
            keep_last,
            best_metric,
            save_every_steps,
            max_steps
        );
        set!(
            kernels,
            channels,
            subset,
            imbalance,
            class_weights,
            sampler,
            clip_grad_norm
        );
        let o = &mut c.optimizer;
        if let Some(k) = self.optimizer {
            o.kind = k;
        }
        if let Some(m) = self.momentum {
            o.hyper.momentum = m;
        }
        if let Some(w) = self.weight_decay {
            o.hyper.weight_decay = w;
        }
        if self.nesterov {
            o.hyper.nesterov = true;
        }
        if self.batch_norm {
            c.batch_norm = true;
        }
        if self.no_batch_norm {
            c.batch_norm = false;
        }
        if self.run_dir.is_some() {
            c.run_dir = self.run_dir.clone();
        }
        c.validate()?;
        Ok(c)
    }

    /// The settings (config keys) the command line gives: what a resumed run changes.
    pub fn given(&self) -> Vec<String> {
        let flags = [
            ("data", self.data.is_some()),
            ("val_split", self.val_split.is_some()),
            ("channels", self.channels.is_some()),
            ("image_size", self.image_size.is_some()),
            ("skip_bad_images", self.skip_bad_images),
            ("stream_images", self.stream_images),
            ("subset", self.subset.is_some()),
            ("imbalance", self.imbalance.is_some()),
            ("normalize", self.normalize.is_some()),
            ("augment", self.augment.is_some()),
            ("class_weights", self.class_weights.is_some()),
            ("sampler", self.sampler.is_some()),
            ("clip_grad_norm", self.clip_grad_norm.is_some()),
            ("arch", self.arch.is_some()),
            ("activation", self.activation.is_some()),
            ("batch_norm", self.batch_norm || self.no_batch_norm),
            ("dropout", self.dropout.is_some()),
            ("epochs", self.epochs.is_some()),
            ("batch_size", self.batch_size.is_some()),
            ("lr", self.lr.is_some()),
            ("schedule", self.schedule.is_some()),
            ("optimizer", self.optimizer.is_some()),
            ("momentum", self.momentum.is_some()),
            ("nesterov", self.nesterov),
            ("weight_decay", self.weight_decay.is_some()),
            ("label_smoothing", self.label_smoothing.is_some()),
            ("seed", self.seed.is_some()),
            ("threads", self.threads.is_some()),
            ("log_every", self.log_every.is_some()),
            ("run_dir", self.run_dir.is_some()),
            ("keep_last", self.keep_last.is_some()),
            ("best_metric", self.best_metric.is_some()),
            ("save_every_steps", self.save_every_steps.is_some()),
            ("max_steps", self.max_steps.is_some()),
            ("kernels", self.kernels.is_some()),
        ];
        flags
            .into_iter()
            .filter(|(_, given)| *given)
            .map(|(key, _)| key.to_string())
            .collect()
    }
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
        let e = Cli::try_parse_from(["candletop", "--lr", "-0.1"]).unwrap_err();
        assert_eq!(
            one_line(&e),
            "invalid value '-0.1' for '--lr <LR>': '-0.1' is not a positive learning rate"
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
