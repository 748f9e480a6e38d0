//! The messages between the training thread and whoever watches it (the TUI, the headless line
//! reporter, tests). Plain data only: no candle or ratatui type crosses a channel, and every
//! message serialises (metrics.jsonl holds the events as they are; a trainer in another process
//! will send the same messages over a socket).
//!
//! Two channels carry events out of the trainer: a bounded one for per-step metrics, where a
//! full channel makes the trainer fold the step into the next message instead of waiting, and an
//! unbounded one for state events (epoch results, pauses, errors, the end), which are rare and
//! never dropped. Commands go the other way on an unbounded channel the trainer polls between
//! steps.

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};

use crate::schedule::{PlateauCut, Schedule};

/// A learning rate: a positive, finite number. The one check for every way a learning rate
/// arrives (flags, config files, the UI's prompt, commands to the trainer).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct LearningRate(f64);

impl LearningRate {
    /// The smallest there is.
    pub const SMALLEST: LearningRate = LearningRate(f64::MIN_POSITIVE);

    pub fn new(lr: f64) -> Result<Self, String> {
        if lr.is_finite() && lr > 0.0 {
            Ok(Self(lr))
        } else {
            Err(format!("'{lr}' is not a positive learning rate"))
        }
    }

    /// A learning rate as a person types it: `0.003`, `3e-3`.
    pub fn parse(input: &str) -> Result<Self, String> {
        let s = input.trim();
        match s.parse::<f64>() {
            Ok(v) => Self::new(v).map_err(|_| format!("'{s}' is not a positive learning rate")),
            Err(_) if s.is_empty() => Err("type a learning rate, e.g. 0.003 or 3e-3".into()),
            Err(_) => Err(format!("'{s}' is not a number")),
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for LearningRate {
    type Error = String;
    fn try_from(lr: f64) -> Result<Self, String> {
        Self::new(lr)
    }
}

impl From<LearningRate> for f64 {
    fn from(lr: LearningRate) -> f64 {
        lr.0
    }
}

/// What the user asks of the trainer. Applied between two steps; one the trainer cannot carry
/// out is answered with `Event::Refused`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", content = "value", rename_all = "snake_case")]
pub enum Command {
    /// Use this learning rate from the next step on.
    SetLr(f64),
    /// Multiply the learning rate by this factor.
    ScaleLr(f64),
    /// Follow this schedule (a `--schedule` spec) from the next step on.
    SetSchedule(String),
    /// Run the LR range test on a copy of the model and optimizer (the run pauses meanwhile).
    FindLr,
    /// Augment training images (true) or not, from the next batch on.
    SetAugment(bool),
    /// Weight the loss by class ("balanced") or not, from the next step on.
    SetClassWeights(bool),
    /// Send this many training images as the model sees them now (augmented when on).
    ShowSamples(u32),
    /// Clip the gradients' global L2 norm to this from the next step on; 0 turns clipping off.
    SetClipGradNorm(f64),
    /// Apply the doctor's remedy for a finding, keeping the run as it was in memory so that
    /// `UndoRemedy` can go back to it for the next `REMEDY_TRIAL_STEPS` steps.
    ApplyRemedy(Remedy),
    /// Go back to the run as it was before the last remedy (weights, optimizer, schedule,
    /// settings), while its trial lasts.
    UndoRemedy,
    /// Measure the activations of every layer on the next batch (besides every
    /// `ACTIVATION_EVERY` steps).
    ProbeActivations,
    Pause,
    Resume,
    /// One step while paused.
    Step,
    /// Save `last.h5` now.
    Save,
    /// Finish the current step, then end cleanly.
    Stop,
}

/// A setting a resumed run changed from its checkpoint's, as given on the command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingChange {
    /// The flag, e.g. `--lr`.
    pub flag: String,
    pub old: String,
    pub new: String,
}

/// Where a resumed run came from and what it does differently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resumed {
    pub from: String,
    /// The step and epoch it continues after.
    pub step: u64,
    pub epoch: usize,
    /// Flags given with `--resume` that changed a setting.
    pub changes: Vec<SettingChange>,
    /// What else a reader should know, e.g. optimizer state that starts fresh.
    pub notes: Vec<String>,
}

/// The data a run trains on, beyond its description: class balance and the live switches.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DataFacts {
    /// Images per class, in the order of `RunInfo::classes`.
    pub train_counts: Vec<usize>,
    pub val_counts: Vec<usize>,
    pub test_counts: Vec<usize>,
    /// The augmentation `a` switches (a spec), and whether it is on.
    pub augment: String,
    pub augmenting: bool,
    /// The loss's class weights when on (empty when off), and what "on" uses.
    pub class_weights: Vec<f32>,
    pub balanced_weights: Vec<f32>,
    /// How an epoch visits the images: "shuffle" or "balanced".
    pub sampler: String,
    /// Files left out with `--skip-bad-images`: "path: problem".
    pub skipped: Vec<String>,
}

impl DataFacts {
    /// The transforms' names when augmentation is on, e.g. "pad-crop flip".
    pub fn active_transforms(&self) -> Option<String> {
        if !self.augmenting {
            return None;
        }
        let names: Vec<&str> = self
            .augment
            .split(',')
            .map(|t| t.split(':').next().unwrap_or(t))
            .filter(|t| !t.is_empty() && *t != "none")
            .collect();
        (!names.is_empty()).then(|| names.join(" "))
    }
}

/// What the training doctor found: the causes of a stalled run it watches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    LrTooHigh,
    LrTooLow,
    Plateau,
    Overfitting,
    Underfitting,
    VanishingGradients,
    ExplodingGradients,
    ClassImbalance,
    /// A class far below the others in validation accuracy, though it has as many images.
    WeakClass,
    SmallBatchNorm,
    InitialLoss,
    /// Most units of a layer put out zero for a whole batch (ReLU).
    DeadUnits,
    /// Most of a layer's inputs sit where its activation is flat (sigmoid, tanh).
    SaturatedActivations,
}

impl FindingKind {
    /// As a person reads it in a log line.
    pub fn title(self) -> &'static str {
        match self {
            Self::LrTooHigh => "learning rate too high",
            Self::LrTooLow => "learning rate too low",
            Self::Plateau => "plateau",
            Self::Overfitting => "overfitting",
            Self::Underfitting => "underfitting",
            Self::VanishingGradients => "vanishing gradients",
            Self::ExplodingGradients => "exploding gradients",
            Self::ClassImbalance => "class imbalance",
            Self::WeakClass => "a class far behind",
            Self::SmallBatchNorm => "batch norm on small batches",
            Self::InitialLoss => "initial loss off",
            Self::DeadUnits => "dead units",
            Self::SaturatedActivations => "saturated activations",
        }
    }
}

/// How much a finding matters: a warning only while the run is also not improving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
}

impl Severity {
    /// As a log line starts: "warning" or "note".
    pub fn word(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Info => "note",
        }
    }
}

/// One finding: what, how bad, the numbers behind it, and what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    pub evidence: String,
    pub action: String,
    /// The change the doctor can make live (the key `r`), when there is one; the others need
    /// a restart or the user's judgement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<Remedy>,
}

/// A change to a live run that a finding suggests, which can be taken back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "remedy", content = "value", rename_all = "snake_case")]
pub enum Remedy {
    /// Multiply the learning rate by this factor.
    ScaleLr(f64),
    /// Augmentation on (true) or off.
    Augment(bool),
    /// Balanced class weights on (true) or off.
    ClassWeights(bool),
    /// Clip the gradients' global norm to this (0: off).
    ClipGradNorm(f64),
    /// Not live: write a config file for a new run with these settings changed (config keys
    /// and values as on the command line), to start with `candletop --config FILE`.
    Restart(Vec<Setting>),
}

/// One setting of a suggested config: its key and its value as the command line gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub key: String,
    pub value: String,
}

impl Setting {
    pub fn new(key: &str, value: impl ToString) -> Self {
        Self {
            key: key.into(),
            value: value.to_string(),
        }
    }
}

impl Remedy {
    /// As a person reads it: "cut the LR x0.1".
    pub fn describe(&self) -> String {
        match self {
            Self::ScaleLr(f) if *f < 1.0 => format!("cut the LR x{f}"),
            Self::ScaleLr(f) => format!("raise the LR x{f}"),
            Self::Augment(true) => "turn augmentation on".into(),
            Self::Augment(false) => "turn augmentation off".into(),
            Self::ClassWeights(true) => "weight the loss by class".into(),
            Self::ClassWeights(false) => "stop weighting the loss by class".into(),
            Self::ClipGradNorm(m) if *m > 0.0 => format!("clip gradients to norm {m}"),
            Self::ClipGradNorm(_) => "stop clipping gradients".into(),
            Self::Restart(settings) => format!(
                "write a config to restart with {}",
                settings
                    .iter()
                    .map(|s| format!("{} {}", s.key, s.value))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Steps after a remedy during which it can be undone; at the end the doctor says whether it
/// helped (the loss of these steps against the loss of as many steps before).
pub const REMEDY_TRIAL_STEPS: u64 = 200;

/// Steps between two measurements of the activations (the doctor's dead-unit and saturation
/// rules read them).
pub const ACTIVATION_EVERY: u64 = 100;

/// Whether a remedy helped: the mean training loss of the trial against the same number of
/// steps before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The loss fell by more than 2%.
    Helped,
    /// Within 2%.
    NoChange,
    /// The loss rose by more than 2%.
    Worse,
}

impl Verdict {
    pub fn of(before: f64, after: f64) -> Self {
        let change = (after - before) / before.abs().max(1e-12);
        if !after.is_finite() || change > 0.02 {
            Self::Worse
        } else if change < -0.02 {
            Self::Helped
        } else {
            Self::NoChange
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Self::Helped => "helped",
            Self::NoChange => "made no difference",
            Self::Worse => "made it worse",
        }
    }
}

/// What became of a remedy: a line of the run's history (metrics.jsonl and the checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemedyRecord {
    /// The step after which it was applied.
    pub step: u64,
    pub remedy: Remedy,
    /// The finding it answered.
    pub finding: FindingKind,
    /// The step after which it was undone, if it was.
    #[serde(default)]
    pub undone_at: Option<u64>,
    /// Mean loss before and during the trial, and the verdict, once the trial is over.
    #[serde(default)]
    pub verdict: Option<(f64, f64, Verdict)>,
}

/// Activation statistics of one layer (a conv block or a hidden linear layer), measured on
/// one training batch in train mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerActivations {
    /// The layer's parameter prefix ("features.0"): its weight is `<layer>.weight`.
    pub layer: String,
    /// Of the activation's output.
    pub mean: f64,
    pub std: f64,
    /// Share of units (channel x position, or feature) whose output is zero for the whole
    /// batch (ReLU), or whose input is negative for all of it (leaky ReLU, ELU); None for
    /// sigmoid and tanh, which have no dead zone.
    pub dead: Option<f64>,
    /// Share of outputs within 1% of a sigmoid/tanh bound, or of ELU inputs below -5; None for
    /// (leaky) ReLU, which do not saturate. The doctor and the gradient panel take the larger
    /// of this and `outside_5` for the activations that saturate.
    pub saturated: Option<f64>,
    /// Share of inputs (pre-activations) outside [-5, 5] (DeepDiagnosis).
    pub outside_5: f64,
    /// Share of exactly-zero entries of the layer's weight gradient at that step.
    pub zero_grad: f64,
}

/// Training images as the model sees them (augmented when on), for a person to look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleGrid {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Each image's pixels, channel planes, 0-255.
    pub images: Vec<Vec<u8>>,
    pub labels: Vec<u32>,
    /// Whether augmentation was on when they were drawn.
    pub augmented: bool,
}

/// Static facts about the run, sent once at the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub data: String,
    pub model: String,
    pub param_count: usize,
    pub optimizer: String,
    /// Names of the parameters, in the order of every per-layer vector below.
    pub layers: Vec<String>,
    pub classes: Vec<String>,
    pub epochs: usize,
    pub steps_per_epoch: usize,
    /// The step the run will end at: all epochs, or `--max-steps`.
    pub total_steps: u64,
    pub batch_size: usize,
    pub run_dir: String,
    /// Set when the run continues a checkpoint.
    pub resumed: Option<Resumed>,
    /// The learning-rate schedule the run starts with.
    pub schedule: Schedule,
    /// Class balance and the data switches.
    #[serde(default)]
    pub data_facts: DataFacts,
    /// The gradients' global L2 norm is clipped to this; 0: no clipping.
    #[serde(default)]
    pub clip_grad_norm: f64,
}

/// Metrics of one training step, or of several folded together when the receiver lagged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Global step (1-based) of the latest step included.
    pub step: u64,
    /// Epoch (1-based) of that step.
    pub epoch: usize,
    /// How many steps this message covers (1 unless folded).
    pub steps: u32,
    /// Mean training loss and batch accuracy over the steps covered.
    pub loss: f64,
    pub accuracy: f64,
    /// Learning rate of the latest step.
    pub lr: f64,
    /// Per-parameter gradient L2 norm and ||update|| / ||weight|| of the latest step.
    pub grad_norms: Vec<f64>,
    pub update_ratios: Vec<f64>,
    /// Training throughput, images per second, measured over recent steps.
    pub images_per_sec: f64,
}

impl StepMetrics {
    /// Folds a newer step into this one: means for loss and accuracy, the latest for the rest.
    pub fn fold(&mut self, newer: StepMetrics) {
        let (a, b) = (self.steps as f64, newer.steps as f64);
        self.loss = (self.loss * a + newer.loss * b) / (a + b);
        self.accuracy = (self.accuracy * a + newer.accuracy * b) / (a + b);
        self.steps += newer.steps;
        self.step = newer.step;
        self.epoch = newer.epoch;
        self.lr = newer.lr;
        self.grad_norms = newer.grad_norms;
        self.update_ratios = newer.update_ratios;
        self.images_per_sec = newer.images_per_sec;
    }
}

/// Results of one finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub step: u64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    /// Validation accuracy of each class, in the order of `RunInfo::classes`.
    pub val_class_accuracy: Vec<f64>,
    pub lr: f64,
    pub images_per_sec: f64,
    pub elapsed_secs: f64,
}

/// An evaluation of a whole split (the test set at the end of the run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    pub split: String,
    pub loss: f64,
    pub accuracy: f64,
    pub class_accuracy: Vec<f64>,
    pub images_per_sec: f64,
}

/// Why a run ended (without an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// All epochs done.
    Completed,
    /// A stop command or the step limit.
    Stopped,
    /// The loss or a gradient turned NaN or infinite and the run was set to stop on it
    /// (`OnNonFinite::Stop`); the weights are the last good ones.
    NonFinite,
}

/// What the trainer does when a step's loss or gradient is NaN or infinite. Either way the
/// step's update is skipped, so the weights stay the last good ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnNonFinite {
    /// Go back to the last good state, pause and wait for the user (who can cut the LR and
    /// resume): the terminal UI.
    Pause,
    /// Save `last.h5` and end the run: headless, where nobody can press a key.
    Stop,
    /// Go back to the last good state, cut the LR by 10 and go on, a few times at most.
    Rollback,
}

/// Who changed the learning rate (besides the schedule's own course).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSource {
    User,
    /// Reduce-on-plateau.
    Plateau,
}

/// Why the schedule changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleChange {
    /// The user chose another schedule.
    Set,
    /// The user changed the LR: the curve moved with it.
    Scaled,
    /// Reduce-on-plateau cut the LR.
    Plateau,
}

/// One point of an LR range test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FinderPoint {
    pub lr: f64,
    pub loss: f64,
    /// The loss's exponential moving average, bias-corrected.
    pub smoothed: f64,
}

/// The LR range test's result: the curve, and the suggestion with how it was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrFinding {
    pub points: Vec<FinderPoint>,
    /// Index into `points` of the suggested LR.
    pub suggestion: Option<usize>,
    /// How the suggestion was chosen, or why there is none.
    pub how: String,
    /// Why the sweep ended early, if it did.
    pub stopped: Option<String>,
}

impl LrFinding {
    /// The point to offer first: the suggestion, or the middle of the curve.
    pub fn first_pick(&self) -> Option<usize> {
        let n = self.points.len();
        self.suggestion.or((n > 0).then_some(n / 2))
    }
}

/// Everything the trainer reports except per-step metrics. Rare (a few per epoch), so the
/// size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Started(RunInfo),
    Epoch(EpochMetrics),
    Evaluated(EvalMetrics),
    LrChanged {
        step: u64,
        old: f64,
        new: f64,
        source: LrSource,
    },
    /// The schedule now in force (the plan a watcher draws comes from it).
    ScheduleChanged {
        step: u64,
        schedule: Schedule,
        why: ScheduleChange,
    },
    /// Reduce-on-plateau cut the LR at the end of an epoch.
    PlateauCut {
        step: u64,
        epoch: usize,
        monitor: String,
        cut: PlateauCut,
    },
    /// The LR range test is under way: `done` of `total` steps.
    LrFinderProgress {
        step: u64,
        done: usize,
        total: usize,
    },
    LrFound {
        step: u64,
        finding: LrFinding,
    },
    /// Augmentation turned on or off, from the batch after `step`.
    AugmentChanged {
        step: u64,
        on: bool,
        augment: String,
    },
    /// Gradient clipping changed, from the step after `step` (0: off).
    ClippingChanged {
        step: u64,
        max_norm: f64,
    },
    /// The loss's class weights changed, from the step after `step` (empty: none).
    ClassWeightsChanged {
        step: u64,
        weights: Vec<f32>,
    },
    /// The doctor raised a finding (or changed its severity or evidence), or it cleared.
    Finding {
        step: u64,
        #[serde(flatten)]
        finding: Finding,
        cleared: bool,
    },
    /// Training images as the model sees them, asked for with `ShowSamples`.
    Samples {
        step: u64,
        grid: SampleGrid,
    },
    Paused {
        step: u64,
    },
    Resumed {
        step: u64,
    },
    /// A command the trainer did not carry out, and why.
    Refused {
        step: u64,
        command: Command,
        reason: String,
    },
    /// The loss or a gradient norm was NaN or infinite: the step's update was skipped, and the
    /// run paused, stops or goes on (`then`).
    NonFinite {
        step: u64,
        epoch: usize,
        what: String,
        then: OnNonFinite,
        /// The step whose weights, optimizer and LR the run went back to, if it did.
        #[serde(default)]
        rolled_back_to: Option<u64>,
        /// The LR the run goes on with (`Rollback` cuts it by 10).
        #[serde(default)]
        lr: Option<f64>,
    },
    /// A remedy was applied after `step`; `UndoRemedy` can take it back until `until`.
    RemedyApplied {
        step: u64,
        record: RemedyRecord,
        until: u64,
    },
    /// The last remedy was undone: the run is as it was at `record.step`.
    RemedyUndone {
        step: u64,
        record: RemedyRecord,
    },
    /// A remedy's trial is over: `record.verdict` says whether it helped.
    RemedyVerdict {
        step: u64,
        record: RemedyRecord,
    },
    /// The doctor's restart remedy was written: a config file for a new run.
    ConfigSuggested {
        step: u64,
        path: String,
        finding: FindingKind,
        settings: Vec<Setting>,
    },
    /// Activation statistics of every layer, measured on the batch of `step`.
    Activations {
        step: u64,
        layers: Vec<LayerActivations>,
    },
    /// A checkpoint was written: its size, how long the background write took and how long
    /// the snapshot held the training thread.
    CheckpointSaved {
        step: u64,
        path: String,
        bytes: u64,
        write_secs: f64,
        hold_ms: f64,
    },
    /// A checkpoint could not be written; training goes on and earlier files stay intact.
    /// `reason` is one line (e.g. "no space left on device"); `detail` the whole story.
    CheckpointFailed {
        step: u64,
        path: String,
        reason: String,
        detail: String,
    },
    /// Something went wrong that does not end the run (e.g. metrics.jsonl cannot be written).
    Warning {
        step: u64,
        message: String,
    },
    Finished {
        step: u64,
        epoch: usize,
        reason: FinishReason,
        elapsed_secs: f64,
    },
    /// The run cannot go on: it is over.
    Error {
        message: String,
    },
}

impl Event {
    /// True for the events that end the stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Event::Finished { .. } | Event::Error { .. })
    }
}

/// One line of a run's record (`metrics.jsonl`): a step's metrics (the means since the last
/// step record) or an event. The only definition of a line: the trainer writes it, and every
/// reader (view, replay, diagnose, ls, plot) reads it back through `run_dir::Recorded`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Step(StepMetrics),
    Event(Event),
}

/// Why a line is not a record this version reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordProblem {
    /// A type this version does not know (a newer version wrote it): skipped and counted.
    Unknown(String),
    /// A known type with fields that do not fit it, or no type at all.
    Malformed(String),
}

impl Record {
    /// The record a JSON object holds; its `type` says which.
    pub fn from_value(v: serde_json::Value) -> Result<Self, RecordProblem> {
        let Some(kind) = v.get("type").and_then(|t| t.as_str()).map(str::to_string) else {
            return Err(RecordProblem::Malformed("a record without a type".into()));
        };
        if kind == "step" {
            return StepMetrics::deserialize(v)
                .map(Record::Step)
                .map_err(|e| RecordProblem::Malformed(format!("a step record: {e}")));
        }
        match Event::deserialize(v) {
            Ok(e) => Ok(Record::Event(e)),
            // serde's word for a tag that names no variant.
            Err(e) if e.to_string().starts_with("unknown variant") => {
                Err(RecordProblem::Unknown(kind))
            }
            Err(e) => Err(RecordProblem::Malformed(format!("a {kind} record: {e}"))),
        }
    }
}

impl Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Tagged<'a> {
            Step(&'a StepMetrics),
        }
        match self {
            Record::Step(m) => Tagged::Step(m).serialize(s),
            Record::Event(e) => e.serialize(s),
        }
    }
}

/// Capacity of the per-step channel: about a second of steps at full speed.
pub const STEP_CHANNEL_CAPACITY: usize = 64;

/// The trainer's side of the channels.
pub struct TrainerLink {
    steps: Sender<StepMetrics>,
    events: Sender<Event>,
    commands: Receiver<Command>,
    /// A step that did not fit in the channel, waiting to be folded into the next one.
    pending: Option<StepMetrics>,
}

/// The watcher's side of the channels.
pub struct MonitorLink {
    pub steps: Receiver<StepMetrics>,
    pub events: Receiver<Event>,
    pub commands: Sender<Command>,
}

pub fn link() -> (TrainerLink, MonitorLink) {
    let (steps_tx, steps_rx) = bounded(STEP_CHANNEL_CAPACITY);
    let (events_tx, events_rx) = unbounded();
    let (cmd_tx, cmd_rx) = unbounded();
    (
        TrainerLink {
            steps: steps_tx,
            events: events_tx,
            commands: cmd_rx,
            pending: None,
        },
        MonitorLink {
            steps: steps_rx,
            events: events_rx,
            commands: cmd_tx,
        },
    )
}

impl TrainerLink {
    /// A link nobody listens to (benchmarks and tests that drive single steps).
    pub fn detached() -> Self {
        link().0
    }

    /// Sends step metrics without ever blocking; folds them into the next step when full.
    pub fn send_step(&mut self, m: StepMetrics) {
        let m = match self.pending.take() {
            Some(mut p) => {
                p.fold(m);
                p
            }
            None => m,
        };
        match self.steps.try_send(m) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(m)) => self.pending = Some(m),
        }
    }

    /// Sends a state event (never dropped, never blocks). Pending step metrics go first so the
    /// watcher sees a step before the epoch that contains it, when there is room. False when
    /// nobody listens any more.
    pub fn send(&mut self, e: Event) -> bool {
        if let Some(p) = self.pending.take() {
            if let Err(TrySendError::Full(p)) = self.steps.try_send(p) {
                self.pending = Some(p);
            }
        }
        self.events.send(e).is_ok()
    }

    /// Events sent and not yet received: how far behind the watcher is.
    pub fn events_behind(&self) -> usize {
        self.events.len()
    }

    pub fn try_command(&self) -> Option<Command> {
        self.commands.try_recv().ok()
    }

    /// Waits up to `timeout` for a command (used while paused).
    pub fn wait_command_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Command, crossbeam_channel::RecvTimeoutError> {
        self.commands.recv_timeout(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(i: u64, loss: f64) -> StepMetrics {
        StepMetrics {
            step: i,
            epoch: 1,
            steps: 1,
            loss,
            accuracy: 0.5,
            lr: 0.1,
            grad_norms: vec![i as f64],
            update_ratios: vec![0.0],
            images_per_sec: 1.0,
        }
    }

    #[test]
    fn a_full_channel_folds_steps_instead_of_blocking() {
        let (mut t, m) = link();
        for i in 1..=(STEP_CHANNEL_CAPACITY as u64 + 10) {
            t.send_step(step(i, i as f64));
        }
        t.send(Event::Paused { step: 74 });
        let got: Vec<StepMetrics> = m.steps.try_iter().collect();
        assert_eq!(got.len(), STEP_CHANNEL_CAPACITY);
        // Once there is room again, the folded steps arrive as one message.
        t.send_step(step(75, 75.0));
        let folded = m.steps.try_recv().unwrap();
        assert_eq!(folded.steps, 11);
        assert_eq!(folded.step, 75);
        assert_eq!(folded.grad_norms, vec![75.0]);
        assert!((folded.loss - (65..=75).sum::<u64>() as f64 / 11.0).abs() < 1e-9);
        let total: u32 = got.iter().map(|s| s.steps).sum::<u32>() + folded.steps;
        assert_eq!(total, 75);
        assert_eq!(m.events.try_recv().unwrap(), Event::Paused { step: 74 });
    }

    #[test]
    fn learning_rates_are_positive_and_finite() {
        assert_eq!(
            LearningRate::parse(" 1e-4 ").map(LearningRate::get),
            Ok(1e-4)
        );
        assert_eq!(LearningRate::new(0.5).map(f64::from), Ok(0.5));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(LearningRate::new(bad).is_err(), "{bad}");
        }
        assert!(LearningRate::parse("abc")
            .unwrap_err()
            .contains("not a number"));
        assert!(LearningRate::parse("-1")
            .unwrap_err()
            .contains("not a positive learning rate"));
        assert!(LearningRate::parse("").unwrap_err().contains("type a"));
        assert!(serde_json::from_str::<LearningRate>("-3").is_err());
        assert_eq!(serde_json::to_string(&LearningRate(0.25)).unwrap(), "0.25");
    }

    #[test]
    fn commands_and_events_survive_json() {
        for c in [
            Command::SetLr(0.01),
            Command::ScaleLr(0.5),
            Command::Pause,
            Command::Stop,
        ] {
            let text = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), c, "{text}");
        }
        let e = Event::Refused {
            step: 3,
            command: Command::ScaleLr(0.0),
            reason: "x".into(),
        };
        let text = serde_json::to_string(&e).unwrap();
        assert!(
            text.starts_with(
                r#"{"type":"refused","step":3,"command":{"command":"scale_lr","value":0.0}"#
            ),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
    }
}
