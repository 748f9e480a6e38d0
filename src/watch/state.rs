//! What a watcher knows about a run, folded from the trainer's events: the latest values, bounded
//! histories for plotting, and a log of notable events with the one text each event reads as.
//! Plain data; the terminal UI draws it, the headless reporter prints it.

use std::collections::VecDeque;

use crate::protocol::{
    BranchVerdict, DataFacts, EpochMetrics, EvalMetrics, Event, Finding, FinishReason, Horizon,
    LayerActivations, LrFinding, LrSource, Record, RemedyRecord, RunInfo, SampleGrid, Setting,
    StepMetrics,
};
use crate::schedule::Schedule;

use super::words::{self, Context, LogKind};

use serde::{Deserialize, Serialize};

/// Points kept per plotted series before the resolution is halved.
pub const SERIES_CAPACITY: usize = 1024;
/// Points kept per layer for the gradient history (the heat strip).
pub const GRAD_TREND_CAPACITY: usize = 256;
/// Lines kept in the event log.
pub const LOG_CAPACITY: usize = 200;
/// Epoch records kept: past it, every other older one goes (the best by accuracy and by loss,
/// and the last two, always stay), so that a run of many short epochs draws the same curves
/// from a state, and an attach snapshot, of bounded size. metrics.jsonl keeps every epoch.
pub const EPOCH_CAPACITY: usize = 1024;

/// A bounded series of (x, y) points: when full, neighbouring points are averaged in pairs and
/// each new point then stands for twice as many inputs, so memory never grows with the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    points: Vec<(f64, f64)>,
    capacity: usize,
    /// Inputs per stored point.
    stride: u64,
    bucket: (f64, f64, u64),
}

impl Series {
    pub fn new(capacity: usize) -> Self {
        Self {
            points: Vec::new(),
            capacity: capacity.max(2),
            stride: 1,
            bucket: (0.0, 0.0, 0),
        }
    }

    pub fn push(&mut self, x: f64, y: f64) {
        if !y.is_finite() {
            return;
        }
        let b = &mut self.bucket;
        b.0 += x;
        b.1 += y;
        b.2 += 1;
        if b.2 < self.stride {
            return;
        }
        let n = b.2 as f64;
        self.points.push((b.0 / n, b.1 / n));
        self.bucket = (0.0, 0.0, 0);
        if self.points.len() >= self.capacity {
            self.points = self
                .points
                .chunks(2)
                .map(|c| {
                    let n = c.len() as f64;
                    (
                        c.iter().map(|p| p.0).sum::<f64>() / n,
                        c.iter().map(|p| p.1).sum::<f64>() / n,
                    )
                })
                .collect();
            self.stride *= 2;
        }
    }

    /// The stored points, then the mean of the bucket being filled, so the newest inputs show
    /// at once.
    pub fn points(&self) -> Vec<(f64, f64)> {
        let mut out = self.points.clone();
        let (x, y, n) = self.bucket;
        if n > 0 {
            out.push((x / n as f64, y / n as f64));
        }
        out
    }

    pub fn stride(&self) -> u64 {
        self.stride
    }
}

/// Where the run is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Starting,
    Running,
    Paused,
    Finished(FinishReason),
    Error(String),
}

impl Status {
    pub fn label(&self) -> &'static str {
        match self {
            Status::Starting => "STARTING",
            Status::Running => "RUNNING",
            Status::Paused => "PAUSED",
            Status::Finished(FinishReason::Completed) => "FINISHED",
            Status::Finished(FinishReason::EarlyStopped) => "STOPPED EARLY",
            Status::Finished(FinishReason::TargetReached) => "AT TARGET",
            Status::Finished(FinishReason::Stopped | FinishReason::NonFinite) => "STOPPED",
            Status::Error(_) => "ERROR",
        }
    }

    /// True while the trainer thread is alive and may take steps.
    pub fn is_live(&self) -> bool {
        matches!(self, Status::Starting | Status::Running | Status::Paused)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub step: u64,
    pub kind: LogKind,
    pub text: String,
}

/// Plain data: a watcher that attaches to a run gets it whole (bounded: the series halve their
/// resolution, the log keeps its newest lines), then the live messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub info: Option<RunInfo>,
    pub status: Status,
    pub step: u64,
    pub epoch: usize,
    pub lr: f64,
    pub images_per_sec: f64,
    /// Per step: training loss and batch accuracy as measured (means when thinned), the LR.
    pub train_loss: Series,
    pub train_accuracy: Series,
    pub lr_trace: Series,
    /// Steps where the user changed the LR, with the new value.
    pub lr_marks: VecDeque<(u64, f64)>,
    pub loss_smoothed: Option<f64>,
    pub accuracy_smoothed: Option<f64>,
    pub grad_norms: Vec<f64>,
    pub update_ratios: Vec<f64>,
    /// Per parameter: the gradient norm over the run (thinned like the other series).
    pub grad_trends: Vec<Series>,
    pub epochs: Vec<EpochMetrics>,
    pub test: Option<EvalMetrics>,
    pub log: VecDeque<LogLine>,
    /// Lines ever logged (the log keeps the newest `LOG_CAPACITY`).
    pub logged: u64,
    pub elapsed_secs: f64,
    /// Path of the newest checkpoint written.
    pub last_save: Option<String>,
    /// The schedule in force: the LR planned for the rest of the run comes from it.
    pub schedule: Option<Schedule>,
    /// The LR range test: under way, or its result.
    pub lr_finder: Option<LrFinder>,
    /// The latest training images asked for, as the model saw them, and the step.
    pub samples: Option<(u64, SampleGrid)>,
    /// The doctor's findings in force, and since which step.
    pub findings: Vec<(u64, Finding)>,
    /// The latest activation statistics, and the step they were measured at.
    pub activations: Option<(u64, Vec<LayerActivations>)>,
    /// The remedy that can still be undone, and the step until which it can.
    pub remedy_trial: Option<(RemedyRecord, u64)>,
    /// The latest what-if comparison: under way, waiting for a decision, or decided.
    #[serde(default)]
    pub branch: Option<BranchView>,
}

/// A what-if comparison as a watcher sees it: the fork, both lines' training loss since it
/// (per step message, on the same batches), the verdict and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchView {
    pub change: Vec<Setting>,
    pub forked_at: u64,
    pub until: u64,
    pub horizon: Horizon,
    pub ask: bool,
    pub main: Series,
    pub theirs: Series,
    pub verdict: Option<BranchVerdict>,
    pub outcome: Option<BranchOutcome>,
}

/// What became of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BranchOutcome {
    Main,
    Branch,
    Abandoned,
}

impl BranchView {
    /// Under way: both lines are training.
    pub fn running(&self) -> bool {
        self.verdict.is_none() && self.outcome.is_none()
    }

    /// Over, and waiting for a watcher to keep one line.
    pub fn awaiting(&self) -> bool {
        self.outcome.is_none() && self.verdict.as_ref().is_some_and(|v| v.awaiting)
    }
}

/// What a watcher knows of an LR range test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrFinder {
    /// Steps done of the sweep's total.
    pub done: usize,
    pub total: usize,
    pub finding: Option<LrFinding>,
}

/// Weight of the newest step in the smoothed loss and accuracy.
const SMOOTHING: f64 = 0.1;

impl Default for RunState {
    fn default() -> Self {
        Self {
            info: None,
            status: Status::Starting,
            step: 0,
            epoch: 0,
            lr: 0.0,
            images_per_sec: 0.0,
            train_loss: Series::new(SERIES_CAPACITY),
            train_accuracy: Series::new(SERIES_CAPACITY),
            lr_trace: Series::new(SERIES_CAPACITY),
            lr_marks: VecDeque::new(),
            loss_smoothed: None,
            accuracy_smoothed: None,
            grad_norms: Vec::new(),
            update_ratios: Vec::new(),
            grad_trends: Vec::new(),
            epochs: Vec::new(),
            test: None,
            log: VecDeque::new(),
            logged: 0,
            elapsed_secs: 0.0,
            last_save: None,
            schedule: None,
            lr_finder: None,
            samples: None,
            findings: Vec::new(),
            activations: None,
            remedy_trial: None,
            branch: None,
        }
    }
}

fn smooth(prev: Option<f64>, x: f64, steps: u32) -> f64 {
    match prev {
        // Folded steps count as several: the weight of the old value decays per step.
        Some(p) => {
            let keep = (1.0 - SMOOTHING).powi(steps as i32);
            keep * p + (1.0 - keep) * x
        }
        None => x,
    }
}

impl RunState {
    /// Class balance and the data switches (empty before the run starts).
    pub fn data_facts(&self) -> Option<&DataFacts> {
        self.info.as_ref().map(|i| &i.data_facts)
    }

    /// The latest what-if branch's training loss from its fork on, smoothed by an EMA of
    /// `span` that starts from the main line's values before the fork (as the main line's own
    /// curve does).
    pub fn branch_curve(&self, span: u32) -> Option<Vec<(f64, f64)>> {
        let b = self.branch.as_ref()?;
        let theirs = b.theirs.points();
        if theirs.is_empty() {
            return None;
        }
        let fork = b.forked_at as f64;
        let mut raw: Vec<(f64, f64)> = self
            .train_loss
            .points()
            .into_iter()
            .filter(|p| p.0 <= fork)
            .collect();
        raw.extend(theirs);
        let curve = super::chart::ema(&raw, span);
        Some(curve.into_iter().filter(|p| p.0 > fork).collect())
    }

    /// The activation statistics of the layer whose weight is parameter `param`, if measured.
    pub fn activations_of(&self, param: &str) -> Option<&LayerActivations> {
        let layer = param.strip_suffix(".weight")?;
        let (_, layers) = self.activations.as_ref()?;
        layers.iter().find(|l| l.layer == layer)
    }

    /// The findings in force, warnings first, causes before the symptoms they explain, then
    /// the oldest first.
    pub fn findings_by_severity(&self) -> Vec<&(u64, Finding)> {
        let mut v: Vec<_> = self.findings.iter().collect();
        v.sort_by(|a, b| {
            b.1.severity
                .cmp(&a.1.severity)
                .then(a.1.kind.is_symptom().cmp(&b.1.kind.is_symptom()))
                .then(a.0.cmp(&b.0))
        });
        v
    }

    /// The remedy the key `r` applies: that of the first finding (most severe) that has one.
    pub fn top_remedy(&self) -> Option<&crate::protocol::Remedy> {
        self.findings_by_severity()
            .into_iter()
            .find_map(|(_, f)| f.remedy.as_ref())
    }

    /// The remedy the key `u` would undo now.
    pub fn undoable(&self) -> Option<&RemedyRecord> {
        self.remedy_trial
            .as_ref()
            .filter(|(_, until)| self.step < *until)
            .map(|(r, _)| r)
    }

    pub fn total_steps(&self) -> u64 {
        self.info.as_ref().map_or(0, |i| i.total_steps)
    }

    pub fn best_val_accuracy(&self) -> Option<&EpochMetrics> {
        self.epochs
            .iter()
            .max_by(|a, b| a.val_accuracy.total_cmp(&b.val_accuracy))
    }

    pub fn best_val_loss(&self) -> Option<&EpochMetrics> {
        self.epochs
            .iter()
            .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
    }

    /// Seconds until the last step at the current speed, when it can be told.
    pub fn eta_secs(&self) -> Option<f64> {
        let info = self.info.as_ref()?;
        if self.images_per_sec <= 0.0 || !self.status.is_live() {
            return None;
        }
        let left = self.total_steps().saturating_sub(self.step) as f64;
        Some(left * info.batch_size as f64 / self.images_per_sec)
    }

    /// Early stopping's count: epochs without improvement and the patience, under the spec in
    /// force (counted over the run's epochs, as the trainer counts).
    pub fn early_stop_count(&self) -> Option<(u32, u32)> {
        let spec = self.info.as_ref()?.stopping.early_stop;
        if !spec.is_on() {
            return None;
        }
        let state = crate::stopping::StopState::replay(
            &spec,
            self.epochs.iter().map(|e| (e.val_loss, e.val_accuracy)),
        );
        Some((state.bad_epochs, spec.patience))
    }

    /// The target accuracy in force and when the run will reach it, from its epochs so far,
    /// with the seconds until then at the current speed.
    pub fn target_forecast(&self) -> Option<(f64, crate::stopping::Forecast, Option<f64>)> {
        let info = self.info.as_ref()?;
        let target = info.stopping.target_acc;
        if target <= 0.0 {
            return None;
        }
        let acc: Vec<f64> = self.epochs.iter().map(|e| e.val_accuracy).collect();
        let f = crate::stopping::forecast(&acc, target);
        let secs = match f {
            crate::stopping::Forecast::At { epoch, .. } if self.images_per_sec > 0.0 => {
                let epoch_steps = info.steps_per_epoch as u64;
                let until = epoch as u64 * epoch_steps;
                let first = info.resumed.as_ref().map_or(0, |r| r.step);
                // Steps are counted from the run's start; a resumed run's epochs too.
                let left = until.saturating_sub(self.step.max(first)) as f64;
                Some(left * info.batch_size as f64 / self.images_per_sec)
            }
            _ => None,
        };
        Some((target, f, secs))
    }

    pub fn on_step(&mut self, m: &StepMetrics) {
        if self.status == Status::Starting {
            self.status = Status::Running;
        }
        self.step = m.step;
        self.epoch = m.epoch;
        self.lr = m.lr;
        self.images_per_sec = m.images_per_sec;
        let x = m.step as f64;
        let loss = smooth(self.loss_smoothed, m.loss, m.steps);
        let acc = smooth(self.accuracy_smoothed, m.accuracy, m.steps);
        // The charts keep the raw values (means of folded steps) and smooth them as the user
        // chooses; the smoothed values here are for the lines a watcher prints.
        if m.loss.is_finite() {
            self.loss_smoothed = Some(loss);
            self.train_loss.push(x, m.loss);
        }
        self.accuracy_smoothed = Some(acc);
        self.train_accuracy.push(x, m.accuracy);
        self.lr_trace.push(x, m.lr);
        if self.grad_trends.len() != m.grad_norms.len() {
            self.grad_trends = vec![Series::new(GRAD_TREND_CAPACITY); m.grad_norms.len()];
        }
        for (trend, &g) in self.grad_trends.iter_mut().zip(&m.grad_norms) {
            trend.push(x, g);
        }
        self.grad_norms.clone_from(&m.grad_norms);
        self.update_ratios.clone_from(&m.update_ratios);
        if let (Some(b), Some(theirs)) = (self.branch.as_mut(), m.branch) {
            if b.running() {
                b.main.push(x, m.loss);
                b.theirs.push(x, theirs.loss);
            }
        }
    }

    pub fn on_event(&mut self, e: &Event) {
        if self.fold(e) {
            let context = Context {
                step: self.step,
                epochs: self.info.as_ref().map(|i| i.epochs),
            };
            for (step, kind, text) in words::lines(e, context) {
                self.log(step, kind, text);
            }
        }
    }

    /// A finding raised or cleared; false when it is one in force with new numbers (updated
    /// quietly, keeping its start).
    fn fold_finding(&mut self, step: u64, finding: &Finding, cleared: bool) -> bool {
        if let Some(kept) = self
            .findings
            .iter_mut()
            .find(|(_, f)| !cleared && f.kind == finding.kind && f.severity >= finding.severity)
        {
            kept.1 = finding.clone();
            return false;
        }
        self.findings.retain(|(_, f)| f.kind != finding.kind);
        if !cleared {
            self.findings.push((step, finding.clone()));
        }
        true
    }

    /// Folds an event into the state; false when it says nothing new (a finding updated
    /// quietly with new numbers).
    fn fold(&mut self, e: &Event) -> bool {
        match e {
            Event::Started(info) => {
                self.info = Some(info.clone());
                self.status = Status::Running;
                let step = info.resumed.as_ref().map_or(0, |r| r.step);
                self.step = step;
                self.epoch = info.resumed.as_ref().map_or(1, |r| r.epoch);
                self.schedule = Some(info.schedule.clone());
                self.lr = info.schedule.lr_at(step + 1);
            }
            Event::Epoch(m) => {
                self.elapsed_secs = m.elapsed_secs;
                self.epochs.push(m.clone());
                if self.epochs.len() > EPOCH_CAPACITY {
                    thin_epochs(&mut self.epochs);
                }
            }
            Event::Evaluated(m) => self.test = Some(m.clone()),
            Event::LrChanged {
                step, new, source, ..
            } => {
                self.lr = *new;
                if *source == LrSource::User {
                    self.lr_marks.push_back((*step, *new));
                    if self.lr_marks.len() > LOG_CAPACITY {
                        self.lr_marks.pop_front();
                    }
                }
            }
            Event::ScheduleChanged { step, schedule, .. } => {
                self.lr = schedule.lr_at(step + 1);
                self.schedule = Some(schedule.clone());
            }
            Event::PlateauCut { cut, .. } => self.lr = cut.new,
            Event::LrFinderProgress { done, total, .. } => {
                self.lr_finder = Some(LrFinder {
                    done: *done,
                    total: *total,
                    finding: None,
                });
            }
            Event::LrFound { finding, .. } => {
                let done = finding.points.len();
                let total = self.lr_finder.as_ref().map_or(done, |f| f.total);
                let finding = Some(finding.clone());
                self.lr_finder = Some(LrFinder {
                    done,
                    total,
                    finding,
                });
            }
            Event::CheckpointSaved { path, .. } => self.last_save = Some(path.clone()),
            Event::AugmentChanged { on, augment, .. } => {
                if let Some(i) = &mut self.info {
                    i.data_facts.augmenting = *on;
                    i.data_facts.augment.clone_from(augment);
                }
            }
            Event::ClippingChanged { max_norm, .. } => {
                if let Some(i) = &mut self.info {
                    i.clip_grad_norm = *max_norm;
                }
            }
            Event::StoppingChanged { stopping, .. } => {
                if let Some(i) = &mut self.info {
                    i.stopping = *stopping;
                }
            }
            Event::TargetReached { .. } | Event::EarlyStopped { .. } => {}
            Event::ClassWeightsChanged { weights, .. } => {
                if let Some(i) = &mut self.info {
                    i.data_facts.class_weights.clone_from(weights);
                }
            }
            Event::Finding {
                step,
                finding,
                cleared,
            } => return self.fold_finding(*step, finding, *cleared),
            Event::Samples { step, grid } => self.samples = Some((*step, grid.clone())),
            Event::Paused { .. } => self.status = Status::Paused,
            Event::Resumed { .. } => self.status = Status::Running,
            // A step that ran, though it changed nothing.
            Event::NonFinite { step, .. } => self.step = (*step).max(self.step),
            Event::RemedyApplied { record, until, .. } => {
                self.remedy_trial = Some((record.clone(), *until));
            }
            Event::RemedyUndone { .. } => self.remedy_trial = None,
            Event::RemedyVerdict { record, .. } => {
                if self
                    .remedy_trial
                    .as_ref()
                    .is_some_and(|(r, _)| r.step == record.step)
                {
                    self.remedy_trial = None;
                }
            }
            Event::Activations { step, layers } => {
                self.activations = Some((*step, layers.clone()));
            }
            Event::Finished {
                step,
                reason,
                elapsed_secs,
                ..
            } => {
                self.step = (*step).max(self.step);
                self.elapsed_secs = *elapsed_secs;
                self.status = Status::Finished(*reason);
            }
            Event::Error { message } => self.status = Status::Error(message.clone()),
            // Said, not kept.
            Event::Refused { .. }
            | Event::CheckpointFailed { .. }
            | Event::Warning { .. }
            | Event::ConfigSuggested { .. } => {}
            Event::Forked {
                step,
                change,
                until,
                horizon,
                ask,
            } => {
                self.branch = Some(BranchView {
                    change: change.clone(),
                    forked_at: *step,
                    until: *until,
                    horizon: *horizon,
                    ask: *ask,
                    main: Series::new(SERIES_CAPACITY),
                    theirs: Series::new(SERIES_CAPACITY),
                    verdict: None,
                    outcome: None,
                });
            }
            Event::BranchVerdict { verdict, .. } => {
                if let Some(b) = &mut self.branch {
                    b.verdict = Some(verdict.clone());
                    if !verdict.awaiting {
                        b.outcome = Some(if verdict.kept_branch {
                            BranchOutcome::Branch
                        } else {
                            BranchOutcome::Main
                        });
                    }
                }
            }
            Event::BranchChanged { change, .. } => {
                if let Some(b) = &mut self.branch {
                    b.change.clone_from(change);
                }
            }
            Event::BranchKept { branch, .. } => {
                if let Some(b) = &mut self.branch {
                    b.outcome = Some(if *branch {
                        BranchOutcome::Branch
                    } else {
                        BranchOutcome::Main
                    });
                }
            }
            Event::BranchAbandoned { forked_at, .. } => {
                if let Some(b) = (self.branch.as_mut())
                    .filter(|b| b.forked_at == *forked_at && b.outcome.is_none())
                {
                    b.outcome = Some(BranchOutcome::Abandoned);
                }
            }
        }
        true
    }

    /// The LR the schedule plans from the next step to the end, at most `points` of them.
    pub fn plan(&self, points: usize) -> Vec<(u64, f64)> {
        self.schedule
            .as_ref()
            .map(|s| s.plan(self.step + 1, points))
            .unwrap_or_default()
    }

    /// A finished (or dead) run as its record (metrics.jsonl) holds it: every step record and
    /// event folded in order.
    pub fn replay<'a>(records: impl IntoIterator<Item = &'a Record>) -> RunState {
        let mut run = RunState::default();
        for record in records {
            match record {
                Record::Step(m) => run.on_step(m),
                Record::Event(e) => run.on_event(e),
            }
        }
        run
    }

    /// The trainer's channels closed without a last word.
    pub fn on_trainer_gone(&mut self) {
        if self.status.is_live() {
            let message = "the training thread ended without a word".to_string();
            self.log(self.step, LogKind::Error, format!("error: {message}"));
            self.status = Status::Error(message);
        }
    }

    /// Adds a line to the event log (also used by the UI for its own notices).
    pub fn log(&mut self, step: u64, kind: LogKind, text: String) {
        self.log.push_back(LogLine { step, kind, text });
        self.logged += 1;
        if self.log.len() > LOG_CAPACITY {
            self.log.pop_front();
        }
    }

    /// The lines logged after the first `seen` ever logged (those still kept).
    pub fn log_since(&self, seen: u64) -> impl Iterator<Item = &LogLine> {
        let new = self.logged.saturating_sub(seen).min(self.log.len() as u64) as usize;
        self.log.range(self.log.len() - new..)
    }
}

/// Half the epoch records or fewer: those whose epoch is a multiple of the smallest power of
/// two that leaves at most half the capacity, so that what is kept spreads evenly over the run
/// (the epochs since are all kept until the next thinning). The best by validation accuracy and
/// by validation loss and the last two (the header compares the last with the one before)
/// always stay.
fn thin_epochs(epochs: &mut Vec<EpochMetrics>) {
    let n = epochs.len();
    let best = |better: fn(&EpochMetrics, &EpochMetrics) -> bool| {
        (0..n).reduce(|b, i| if better(&epochs[i], &epochs[b]) { i } else { b })
    };
    // As `best_val_accuracy` and `best_val_loss` choose among equals.
    let best_acc = best(|a, b| a.val_accuracy.total_cmp(&b.val_accuracy).is_ge());
    let best_loss = best(|a, b| a.val_loss.total_cmp(&b.val_loss).is_lt());
    let stays = |i: usize| i + 2 >= n || Some(i) == best_acc || Some(i) == best_loss;
    let kept = |stride: usize| {
        (0..n)
            .filter(|&i| epochs[i].epoch % stride == 0 || stays(i))
            .count()
    };
    let mut stride = 2;
    while kept(stride) > EPOCH_CAPACITY / 2 {
        stride *= 2;
    }
    let mut i = 0;
    epochs.retain(|e| {
        let keep = e.epoch % stride == 0 || stays(i);
        i += 1;
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_epochs_keep_a_bounded_spread_with_the_best_and_the_last() {
        let mut run = RunState::default();
        let n = 5000;
        for epoch in 1..=n {
            let good = if epoch == 700 { 0.99 } else { 0.5 };
            run.on_event(&Event::Epoch(EpochMetrics {
                epoch,
                step: 10 * epoch as u64,
                train_loss: 1.0,
                train_accuracy: 0.5,
                val_loss: if epoch == 1234 { 0.01 } else { 1.0 },
                val_accuracy: good,
                val_class_accuracy: vec![good; 10],
                val_confusion: vec![],
                lr: 1e-3,
                images_per_sec: 1.0,
                elapsed_secs: epoch as f64,
            }));
        }
        let kept: Vec<usize> = run.epochs.iter().map(|e| e.epoch).collect();
        assert!(kept.len() <= EPOCH_CAPACITY, "{}", kept.len());
        assert!(kept.len() >= EPOCH_CAPACITY / 4, "{}", kept.len());
        assert!(kept.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(&kept[kept.len() - 2..], [n - 1, n]);
        assert_eq!(run.best_val_accuracy().unwrap().epoch, 700);
        assert_eq!(run.best_val_loss().unwrap().epoch, 1234);
        // Spread evenly over the whole run: no gap wider than 1/64 of it.
        assert!(kept[0] <= n / 64, "{kept:?}");
        assert!(kept.windows(2).all(|w| w[1] - w[0] <= n / 64), "{kept:?}");
    }
    use crate::protocol::{
        Command, FinderPoint, LrSource, OnNonFinite, Resumed, ScheduleChange, SettingChange,
        Severity,
    };
    use crate::schedule::PlateauCut;

    /// Which variant an event is; the match breaks the build when a variant is added, so that
    /// the test below covers it too.
    fn kind(e: &Event) -> usize {
        match e {
            Event::Started(_) => 0,
            Event::Epoch(_) => 1,
            Event::Evaluated(_) => 2,
            Event::LrChanged { .. } => 3,
            Event::Paused { .. } => 4,
            Event::Resumed { .. } => 5,
            Event::Refused { .. } => 6,
            Event::NonFinite { .. } => 7,
            Event::CheckpointSaved { .. } => 8,
            Event::CheckpointFailed { .. } => 9,
            Event::Warning { .. } => 10,
            Event::Finished { .. } => 11,
            Event::Error { .. } => 12,
            Event::ScheduleChanged { .. } => 13,
            Event::PlateauCut { .. } => 14,
            Event::LrFinderProgress { .. } => 15,
            Event::LrFound { .. } => 16,
            Event::AugmentChanged { .. } => 17,
            Event::ClassWeightsChanged { .. } => 18,
            Event::Samples { .. } => 19,
            Event::Finding { .. } => 20,
            Event::ClippingChanged { .. } => 21,
            Event::RemedyApplied { .. } => 22,
            Event::RemedyUndone { .. } => 23,
            Event::RemedyVerdict { .. } => 24,
            Event::Activations { .. } => 25,
            Event::ConfigSuggested { .. } => 26,
            Event::Forked { .. } => 27,
            Event::BranchVerdict { .. } => 28,
            Event::BranchKept { .. } => 29,
            Event::BranchAbandoned { .. } => 30,
            Event::BranchChanged { .. } => 31,
            Event::StoppingChanged { .. } => 32,
            Event::EarlyStopped { .. } => 33,
            Event::TargetReached { .. } => 34,
        }
    }
    const KINDS: usize = 35;

    fn info() -> RunInfo {
        RunInfo {
            stopping: Default::default(),
            clip_grad_norm: 0.0,
            data_facts: Default::default(),
            data: "d".into(),
            model: "m".into(),
            param_count: 1,
            optimizer: "AdamW wd 0.01".into(),
            layers: vec!["w".into()],
            classes: vec!["a".into(), "b".into()],
            epochs: 2,
            steps_per_epoch: 10,
            total_steps: 20,
            batch_size: 4,
            run_dir: "r".into(),
            resumed: Some(Resumed {
                from: "x.h5".into(),
                step: 10,
                epoch: 2,
                changes: vec![SettingChange {
                    flag: "--lr".into(),
                    old: "1.00e-3".into(),
                    new: "2.00e-3".into(),
                }],
                notes: vec!["state starts fresh".into()],
            }),
            schedule: Schedule::new(
                "cosine:min=1e-4".parse().unwrap(),
                2e-3,
                10,
                20,
                (10, 1),
                10,
            ),
        }
    }

    fn step(step: u64) -> StepMetrics {
        StepMetrics {
            step,
            epoch: 2,
            steps: 1,
            loss: 0.5,
            loss_max: 0.0,
            accuracy: 0.75,
            lr: 2e-3,
            grad_norms: vec![0.1],
            update_ratios: vec![1e-3],
            images_per_sec: 100.0,
            branch: None,
        }
    }

    /// Every kind of event, in the order of a run: what it does to the state, and the one line
    /// it adds to the log (which the TUI shows and headless prints).
    #[test]
    fn every_event_folds_into_the_state_and_reads_as_one_log_line() {
        let mut run = RunState::default();
        let mut seen = [false; KINDS];
        let mut expect = |run: &mut RunState, e: Event, lines: &[(LogKind, &str)]| {
            seen[kind(&e)] = true;
            let before = run.logged;
            run.on_event(&e);
            let got: Vec<(LogKind, String)> = run
                .log_since(before)
                .map(|l| (l.kind, l.text.clone()))
                .collect();
            let want: Vec<(LogKind, String)> =
                lines.iter().map(|(k, t)| (*k, t.to_string())).collect();
            assert_eq!(got, want, "{e:?}");
        };
        expect(
            &mut run,
            Event::Started(info()),
            &[
                (LogKind::Milestone, "started: m on d"),
                (
                    LogKind::Info,
                    "AdamW wd 0.01, lr 2.00e-3 cosine to 1e-4; 2 epochs x 10 steps of 4; run dir r",
                ),
                (LogKind::Info, "resumed from x.h5 at step 10"),
                (
                    LogKind::Action,
                    "--lr 1.00e-3 -> 2.00e-3 (given with --resume)",
                ),
                (LogKind::Warning, "note: state starts fresh"),
            ],
        );
        assert_eq!(
            (run.status.clone(), run.step, run.epoch),
            (Status::Running, 10, 2)
        );
        assert_eq!(run.total_steps(), 20);
        run.on_step(&step(11));
        assert_eq!((run.step, run.lr, run.loss_smoothed), (11, 2e-3, Some(0.5)));
        expect(
            &mut run,
            Event::LrChanged {
                step: 11,
                old: 2e-3,
                new: 4e-3,
                source: LrSource::User,
            },
            &[(LogKind::Action, "lr 2.00e-3 -> 4.00e-3")],
        );
        assert_eq!((run.lr, run.lr_marks.back()), (4e-3, Some(&(11, 4e-3))));
        let step_sched = Schedule::new("step:1:0.5".parse().unwrap(), 4e-3, 11, 20, (10, 1), 10);
        expect(
            &mut run,
            Event::ScheduleChanged {
                step: 11,
                schedule: step_sched.clone(),
                why: ScheduleChange::Set,
            },
            &[(
                LogKind::Action,
                "schedule step x0.5 every 1 ep from step 12, lr 4.00e-3",
            )],
        );
        // The plan: the rest of this epoch at 4e-3, the next at half that.
        assert_eq!(
            run.plan(100),
            [
                (12, 4e-3),
                (13, 4e-3),
                (14, 4e-3),
                (15, 4e-3),
                (16, 4e-3),
                (17, 4e-3),
                (18, 4e-3),
                (19, 4e-3),
                (20, 4e-3)
            ]
        );
        expect(
            &mut run,
            Event::ScheduleChanged {
                step: 11,
                schedule: step_sched,
                why: ScheduleChange::Scaled,
            },
            &[],
        );
        expect(
            &mut run,
            Event::PlateauCut {
                step: 11,
                epoch: 2,
                monitor: "val_loss".into(),
                cut: PlateauCut {
                    old: 4e-3,
                    new: 2e-3,
                    bad_epochs: 4,
                    best: 0.25,
                    cooldown: 2,
                },
            },
            &[(
                LogKind::Info,
                "plateau: val_loss has not improved on 0.2500 for 4 epochs: lr 4.00e-3 -> 2.00e-3, then 2 epochs without cuts",
            )],
        );
        assert_eq!(run.lr, 2e-3);
        expect(
            &mut run,
            Event::LrFinderProgress {
                step: 11,
                done: 5,
                total: 100,
            },
            &[],
        );
        assert_eq!(
            run.lr_finder.as_ref().map(|f| (f.done, f.total)),
            Some((5, 100))
        );
        let point = |lr: f64, loss: f64| FinderPoint {
            lr,
            loss,
            smoothed: loss,
        };
        expect(
            &mut run,
            Event::LrFound {
                step: 11,
                finding: LrFinding {
                    points: vec![point(1e-4, 2.3), point(1e-3, 1.5), point(1e-2, 9.0)],
                    suggestion: Some(1),
                    how: "steepest fall".into(),
                    stopped: None,
                },
            },
            &[(
                LogKind::Info,
                "lr finder: 1.00e-3 suggested (steepest fall)",
            )],
        );
        assert!(run.lr_finder.as_ref().unwrap().finding.is_some());
        expect(
            &mut run,
            Event::Refused {
                step: 11,
                command: Command::ScaleLr(0.0),
                reason: "0 is not a positive factor".into(),
            },
            &[(
                LogKind::Warning,
                "refused lr x0: 0 is not a positive factor",
            )],
        );
        expect(
            &mut run,
            Event::AugmentChanged {
                step: 11,
                on: true,
                augment: "pad-crop:4,flip:0.5".into(),
            },
            &[(
                LogKind::Action,
                "augmentation on from step 12: pad-crop:4,flip:0.5",
            )],
        );
        let facts = run.data_facts().unwrap();
        assert_eq!(facts.active_transforms().as_deref(), Some("pad-crop flip"));
        expect(
            &mut run,
            Event::ClassWeightsChanged {
                step: 11,
                weights: vec![0.5, 2.5],
            },
            &[(
                LogKind::Action,
                "class weights balanced from step 12: 0.50 to 2.50",
            )],
        );
        expect(
            &mut run,
            Event::ClippingChanged {
                step: 11,
                max_norm: 1.0,
            },
            &[(
                LogKind::Action,
                "gradients clipped to a global norm of 1 from step 12",
            )],
        );
        expect(
            &mut run,
            Event::Samples {
                step: 11,
                grid: SampleGrid {
                    channels: 1,
                    height: 1,
                    width: 1,
                    images: vec![vec![7]],
                    labels: vec![1],
                    augmented: true,
                },
            },
            &[],
        );
        assert_eq!(run.samples.as_ref().map(|s| s.0), Some(11));
        let finding = Finding {
            kind: crate::protocol::FindingKind::LrTooHigh,
            severity: Severity::Warning,
            evidence: "the loss rose".into(),
            action: "cut the LR".into(),
            remedy: None,
        };
        expect(
            &mut run,
            Event::Finding {
                step: 11,
                finding: finding.clone(),
                cleared: false,
            },
            &[(
                LogKind::Warning,
                "warning: learning rate too high: the loss rose; try cut the LR",
            )],
        );
        assert_eq!(run.findings.len(), 1);
        // New numbers for a finding in force: updated quietly, its start kept.
        let newer = Finding {
            evidence: "the loss rose again".into(),
            ..finding.clone()
        };
        expect(
            &mut run,
            Event::Finding {
                step: 12,
                finding: newer,
                cleared: false,
            },
            &[],
        );
        assert_eq!(run.findings[0].0, 11);
        assert_eq!(run.findings[0].1.evidence, "the loss rose again");
        expect(
            &mut run,
            Event::Finding {
                step: 11,
                finding,
                cleared: true,
            },
            &[(LogKind::Info, "resolved: learning rate too high")],
        );
        assert!(run.findings.is_empty());
        expect(
            &mut run,
            Event::Paused { step: 11 },
            &[(LogKind::Action, "paused")],
        );
        assert_eq!(run.status, Status::Paused);
        assert_eq!(run.eta_secs(), Some(9.0 * 4.0 / 100.0));
        expect(
            &mut run,
            Event::Resumed { step: 11 },
            &[(LogKind::Action, "resumed")],
        );
        assert_eq!(run.status, Status::Running);
        expect(
            &mut run,
            Event::NonFinite {
                step: 12,
                epoch: 2,
                what: "loss is NaN".into(),
                then: OnNonFinite::Pause,
                rolled_back_to: Some(10),
                lr: None,
            },
            &[(
                LogKind::Warning,
                "step 12: loss is NaN; rolled back to the weights and optimizer of step 10; paused: cut the LR (r or -), then p resumes",
            )],
        );
        assert_eq!(run.step, 12, "the header counts the step that ran");
        let record = RemedyRecord {
            step: 12,
            remedy: crate::protocol::Remedy::ScaleLr(0.1),
            finding: crate::protocol::FindingKind::LrTooHigh,
            undone_at: None,
            verdict: None,
        };
        expect(
            &mut run,
            Event::RemedyApplied {
                step: 12,
                record: record.clone(),
                until: 212,
            },
            &[(
                LogKind::Action,
                "remedy for learning rate too high: cut the LR x0.1 from step 13 (u undoes it until step 212)",
            )],
        );
        assert_eq!(run.undoable(), Some(&record));
        expect(
            &mut run,
            Event::RemedyUndone {
                step: 12,
                record: RemedyRecord {
                    undone_at: Some(12),
                    ..record.clone()
                },
            },
            &[(
                LogKind::Action,
                "undone: cut the LR x0.1; the weights, optimizer, schedule and switches are those of step 12",
            )],
        );
        assert_eq!(run.undoable(), None);
        expect(
            &mut run,
            Event::RemedyVerdict {
                step: 12,
                record: RemedyRecord {
                    step: 2,
                    verdict: Some((2.0, 1.5, crate::protocol::Verdict::Helped)),
                    ..record.clone()
                },
            },
            &[(
                LogKind::Milestone,
                "verdict: cut the LR x0.1 (step 2) helped: mean loss 2.0000 before, 1.5000 over the 10 steps after",
            )],
        );
        let layers = vec![LayerActivations {
            layer: "features.0".into(),
            mean: 0.5,
            std: 1.0,
            dead: Some(0.25),
            saturated: None,
            outside_5: 0.0,
            zero_grad: 0.0,
        }];
        expect(
            &mut run,
            Event::Activations {
                step: 12,
                layers: layers.clone(),
            },
            &[],
        );
        assert_eq!(run.activations_of("features.0.weight"), Some(&layers[0]));
        expect(
            &mut run,
            Event::ConfigSuggested {
                step: 12,
                path: "r/suggested.toml".into(),
                finding: crate::protocol::FindingKind::VanishingGradients,
                settings: vec![
                    crate::protocol::Setting::new("activation", "relu"),
                    crate::protocol::Setting::new("batch_norm", true),
                ],
            },
            &[(
                LogKind::Action,
                "for vanishing gradients: wrote r/suggested.toml (activation relu, batch_norm true); start it with candletop --config r/suggested.toml",
            )],
        );
        assert_eq!(run.activations_of("features.0.bias"), None);
        let change = vec![crate::protocol::Setting::new("lr", 0.05)];
        expect(
            &mut run,
            Event::Forked {
                step: 12,
                change: change.clone(),
                until: 52,
                horizon: crate::protocol::Horizon::Steps(40),
                ask: true,
            },
            &[(
                LogKind::Action,
                "branch lr=0.05: forked at step 12; both lines train on the same batches until step 52 (throughput is shared)",
            )],
        );
        expect(
            &mut run,
            Event::BranchVerdict {
                step: 52,
                verdict: crate::protocol::BranchVerdict {
                    change: change.clone(),
                    forked_at: 12,
                    steps: 40,
                    main_loss: 0.5,
                    branch_loss: 1.25,
                    diff: 0.75,
                    noise: 0.125,
                    call: crate::protocol::BranchCall::Worse,
                    main_val_loss: 0.45,
                    main_val_accuracy: 0.85,
                    branch_val_loss: 1.5,
                    branch_val_accuracy: 0.5,
                    kept_branch: false,
                    awaiting: true,
                },
            },
            &[(
                LogKind::Milestone,
                "branch lr=0.05: worse on training loss over 40 steps on the same batches: 1.2500 vs 0.5000 on the main line (+0.7500 ± 0.1250); validation loss 1.5000 vs 0.4500, accuracy 50.00% vs 85.00%; keep which? m: the main line, b: the branch",
            )],
        );
        assert!(run.branch.as_ref().is_some_and(BranchView::awaiting));
        expect(
            &mut run,
            Event::BranchChanged {
                step: 30,
                change: vec![
                    crate::protocol::Setting::new("lr", 0.05),
                    crate::protocol::Setting::new("augment", "on"),
                ],
            },
            &[(
                LogKind::Action,
                "branch now lr=0.05,augment=on from step 31: live changes go to the branch while the comparison runs (the main line is its control)",
            )],
        );
        expect(
            &mut run,
            Event::BranchKept {
                step: 52,
                change: change.clone(),
                branch: false,
                saved: Some("runs/r-branch".into()),
            },
            &[(
                LogKind::Action,
                "branch lr=0.05: the main line goes on; the other line is saved in runs/r-branch",
            )],
        );
        assert_eq!(
            run.branch.as_ref().and_then(|b| b.outcome),
            Some(BranchOutcome::Main)
        );
        expect(
            &mut run,
            Event::BranchAbandoned {
                step: 60,
                forked_at: 12,
                change: change.clone(),
                why: "the run stopped during the comparison".into(),
            },
            &[(
                LogKind::Warning,
                "branch lr=0.05 forked at step 12: abandoned (the run stopped during the comparison); the main line goes on",
            )],
        );
        expect(
            &mut run,
            Event::Warning {
                step: 12,
                message: "metrics are no longer recorded".into(),
            },
            &[(LogKind::Warning, "warning: metrics are no longer recorded")],
        );
        expect(
            &mut run,
            Event::Epoch(EpochMetrics {
                epoch: 2,
                step: 20,
                train_loss: 0.5,
                train_accuracy: 0.75,
                val_loss: 0.25,
                val_accuracy: 0.875,
                val_class_accuracy: vec![1.0, 0.75],
                val_confusion: vec![],
                lr: 4e-3,
                images_per_sec: 123.4,
                elapsed_secs: 61.0,
            }),
            &[(
                LogKind::Milestone,
                "epoch 2/2: val loss 0.2500 acc 87.50%, train loss 0.5000 acc 75.00%, lr 4.00e-3, 123 img/s, 1:01",
            )],
        );
        assert_eq!(run.best_val_accuracy().map(|e| e.epoch), Some(2));
        expect(
            &mut run,
            Event::CheckpointSaved {
                step: 20,
                epoch: 2,
                path: "r/checkpoints/epoch-002.h5".into(),
                bytes: 5_100_000,
                write_secs: 0.009,
                hold_ms: 0.4,
            },
            &[(LogKind::Action, "saved epoch-002.h5 (5.1 MB, 9 ms)")],
        );
        assert_eq!(run.last_save.as_deref(), Some("r/checkpoints/epoch-002.h5"));
        expect(
            &mut run,
            Event::CheckpointFailed {
                step: 20,
                epoch: 2,
                path: "r/checkpoints/best.h5".into(),
                reason: "no space left on device".into(),
                detail: "H5Dwrite(): ... errno = 28 ...".into(),
            },
            &[(
                LogKind::Error,
                "could not save best.h5: no space left on device; training goes on",
            )],
        );
        assert!(run.status.is_live(), "a failed save does not end the run");
        let stopping = crate::protocol::Stopping {
            early_stop: "3:monitor=val_acc,restore_best".parse().unwrap(),
            target_acc: 91.0,
            stop_at_target: false,
        };
        expect(
            &mut run,
            Event::StoppingChanged { step: 20, stopping },
            &[(
                LogKind::Action,
                "early stopping 3:monitor=val_acc,restore_best; target 91%",
            )],
        );
        assert_eq!(run.info.as_ref().unwrap().stopping, stopping);
        assert_eq!(run.early_stop_count(), Some((0, 3)));
        expect(
            &mut run,
            Event::TargetReached {
                step: 20,
                epoch: 2,
                val_accuracy: 0.9125,
                target: 91.0,
            },
            &[(
                LogKind::Milestone,
                "target reached at epoch 2: val acc 91.25% >= 91%",
            )],
        );
        expect(
            &mut run,
            Event::EarlyStopped {
                step: 20,
                epoch: 2,
                monitor: "val_acc".into(),
                best: 0.875,
                best_epoch: 1,
                patience: 1,
                restored: true,
            },
            &[(
                LogKind::Milestone,
                "early stop after epoch 2: val_acc has not improved on 87.50% (epoch 1) for 1 epoch; the weights of epoch 1 are back",
            )],
        );
        expect(
            &mut run,
            Event::Evaluated(EvalMetrics {
                split: "test".into(),
                loss: 0.3,
                accuracy: 0.9,
                class_accuracy: vec![0.9, 0.9],
                images_per_sec: 1000.0,
            }),
            &[(LogKind::Milestone, "test set: loss 0.3000 acc 90.00%")],
        );
        assert_eq!(run.test.as_ref().map(|t| t.accuracy), Some(0.9));
        expect(
            &mut run,
            Event::Finished {
                step: 20,
                epoch: 2,
                reason: FinishReason::Completed,
                elapsed_secs: 62.0,
            },
            &[(LogKind::Milestone, "finished at step 20 after 1:02")],
        );
        assert_eq!(run.status, Status::Finished(FinishReason::Completed));
        assert_eq!(run.status.label(), "FINISHED");
        assert_eq!(run.eta_secs(), None);
        let mut failed = RunState::default();
        expect(
            &mut failed,
            Event::Error {
                message: "boom".into(),
            },
            &[(LogKind::Error, "error: boom")],
        );
        assert_eq!(failed.status, Status::Error("boom".into()));
        assert_eq!(seen, [true; KINDS], "an event kind the test does not cover");
    }

    #[test]
    fn a_trainer_gone_without_a_word_is_an_error_and_the_log_keeps_the_newest() {
        let mut run = RunState::default();
        run.on_event(&Event::Started(info()));
        run.on_trainer_gone();
        assert_eq!(
            run.status,
            Status::Error("the training thread ended without a word".into())
        );
        for i in 0..LOG_CAPACITY + 50 {
            run.log(0, LogKind::Info, format!("line {i}"));
        }
        assert_eq!(run.log.len(), LOG_CAPACITY);
        let total = run.logged;
        let new: Vec<&str> = run.log_since(total - 2).map(|l| l.text.as_str()).collect();
        assert_eq!(
            new,
            [
                format!("line {}", LOG_CAPACITY + 48),
                format!("line {}", LOG_CAPACITY + 49)
            ]
        );
        // Asking for more than is kept gives what is kept.
        assert_eq!(run.log_since(0).count(), LOG_CAPACITY);
    }

    #[test]
    fn a_series_stays_bounded_and_keeps_the_mean() {
        let mut s = Series::new(16);
        for i in 0..10_000 {
            s.push(i as f64, 2.0);
        }
        assert!(s.points().len() <= 16);
        assert!(s.points().iter().all(|p| p.1 == 2.0));
        assert!(s.stride() >= 10_000 / 16);
        // x stays ordered and spans the run.
        let xs: Vec<f64> = s.points().iter().map(|p| p.0).collect();
        assert!(xs.windows(2).all(|w| w[0] < w[1]));
        assert!(xs[xs.len() - 1] > 9_000.0);
        let mut t = Series::new(4);
        for i in 0..4 {
            t.push(i as f64, i as f64);
        }
        assert_eq!(t.points(), vec![(0.5, 0.5), (2.5, 2.5)]);
        t.push(10.0, 10.0);
        assert_eq!(t.points(), vec![(0.5, 0.5), (2.5, 2.5), (10.0, 10.0)]);
    }
}
