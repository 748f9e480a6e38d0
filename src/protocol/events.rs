//! What the trainer reports: the run's facts at the start, the metrics of steps and epochs,
//! and every event of the run.

use serde::{Deserialize, Serialize};

use super::commands::{Command, Horizon};
use super::findings::{Finding, FindingKind, LayerActivations, RemedyRecord, Setting};
use crate::schedule::{PlateauCut, Schedule};
pub use crate::stopping::Stopping;

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
    /// Each channel's mean and standard deviation of the training inputs as the model gets
    /// them (normalised); empty in records of versions before it.
    #[serde(default)]
    pub input_mean: Vec<f64>,
    #[serde(default)]
    pub input_std: Vec<f64>,
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
    /// How the run may end early: early stopping, the target accuracy (records of versions
    /// before them: none).
    #[serde(default)]
    pub stopping: Stopping,
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
    /// The largest step loss among the steps covered (the doctor's spikes); 0 in records of
    /// versions before it.
    #[serde(default)]
    pub loss_max: f64,
    /// Learning rate of the latest step.
    pub lr: f64,
    /// Per-parameter gradient L2 norm and ||update|| / ||weight|| of the latest step.
    pub grad_norms: Vec<f64>,
    pub update_ratios: Vec<f64>,
    /// Training throughput, images per second, measured over recent steps.
    pub images_per_sec: f64,
    /// A what-if branch's training on the same batches, while a comparison runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<BranchStep>,
}

impl StepMetrics {
    /// Folds a newer step into this one: means for loss and accuracy, the latest for the rest.
    pub fn fold(&mut self, newer: StepMetrics) {
        let (a, b) = (self.steps as f64, newer.steps as f64);
        self.loss = (self.loss * a + newer.loss * b) / (a + b);
        self.accuracy = (self.accuracy * a + newer.accuracy * b) / (a + b);
        self.loss_max = self.loss_max.max(newer.loss_max);
        self.steps += newer.steps;
        self.step = newer.step;
        self.epoch = newer.epoch;
        self.lr = newer.lr;
        self.grad_norms = newer.grad_norms;
        self.update_ratios = newer.update_ratios;
        self.images_per_sec = newer.images_per_sec;
        self.branch = match (self.branch, newer.branch) {
            (Some(a), Some(b)) => Some(a.fold(b)),
            (a, b) => b.or(a),
        };
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
    /// For each class (same order), the class its validation images were most often taken
    /// for, and the share of its images taken for it. Records from before it have none.
    #[serde(default)]
    pub val_confusion: Vec<Confusion>,
    pub lr: f64,
    pub images_per_sec: f64,
    pub elapsed_secs: f64,
}

/// Where a class's images went wrong: the class most of them were taken for (the class itself
/// with a share of 0 when none was), and the share of the class's images taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    pub class: usize,
    pub share: f64,
}

/// How a branch did against the main line over the same batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BranchCall {
    /// Lower training loss than the main line by more than the noise.
    Better,
    /// Higher by more than the noise, or not finite.
    Worse,
    /// Within the noise.
    Same,
}

/// A what-if comparison in numbers: the mean training loss of each line over the same batches,
/// the branch's mean paired difference and its noise (two standard errors), each line's
/// validation at the end, and whether the branch goes on (`kept_branch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchVerdict {
    pub change: Vec<Setting>,
    pub forked_at: u64,
    pub steps: u64,
    pub main_loss: f64,
    pub branch_loss: f64,
    pub diff: f64,
    pub noise: f64,
    pub call: BranchCall,
    pub main_val_loss: f64,
    pub main_val_accuracy: f64,
    pub branch_val_loss: f64,
    pub branch_val_accuracy: f64,
    /// The branch goes on (decided by the verdict, when nobody was asked).
    pub kept_branch: bool,
    /// The run waits, paused, for a watcher to keep one line (`Command::KeepLine`).
    #[serde(default)]
    pub awaiting: bool,
}

/// A branch's training on the steps a step message covers: mean loss and accuracy over the
/// same batches as the main line's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BranchStep {
    pub loss: f64,
    pub accuracy: f64,
    pub steps: u32,
}

impl BranchStep {
    /// The mean over both messages' steps.
    pub fn fold(self, newer: Self) -> Self {
        let (a, b) = (self.steps as f64, newer.steps as f64);
        Self {
            loss: (self.loss * a + newer.loss * b) / (a + b),
            accuracy: (self.accuracy * a + newer.accuracy * b) / (a + b),
            steps: self.steps + newer.steps,
        }
    }
}

/// A what-if comparison as the run's history keeps it (metrics.jsonl says it step by step; the
/// checkpoint keeps these): where it forked, the change, and what became of it. All outcomes
/// empty: still under way when the checkpoint was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchRecord {
    pub forked_at: u64,
    pub until: u64,
    pub change: Vec<Setting>,
    #[serde(default)]
    pub verdict: Option<BranchVerdict>,
    /// Which line went on: the branch (true) or the main line.
    #[serde(default)]
    pub kept_branch: Option<bool>,
    /// Where the line left was saved as a run of its own.
    #[serde(default)]
    pub saved: Option<String>,
    /// The step at which the run stopped, or the checkpoint it was resumed from was taken,
    /// with the comparison unfinished.
    #[serde(default)]
    pub abandoned_at: Option<u64>,
}

impl BranchRecord {
    pub fn is_open(&self) -> bool {
        self.kept_branch.is_none() && self.abandoned_at.is_none()
    }

    /// As a resumed run's note says it: where it forked, the change, what became of it.
    pub fn describe(&self) -> String {
        let change = Setting::describe_change(&self.change);
        let line = |branch: bool| {
            if branch {
                "the branch"
            } else {
                "the main line"
            }
        };
        let what = match (self.kept_branch, &self.saved, self.abandoned_at) {
            (Some(b), Some(dir), _) => format!("{} went on, the other line is in {dir}", line(b)),
            (Some(b), None, _) => format!("{} went on", line(b)),
            (None, _, Some(at)) => format!("abandoned at step {at}"),
            (None, _, None) => "unfinished when this checkpoint was taken".to_string(),
        };
        format!("forked at step {} with {change}: {what}", self.forked_at)
    }
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
    /// Early stopping: the monitored metric stopped improving (`Event::EarlyStopped` says how).
    EarlyStopped,
    /// The validation accuracy reached `--target-acc` under `--stop-at-target`.
    TargetReached,
}

impl FinishReason {
    /// The run reached an end its settings set (all epochs, early stopping, the target): the
    /// test set is evaluated.
    pub fn ran_its_course(self) -> bool {
        matches!(
            self,
            FinishReason::Completed | FinishReason::EarlyStopped | FinishReason::TargetReached
        )
    }
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
    /// The run was forked after `step`: a branch with `change` trains on the same batches
    /// until step `until`.
    Forked {
        step: u64,
        change: Vec<Setting>,
        until: u64,
        #[serde(default)]
        horizon: Horizon,
        /// The run will pause at the end for a watcher to keep one line.
        #[serde(default)]
        ask: bool,
    },
    /// A live change made while a comparison runs went to the branch: its change is now
    /// `change` (the main line stays as it was, the control).
    BranchChanged {
        step: u64,
        change: Vec<Setting>,
    },
    /// The comparison was decided by a watcher: the line that goes on, and where the other was
    /// saved as a run of its own.
    BranchKept {
        step: u64,
        change: Vec<Setting>,
        branch: bool,
        saved: Option<String>,
    },
    /// The comparison forked after `forked_at` ended unfinished: the run stopped, or was
    /// resumed from a checkpoint taken during it. The main line goes on.
    BranchAbandoned {
        step: u64,
        forked_at: u64,
        change: Vec<Setting>,
        why: String,
    },
    /// A branch's comparison is over: the verdict, and the line that goes on.
    BranchVerdict {
        step: u64,
        verdict: BranchVerdict,
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
        /// The epoch `step` belongs to (records before it: the envelope's, one later at an
        /// epoch's end).
        #[serde(default)]
        epoch: usize,
        path: String,
        bytes: u64,
        write_secs: f64,
        hold_ms: f64,
    },
    /// A checkpoint could not be written; training goes on and earlier files stay intact.
    /// `reason` is one line (e.g. "no space left on device"); `detail` the whole story.
    CheckpointFailed {
        step: u64,
        #[serde(default)]
        epoch: usize,
        path: String,
        reason: String,
        detail: String,
    },
    /// The rules that end the run early changed (`Command::SetStopping`), from this epoch's
    /// end on; early stopping counts from the run's first epoch.
    StoppingChanged {
        step: u64,
        stopping: Stopping,
    },
    /// Early stopping ends the run: `monitor` has not improved on `best` (epoch `best_epoch`)
    /// for `patience` epochs; `restored`: the best epoch's weights were put back.
    EarlyStopped {
        step: u64,
        epoch: usize,
        monitor: String,
        best: f64,
        best_epoch: usize,
        patience: u32,
        restored: bool,
    },
    /// The validation accuracy reached the target for the first time.
    TargetReached {
        step: u64,
        epoch: usize,
        val_accuracy: f64,
        target: f64,
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
    /// What an alert calls this event (`--notify`, the bell), or `None` for the events that
    /// alert nobody: a new warning, a non-finite loss, a rollback, early stopping, the target
    /// reached, the end of the run, a failure.
    pub fn alert(&self) -> Option<&'static str> {
        use super::findings::Severity;
        Some(match self {
            Event::Finding {
                finding, cleared, ..
            } if !cleared && finding.severity == Severity::Warning => "warning",
            Event::Warning { .. } | Event::CheckpointFailed { .. } => "warning",
            Event::NonFinite {
                then: OnNonFinite::Rollback,
                ..
            } => "rollback",
            Event::NonFinite { .. } => "non_finite",
            Event::EarlyStopped { .. } => "early_stopped",
            Event::TargetReached { .. } => "target_reached",
            Event::Finished { .. } => "finished",
            Event::Error { .. } => "failed",
            _ => return None,
        })
    }

    /// True for the events that end the stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Event::Finished { .. } | Event::Error { .. })
    }
}
