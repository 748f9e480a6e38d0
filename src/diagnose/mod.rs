//! The training doctor: it watches the numbers a run reports (per-step loss, gradient norms and
//! update/weight ratios; per-epoch train and validation metrics; the class counts) and says, with
//! the evidence, why accuracy is not improving. Plain data in, findings out: the trainer runs it
//! live, `candletop diagnose` runs it over a finished run's metrics.jsonl.
//!
//! Every threshold is in `Thresholds`, with where it comes from.

use std::collections::{BTreeMap, VecDeque};

use crate::model::{Activation, Arch};
use crate::protocol::{
    EpochMetrics, Finding, FindingKind, LayerActivations, Remedy, RunInfo, Setting, Severity,
    StepMetrics,
};

/// The rules' numbers, in one place.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Steps per window: the step rules look at window means.
    pub window: u64,
    /// Windows before the step rules speak (the first steps of any run are noisy).
    pub warmup_windows: usize,
    /// A spike: a step's loss above this times the mean of the previous `spike_span` steps
    /// (PyTorch Lightning's spike detection).
    pub spike_factor: f64,
    pub spike_span: usize,
    /// LR too high: a window's mean loss over `diverge_factor` times the first step's (the
    /// loss went up from where it started), spikes in a window, or rising window means in the
    /// last `trend_windows`.
    pub diverge_factor: f64,
    pub spikes_too_many: usize,
    pub trend_windows: usize,
    pub rising_too_many: usize,
    /// LR too low: the loss moved less than this (relative) over two windows while the median
    /// update/weight ratio was below `ratio_low` (DL4J: about 1e-3 is healthy, below 1e-4 too
    /// small, above 1e-2 too large).
    pub flat_change: f64,
    pub ratio_low: f64,
    /// Vanishing: first-layer over last-layer gradient norm below this, and the first layer's
    /// norm below `vanishing_norm` (AUTOTRAINER: 1e-3 and 1e-4).
    pub vanishing_ratio: f64,
    pub vanishing_norm: f64,
    /// Exploding: that ratio above this (AUTOTRAINER: 70), or any layer's norm above
    /// `exploding_norm`.
    pub exploding_ratio: f64,
    pub exploding_norm: f64,
    /// Plateau: epochs without a better validation accuracy.
    pub plateau_epochs: usize,
    /// Overfitting: train minus validation accuracy above `gap_low` while train accuracy is
    /// below 90%, above `gap_high` after (AUTOTRAINER), with the validation loss above its best.
    pub gap_low: f64,
    pub gap_high: f64,
    /// Underfitting: after this many epochs, train and validation accuracy below `underfit_acc`
    /// and train accuracy gaining less than `underfit_gain` per epoch.
    pub underfit_epochs: usize,
    pub underfit_acc: f64,
    pub underfit_gain: f64,
    /// Class imbalance: largest over smallest training class, or a class this far below the
    /// mean validation accuracy.
    pub imbalance_ratio: f64,
    pub class_gap: f64,
    /// Batch norm needs batches of at least this many images for its statistics.
    pub bn_min_batch: usize,
    /// Initial loss: outside these multiples of ln(classes), the output layer or the labels are
    /// suspect.
    pub initial_loss_range: (f64, f64),
    /// Improving: the loss fell by more than this (relative) over the last two windows.
    pub improving_change: f64,
    /// Dead units: more than this share of a layer's units dead for a whole batch (the issue's
    /// "more than half"; DeepDiagnosis uses 0.7).
    pub dead_share: f64,
    /// Saturation: more than this share of a layer's inputs outside [-5, 5], or of its
    /// sigmoid/tanh outputs within 1% of a bound (DeepDiagnosis: 0.5).
    pub saturated_share: f64,
    /// The max norm the clipping remedy sets.
    pub clip_to: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            window: 50,
            warmup_windows: 2,
            diverge_factor: 1.5,
            spike_factor: 2.0,
            spike_span: 10,
            spikes_too_many: 3,
            trend_windows: 4,
            rising_too_many: 3,
            flat_change: 0.01,
            ratio_low: 1e-4,
            vanishing_ratio: 1e-3,
            vanishing_norm: 1e-4,
            exploding_ratio: 70.0,
            exploding_norm: 1e2,
            plateau_epochs: 3,
            gap_low: 0.10,
            gap_high: 0.07,
            underfit_epochs: 3,
            underfit_acc: 0.6,
            underfit_gain: 0.01,
            imbalance_ratio: 3.0,
            class_gap: 0.25,
            bn_min_batch: 8,
            initial_loss_range: (0.5, 2.0),
            improving_change: 0.02,
            dead_share: 0.5,
            saturated_share: 0.5,
            clip_to: 1.0,
        }
    }
}

/// What the doctor knows of the run before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Patient {
    pub classes: Vec<String>,
    /// Parameter names, in the order of the per-layer vectors of a step.
    pub layers: Vec<String>,
    pub train_counts: Vec<usize>,
    pub batch_size: usize,
    /// The model's settings, for the restart remedies.
    pub arch: String,
    pub activation: Activation,
    pub batch_norm: bool,
}

impl Patient {
    /// What a run's start says of it, with the model's settings.
    pub fn of(info: &RunInfo, arch: &str, activation: Activation, batch_norm: bool) -> Self {
        Self {
            classes: info.classes.clone(),
            layers: info.layers.clone(),
            train_counts: info.data_facts.train_counts.clone(),
            batch_size: info.batch_size,
            arch: arch.into(),
            activation,
            batch_norm,
        }
    }
}

/// The architecture with every conv and hidden layer twice as wide (at most 1024), or None when
/// it is that wide already or does not parse.
fn wider(arch: &str) -> Option<String> {
    let mut a: Arch = arch.parse().ok()?;
    let before = a.to_string();
    for c in &mut a.convs {
        c.out_channels = (c.out_channels * 2).min(1024);
    }
    for h in &mut a.hidden {
        *h = (*h * 2).min(1024);
    }
    let after = a.to_string();
    (after != before).then_some(after)
}

/// The window of steps being filled.
#[derive(Debug, Clone, Default, PartialEq)]
struct Filling {
    /// Sums of loss and loss squared (x steps, for folded records), and the steps.
    loss: f64,
    loss_sq: f64,
    steps: u64,
    spikes: usize,
    /// Per step: first- and last-layer weight gradient norms, the largest, the median ratio.
    signals: Vec<[f64; 4]>,
}

/// One closed window of steps.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Window {
    loss: f64,
    /// The std of the steps' losses over their mean.
    volatility: f64,
    spikes: usize,
    /// Median first- and last-layer weight gradient norms, median update/weight ratio.
    first_grad: f64,
    last_grad: f64,
    max_grad: f64,
    ratio: f64,
}

/// A change in what the doctor finds.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub finding: Finding,
    pub cleared: bool,
}

/// The doctor of one run.
pub struct Doctor {
    th: Thresholds,
    patient: Patient,
    /// Indices of the first and last weight parameters (not biases or batch-norm scales).
    first_weight: Option<usize>,
    last_weight: Option<usize>,
    recent: VecDeque<f64>,
    /// The window being filled.
    filling: Filling,
    windows: Vec<Window>,
    epochs: Vec<EpochMetrics>,
    first_loss: Option<f64>,
    /// The evidence of a skewed training set, when it is.
    skewed_counts: Option<String>,
    active: BTreeMap<FindingKind, Finding>,
    /// What the live switches are now: a remedy already in force is not offered.
    pub switches: Switches,
}

/// The run's live switches, as far as the remedies go.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Switches {
    pub augmenting: bool,
    pub class_weights: bool,
    pub clipping: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn sci(x: f64) -> String {
    crate::format::sci(x)
}

impl Doctor {
    pub fn new(patient: Patient, th: Thresholds) -> Self {
        let is_weight = |n: &&String| n.ends_with(".weight") && !n.contains("norm");
        let weights: Vec<usize> = patient
            .layers
            .iter()
            .enumerate()
            .filter(|(_, n)| is_weight(n))
            .map(|(i, _)| i)
            .collect();
        Self {
            th,
            first_weight: weights.first().copied(),
            last_weight: weights.last().copied(),
            patient,
            recent: VecDeque::new(),
            filling: Filling::default(),
            windows: Vec::new(),
            epochs: Vec::new(),
            first_loss: None,
            skewed_counts: None,
            active: BTreeMap::new(),
            switches: Switches::default(),
        }
    }

    /// The live change that answers `kind`, unless the run has it already.
    fn remedy(&self, kind: FindingKind) -> Option<Remedy> {
        let sw = self.switches;
        match kind {
            FindingKind::LrTooHigh | FindingKind::Plateau | FindingKind::DeadUnits => {
                Some(Remedy::ScaleLr(0.1))
            }
            FindingKind::LrTooLow => Some(Remedy::ScaleLr(10.0)),
            FindingKind::Overfitting => (!sw.augmenting).then_some(Remedy::Augment(true)),
            FindingKind::ClassImbalance => {
                (!sw.class_weights).then_some(Remedy::ClassWeights(true))
            }
            FindingKind::ExplodingGradients => {
                (!sw.clipping).then_some(Remedy::ClipGradNorm(self.th.clip_to))
            }
            FindingKind::Underfitting => {
                wider(&self.patient.arch).map(|a| Remedy::Restart(vec![Setting::new("arch", a)]))
            }
            FindingKind::VanishingGradients | FindingKind::SaturatedActivations => {
                let p = &self.patient;
                let mut s = Vec::new();
                if !matches!(p.activation, Activation::Relu | Activation::LeakyRelu) {
                    s.push(Setting::new("activation", "relu"));
                }
                if !p.batch_norm {
                    s.push(Setting::new("batch_norm", true));
                }
                (!s.is_empty()).then_some(Remedy::Restart(s))
            }
            _ => None,
        }
    }

    /// A non-finite loss or gradient: the LR is the usual cause, and it is a warning at once.
    pub fn on_non_finite(&mut self, step: u64, what: &str) -> Vec<Change> {
        let finding = Finding {
            kind: FindingKind::LrTooHigh,
            severity: Severity::Warning,
            evidence: format!("step {step}: {what}"),
            action: "a lower LR (r or -; headless: a lower --lr, or --on-nan rollback)".into(),
            remedy: self.remedy(FindingKind::LrTooHigh),
        };
        self.active.insert(FindingKind::LrTooHigh, finding.clone());
        vec![Change {
            finding,
            cleared: false,
        }]
    }

    /// Activation statistics of every layer: dead units and saturation.
    pub fn on_activations(&mut self, layers: &[LayerActivations]) -> Vec<Change> {
        let th = self.th.clone();
        let mut now = BTreeMap::new();
        let worst = |key: fn(&LayerActivations) -> Option<f64>| {
            layers
                .iter()
                .filter_map(|l| key(l).map(|v| (l, v)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
        };
        if let Some((l, dead)) = worst(|l| l.dead) {
            if dead > th.dead_share {
                now.insert(
                    FindingKind::DeadUnits,
                    (
                        format!(
                            "{:.0}% of {}'s units put out zero for the whole batch (over {:.0}% is a problem): they no longer learn",
                            100.0 * dead,
                            l.layer,
                            100.0 * th.dead_share
                        ),
                        "a lower LR, or LeakyReLU (a restart: --activation leaky_relu)".to_string(),
                    ),
                );
            }
        }
        // Only bounded activations (and ELU's lower side) saturate: a ReLU's large inputs
        // pass their gradient on.
        let saturation = |l: &LayerActivations| l.saturated.map(|s| s.max(l.outside_5));
        if let Some((l, sat)) = worst(saturation) {
            if sat > th.saturated_share {
                now.insert(
                    FindingKind::SaturatedActivations,
                    (
                        format!(
                            "{:.0}% of {}'s activations are saturated (inputs outside [-5, 5] or outputs within 1% of a bound; over {:.0}% is a problem): their gradients vanish",
                            100.0 * sat,
                            l.layer,
                            100.0 * th.saturated_share
                        ),
                        "ReLU with batch norm (a restart: --activation relu --batch-norm)".to_string(),
                    ),
                );
            }
        }
        self.update(
            now,
            &[FindingKind::DeadUnits, FindingKind::SaturatedActivations],
            true,
        )
    }

    /// What holds before the first step: the class counts and batch norm's batch size.
    pub fn on_start(&mut self) -> Vec<Change> {
        let mut now = BTreeMap::new();
        let counts = &self.patient.train_counts;
        let present: Vec<usize> = counts.iter().copied().filter(|&c| c > 0).collect();
        if let (Some(&max), Some(&min)) = (present.iter().max(), present.iter().min()) {
            let ratio = max as f64 / min as f64;
            if ratio > self.th.imbalance_ratio {
                let (big, small) = (
                    counts.iter().position(|&c| c == max).unwrap_or(0),
                    counts.iter().position(|&c| c == min).unwrap_or(0),
                );
                let evidence = format!(
                    "the largest training class ({}, {max}) has {ratio:.1}x the images of the smallest ({}, {min}); over {:.0} is a problem",
                    self.class(big),
                    self.class(small),
                    self.th.imbalance_ratio
                );
                self.skewed_counts = Some(evidence.clone());
                now.insert(
                    FindingKind::ClassImbalance,
                    (
                        evidence,
                        "class weights (r or w) or --sampler balanced".to_string(),
                    ),
                );
            }
        }
        if self.patient.batch_norm && self.patient.batch_size < self.th.bn_min_batch {
            now.insert(
                FindingKind::SmallBatchNorm,
                (
                    format!(
                        "batch norm estimates each batch's mean and variance from {} images; under {} they are too noisy to train on and differ from the running statistics used at evaluation",
                        self.patient.batch_size, self.th.bn_min_batch
                    ),
                    format!(
                        "a batch size of {} or more, or --no-batch-norm",
                        self.th.bn_min_batch * 4
                    ),
                ),
            );
        }
        self.update(
            now,
            &[FindingKind::ClassImbalance, FindingKind::SmallBatchNorm],
            false,
        )
    }

    fn class(&self, c: usize) -> &str {
        self.patient.classes.get(c).map_or("?", String::as_str)
    }

    /// One step's (or, replayed from metrics.jsonl, several steps') metrics.
    pub fn on_step(&mut self, m: &StepMetrics) -> Vec<Change> {
        let mut out = Vec::new();
        if !m.loss.is_finite() {
            return out;
        }
        if self.first_loss.is_none() {
            self.first_loss = Some(m.loss);
            out.extend(self.initial_loss(m.loss));
        }
        // A spike against the mean of the steps before it.
        if self.recent.len() >= self.th.spike_span {
            let mean = self.recent.iter().sum::<f64>() / self.recent.len() as f64;
            if m.loss > self.th.spike_factor * mean {
                self.filling.spikes += 1;
            }
        }
        self.recent.push_back(m.loss);
        if self.recent.len() > self.th.spike_span {
            self.recent.pop_front();
        }
        let grad = |i: Option<usize>| i.and_then(|i| m.grad_norms.get(i).copied());
        let weight_ratios: Vec<f64> = self
            .patient
            .layers
            .iter()
            .zip(&m.update_ratios)
            .filter(|(n, _)| n.ends_with(".weight"))
            .map(|(_, &r)| r)
            .collect();
        let steps = u64::from(m.steps.max(1));
        self.filling.loss += m.loss * steps as f64;
        self.filling.loss_sq += m.loss * m.loss * steps as f64;
        self.filling.steps += steps;
        self.filling.signals.push([
            grad(self.first_weight).unwrap_or(f64::NAN),
            grad(self.last_weight).unwrap_or(f64::NAN),
            m.grad_norms.iter().copied().fold(0.0, f64::max),
            median(weight_ratios),
        ]);
        if self.filling.steps >= self.th.window {
            let Filling {
                loss: sum,
                loss_sq,
                steps: n,
                spikes,
                signals: sig,
            } = std::mem::take(&mut self.filling);
            let mean = sum / n as f64;
            let volatility =
                (loss_sq / n as f64 - mean * mean).max(0.0).sqrt() / mean.abs().max(1e-12);
            let col = |k: usize| median(sig.iter().map(|s| s[k]).collect());
            self.windows.push(Window {
                loss: mean,
                volatility,
                spikes,
                first_grad: col(0),
                last_grad: col(1),
                max_grad: col(2),
                ratio: col(3),
            });
            out.extend(self.step_rules());
        }
        out
    }

    /// Said once, at the first step: it is about how the run began.
    fn initial_loss(&self, loss: f64) -> Option<Change> {
        let c = self.patient.classes.len().max(2) as f64;
        let expected = c.ln();
        let (lo, hi) = self.th.initial_loss_range;
        (loss < lo * expected || loss > hi * expected).then(|| Change {
            finding: Finding {
                kind: FindingKind::InitialLoss,
                severity: Severity::Warning,
                evidence: format!(
                    "the first step's loss is {loss:.3}; an untrained model over {c:.0} classes starts near ln({c:.0}) = {expected:.3}"
                ),
                action: "check the labels, the last layer's initialisation and the loss".into(),
                remedy: None,
            },
            cleared: false,
        })
    }

    /// Whether the run is getting better: the mean loss fell over the last (up to) four
    /// windows, or one of the last two epochs set a clearly better validation accuracy.
    fn improving(&self) -> bool {
        let w = &self.windows;
        let k = w.len().min(5);
        let loss_falls = k >= 2 && {
            let (a, b) = (w[w.len() - k].loss, w[w.len() - 1].loss);
            (a - b) / a.abs().max(1e-12) > self.th.improving_change
        };
        let ep = &self.epochs;
        let recent_best = ep.len() >= 2 && {
            let split = ep.len().saturating_sub(2).max(1);
            let (earlier, recent) = ep.split_at(split);
            let best_before = earlier.iter().map(|e| e.val_accuracy).fold(0.0, f64::max);
            recent.iter().any(|e| e.val_accuracy > best_before + 0.005)
        };
        loss_falls || recent_best
    }

    fn step_rules(&mut self) -> Vec<Change> {
        let th = self.th.clone();
        let w = self.windows.clone();
        let mut now = BTreeMap::new();
        let last = w[w.len() - 1];
        let first_loss = self.first_loss.unwrap_or(f64::INFINITY);
        if last.loss > th.diverge_factor * first_loss {
            now.insert(
                FindingKind::LrTooHigh,
                (
                    format!(
                        "the mean loss of the last {} steps is {:.4}, {:.1}x the first step's {:.4}: the steps overshoot; {} spikes in the window",
                        th.window,
                        last.loss,
                        last.loss / first_loss,
                        first_loss,
                        last.spikes
                    ),
                    "cut the LR x0.1 (r), or - a few times".to_string(),
                ),
            );
        }
        if w.len() > th.warmup_windows {
            let span = &w[w.len().saturating_sub(th.trend_windows + 1)..];
            let rising = span.windows(2).filter(|p| p[1].loss > p[0].loss).count();
            // Rising windows count when the loss went up by more than noise over the span (a
            // flat loss wobbles up half the time).
            let rose = last.loss > span[0].loss * (1.0 + th.improving_change);
            if (last.spikes >= th.spikes_too_many || (rising >= th.rising_too_many && rose))
                && !now.contains_key(&FindingKind::LrTooHigh)
            {
                now.insert(
                    FindingKind::LrTooHigh,
                    (
                        format!(
                            "the loss rose in {rising} of the last {} windows of {} steps ({:.4} -> {:.4}); volatility {:.2}; {} spikes (over {}x the mean of the {} steps before) in the last window",
                            span.len() - 1,
                            th.window,
                            span[0].loss,
                            last.loss,
                            last.volatility,
                            last.spikes,
                            th.spike_factor,
                            th.spike_span
                        ),
                        "cut the LR x0.1 (r), or - a few times".to_string(),
                    ),
                );
            }
            let before = w[w.len() - 3].loss;
            let change = (last.loss - before).abs() / before.abs().max(1e-12);
            let healthy = last.first_grad > th.vanishing_norm;
            if change < th.flat_change && last.ratio < th.ratio_low && healthy {
                now.insert(
                    FindingKind::LrTooLow,
                    (
                        format!(
                            "the loss moved {:.2}% over the last {} steps while the median update/weight ratio is {} (about 1e-3 is healthy, under {} too small) and the gradients are not small (first layer {})",
                            100.0 * change,
                            2 * th.window,
                            sci(last.ratio),
                            sci(th.ratio_low),
                            sci(last.first_grad)
                        ),
                        "raise the LR x10 (r), or run the LR finder (f)".to_string(),
                    ),
                );
            }
            let ratio = last.first_grad / last.last_grad.max(1e-30);
            if ratio < th.vanishing_ratio && last.first_grad < th.vanishing_norm {
                now.insert(
                    FindingKind::VanishingGradients,
                    (
                        format!(
                            "the first layer's gradient norm ({}) is {} of the last layer's ({}); under {} with a norm under {}, the early layers stop learning",
                            sci(last.first_grad),
                            sci(ratio),
                            sci(last.last_grad),
                            sci(th.vanishing_ratio),
                            sci(th.vanishing_norm)
                        ),
                        "ReLU or LeakyReLU with batch norm (a restart: --activation relu --batch-norm)".to_string(),
                    ),
                );
            }
            if ratio > th.exploding_ratio || last.max_grad > th.exploding_norm {
                now.insert(
                    FindingKind::ExplodingGradients,
                    (
                        format!(
                            "the first layer's gradient norm is {ratio:.0}x the last layer's (over {:.0} is a problem); the largest layer norm is {}",
                            th.exploding_ratio,
                            sci(last.max_grad)
                        ),
                        "gradient clipping (r or x), a lower LR (- or l), or batch norm".to_string(),
                    ),
                );
            }
        }
        let kinds = [
            FindingKind::LrTooHigh,
            FindingKind::LrTooLow,
            FindingKind::VanishingGradients,
            FindingKind::ExplodingGradients,
        ];
        self.update(now, &kinds, false)
    }

    /// Epochs a resumed run did before: known, not judged again.
    pub fn remember(&mut self, epochs: &[EpochMetrics]) {
        self.epochs.extend_from_slice(epochs);
    }

    /// One finished epoch.
    pub fn on_epoch(&mut self, e: &EpochMetrics) -> Vec<Change> {
        self.epochs.push(e.clone());
        let th = self.th.clone();
        let ep = &self.epochs;
        let mut now = BTreeMap::new();
        // The first epoch to reach the best accuracy: matching it is not beating it.
        let best = ep.iter().fold(&ep[0], |b, x| {
            if x.val_accuracy > b.val_accuracy {
                x
            } else {
                b
            }
        });
        let since_best = e.epoch.saturating_sub(best.epoch);
        if since_best >= th.plateau_epochs {
            now.insert(
                FindingKind::Plateau,
                (
                    format!(
                        "validation accuracy has not beaten {:.2}% (epoch {}) for {since_best} epochs",
                        100.0 * best.val_accuracy,
                        best.epoch
                    ),
                    "decay the LR: e, then step or plateau".to_string(),
                ),
            );
        }
        let gap = e.train_accuracy - e.val_accuracy;
        let limit = if e.train_accuracy < 0.9 {
            th.gap_low
        } else {
            th.gap_high
        };
        let best_loss = ep.iter().map(|x| x.val_loss).fold(f64::INFINITY, f64::min);
        // Raised past the limit with the validation loss above its best; kept (hysteresis)
        // while the gap stays above three quarters of the limit.
        let overfitting = self.active.contains_key(&FindingKind::Overfitting);
        if (gap > limit && e.val_loss > best_loss && ep.len() >= 2)
            || (overfitting && gap > 0.75 * limit)
        {
            now.insert(
                FindingKind::Overfitting,
                (
                    format!(
                        "train accuracy {:.2}% is {:.1} points above validation {:.2}% (over {:.0} is a problem at this accuracy), and the validation loss {:.4} is above its best {:.4}",
                        100.0 * e.train_accuracy,
                        100.0 * gap,
                        100.0 * e.val_accuracy,
                        100.0 * limit,
                        e.val_loss,
                        best_loss
                    ),
                    "augmentation (a), more dropout or weight decay, or stop and keep best.h5".to_string(),
                ),
            );
        }
        if ep.len() >= th.underfit_epochs {
            let prev = &ep[ep.len() - th.underfit_epochs];
            let gain = (e.train_accuracy - prev.train_accuracy) / (th.underfit_epochs - 1) as f64;
            let lr_trouble = self.active.contains_key(&FindingKind::LrTooHigh)
                || self.active.contains_key(&FindingKind::LrTooLow);
            if e.train_accuracy < th.underfit_acc
                && e.val_accuracy < th.underfit_acc
                && gain < th.underfit_gain
                && !lr_trouble
            {
                now.insert(
                    FindingKind::Underfitting,
                    (
                        format!(
                            "train {:.2}% and validation {:.2}% accuracy, train gaining {:.2} points per epoch over the last {} epochs, with no sign of a bad LR",
                            100.0 * e.train_accuracy,
                            100.0 * e.val_accuracy,
                            100.0 * gain,
                            th.underfit_epochs
                        ),
                        "a wider or deeper model (a restart, e.g. --arch c64,c128,f256)".to_string(),
                    ),
                );
            }
        }
        // A class far below the others; with skewed counts, the imbalance decided at the start
        // stands while the least accurate class lags.
        let acc = &e.val_class_accuracy;
        if !acc.is_empty() {
            let mean = acc.iter().sum::<f64>() / acc.len() as f64;
            let (worst, &low) = acc
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .expect("classes");
            let count = self.patient.train_counts.get(worst).copied().unwrap_or(0);
            let evidence = format!(
                "class {} has {:.1}% validation accuracy against a mean of {:.1}% ({count} training images)",
                self.class(worst),
                100.0 * low,
                100.0 * mean
            );
            match &self.skewed_counts {
                // Weights help a class that has fewer images than the others.
                Some(counts) if low < mean - th.class_gap / 2.0 => {
                    now.insert(
                        FindingKind::ClassImbalance,
                        (
                            format!("{counts}; {evidence}"),
                            "class weights (w), --sampler balanced, or more images of it".into(),
                        ),
                    );
                }
                // Raised past the gap, kept while the class stays half of it behind.
                None if low < mean - th.class_gap
                    || (self.active.contains_key(&FindingKind::WeakClass)
                        && low < mean - th.class_gap / 2.0) =>
                {
                    now.insert(
                        FindingKind::WeakClass,
                        (
                            evidence,
                            "look at its images (g); more images of it, or augmentation (a)".into(),
                        ),
                    );
                }
                _ => {}
            }
        }
        let kinds = [
            FindingKind::Plateau,
            FindingKind::Overfitting,
            FindingKind::Underfitting,
            FindingKind::ClassImbalance,
            FindingKind::WeakClass,
        ];
        self.update(now, &kinds, true)
    }

    /// Applies what the rules of `kinds` find now: a new finding (or one whose severity
    /// changed) is raised, one no longer found is cleared; the evidence of the others is kept
    /// current. Severity: a warning only while the run is not improving.
    fn update(
        &mut self,
        now: BTreeMap<FindingKind, (String, String)>,
        kinds: &[FindingKind],
        refresh: bool,
    ) -> Vec<Change> {
        let severity = if self.improving() {
            Severity::Info
        } else {
            Severity::Warning
        };
        let mut out = Vec::new();
        for &kind in kinds {
            match now.get(&kind) {
                Some((evidence, action)) => {
                    let f = Finding {
                        kind,
                        severity,
                        evidence: evidence.clone(),
                        action: action.clone(),
                        remedy: self.remedy(kind),
                    };
                    // New, grown into a warning (a warning easing is not news), or, for the
                    // once-an-epoch rules, with other numbers (watchers update it quietly).
                    let news = self.active.get(&kind).is_none_or(|old| {
                        old.severity < f.severity || (refresh && old.evidence != f.evidence)
                    });
                    self.active.insert(kind, f.clone());
                    if news {
                        out.push(Change {
                            finding: f,
                            cleared: false,
                        });
                    }
                }
                None => {
                    if let Some(old) = self.active.remove(&kind) {
                        out.push(Change {
                            finding: old,
                            cleared: true,
                        });
                    }
                }
            }
        }
        out
    }

    /// The findings in force, most severe first.
    pub fn findings(&self) -> Vec<Finding> {
        let mut v: Vec<Finding> = self.active.values().cloned().collect();
        v.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.kind.cmp(&b.kind)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient(counts: Vec<usize>, batch_size: usize) -> Patient {
        Patient {
            classes: (0..counts.len()).map(|c| format!("c{c}")).collect(),
            layers: vec!["conv.weight".into(), "conv.bias".into(), "fc.weight".into()],
            train_counts: counts,
            batch_size,
            arch: "c8,f16".into(),
            activation: Activation::Relu,
            batch_norm: true,
        }
    }

    fn step(step: u64, loss: f64, grads: [f64; 2], ratio: f64) -> StepMetrics {
        StepMetrics {
            step,
            epoch: 1,
            steps: 1,
            loss,
            accuracy: 0.5,
            lr: 1e-3,
            grad_norms: vec![grads[0], 0.1, grads[1]],
            update_ratios: vec![ratio, ratio, ratio],
            images_per_sec: 1.0,
        }
    }

    fn epoch(n: usize, train: f64, val: f64, val_loss: f64) -> EpochMetrics {
        EpochMetrics {
            epoch: n,
            step: 100 * n as u64,
            train_loss: 0.5,
            train_accuracy: train,
            val_loss,
            val_accuracy: val,
            val_class_accuracy: vec![val; 2],
            lr: 1e-3,
            images_per_sec: 1.0,
            elapsed_secs: 0.0,
        }
    }

    /// Runs `n` steps of `f(step)`; the (step, kind, severity, cleared) of every change.
    fn run(
        d: &mut Doctor,
        n: u64,
        f: impl Fn(u64) -> StepMetrics,
    ) -> Vec<(u64, FindingKind, Severity, bool)> {
        (1..=n)
            .flat_map(|s| {
                d.on_step(&f(s))
                    .into_iter()
                    .map(move |c| (s, c.finding.kind, c.finding.severity, c.cleared))
            })
            .collect()
    }

    #[test]
    fn a_flat_loss_with_tiny_updates_is_a_low_lr_once_past_the_warm_up() {
        let mut d = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        let got = run(&mut d, 200, |s| step(s, 0.693, [0.1, 0.2], 1e-6));
        assert_eq!(
            got,
            vec![(150, FindingKind::LrTooLow, Severity::Warning, false)]
        );
        // The same flat loss with healthy updates is not the LR's fault.
        let mut d = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        assert!(run(&mut d, 200, |s| step(s, 0.693, [0.1, 0.2], 1e-3)).is_empty());
        // A falling loss with tiny updates is learning: no finding.
        let mut d = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        assert!(run(&mut d, 200, |s| step(
            s,
            0.7 / (1.0 + s as f64 / 50.0),
            [0.1, 0.2],
            1e-6
        ))
        .is_empty());
    }

    #[test]
    fn divergence_and_vanishing_gradients_are_found_and_clear_when_they_stop() {
        let mut d = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        // The loss jumps to 4x where it began, then comes back down.
        let got = run(&mut d, 100, |s| {
            step(
                s,
                if s == 1 || s > 50 { 0.7 } else { 2.8 },
                [0.1, 0.2],
                1e-3,
            )
        });
        assert_eq!(
            got,
            vec![
                (50, FindingKind::LrTooHigh, Severity::Warning, false),
                (100, FindingKind::LrTooHigh, Severity::Warning, true)
            ]
        );
        let mut d = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        let got = run(&mut d, 150, |s| step(s, 0.693, [1e-7, 0.5], 1e-3));
        assert_eq!(
            got,
            vec![(
                150,
                FindingKind::VanishingGradients,
                Severity::Warning,
                false
            )]
        );
        // The first layer's gradients 100x the last's (over 70): exploding, and clipping is
        // offered until it is on.
        let mut d = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        let got = run(&mut d, 150, |s| step(s, 0.693, [5.0, 0.05], 1e-3));
        assert_eq!(
            got,
            vec![(
                150,
                FindingKind::ExplodingGradients,
                Severity::Warning,
                false
            )]
        );
        let offered = d.findings()[0].remedy.clone();
        assert_eq!(offered, Some(Remedy::ClipGradNorm(1.0)));
    }

    #[test]
    fn start_findings_and_the_epoch_rules_with_their_hysteresis() {
        let mut d = Doctor::new(patient(vec![400, 100], 4), Thresholds::default());
        let kinds: Vec<FindingKind> = d.on_start().iter().map(|c| c.finding.kind).collect();
        assert_eq!(
            kinds,
            vec![FindingKind::ClassImbalance, FindingKind::SmallBatchNorm]
        );
        let mut d = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        let kinds = |cs: Vec<Change>| -> Vec<(FindingKind, bool)> {
            cs.into_iter()
                .map(|c| (c.finding.kind, c.cleared))
                .collect()
        };
        assert!(kinds(d.on_epoch(&epoch(1, 0.80, 0.78, 0.50))).is_empty());
        // Train 12 points above validation, validation loss above its best: overfitting.
        assert_eq!(
            kinds(d.on_epoch(&epoch(2, 0.85, 0.73, 0.60))),
            vec![(FindingKind::Overfitting, false)]
        );
        // The gap narrows to 8 points: above three quarters of 10, it stays, quietly.
        assert!(kinds(d.on_epoch(&epoch(3, 0.86, 0.78, 0.55)))
            .iter()
            .all(|k| k.0 != FindingKind::Overfitting || !k.1));
        assert!(d
            .findings()
            .iter()
            .any(|f| f.kind == FindingKind::Overfitting));
        // 3 points: cleared. No better validation accuracy than epoch 1... now 4 epochs on.
        let last = kinds(d.on_epoch(&epoch(4, 0.80, 0.77, 0.52)));
        assert!(last.contains(&(FindingKind::Overfitting, true)), "{last:?}");
        let plateau = kinds(d.on_epoch(&epoch(5, 0.80, 0.77, 0.52)));
        assert!(
            plateau.contains(&(FindingKind::Plateau, false)),
            "{plateau:?}"
        );
    }

    fn layer(
        name: &str,
        dead: Option<f64>,
        saturated: Option<f64>,
        outside: f64,
    ) -> LayerActivations {
        LayerActivations {
            layer: name.into(),
            mean: 0.1,
            std: 0.2,
            dead,
            saturated,
            outside_5: outside,
            zero_grad: 0.0,
        }
    }

    #[test]
    fn dead_units_and_saturation_name_the_worst_layer_and_offer_what_helps() {
        let mut d = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        let healthy = [
            layer("features.0", Some(0.1), None, 0.0),
            layer("classifier.0", Some(0.3), None, 0.01),
        ];
        assert!(d.on_activations(&healthy).is_empty());
        let dying = [
            layer("features.0", Some(0.1), None, 0.0),
            layer("classifier.0", Some(0.8), None, 0.01),
        ];
        let got = d.on_activations(&dying);
        assert_eq!(got.len(), 1);
        let f = &got[0].finding;
        assert_eq!(f.kind, FindingKind::DeadUnits);
        assert!(
            f.evidence.starts_with("80% of classifier.0's units"),
            "{}",
            f.evidence
        );
        assert_eq!(f.remedy, Some(Remedy::ScaleLr(0.1)));
        // Sigmoid outputs pinned to their bounds: saturated, no live remedy (a restart).
        let pinned = [layer("features.0", None, Some(0.7), 0.2)];
        let got = d.on_activations(&pinned);
        let kinds: Vec<(FindingKind, bool)> =
            got.iter().map(|c| (c.finding.kind, c.cleared)).collect();
        assert_eq!(
            kinds,
            vec![
                (FindingKind::DeadUnits, true),
                (FindingKind::SaturatedActivations, false)
            ]
        );
        assert_eq!(got[1].finding.remedy, None);
    }

    #[test]
    fn a_remedy_already_in_force_is_not_offered_and_a_nan_blames_the_lr() {
        let mut d = Doctor::new(patient(vec![100, 10], 64), Thresholds::default());
        let offered = |d: &mut Doctor| d.on_start()[0].finding.remedy.clone();
        assert_eq!(offered(&mut d), Some(Remedy::ClassWeights(true)));
        let mut d = Doctor::new(patient(vec![100, 10], 64), Thresholds::default());
        d.switches.class_weights = true;
        assert_eq!(offered(&mut d), None);
        let nan = d.on_non_finite(7, "loss is NaN");
        assert_eq!(nan[0].finding.kind, FindingKind::LrTooHigh);
        assert_eq!(nan[0].finding.severity, Severity::Warning);
        assert_eq!(nan[0].finding.evidence, "step 7: loss is NaN");
        assert_eq!(nan[0].finding.remedy, Some(Remedy::ScaleLr(0.1)));
    }
}
