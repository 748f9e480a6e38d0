//! The training thread: the run loop and the commands it takes between steps. One step is the
//! `learner`'s, evaluation is `eval`'s, checkpoints go through the `saver`, and everything the
//! run reports reaches its `watchers` (and metrics.jsonl).

pub mod branch;
mod error;
pub mod eval;
pub mod learner;
pub mod lr_find;
mod remedy;
pub mod resume;
mod saver;
mod watchers;
mod what_if;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use candle_core::DType;

use crate::checkpoint::{BestModel, Checkpoint, DataInfo, Position, SaveKind};
use crate::config::{BestMetric, RunConfig};
use crate::data::balance::{self, balanced_order};
use crate::data::batch::LOADER_THREADS;
use crate::data::batch::{batches_per_epoch, epoch_order};
use crate::data::{
    AugmentSpec, Batch, BatchStream, ClassWeights, DataSplits, Dataset, Loader, Normalization,
    Sampler,
};
use crate::diagnose::{Doctor, Switches};
use crate::model::Cnn;
use crate::optim::Optimizer;
use crate::protocol::{
    clip_norm_problem, Command, EpochMetrics, EvalMetrics, Event, FindingKind, FinishReason,
    LearningRate, LrFinding, LrSource, OnNonFinite, Remedy, RemedyRecord, Resumed, RunInfo,
    SampleGrid, ScheduleChange, Setting, StepMetrics, Stopping, TrainerLink, ACTIVATION_EARLY,
    ACTIVATION_EARLY_UNTIL, ACTIVATION_EVERY, REMEDY_TRIAL_STEPS,
};
use crate::rng::Rng;
use crate::run_dir::{MetricsLog, RunDir, RunDirError};
use crate::schedule::{Schedule, ScheduleSpec};
use crate::stopping::{StopState, Verdict};
pub use error::TrainError;
pub use eval::{Evaluation, Predictions, EVAL_BATCH};
use learner::{Learner, StepOutcome};
pub use lr_find::FinderSettings;
use remedy::{Remedies, RunSnapshot};
pub use remedy::{DEFAULT_MAX_ROLLBACKS, GOOD_STATE_EVERY};
use saver::Saver;
use watchers::Watchers;

/// Why a paused run cannot go on while a comparison waits for a decision.
const KEEP_A_LINE: &str =
    "the comparison waits for a decision: keep the main line (m) or the branch (b)";

/// The largest side of the sample images sent to watchers.
const SAMPLE_SIDE: usize = 64;

/// The training thread's name.
pub const THREAD_NAME: &str = "candletop-train";

/// The data a run trains and evaluates on, shared with the batch threads, and how training
/// batches are made from it.
struct TrainData {
    train: Arc<Dataset>,
    val: Arc<Dataset>,
    test: Arc<Dataset>,
    norm: Normalization,
    classes: usize,
    /// What the key `a` turns on: the run's `augment` setting, or the usual small-image recipe.
    augment: AugmentSpec,
    augmenting: bool,
    /// scikit-learn's "balanced" weights of the training set (what `w` turns on).
    balanced_weights: Vec<f32>,
}

impl TrainData {
    /// The loader of epoch `epoch`'s training batches.
    fn loader(&self, seed: u64, epoch: usize) -> Loader {
        Loader {
            norm: self.norm.clone(),
            augment: if self.augmenting {
                self.augment.clone()
            } else {
                AugmentSpec::default()
            },
            seed,
            epoch,
            workers: LOADER_THREADS,
        }
    }
}

/// Where the run is and what it has done so far: what a checkpoint holds besides the weights.
struct Progress {
    step: u64,
    epoch: usize,
    /// Where in the epoch the run is, with the epoch's sums so far.
    pos: Position,
    history: Vec<EpochMetrics>,
    /// (step, lr): the LR changes made by the user or reduce-on-plateau, each from the step
    /// after `step` on; the first entry is the run's first LR.
    lr_changes: Vec<(u64, f64)>,
    /// The LR each step used: every `lr_stride`-th step, at most `MAX_LR_HISTORY` entries.
    lr_history: Vec<(u64, f64)>,
    lr_stride: u64,
    /// The what-if comparisons so far, with what became of each.
    branches: Vec<crate::protocol::BranchRecord>,
    /// Early stopping's count, from the epochs so far under the spec in force.
    stop: StopState,
    /// With restore_best: the best epoch's weights so far.
    best_model: Option<BestModel>,
    /// Whether an epoch has reached the target accuracy in force.
    target_reached: bool,
}

/// Entries of the per-step LR history a checkpoint keeps.
const MAX_LR_HISTORY: usize = 10_000;

impl Progress {
    /// The epoch of the last step taken: at an epoch's end the position has moved on to the
    /// next epoch, whose first step has not been taken (records written then, a checkpoint's,
    /// the test set's, say the epoch that ended).
    fn epoch_of_last_step(&self) -> usize {
        if self.pos.batch == 0 && self.step > 0 {
            self.epoch.saturating_sub(1).max(1)
        } else {
            self.epoch
        }
    }

    /// Records the LR step `step` used; when full, keeps every other entry and twice the stride.
    fn record_lr(&mut self, step: u64, lr: f64) {
        if step % self.lr_stride != 0 {
            return;
        }
        self.lr_history.push((step, lr));
        if self.lr_history.len() >= MAX_LR_HISTORY {
            self.lr_stride *= 2;
            let stride = self.lr_stride;
            self.lr_history.retain(|(s, _)| s % stride == 0);
        }
    }
}

/// What the user controls between steps.
struct Control {
    paused: bool,
    /// Steps the user allowed while paused (`n`).
    single_steps: u32,
    /// The step about to be taken is a single step the user asked for.
    granted: bool,
    on_non_finite: OnNonFinite,
}

/// A training run ready to go: model, optimizer and data, built from a validated config.
pub struct Trainer {
    cfg: RunConfig,
    learner: Learner,
    data: TrainData,
    progress: Progress,
    /// How the LR moves; the LR of every step comes from it.
    schedule: Schedule,
    control: Control,
    watchers: Watchers,
    /// Set with a run directory: checkpoints go to `<run-dir>/checkpoints`.
    saver: Option<Saver>,
    info: RunInfo,
    /// Images per second, smoothed over recent steps.
    throughput: Option<f64>,
    started: Instant,
    /// Watches the run's numbers for the reasons it may stall.
    doctor: Doctor,
    /// The run as it was at most `GOOD_STATE_EVERY` steps ago: what a non-finite step rolls
    /// back to.
    last_good: Option<RunSnapshot>,
    /// A what-if comparison under way.
    branch: Option<branch::Fork>,
    rollbacks: u32,
    max_rollbacks: u32,
    /// Every remedy applied in this run, with what became of it, and the one on trial.
    remedies: Remedies,
    /// Measure the activations at the next step (asked for; besides every `ACTIVATION_EVERY`).
    probe_next: bool,
}

/// The LR range test on copies of `learner`, with batches and dropout of its own.
fn find_lr(
    learner: &Learner,
    data: &TrainData,
    cfg: &RunConfig,
    step: u64,
    settings: &FinderSettings,
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<LrFinding, TrainError> {
    // Mid-run (or from a checkpoint) the run's LR is one the suggestion must beat.
    let current = (step > 0).then(|| learner.lr.get());
    let mut copy = learner.duplicate(Rng::derive(cfg.seed, "lr-find-dropout", step))?;
    let mut batches = lr_find::batches(
        data.train.clone(),
        cfg.batch_size,
        data.norm.clone(),
        cfg.seed,
    );
    Ok(lr_find::sweep(
        &mut copy,
        &mut batches,
        settings,
        current,
        progress,
    )?)
}

/// Refuses a model that would not fit in the memory available, before anything of it is
/// allocated (an allocation that fails aborts the process, with no checkpoint).
fn fits_in_memory(model: &crate::model::ModelConfig, cfg: &RunConfig) -> Result<(), TrainError> {
    let said = |problem: String| {
        crate::config::ConfigError::Said(format!("--arch {}: {problem}", cfg.arch))
    };
    // A shape that does not work says so first.
    model
        .feature_shapes()
        .map_err(crate::config::ConfigError::from)?;
    let Some((params, bytes)) = model.training_size(cfg.batch_size) else {
        return Err(said("its sizes multiply past any memory".into()).into());
    };
    match crate::data::available_memory() {
        Some(available) if bytes > available => Err(said(format!(
            "training it takes about {} ({} parameters, at batch size {}), more than the {} available",
            crate::format::human_bytes(bytes),
            crate::format::group_thousands(params as usize),
            cfg.batch_size,
            crate::format::human_bytes(available)
        ))
        .into()),
        _ => Ok(()),
    }
}

/// What the watchers are told about the data: class counts, augmentation, class weights
/// (`class_weights` when on, `balanced_weights` what on uses), the sampler, the skipped files.
fn data_facts(
    cfg: &RunConfig,
    data: &DataSplits,
    augment: &AugmentSpec,
    class_weights: Option<&[f32]>,
    balanced_weights: &[f32],
) -> crate::protocol::DataFacts {
    let counts = data.counts();
    let (input_mean, input_std) = input_stats(&data.train, &data.norm);
    crate::protocol::DataFacts {
        balanced_weights: balanced_weights.to_vec(),
        train_counts: counts.train,
        val_counts: counts.val,
        test_counts: counts.test,
        augment: augment.to_string(),
        augmenting: !cfg.augment.is_empty(),
        class_weights: class_weights.map(<[f32]>::to_vec).unwrap_or_default(),
        sampler: sampler_name(cfg.sampler).into(),
        skipped: data
            .skipped
            .iter()
            .map(|b| format!("{}: {}", b.path.display(), b.problem))
            .collect(),
        input_mean,
        input_std,
    }
}

/// Each channel's mean and std of the training inputs after normalisation by `norm`, over a
/// sample of the training images (the doctor's unnormalised-input finding).
fn input_stats(train: &Dataset, norm: &Normalization) -> (Vec<f64>, Vec<f64>) {
    let raw = Normalization::of_first(train, INPUT_SAMPLE);
    raw.mean
        .iter()
        .zip(&raw.std)
        .zip(norm.mean.iter().zip(&norm.std))
        .map(|((&m, &s), (&nm, &ns))| {
            let ns = f64::from(ns).max(1e-12);
            ((f64::from(m) - f64::from(nm)) / ns, f64::from(s) / ns)
        })
        .unzip()
}

/// Training images sampled for the input statistics.
const INPUT_SAMPLE: usize = 512;

impl Trainer {
    pub fn new(cfg: RunConfig, data: DataSplits) -> Result<Self, TrainError> {
        let input = [data.train.channels, data.train.height, data.train.width];
        let model_cfg = cfg.model_config(input, data.classes.len())?;
        fits_in_memory(&model_cfg, &cfg)?;
        let mut init = Rng::derive(cfg.seed, "init", 0);
        let mut model = Cnn::new(model_cfg, &mut init, DType::F32)?;
        model.set_kernels(cfg.kernels);
        let sizes: Vec<usize> = model.params().iter().map(|p| p.var.elem_count()).collect();
        let steps_per_epoch = batches_per_epoch(data.train.len(), cfg.batch_size);
        let run_steps = (steps_per_epoch * cfg.epochs) as u64;
        cfg.schedule
            .check(cfg.epochs, run_steps)
            .map_err(crate::config::ConfigError::from)?;
        let schedule = Schedule::new(
            cfg.schedule.clone(),
            cfg.lr.get(),
            0,
            run_steps,
            (0, 0),
            steps_per_epoch as u64,
        );
        let balanced_weights = balance::balanced_weights(&balance::class_counts(
            &data.train.labels,
            data.classes.len(),
        ));
        let augment = if cfg.augment.is_empty() {
            AugmentSpec::default_for(data.train.height)
        } else {
            cfg.augment.clone()
        };
        let augmenting = !cfg.augment.is_empty();
        let class_weights =
            (cfg.class_weights == ClassWeights::Balanced).then(|| balanced_weights.clone());
        let data_facts = data_facts(
            &cfg,
            &data,
            &augment,
            class_weights.as_deref(),
            &balanced_weights,
        );
        let info = RunInfo {
            clip_grad_norm: cfg.clip_grad_norm,
            data: data.describe(),
            model: model.summary(),
            param_count: model.param_count(),
            optimizer: cfg.optimizer.describe(),
            layers: model.params().iter().map(|p| p.name.clone()).collect(),
            classes: data.classes.clone(),
            epochs: cfg.epochs,
            steps_per_epoch,
            total_steps: 0,
            batch_size: cfg.batch_size,
            run_dir: String::new(),
            resumed: None,
            schedule: schedule.clone(),
            data_facts,
            stopping: Stopping {
                early_stop: cfg.early_stop,
                target_acc: cfg.target_acc,
                stop_at_target: cfg.stop_at_target,
            },
        };
        let doctor = Doctor::for_run(&info, &cfg);
        Ok(Self {
            doctor,
            last_good: None,
            branch: None,
            rollbacks: 0,
            max_rollbacks: DEFAULT_MAX_ROLLBACKS,
            remedies: Remedies::default(),
            probe_next: false,
            learner: Learner {
                model,
                opt: Optimizer::new(cfg.optimizer, &sizes),
                rng: Rng::derive(cfg.seed, "dropout", 0),
                lr: cfg.lr,
                label_smoothing: cfg.label_smoothing,
                class_weights,
                clip_grad_norm: (cfg.clip_grad_norm > 0.0).then_some(cfg.clip_grad_norm),
                count_zero_grads: false,
            },
            data: TrainData {
                classes: data.classes.len(),
                train: Arc::new(data.train),
                val: Arc::new(data.val),
                test: Arc::new(data.test),
                norm: data.norm,
                augment,
                augmenting,
                balanced_weights,
            },
            progress: Progress {
                step: 0,
                epoch: 1,
                pos: Position {
                    epoch: 1,
                    ..Position::default()
                },
                history: Vec::new(),
                lr_changes: vec![(0, cfg.lr.get())],
                lr_history: Vec::new(),
                lr_stride: 1,
                branches: Vec::new(),
                stop: StopState::default(),
                best_model: None,
                target_reached: false,
            },
            schedule,
            control: Control {
                paused: false,
                single_steps: 0,
                granted: false,
                on_non_finite: OnNonFinite::Pause,
            },
            watchers: Watchers::detached(),
            saver: None,
            info,
            throughput: None,
            started: Instant::now(),
            cfg,
        })
    }

    /// Continues the run a checkpoint describes: weights, optimizer state, LR, RNG, step and
    /// position in the epoch, so that the run goes on exactly as if it had not stopped. `cfg`
    /// is the checkpoint's configuration with the settings named in `given` (config keys, as
    /// given on the command line) changed; `resume::plan` says which may change.
    pub fn resume(
        cfg: RunConfig,
        data: DataSplits,
        ckpt: &Checkpoint,
        from: &Path,
        given: &[String],
    ) -> Result<Self, TrainError> {
        let plan = resume::plan(ckpt, &cfg, given, &data, from)?;
        let mut t = Self::new(cfg, data)?;
        let bad = |problem: String| TrainError::Mismatch {
            path: from.to_path_buf(),
            problem,
        };
        let mut saved = ckpt.model_config.clone();
        // Dropout may change between non-zero values (the plan checked that).
        saved.dropout = t.learner.model.config().dropout;
        if *t.learner.model.config() != saved {
            return Err(bad(format!(
                "the checkpoint's model ({}) differs from this run's ({})",
                ckpt.model_config.describe(),
                t.learner.model.config().describe()
            )));
        }
        t.learner
            .model
            .load_state(&ckpt.tensors, &ckpt.counters)
            .map_err(bad)?;
        t.learner.opt = plan.optimizer;
        t.learner.rng = Rng::from_state(ckpt.rng);
        t.learner.lr = plan.lr;
        let p = &mut t.progress;
        p.step = ckpt.global_step;
        p.epoch = ckpt.position.epoch.max(1);
        p.pos = ckpt.position;
        p.history.clone_from(&ckpt.epochs);
        // Early stopping and the target count from the run's first epoch: as the whole run.
        p.stop = StopState::replay(&t.cfg.early_stop, val_metrics(&p.history));
        p.target_reached = reached(&p.history, t.cfg.target_acc);
        p.best_model = ckpt
            .best_model
            .clone()
            .filter(|b| t.cfg.early_stop.restore_best && b.epoch == p.stop.best_epoch);
        t.remedies.history.clone_from(&ckpt.remedies);
        p.branches.clone_from(&ckpt.branches);
        p.lr_changes.clone_from(&ckpt.lr_changes);
        if p.lr_changes.first().is_none_or(|c| c.0 != 0) {
            // Files from before runs recorded their first LR.
            p.lr_changes.insert(0, (0, ckpt.train_config.lr.get()));
        }
        if plan.lr.get() != ckpt.lr {
            p.lr_changes.push((ckpt.global_step, plan.lr.get()));
        }
        p.lr_history.clone_from(&ckpt.lr_history);
        p.lr_stride = match p.lr_history.as_slice() {
            [a, b, ..] => (b.0 - a.0).max(1),
            _ => 1,
        };
        let mut notes = plan.notes;
        t.schedule = t.resumed_schedule(ckpt, plan.lr, given, &mut notes)?;
        t.info.schedule = t.schedule.clone();
        t.data.norm = ckpt.data.norm();
        (t.info.data_facts.input_mean, t.info.data_facts.input_std) =
            input_stats(&t.data.train, &t.data.norm);
        if !given.iter().any(|g| g == "augment") {
            t.data.augmenting = ckpt.data.augmenting.unwrap_or(t.data.augmenting);
        }
        t.info.data_facts.augmenting = t.data.augmenting;
        // The doctor of the run as it resumes: its inputs, switches and epochs so far.
        let switches = t.doctor.switches;
        t.doctor = Doctor::for_run(&t.info, &t.cfg);
        t.doctor.switches = Switches {
            augmenting: t.data.augmenting,
            ..switches
        };
        t.doctor.remember(&ckpt.epochs);
        // A run that was forked says so, and what became of each branch.
        notes.extend(ckpt.branches.iter().map(|b| b.describe()));
        t.info.resumed = Some(Resumed {
            from: from.display().to_string(),
            step: ckpt.global_step,
            epoch: ckpt.position.epoch,
            changes: plan.changes,
            notes,
        });
        Ok(t)
    }

    /// The schedule a resumed run follows: the checkpoint's, going on exactly (scaled to `lr`
    /// when `--lr` changed it); or, with another `--schedule` (or a file from before
    /// schedules), that schedule from the resumed step on, from `lr`.
    fn resumed_schedule(
        &self,
        ckpt: &Checkpoint,
        lr: LearningRate,
        given: &[String],
        notes: &mut Vec<String>,
    ) -> Result<Schedule, TrainError> {
        let step = ckpt.global_step;
        let spe = self.info.steps_per_epoch as u64;
        let origin = (
            step - ckpt.position.batch as u64,
            ckpt.position.epoch.saturating_sub(1) as u64,
        );
        let horizon = self.steps_to_end();
        let other = given.iter().any(|g| g == "schedule")
            && self.cfg.schedule != ckpt.train_config.schedule;
        match &ckpt.schedule {
            Some(saved) if !other => {
                let mut s = saved.clone();
                if s.total_steps != horizon {
                    notes.push(format!(
                        "the schedule now plans to step {horizon} (it planned to step {})",
                        s.total_steps
                    ));
                    s.total_steps = horizon;
                }
                if s.steps_per_epoch != spe {
                    s.reanchor(origin.0, origin.1, spe);
                }
                if lr.get() != ckpt.lr {
                    s.rescale(step + 1, lr.get())
                        .map_err(|e| crate::config::ConfigError::Said(format!("--lr: {e}")))?;
                }
                Ok(s)
            }
            _ => {
                let epochs_left = self.cfg.epochs + 1 - self.progress.epoch;
                self.cfg
                    .schedule
                    .check(epochs_left, horizon.saturating_sub(step))
                    .map_err(crate::config::ConfigError::from)?;
                if other {
                    notes.push(format!(
                        "the schedule {} starts at step {} from lr {:.2e}",
                        self.cfg.schedule.describe(),
                        step + 1,
                        lr.get()
                    ));
                }
                Ok(Schedule::new(
                    self.cfg.schedule.clone(),
                    lr.get(),
                    step,
                    horizon,
                    origin,
                    spe,
                ))
            }
        }
    }

    /// Records the run in `<dir>/metrics.jsonl` and saves checkpoints in `<dir>/checkpoints`.
    pub fn set_run_dir(&mut self, dir: &Path) -> Result<(), TrainError> {
        let dir = RunDir::new(dir);
        dir.create()?;
        let log = MetricsLog::create(&dir)?;
        let ckpt_dir = dir.checkpoints();
        let saver =
            Saver::spawn(ckpt_dir.clone(), self.cfg.keep_last).map_err(|source| RunDirError {
                path: ckpt_dir,
                source,
            })?;
        self.info.run_dir = dir.path().display().to_string();
        self.watchers.set_log(log);
        self.saver = Some(saver);
        Ok(())
    }

    /// What to do when a step's loss or gradient is not finite (pause, the default; stop; or
    /// roll back, at most `max_rollbacks` times).
    pub fn set_on_non_finite(&mut self, policy: OnNonFinite, max_rollbacks: u32) {
        self.control.on_non_finite = policy;
        self.max_rollbacks = max_rollbacks;
    }

    pub fn info(&self) -> &RunInfo {
        &self.info
    }

    pub fn model(&self) -> &Cnn {
        &self.learner.model
    }

    /// Everything needed to resume from here. Taken between two steps.
    pub fn snapshot(&self) -> Result<Checkpoint, TrainError> {
        self.snapshot_of(&self.learner, &self.schedule, &self.cfg)
    }

    /// The run as a checkpoint, with `learner`, `schedule` and `cfg` for its own (a what-if
    /// line's).
    fn snapshot_of(
        &self,
        learner: &Learner,
        schedule: &Schedule,
        cfg: &RunConfig,
    ) -> Result<Checkpoint, TrainError> {
        let model = &learner.model;
        let (tensors, counters) = model.state()?;
        Ok(Checkpoint {
            created: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            global_step: self.progress.step,
            model_config: model.config().clone(),
            train_config: cfg.clone(),
            classes: self.info.classes.clone(),
            data: DataInfo {
                source: self.cfg.data.to_string(),
                mean: self.data.norm.mean.clone(),
                std: self.data.norm.std.clone(),
                augmenting: Some(self.data.augmenting),
            },
            tensors,
            counters,
            optimizer: learner.opt.clone(),
            param_names: model.params().iter().map(|p| p.name.clone()).collect(),
            lr: learner.lr.get(),
            schedule: Some(schedule.clone()),
            rng: learner.rng.state(),
            position: self.progress.pos,
            epochs: self.progress.history.clone(),
            lr_changes: self.progress.lr_changes.clone(),
            lr_history: self.progress.lr_history.clone(),
            remedies: self.remedies.history.clone(),
            branches: self.progress.branches.clone(),
            best_model: self.progress.best_model.clone(),
        })
    }

    /// Runs on a thread of its own; a panic inside becomes an `Error` event.
    pub fn spawn(mut self, link: TrainerLink) -> JoinHandle<()> {
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(link)));
                let message = match result {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => e.to_string(),
                    Err(panic) => panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .map(|m| format!("the training thread panicked: {m}"))
                        .unwrap_or_else(|| "the training thread panicked".into()),
                };
                self.emit(Event::Error { message });
            })
            .expect("spawning the training thread")
    }

    /// The whole run: every epoch, then the test set. Returns when done, stopped or failed.
    pub fn run(&mut self, link: TrainerLink) -> Result<(), TrainError> {
        self.watchers.attach(link);
        // Elapsed times count from this start (a resumed run starts its clock again).
        self.started = Instant::now();
        self.info.total_steps = self.last_step();
        self.info.schedule = self.schedule.clone();
        self.emit(Event::Started(self.info.clone()));
        let changes = self.doctor.on_start();
        self.report_findings(changes);
        self.keep_good_state()?;
        self.abandon_branches("the run was resumed from a checkpoint taken during the comparison");
        let reason = self.train()?;
        if reason.ran_its_course() && !self.data.test.is_empty() {
            let e = self.evaluate(&self.data.test.clone(), EVAL_BATCH)?;
            self.emit(Event::Evaluated(EvalMetrics {
                split: "test".into(),
                loss: e.loss,
                accuracy: e.accuracy,
                class_accuracy: e.class_accuracy,
                images_per_sec: e.images_per_sec,
            }));
        }
        self.finish(reason)
    }

    /// The step the last epoch ends at: the rest of this epoch, then whole epochs.
    fn steps_to_end(&self) -> u64 {
        let per_epoch = self.info.steps_per_epoch as u64;
        let p = &self.progress;
        let left_now = per_epoch.saturating_sub(p.pos.batch as u64);
        let later = self.cfg.epochs.saturating_sub(p.epoch) as u64 * per_epoch;
        p.step + left_now + later
    }

    /// The step the run ends at if nothing stops it: the last epoch's, or the step limit.
    fn last_step(&self) -> u64 {
        match self.cfg.max_steps {
            0 => self.steps_to_end(),
            max => self.steps_to_end().min(max),
        }
    }

    /// The order in which epoch `epoch` visits the training images.
    fn epoch_order(&self, epoch: usize) -> Vec<usize> {
        let (n, seed) = (self.data.train.len(), self.cfg.seed);
        match self.cfg.sampler {
            Sampler::Shuffle => epoch_order(n, seed, epoch),
            Sampler::Balanced => {
                balanced_order(&self.data.train.labels, self.data.classes, seed, epoch)
            }
        }
    }

    /// The batches of the current epoch from the current position.
    fn batch_stream(&self) -> BatchStream {
        let epoch = self.progress.epoch;
        BatchStream::spawn(
            self.data.train.clone(),
            self.epoch_order(epoch),
            self.cfg.batch_size,
            self.progress.pos.batch,
            self.data.loader(self.cfg.seed, epoch),
        )
    }

    /// Every epoch left, or until a stop.
    fn train(&mut self) -> Result<FinishReason, TrainError> {
        while self.progress.epoch <= self.cfg.epochs {
            let mut batches = self.batch_stream();
            // Within an epoch, only the augmentation switch changes how batches are made.
            let mut augmenting = self.data.augmenting;
            loop {
                self.report_saves();
                if self.cfg.max_steps > 0 && self.progress.step >= self.cfg.max_steps {
                    return Ok(FinishReason::Stopped);
                }
                if !self.between_steps()? {
                    return Ok(FinishReason::Stopped);
                }
                // Batches made ahead before augmentation was switched are dropped.
                if self.data.augmenting != augmenting {
                    batches = self.batch_stream();
                    augmenting = self.data.augmenting;
                }
                let Some(batch) = batches.next() else {
                    // A single step granted at the end of an epoch is taken in the next one.
                    if std::mem::take(&mut self.control.granted) {
                        self.control.single_steps += 1;
                    }
                    break;
                };
                self.control.granted = false;
                let batch = batch?;
                if let Some(end) = self.train_batch(&batch)? {
                    return Ok(end);
                }
            }
            if let Some(end) = self.end_epoch()? {
                return Ok(end);
            }
        }
        Ok(FinishReason::Completed)
    }

    /// One step on `batch`, reported; `Some` when the run must end.
    fn train_batch(&mut self, batch: &Batch) -> Result<Option<FinishReason>, TrainError> {
        let t0 = Instant::now();
        let next = self.progress.step + 1;
        let lr = self.schedule.lr_at(next);
        // A schedule that decays for long enough reaches 0; the smallest positive LR stands in.
        self.learner.lr = LearningRate::new(lr).unwrap_or(LearningRate::SMALLEST);
        if let Some(m) = self.schedule.momentum_at(next) {
            self.learner.opt.set_momentum(m as f32);
        }
        // Activations on this batch before the step changes the weights.
        // The first step's are the baseline: units dead from the start are the model's.
        let early = next == 1 || (next <= ACTIVATION_EARLY_UNTIL && next % ACTIVATION_EARLY == 0);
        let probed =
            if std::mem::take(&mut self.probe_next) || early || next % ACTIVATION_EVERY == 0 {
                let mut rng = Rng::derive(self.cfg.seed, "probe", next);
                self.learner.count_zero_grads = true;
                Some(self.learner.probe(batch, &mut rng)?)
            } else {
                None
            };
        let outcome = self.learner.step(batch)?;
        let p = &mut self.progress;
        p.step += 1;
        p.record_lr(p.step, self.learner.lr.get());
        p.pos.batch = batch.index + 1;
        let s = match outcome {
            StepOutcome::NonFinite { what } => {
                p.pos.active_secs += t0.elapsed().as_secs_f64();
                return self.on_non_finite(what);
            }
            StepOutcome::Updated(s) => s,
        };
        let branch = self.branch_step(batch, s.loss)?;
        let p = &mut self.progress;
        p.pos.loss_sum += s.loss * batch.len() as f64;
        p.pos.correct += s.hits as u64;
        p.pos.seen += batch.len() as u64;
        let now = batch.len() as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        let ips = self.throughput.map_or(now, |prev| 0.9 * prev + 0.1 * now);
        self.throughput = Some(ips);
        let m = StepMetrics {
            step: p.step,
            epoch: p.epoch,
            steps: 1,
            loss: s.loss,
            loss_max: s.loss,
            accuracy: s.hits as f64 / batch.len() as f64,
            lr: self.learner.lr.get(),
            grad_norms: s.grad_norms,
            update_ratios: s.update_ratios,
            images_per_sec: ips,
            branch,
        };
        // The doctor judges the step records metrics.jsonl keeps, as `diagnose` does later.
        let record = self
            .watchers
            .step(m, s.hits, batch.len(), self.cfg.log_every);
        let mut changes = record.map_or_else(Vec::new, |r| self.doctor.on_record(&r));
        p.pos.active_secs += t0.elapsed().as_secs_f64();
        let step = p.step;
        if let Some(mut layers) = probed {
            for l in &mut layers {
                let weight = format!("{}.weight", l.layer);
                let i = self.info.layers.iter().position(|n| *n == weight);
                l.zero_grad = i.and_then(|i| s.zero_grads.get(i)).copied().unwrap_or(0.0);
            }
            changes.extend(self.doctor.on_activations(&layers));
            self.emit(Event::Activations { step, layers });
        }
        self.report_findings(changes);
        if let Some(record) = self.remedies.count(step, s.loss) {
            self.emit(Event::RemedyVerdict { step, record });
        }
        self.keep_good_state()?;
        if self
            .branch
            .as_ref()
            .is_some_and(|f| f.awaiting.is_none() && step >= f.until)
        {
            self.end_branch()?;
        }
        if self.cfg.save_every_steps > 0 && step % self.cfg.save_every_steps == 0 {
            self.save(&[SaveKind::Last])?;
        }
        Ok(None)
    }

    /// Validation, the epoch's summary, and its checkpoints; `Some` when the run ends here
    /// (early stopping, the target reached).
    fn end_epoch(&mut self) -> Result<Option<FinishReason>, TrainError> {
        let val = self.evaluate(&self.data.val.clone(), EVAL_BATCH)?;
        let p = &mut self.progress;
        let pos = p.pos;
        let m = EpochMetrics {
            epoch: p.epoch,
            step: p.step,
            train_loss: pos.loss_sum / pos.seen.max(1) as f64,
            train_accuracy: pos.correct as f64 / pos.seen.max(1) as f64,
            val_loss: val.loss,
            val_accuracy: val.accuracy,
            val_class_accuracy: val.class_accuracy,
            val_confusion: val.confusion,
            lr: self.learner.lr.get(),
            images_per_sec: pos.seen as f64 / pos.active_secs.max(1e-9),
            elapsed_secs: self.started.elapsed().as_secs_f64(),
        };
        let improved = match self.cfg.best_metric {
            BestMetric::ValAcc => p.history.iter().all(|e| m.val_accuracy > e.val_accuracy),
            BestMetric::ValLoss => p.history.iter().all(|e| m.val_loss < e.val_loss),
        };
        p.history.push(m.clone());
        let done = p.epoch;
        p.epoch += 1;
        p.pos = Position {
            epoch: p.epoch,
            ..Position::default()
        };
        let (val_loss, val_acc) = (m.val_loss, m.val_accuracy);
        let changes = self.doctor.on_epoch(&m);
        self.emit(Event::Epoch(m));
        self.report_findings(changes);
        self.plateau(done, val_loss, val_acc);
        let end = self.stopping(done, val_loss, val_acc)?;
        let mut kinds = vec![SaveKind::Epoch(done)];
        if improved {
            kinds.push(SaveKind::Best);
        }
        // The epoch's own weights, before early stopping puts the best ones back.
        self.save(&kinds)?;
        if end == Some(FinishReason::EarlyStopped) {
            self.stop_early(done)?;
        }
        Ok(end)
    }

    /// Early stopping's and the target's verdict on epoch `epoch`, reported; with
    /// restore_best the best weights are kept, and put back when the run stops.
    fn stopping(
        &mut self,
        epoch: usize,
        val_loss: f64,
        val_acc: f64,
    ) -> Result<Option<FinishReason>, TrainError> {
        let step = self.progress.step;
        let spec = self.cfg.early_stop;
        let verdict = self
            .progress
            .stop
            .end_epoch(&spec, epoch, val_loss, val_acc);
        if spec.restore_best && verdict == Verdict::Improved {
            let (tensors, counters) = self.learner.model.state()?;
            self.progress.best_model = Some(BestModel {
                epoch,
                tensors,
                counters,
            });
        }
        let target = self.cfg.target_acc;
        let mut end = None;
        if target > 0.0 && !self.progress.target_reached && 100.0 * val_acc >= target {
            self.progress.target_reached = true;
            self.emit(Event::TargetReached {
                step,
                epoch,
                val_accuracy: val_acc,
                target,
            });
            if self.cfg.stop_at_target {
                end = Some(FinishReason::TargetReached);
            }
        }
        if end.is_none() && spec.is_on() && verdict == Verdict::Stop {
            end = Some(FinishReason::EarlyStopped);
        }
        Ok(end)
    }

    /// Early stopping ends the run after epoch `epoch`: the best weights back (with
    /// restore_best), and the event that says why.
    fn stop_early(&mut self, epoch: usize) -> Result<(), TrainError> {
        let (step, spec, stop) = (self.progress.step, self.cfg.early_stop, self.progress.stop);
        // Without the best epoch's weights (restore_best switched on after it), the last
        // weights stay, and the event says so.
        let best = self
            .progress
            .best_model
            .as_ref()
            .filter(|_| spec.restore_best);
        if let Some(best) = best {
            self.learner
                .model
                .load_state(&best.tensors, &best.counters)
                .map_err(|e| candle_core::Error::Msg(format!("restoring the best weights: {e}")))?;
        }
        let restored = best.is_some();
        if spec.restore_best && !restored {
            self.emit(Event::Warning {
                step,
                message: format!(
                    "restore_best: the weights of epoch {} were not kept (restore_best came after it); the last weights stay",
                    stop.best_epoch
                ),
            });
        }
        self.emit(Event::EarlyStopped {
            step,
            epoch,
            monitor: spec.monitor.name().into(),
            best: stop.best.unwrap_or(f64::NAN),
            best_epoch: stop.best_epoch,
            patience: spec.patience,
            restored,
        });
        Ok(())
    }

    /// New rules for ending the run, from the next epoch's end; early stopping counts from
    /// the run's first epoch, as if the rule had been there from the start.
    fn set_stopping(&mut self, stopping: Stopping) -> Option<String> {
        if let Err(problem) = crate::stopping::parse_target(&stopping.target_acc.to_string()) {
            return Some(problem);
        }
        if stopping.stop_at_target && stopping.target_acc == 0.0 {
            return Some("stopping at the target needs a target accuracy".into());
        }
        let p = &mut self.progress;
        p.stop = StopState::replay(&stopping.early_stop, val_metrics(&p.history));
        if !stopping.early_stop.restore_best
            || p.best_model
                .as_ref()
                .is_some_and(|b| b.epoch != p.stop.best_epoch)
        {
            p.best_model = None;
        }
        if stopping.target_acc != self.cfg.target_acc {
            p.target_reached = reached(&p.history, stopping.target_acc);
        }
        self.cfg.early_stop = stopping.early_stop;
        self.cfg.target_acc = stopping.target_acc;
        self.cfg.stop_at_target = stopping.stop_at_target;
        self.info.stopping = stopping;
        let step = p.step;
        self.emit(Event::StoppingChanged { step, stopping });
        None
    }

    /// Reduce-on-plateau's decision at the end of epoch `epoch`, reported when it cuts.
    fn plateau(&mut self, epoch: usize, val_loss: f64, val_acc: f64) {
        let step = self.progress.step;
        let Some(cut) = self.schedule.end_epoch(step + 1, val_loss, val_acc) else {
            return;
        };
        let monitor = match &self.schedule.spec.kind {
            crate::schedule::Kind::Plateau(p) => p.monitor_name().to_string(),
            _ => String::new(),
        };
        self.progress.lr_changes.push((step, cut.new));
        self.emit(Event::PlateauCut {
            step,
            epoch,
            monitor,
            cut,
        });
        self.emit_schedule(ScheduleChange::Plateau);
    }

    fn emit_schedule(&mut self, why: ScheduleChange) {
        let e = Event::ScheduleChanged {
            step: self.progress.step,
            schedule: self.schedule.clone(),
            why,
        };
        self.emit(e);
    }

    /// Saves `last.h5`, waits for the writer, then reports the end.
    fn finish(&mut self, reason: FinishReason) -> Result<(), TrainError> {
        if let Some(f) = self.branch.take() {
            self.abandon_branches(match f.awaiting {
                Some(_) => "the run stopped before a line was kept",
                None => "the run stopped during the comparison",
            });
        }
        self.save(&[SaveKind::Last])?;
        let rest = self.saver.as_mut().map(Saver::finish).unwrap_or_default();
        for e in rest {
            self.emit(e);
        }
        let e = Event::Finished {
            step: self.progress.step,
            epoch: self.progress.epoch_of_last_step().min(self.cfg.epochs),
            reason,
            elapsed_secs: self.started.elapsed().as_secs_f64(),
        };
        self.emit(e);
        Ok(())
    }

    /// Hands a snapshot to the background writer (nothing without a run directory).
    fn save(&mut self, kinds: &[SaveKind]) -> Result<(), TrainError> {
        if self.saver.is_none() {
            return Ok(());
        }
        let t0 = Instant::now();
        let ckpt = self.snapshot()?;
        let hold_ms = t0.elapsed().as_secs_f64() * 1000.0;
        if let Some(s) = &mut self.saver {
            s.queue(ckpt, hold_ms, kinds);
        }
        self.report_saves();
        Ok(())
    }

    /// Reports the saves the writer has finished.
    fn report_saves(&mut self) {
        let done = self.saver.as_mut().map(Saver::finished).unwrap_or_default();
        for e in done {
            self.emit(e);
        }
    }

    /// Applies the commands that arrived; while paused, waits for one that lets a step run.
    /// Returns false when the run must stop.
    fn between_steps(&mut self) -> Result<bool, TrainError> {
        loop {
            while let Some(cmd) = self.watchers.try_command() {
                if !self.apply(cmd)? {
                    return Ok(false);
                }
            }
            if !self.control.paused {
                return Ok(true);
            }
            if self.control.single_steps > 0 {
                self.control.single_steps -= 1;
                self.control.granted = true;
                return Ok(true);
            }
            // While paused, saves finishing are still reported promptly.
            match self
                .watchers
                .wait_command_timeout(Duration::from_millis(200))
            {
                Ok(cmd) => {
                    if !self.apply(cmd)? {
                        return Ok(false);
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => self.report_saves(),
                // Nobody is left to resume the run.
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Ok(false),
            }
        }
    }

    /// Carries out one command, or answers why not. Returns false for `Stop`.
    fn apply(&mut self, cmd: Command) -> Result<bool, TrainError> {
        let step = self.progress.step;
        let refusal = match &cmd {
            // While a comparison runs, the main line is its control: a live change goes to
            // the branch.
            Command::SetLr(_)
            | Command::ScaleLr(_)
            | Command::SetSchedule(_)
            | Command::SetAugment(_)
            | Command::SetClassWeights(_)
            | Command::SetClipGradNorm(_)
                if self.comparing() =>
            {
                self.change_branch(&cmd)
            }
            Command::ApplyRemedy(_) | Command::UndoRemedy if self.comparing() => Some(
                "a comparison is under way and the main line is its control: R tries a remedy on a branch".into(),
            ),
            Command::SetLr(lr) => self.change_lr(LearningRate::new(*lr)).err(),
            Command::ScaleLr(f) if !(f.is_finite() && *f > 0.0) => {
                Some(format!("{f} is not a positive factor"))
            }
            Command::ScaleLr(f) => {
                let now = self.schedule.lr_at(step + 1);
                let lr = now * f;
                self.change_lr(
                    LearningRate::new(lr).map_err(|_| {
                        format!("{now:e} x {f:e} = {lr:e} is not a usable learning rate")
                    }),
                )
                .err()
            }
            Command::SetSchedule(spec) => self.set_schedule(spec).err(),
            Command::Fork {
                change,
                horizon,
                ask,
            } => self.fork(change, *horizon, *ask)?,
            Command::EndBranch => match &self.branch {
                None => Some("no comparison is under way".into()),
                Some(f) if f.awaiting.is_some() => {
                    Some("the comparison is over: keep a line".into())
                }
                Some(f) if f.comparison.steps() == 0 => {
                    Some("the branch has not taken a step yet".into())
                }
                Some(_) => {
                    self.end_branch()?;
                    None
                }
            },
            Command::KeepLine { branch, save_other } => self.keep_line(*branch, *save_other)?,
            Command::Resume | Command::Step if self.awaiting_decision() => Some(KEEP_A_LINE.into()),
            Command::SetAugment(on) => {
                self.set_augment(*on);
                None
            }
            Command::SetClassWeights(on) => {
                self.set_class_weights(*on);
                None
            }
            Command::SetClipGradNorm(max) if clip_norm_problem(*max).is_some() => {
                clip_norm_problem(*max)
            }
            Command::SetClipGradNorm(max) => {
                self.set_clip(*max);
                None
            }
            Command::SetStopping(stopping) => self.set_stopping(*stopping),
            Command::Warn(message) => {
                self.emit(Event::Warning {
                    step,
                    message: message.clone(),
                });
                None
            }
            Command::ApplyRemedy(remedy) => self.apply_remedy(remedy)?,
            Command::UndoRemedy => self.undo_remedy()?,
            Command::ProbeActivations => {
                self.probe_next = true;
                None
            }
            Command::ShowSamples(n) if *n > crate::protocol::MAX_SAMPLES => Some(format!(
                "{n} images: at most {} at a time",
                crate::protocol::MAX_SAMPLES
            )),
            Command::ShowSamples(n) => match self.samples(*n as usize) {
                Ok(grid) => {
                    self.emit(Event::Samples { step, grid });
                    None
                }
                Err(e) => Some(e.to_string()),
            },
            Command::FindLr => match self.find_lr_between_steps()? {
                true => None,
                false => return Ok(false),
            },
            Command::Pause => {
                if !self.control.paused {
                    self.control.paused = true;
                    self.emit(Event::Paused { step });
                }
                None
            }
            Command::Resume => {
                if self.control.paused {
                    self.control.paused = false;
                    self.control.single_steps = 0;
                    self.emit(Event::Resumed { step });
                }
                None
            }
            Command::Step if self.control.paused => {
                self.control.single_steps += 1;
                None
            }
            Command::Step => Some("single steps are for a paused run".into()),
            Command::Save if self.saver.is_none() => {
                Some("this run has no run directory to save into".into())
            }
            Command::Save => {
                self.save(&[SaveKind::Last])?;
                None
            }
            Command::Stop => return Ok(false),
        };
        if let Some(reason) = refusal {
            self.emit(Event::Refused {
                step,
                command: cmd,
                reason,
            });
        }
        Ok(true)
    }

    /// The run as it is now, in memory.
    fn keep(&self) -> Result<RunSnapshot, TrainError> {
        Ok(RunSnapshot::take(
            self.progress.step,
            &self.learner,
            &self.schedule,
            self.data.augmenting,
        )?)
    }

    /// Keeps a copy to roll back to every `GOOD_STATE_EVERY` steps, unless the doctor already
    /// finds the LR too high (a run on its way to diverging is not a good state).
    fn keep_good_state(&mut self) -> Result<(), TrainError> {
        let step = self.progress.step;
        let due = self
            .last_good
            .as_ref()
            .is_none_or(|g| step >= g.step + GOOD_STATE_EVERY);
        let diverging = self
            .doctor
            .findings()
            .iter()
            .any(|f| f.kind == FindingKind::LrTooHigh);
        if due && !diverging {
            self.last_good = Some(self.keep()?);
        }
        Ok(())
    }

    /// Puts the weights, optimizer and dropout RNG back as `snap` has them, and with
    /// `settings` the schedule and the live switches too, telling the watchers what changed.
    fn restore(&mut self, snap: &RunSnapshot, settings: bool) -> Result<(), TrainError> {
        self.learner.model = snap.learner.model.duplicate()?;
        self.learner.opt = snap.learner.opt.clone();
        self.learner.rng = snap.learner.rng.clone();
        if !settings {
            return Ok(());
        }
        self.use_schedule(snap.schedule.clone());
        self.emit_schedule(ScheduleChange::Set);
        self.set_augment(snap.augmenting);
        self.set_class_weights(snap.learner.class_weights.is_some());
        self.set_clip(snap.learner.clip_grad_norm.unwrap_or(0.0));
        Ok(())
    }

    /// Follows `schedule` from the next step on; an LR change it makes is recorded and said.
    fn use_schedule(&mut self, schedule: Schedule) {
        let step = self.progress.step;
        let old = self.schedule.lr_at(step + 1);
        self.schedule = schedule;
        self.cfg.schedule = self.schedule.spec.clone();
        let new = self.schedule.lr_at(step + 1);
        if new != old {
            self.progress.lr_changes.push((step, new));
            let source = LrSource::User;
            self.emit(Event::LrChanged {
                step,
                old,
                new,
                source,
            });
        }
    }

    /// Augmentation on or off from the next batch.
    fn set_augment(&mut self, on: bool) {
        if self.data.augmenting == on {
            return;
        }
        self.data.augmenting = on;
        self.info.data_facts.augmenting = on;
        self.doctor.switches.augmenting = on;
        let augment = self.data.augment.to_string();
        let step = self.progress.step;
        self.emit(Event::AugmentChanged { step, on, augment });
    }

    /// Balanced class weights on or off from the next step.
    fn set_class_weights(&mut self, on: bool) {
        let weights = on.then(|| self.data.balanced_weights.clone());
        if self.learner.class_weights == weights {
            return;
        }
        self.learner.class_weights = weights.clone();
        self.doctor.switches.class_weights = on;
        self.cfg.class_weights = if on {
            ClassWeights::Balanced
        } else {
            ClassWeights::None
        };
        let weights = weights.unwrap_or_default();
        self.info.data_facts.class_weights = weights.clone();
        let step = self.progress.step;
        self.emit(Event::ClassWeightsChanged { step, weights });
    }

    /// Gradient clipping to `max` (0: off) from the next step.
    fn set_clip(&mut self, max: f64) {
        let clip = (max > 0.0).then_some(max);
        if self.learner.clip_grad_norm == clip {
            return;
        }
        self.learner.clip_grad_norm = clip;
        self.doctor.switches.clipping = clip.is_some();
        self.cfg.clip_grad_norm = max;
        self.info.clip_grad_norm = max;
        let step = self.progress.step;
        self.emit(Event::ClippingChanged {
            step,
            max_norm: max,
        });
    }

    /// Applies `remedy` with the run kept to go back to; the reason when it is refused (no
    /// finding in force suggests it, or it would change nothing).
    fn apply_remedy(&mut self, remedy: &Remedy) -> Result<Option<String>, TrainError> {
        let what = remedy.describe();
        if let Remedy::Restart(settings) = remedy {
            return Ok(self.suggest_config(settings));
        }
        let unchanged = match remedy {
            Remedy::ScaleLr(f) => !(f.is_finite() && *f > 0.0 && *f != 1.0),
            Remedy::Augment(on) => self.data.augmenting == *on,
            Remedy::ClassWeights(on) => self.learner.class_weights.is_some() == *on,
            Remedy::ClipGradNorm(m) => self.learner.clip_grad_norm.unwrap_or(0.0) == *m,
            Remedy::Restart(_) => false,
        };
        if unchanged {
            return Ok(Some(format!("{what}: the run is like that already")));
        }
        let finding = self
            .doctor
            .findings()
            .into_iter()
            .find_map(|f| (f.remedy.as_ref() == Some(remedy)).then_some(f.kind));
        let Some(finding) = finding else {
            return Ok(Some(format!("no finding in force suggests to {what}")));
        };
        // A new remedy ends the trial of the one before: it can no longer be undone alone.
        if let Some(record) = self.remedies.end_trial() {
            let step = self.progress.step;
            self.emit(Event::RemedyVerdict { step, record });
        }
        let snapshot = self.keep()?;
        let step = self.progress.step;
        match remedy {
            Remedy::ScaleLr(f) => {
                let now = self.schedule.lr_at(step + 1);
                if let Err(e) = self.change_lr(LearningRate::new(now * f)) {
                    return Ok(Some(e));
                }
            }
            Remedy::Augment(on) => self.set_augment(*on),
            Remedy::ClassWeights(on) => self.set_class_weights(*on),
            Remedy::ClipGradNorm(m) => self.set_clip(*m),
            Remedy::Restart(_) => {}
        }
        let record = RemedyRecord {
            step,
            remedy: remedy.clone(),
            finding,
            undone_at: None,
            verdict: None,
        };
        let until = self.remedies.start(record.clone(), snapshot);
        self.emit(Event::RemedyApplied {
            step,
            record,
            until,
        });
        Ok(None)
    }

    /// The restart remedies: `<run-dir>/suggested.toml`, this run's settings with `settings`
    /// changed. The reason when it cannot be written.
    fn suggest_config(&mut self, settings: &[Setting]) -> Option<String> {
        let remedy = Remedy::Restart(settings.to_vec());
        let Some(finding) = self
            .doctor
            .findings()
            .into_iter()
            .find_map(|f| (f.remedy.as_ref() == Some(&remedy)).then_some(f.kind))
        else {
            return Some(format!(
                "no finding in force suggests to {}",
                remedy.describe()
            ));
        };
        if self.info.run_dir.is_empty() {
            return Some("this run has no run directory to write the config into".into());
        }
        let pairs: Vec<(String, String)> = settings
            .iter()
            .map(|s| (s.key.clone(), s.value.clone()))
            .collect();
        let cfg = match self.cfg.with_settings(&pairs) {
            Ok(c) => c,
            Err(e) => return Some(e.to_string()),
        };
        let step = self.progress.step;
        let note = format!(
            "Suggested by the doctor at step {step} for {}: {}.",
            finding.title(),
            remedy.describe()
        );
        match cfg.save_suggested(&RunDir::new(&self.info.run_dir), &note) {
            Ok(path) => {
                self.emit(Event::ConfigSuggested {
                    step,
                    path: path.display().to_string(),
                    finding,
                    settings: settings.to_vec(),
                });
                None
            }
            Err(e) => Some(e.to_string()),
        }
    }

    /// Goes back to the run as it was before the remedy on trial.
    fn undo_remedy(&mut self) -> Result<Option<String>, TrainError> {
        let step = self.progress.step;
        let Some((snapshot, record)) = self.remedies.undo(step) else {
            return Ok(Some(format!(
                "no remedy to undo: one can be undone for {REMEDY_TRIAL_STEPS} steps after it is applied"
            )));
        };
        self.restore(&snapshot, true)?;
        self.emit(Event::RemedyUndone { step, record });
        Ok(None)
    }

    /// A non-finite step: back to the last good state (unless the policy is to stop), then
    /// pause, stop, or cut the LR and go on. `Some` when the run must end.
    fn on_non_finite(&mut self, what: String) -> Result<Option<FinishReason>, TrainError> {
        let (step, epoch) = (self.progress.step, self.progress.epoch);
        let policy = self.control.on_non_finite;
        // Out of rollbacks, the run stops where it last was good.
        let exhausted = policy == OnNonFinite::Rollback && self.rollbacks >= self.max_rollbacks;
        let then = if exhausted { OnNonFinite::Stop } else { policy };
        let good = self.last_good.take();
        let rolled_back_to = match &good {
            Some(g) if policy != OnNonFinite::Stop => {
                self.restore(g, false)?;
                Some(g.step)
            }
            _ => None,
        };
        self.last_good = good;
        // The doctor hears of it: the LR is the usual cause.
        let changes = self.doctor.on_non_finite(step, &what);
        let mut lr = None;
        if then == OnNonFinite::Rollback {
            self.rollbacks += 1;
            let now = self.schedule.lr_at(step + 1);
            let cut = LearningRate::new(now * 0.1).unwrap_or(LearningRate::SMALLEST);
            // A positive LR is always accepted.
            let _ = self.change_lr(Ok(cut));
            lr = Some(cut.get());
        }
        self.emit(Event::NonFinite {
            step,
            epoch,
            what,
            then,
            rolled_back_to,
            lr,
        });
        self.report_findings(changes);
        Ok(match then {
            OnNonFinite::Stop => Some(FinishReason::NonFinite),
            OnNonFinite::Pause => {
                self.control.paused = true;
                self.emit(Event::Paused { step });
                None
            }
            OnNonFinite::Rollback => None,
        })
    }

    /// The doctor's news, as events.
    fn report_findings(&mut self, changes: Vec<crate::diagnose::Change>) {
        let step = self.progress.step;
        for c in changes {
            self.emit(Event::Finding {
                step,
                finding: c.finding,
                cleared: c.cleared,
            });
        }
    }

    /// The user sets the LR of the next step: the schedule's curve moves to pass there.
    fn change_lr(&mut self, lr: Result<LearningRate, String>) -> Result<(), String> {
        let lr = lr?;
        let step = self.progress.step;
        let old = self.schedule.lr_at(step + 1);
        self.schedule.rescale(step + 1, lr.get())?;
        // What the next step uses (the LR asked for, to the last bit where floats allow).
        let new = self.schedule.lr_at(step + 1);
        self.progress.lr_changes.push((step, new));
        self.emit(Event::LrChanged {
            step,
            old,
            new,
            source: LrSource::User,
        });
        self.emit_schedule(ScheduleChange::Scaled);
        Ok(())
    }

    /// Another schedule from the next step on, starting from the LR the next step would
    /// have had.
    fn set_schedule(&mut self, text: &str) -> Result<(), String> {
        let step = self.progress.step;
        let old = self.schedule.lr_at(step + 1);
        self.schedule = self.new_schedule(text)?;
        self.cfg.schedule = self.schedule.spec.clone();
        let new = self.schedule.lr_at(step + 1);
        if new != old {
            self.progress.lr_changes.push((step, new));
        }
        self.emit_schedule(ScheduleChange::Set);
        Ok(())
    }

    /// The schedule a `--schedule` spec makes from the next step on, going on from the LR in
    /// force; the problem when the spec is not one or does not fit the steps left.
    fn new_schedule(&self, text: &str) -> Result<Schedule, String> {
        let spec: ScheduleSpec = text
            .parse()
            .map_err(|e: crate::schedule::SpecError| e.problem())?;
        let step = self.progress.step;
        let horizon = self.steps_to_end();
        let epochs_left = (self.cfg.epochs + 1).saturating_sub(self.progress.epoch);
        spec.check(epochs_left, horizon.saturating_sub(step))
            .map_err(|e| e.problem())?;
        let old = self.schedule.lr_at(step + 1);
        let origin = (
            step - self.progress.pos.batch as u64,
            self.progress.epoch.saturating_sub(1) as u64,
        );
        let spe = self.info.steps_per_epoch as u64;
        Ok(Schedule::new(spec, old, step, horizon, origin, spe))
    }

    /// The LR range test between two steps, on copies of the model and optimizer: the run's
    /// own state is untouched. The run pauses for it and stays paused (the user decides what
    /// to do with the result). Commands that arrive meanwhile wait; false when one is `Stop`.
    fn find_lr_between_steps(&mut self) -> Result<bool, TrainError> {
        let (step, epoch) = (self.progress.step, self.progress.epoch);
        if !self.control.paused {
            self.control.paused = true;
            self.emit(Event::Paused { step });
        }
        let settings = FinderSettings::default();
        let total = settings.steps;
        let (mut stop, mut waiting) = (false, Vec::new());
        let watchers = &mut self.watchers;
        let mut progress = |done: usize| {
            if done % 5 == 0 || done == total {
                watchers.emit(step, epoch, Event::LrFinderProgress { step, done, total });
            }
            while let Some(c) = watchers.try_command() {
                match c {
                    Command::Stop => stop = true,
                    c => waiting.push(c),
                }
            }
            !stop
        };
        let finding = find_lr(
            &self.learner,
            &self.data,
            &self.cfg,
            step,
            &settings,
            &mut progress,
        )?;
        if stop {
            return Ok(false);
        }
        self.emit(Event::LrFound { step, finding });
        for c in waiting {
            if !self.apply(c)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The LR range test from the model and optimizer as they are now (for `candletop
    /// lr-find`, the initial ones), on copies.
    pub fn lr_find(
        &mut self,
        settings: &FinderSettings,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<LrFinding, TrainError> {
        find_lr(
            &self.learner,
            &self.data,
            &self.cfg,
            self.progress.step,
            settings,
            progress,
        )
    }

    /// `n` training images as the model sees them now: drawn at random (a stream of their own,
    /// so the run's batches are untouched), augmented as a batch of this epoch would be.
    pub fn samples(&self, n: usize) -> Result<SampleGrid, crate::data::DataError> {
        let d = &self.data.train;
        let loader = self.data.loader(self.cfg.seed, self.progress.epoch);
        let mut rng = Rng::derive(self.cfg.seed, "samples", self.progress.step);
        // A terminal shows at most about 64 pixels a side: larger images are sent shrunk.
        let shrink = d.height.max(d.width).div_ceil(SAMPLE_SIDE).max(1);
        let (h, w) = (d.height.div_ceil(shrink), d.width.div_ceil(shrink));
        let n = n.min(d.len());
        let mut images = Vec::with_capacity(n);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let i = rng.below(d.len() as u64) as usize;
            // A position past the epoch's own draws: what a batch would see, not a repeat.
            let position = (d.len() + rng.below(1 << 30) as usize) as u64;
            let img = loader.view(d, i, position as usize)?;
            let mut px = Vec::with_capacity(d.channels * h * w);
            for c in 0..d.channels {
                for y in 0..h {
                    for x in 0..w {
                        let v = img.data[(c * d.height + y * shrink) * d.width + x * shrink];
                        px.push((v * 255.0).round() as u8);
                    }
                }
            }
            images.push(px);
            labels.push(d.labels[i] as u32);
        }
        Ok(SampleGrid {
            channels: d.channels,
            height: h,
            width: w,
            images,
            labels,
            augmented: self.data.augmenting,
        })
    }

    /// Sends an event to the watchers and records it in metrics.jsonl.
    fn emit(&mut self, e: Event) {
        let epoch = self.progress.epoch_of_last_step();
        self.watchers.emit(self.progress.step, epoch, e);
    }

    /// The model in evaluation mode on `data`.
    pub fn evaluate(
        &mut self,
        data: &Arc<Dataset>,
        batch_size: usize,
    ) -> Result<Evaluation, TrainError> {
        Ok(eval::evaluate(
            &mut self.learner.model,
            data,
            &self.data.norm,
            batch_size,
        )?)
    }

    /// One training step on `batch` without a watcher: for benchmarks and tests. Returns the
    /// loss (NaN when the step was not finite).
    pub fn step_once(&mut self, batch: &Batch) -> Result<f64, TrainError> {
        Ok(match self.learner.step(batch)? {
            StepOutcome::Updated(s) => s.loss,
            StepOutcome::NonFinite { .. } => f64::NAN,
        })
    }

    /// The activation statistics of `batch` as the run measures them every
    /// `ACTIVATION_EVERY` steps (for benchmarks and tests).
    pub fn probe_once(
        &mut self,
        batch: &Batch,
    ) -> Result<Vec<crate::protocol::LayerActivations>, TrainError> {
        let mut rng = Rng::derive(self.cfg.seed, "probe", self.progress.step);
        Ok(self.learner.probe(batch, &mut rng)?)
    }

    /// Keeps the run in memory as it does every `GOOD_STATE_EVERY` steps (for benchmarks).
    pub fn keep_once(&mut self) -> Result<(), TrainError> {
        self.last_good = Some(self.keep()?);
        Ok(())
    }

    /// The first training batch of epoch 1 (for benchmarks and tests).
    pub fn training_batch(&self, size: usize) -> Batch {
        let order = self.epoch_order(1);
        BatchStream::spawn(
            self.data.train.clone(),
            order,
            size,
            0,
            self.data.loader(self.cfg.seed, 1),
        )
        .next()
        .expect("a non-empty training set")
        .expect("a training set in memory")
    }

    /// Epoch `epoch`'s training batches from its start, as the run makes them (for tests).
    pub fn training_batches(&self, epoch: usize) -> BatchStream {
        BatchStream::spawn(
            self.data.train.clone(),
            self.epoch_order(epoch),
            self.cfg.batch_size,
            0,
            self.data.loader(self.cfg.seed, epoch),
        )
    }

    /// The loader of epoch `epoch`'s training batches (for benchmarks and tests).
    pub fn loader(&self, epoch: usize) -> Loader {
        self.data.loader(self.cfg.seed, epoch)
    }

    pub fn train_set(&self) -> Arc<Dataset> {
        self.data.train.clone()
    }

    pub fn val_set(&self) -> Arc<Dataset> {
        self.data.val.clone()
    }

    pub fn test_set(&self) -> Arc<Dataset> {
        self.data.test.clone()
    }
}

fn sampler_name(s: Sampler) -> &'static str {
    match s {
        Sampler::Shuffle => "shuffle",
        Sampler::Balanced => "balanced",
    }
}

/// Each epoch's validation loss and accuracy, in order.
fn val_metrics(history: &[EpochMetrics]) -> impl Iterator<Item = (f64, f64)> + '_ {
    history.iter().map(|e| (e.val_loss, e.val_accuracy))
}

/// Whether an epoch of `history` reached `target` (percent; 0: none).
fn reached(history: &[EpochMetrics], target: f64) -> bool {
    target > 0.0 && history.iter().any(|e| 100.0 * e.val_accuracy >= target)
}
