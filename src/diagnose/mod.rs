//! The training doctor: it watches the numbers a run records (the step records of
//! metrics.jsonl: loss, gradient norms and update/weight ratios; per-epoch train and validation
//! metrics; activation statistics; the class counts and input statistics) and says, with the
//! evidence, why accuracy is not improving. Plain data in, findings out: the trainer runs it
//! live on the records it writes, `candletop diagnose` runs it over them afterwards, and both
//! find the same things at the same steps.
//!
//! Every threshold is in `Thresholds`, with where it comes from; every finding's rule is a file
//! of `rules/`. Causes (a bad LR, gradients, units, labels, inputs, regularisation) come before
//! the symptoms they explain (underfitting, a plateau, a class behind): a symptom whose cause is
//! in force says so and offers the cause's remedy.

mod patient;
mod replay;
mod rules;
mod thresholds;
mod window;

use std::collections::{BTreeMap, VecDeque};

pub use patient::{Patient, Switches};
pub use replay::{replay, BeforeStart, Replayed};
pub use thresholds::Thresholds;

use crate::config::RunConfig;
use crate::protocol::{
    EpochMetrics, Finding, FindingKind, LayerActivations, Remedy, RunInfo, Severity, StepMetrics,
};
use rules::{Found, Rule, Signals, Watch, RULES};
use window::{median, Filling, Window};

/// Closed windows kept: the rules read the last few.
const WINDOWS_KEPT: usize = 16;

/// A change in what the doctor finds.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub finding: Finding,
    pub cleared: bool,
}

/// How a symptom names its cause, before its own numbers.
fn attribution(cause: FindingKind) -> String {
    format!("{}, see above: ", cause.title())
}

/// The doctor of one run.
pub struct Doctor {
    th: Thresholds,
    patient: Patient,
    /// Indices of the first and last weight parameters (not biases or batch-norm scales).
    first_weight: Option<usize>,
    last_weight: Option<usize>,
    /// Steps a window covers: a sixteenth of an epoch, at most `th.window`.
    window_steps: u64,
    /// The latest records' (mean loss, steps), covering at least `spike_span` steps.
    recent: VecDeque<(f64, u64)>,
    /// The window being filled.
    filling: Filling,
    /// The newest closed windows, and how many closed in all.
    windows: Vec<Window>,
    closed: usize,
    /// The first window with healthy updates and gradients, if any: the model could learn.
    could_learn: Option<Window>,
    /// The first window with too large updates, or a loss far above the first step's, if any.
    shaken: Option<Window>,
    /// The lowest window mean loss so far.
    lowest_loss: Option<f64>,
    epochs: Vec<EpochMetrics>,
    first_loss: Option<f64>,
    /// The latest activation statistics, and the first measured.
    activations: Vec<LayerActivations>,
    baseline: Vec<LayerActivations>,
    active: BTreeMap<FindingKind, Finding>,
    /// What the live switches are now: a remedy already in force is not offered.
    pub switches: Switches,
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
        let window_steps =
            (patient.steps_per_epoch as u64 / th.windows_per_epoch).clamp(1, th.window);
        Self {
            th,
            first_weight: weights.first().copied(),
            last_weight: weights.last().copied(),
            window_steps,
            patient,
            recent: VecDeque::new(),
            filling: Filling::default(),
            windows: Vec::new(),
            closed: 0,
            could_learn: None,
            shaken: None,
            lowest_loss: None,
            epochs: Vec::new(),
            first_loss: None,
            activations: Vec::new(),
            baseline: Vec::new(),
            active: BTreeMap::new(),
            switches: Switches::default(),
        }
    }

    /// The doctor of a run that starts as `info` says, with the settings `cfg`, its switches
    /// as the run starts: the trainer's and `diagnose`'s.
    pub fn for_run(info: &RunInfo, cfg: &RunConfig) -> Self {
        let mut d = Self::new(Patient::of(info, cfg), Thresholds::default());
        d.switches = Switches {
            augmenting: info.data_facts.augmenting,
            class_weights: !info.data_facts.class_weights.is_empty(),
            clipping: info.clip_grad_norm > 0.0,
        };
        d
    }

    /// Steps a window of the step rules covers.
    pub fn window_steps(&self) -> u64 {
        self.window_steps
    }

    /// The live change that answers `kind`, unless the run has it already.
    fn remedy(&self, kind: FindingKind) -> Option<Remedy> {
        rules::rule(kind)?.remedy(&self.patient, self.switches, &self.th)
    }

    /// Runs the rules that watch for `watch` and applies what they find now.
    fn look(&mut self, watch: Watch, refresh: bool) -> Vec<Change> {
        let signals = Signals {
            watch,
            th: &self.th,
            patient: &self.patient,
            windows: &self.windows,
            closed: self.closed,
            could_learn: self.could_learn,
            shaken: self.shaken,
            lowest_loss: self.lowest_loss,
            first_loss: self.first_loss,
            epochs: &self.epochs,
            activations: &self.activations,
            baseline: &self.baseline,
            improving: self.improving(),
            active: &self.active,
        };
        let looking: Vec<&dyn Rule> = RULES
            .iter()
            .copied()
            .filter(|r| r.watches().contains(&watch))
            .collect();
        // While nothing is learnt though the model could learn, units and gradients die as it
        // settles on the class prior: their findings wait for the labels to be judged.
        let doubt = signals.labels_in_doubt();
        let now: BTreeMap<FindingKind, (Found, Severity)> = looking
            .iter()
            .filter_map(|r| {
                let severity = if doubt && r.kind().follows_from_the_labels() {
                    Severity::Info
                } else {
                    r.severity(&signals)
                };
                r.check(&signals).map(|found| (r.kind(), (found, severity)))
            })
            .collect();
        let kinds: Vec<FindingKind> = looking.iter().map(|r| r.kind()).collect();
        let mut out = self.update(now, &kinds, refresh);
        out.extend(self.reattribute());
        out
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
        let mut out = vec![Change {
            finding,
            cleared: false,
        }];
        out.extend(self.reattribute());
        out
    }

    /// Activation statistics of every layer: dead units and saturation.
    pub fn on_activations(&mut self, layers: &[LayerActivations]) -> Vec<Change> {
        self.activations = layers.to_vec();
        if self.baseline.is_empty() {
            self.baseline = layers.to_vec();
        }
        self.look(Watch::Activations, true)
    }

    /// What holds before the first step: the class counts, the inputs, batch norm's batch size.
    pub fn on_start(&mut self) -> Vec<Change> {
        self.look(Watch::Start, false)
    }

    /// One step record: the mean loss of the steps it covers, their largest loss, and the
    /// gradient norms and update ratios of its last step. The trainer writes one at the first
    /// step and every `--log-every` steps, and the doctor judges exactly those.
    pub fn on_record(&mut self, m: &StepMetrics) -> Vec<Change> {
        let mut out = Vec::new();
        if !m.loss.is_finite() {
            return out;
        }
        let steps = u64::from(m.steps.max(1));
        if self.first_loss.is_none() {
            self.first_loss = Some(m.loss);
            out.extend(
                rules::initial_loss::check(&self.patient, &self.th, m.loss).map(|finding| Change {
                    finding,
                    cleared: false,
                }),
            );
        }
        // A spike: a step's loss far above the mean of the steps before it, and high in
        // itself (batch noise on a small loss is not one).
        let covered: u64 = self.recent.iter().map(|r| r.1).sum();
        if covered >= self.th.spike_span as u64 {
            let mean = self.recent.iter().map(|r| r.0 * r.1 as f64).sum::<f64>() / covered as f64;
            let floor = self.th.spike_floor * self.first_loss.unwrap_or(0.0);
            if m.loss_max > self.th.spike_factor * mean && m.loss_max > floor {
                self.filling.spikes += 1;
            }
        }
        self.recent.push_back((m.loss, steps));
        while self.recent.len() > 1
            && self.recent.iter().skip(1).map(|r| r.1).sum::<u64>() >= self.th.spike_span as u64
        {
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
        self.filling.loss += m.loss * steps as f64;
        self.filling.steps += steps;
        self.filling.signals.push([
            grad(self.first_weight).unwrap_or(f64::NAN),
            grad(self.last_weight).unwrap_or(f64::NAN),
            m.grad_norms.iter().copied().fold(0.0, f64::max),
            // The first step's update tells the optimizer, not the LR: Adam's is a sign step
            // of the LR on every weight, 2e-2 of a wide layer's weights at the default LR.
            if m.step == 1 {
                f64::NAN
            } else {
                median(weight_ratios)
            },
        ]);
        // The first window closes at the first record of a few steps: a run that goes wrong
        // from the start is judged at once, whatever its epoch's length.
        let target = if self.closed == 0 {
            self.window_steps.min(self.th.first_window)
        } else {
            self.window_steps
        };
        if self.filling.steps >= target {
            let Filling {
                loss: sum,
                steps: n,
                spikes,
                signals: sig,
            } = std::mem::take(&mut self.filling);
            let col = |k: usize| median(sig.iter().map(|s| s[k]).collect());
            self.windows.push(Window {
                loss: sum / n as f64,
                steps: n,
                spikes,
                first_grad: col(0),
                last_grad: col(1),
                max_grad: col(2),
                ratio: col(3),
            });
            if self.windows.len() > 2 * WINDOWS_KEPT {
                self.windows.drain(..WINDOWS_KEPT);
            }
            self.closed += 1;
            let w = self.windows[self.windows.len() - 1];
            // Above where it started and above the prior's: thrown off by the updates (a model
            // with nothing to learn settles on the prior).
            let first = self.first_loss.unwrap_or(f64::INFINITY);
            let climbed = w.loss > self.th.climbed_factor * first.max(self.patient.prior_loss());
            let large = self.patient.ratio_tells_the_lr() && w.ratio >= self.th.ratio_high;
            self.lowest_loss = Some(self.lowest_loss.map_or(w.loss, |l| l.min(w.loss)));
            if self.shaken.is_none() && (large || climbed) {
                self.shaken = Some(w);
            }
            // Healthy: updates neither tiny nor too large, gradients that reach the first
            // layer, and a loss that did not climb.
            if self.could_learn.is_none()
                && w.ratio >= self.th.ratio_low
                && !large
                && !climbed
                && w.first_grad > self.th.vanishing_norm
            {
                self.could_learn = Some(w);
            }
            out.extend(self.look(Watch::Window, false));
        }
        out
    }

    /// Whether the run is getting better: the mean loss fell over the last (up to) four
    /// windows (the first window: since the first step), or one of the last two epochs set a
    /// clearly better validation accuracy.
    fn improving(&self) -> bool {
        let w = &self.windows;
        let k = w.len().min(5);
        // Over the first window, against the first step.
        let since = match (k, self.first_loss) {
            (1, Some(first)) => Some(first),
            (k, _) if k >= 2 => Some(w[w.len() - k].loss),
            _ => None,
        };
        let loss_falls = since.is_some_and(|a| {
            let b = w[w.len() - 1].loss;
            (a - b) / a.abs().max(1e-12) > self.th.improving_change
        });
        let ep = &self.epochs;
        let recent_best = ep.len() >= 2 && {
            let split = ep.len().saturating_sub(2).max(1);
            let (earlier, recent) = ep.split_at(split);
            let best_before = earlier.iter().map(|e| e.val_accuracy).fold(0.0, f64::max);
            recent.iter().any(|e| e.val_accuracy > best_before + 0.005)
        };
        loss_falls || recent_best
    }

    /// Epochs a resumed run did before: known, not judged again.
    pub fn remember(&mut self, epochs: &[EpochMetrics]) {
        self.epochs.extend_from_slice(epochs);
    }

    /// One finished epoch.
    pub fn on_epoch(&mut self, e: &EpochMetrics) -> Vec<Change> {
        self.epochs.push(e.clone());
        self.look(Watch::Epoch, true)
    }

    /// The cause in force that explains the symptoms, the first in the rules' order.
    fn cause(&self) -> Option<&Finding> {
        RULES
            .iter()
            .map(|r| r.kind())
            .filter(|k| k.explains_symptoms())
            .find_map(|k| self.active.get(&k))
    }

    /// A symptom as it stands while `cause` is in force: a note that names the cause and
    /// offers its remedy (a wider model does not fix a bad LR).
    fn attributed(&self, symptom: FindingKind, evidence: &str, cause: &Finding) -> Finding {
        // The symptom's own numbers, without a cause named before.
        let base = RULES
            .iter()
            .find_map(|r| evidence.strip_prefix(&attribution(r.kind())))
            .unwrap_or(evidence);
        Finding {
            kind: symptom,
            severity: Severity::Info,
            evidence: format!("{}{base}", attribution(cause.kind)),
            action: cause.action.clone(),
            remedy: cause.remedy.clone(),
        }
    }

    /// Symptoms in force raised before their cause was found: said again, naming it.
    fn reattribute(&mut self) -> Vec<Change> {
        let Some(cause) = self.cause().cloned() else {
            return Vec::new();
        };
        let prefix = attribution(cause.kind);
        let stale: Vec<Finding> = self
            .active
            .values()
            .filter(|f| f.kind.is_symptom() && !f.evidence.starts_with(&prefix))
            .cloned()
            .collect();
        stale
            .into_iter()
            .map(|old| {
                let f = self.attributed(old.kind, &old.evidence, &cause);
                self.active.insert(f.kind, f.clone());
                Change {
                    finding: f,
                    cleared: false,
                }
            })
            .collect()
    }

    /// Applies what the rules of `kinds` find now: a new finding (or one whose severity
    /// changed) is raised, one no longer found is cleared; the evidence of the others is kept
    /// current. Severity: as each rule says (most: a warning only while the run is not
    /// improving); a symptom whose cause is in force is a note that names it.
    fn update(
        &mut self,
        now: BTreeMap<FindingKind, (Found, Severity)>,
        kinds: &[FindingKind],
        refresh: bool,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        for &kind in kinds {
            match now.get(&kind) {
                Some(((evidence, action), severity)) => {
                    let plain = Finding {
                        kind,
                        severity: *severity,
                        evidence: evidence.clone(),
                        action: action.clone(),
                        remedy: self.remedy(kind),
                    };
                    let f = match self.cause() {
                        Some(cause) if kind.is_symptom() => {
                            self.attributed(kind, evidence, &cause.clone())
                        }
                        _ => plain,
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

    /// The findings in force: warnings first, causes before symptoms, then in the rules' order.
    pub fn findings(&self) -> Vec<Finding> {
        let mut v: Vec<Finding> = self.active.values().cloned().collect();
        let order = |k: FindingKind| {
            RULES
                .iter()
                .position(|r| r.kind() == k)
                .unwrap_or(usize::MAX)
        };
        v.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.kind.is_symptom().cmp(&b.kind.is_symptom()))
                .then(order(a.kind).cmp(&order(b.kind)))
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Activation;
    use crate::protocol::{Confusion, Setting};

    fn patient(counts: Vec<usize>, batch_size: usize) -> Patient {
        Patient {
            classes: (0..counts.len()).map(|c| format!("c{c}")).collect(),
            layers: vec!["conv.weight".into(), "conv.bias".into(), "fc.weight".into()],
            train_counts: counts,
            batch_size,
            // Windows of 50 steps.
            steps_per_epoch: 800,
            arch: "c8,f16".into(),
            activation: Activation::Relu,
            batch_norm: true,
            dropout: 0.25,
            weight_decay: 0.01,
            lr: 1e-3,
            optimizer: crate::optim::OptimizerKind::Adamw,
            input_mean: vec![0.0],
            input_std: vec![1.0],
        }
    }

    fn step(step: u64, loss: f64, grads: [f64; 2], ratio: f64) -> StepMetrics {
        StepMetrics {
            step,
            epoch: 1,
            steps: 1,
            loss,
            loss_max: loss,
            accuracy: 0.5,
            lr: 1e-3,
            grad_norms: vec![grads[0], 0.1, grads[1]],
            update_ratios: vec![ratio, ratio, ratio],
            images_per_sec: 1.0,
            branch: None,
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
            val_confusion: vec![],
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
                d.on_record(&f(s))
                    .into_iter()
                    .map(move |c| (s, c.finding.kind, c.finding.severity, c.cleared))
            })
            .collect()
    }

    #[test]
    fn a_flat_loss_with_tiny_updates_is_a_low_lr_once_past_the_warm_up() {
        let mut d = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        let got = run(&mut d, 200, |s| step(s, 0.693, [0.1, 0.2], 1e-6));
        // Windows of 50 steps after a first one of 16: past the warm-up, the loss is compared
        // with two windows before.
        assert_eq!(
            got,
            vec![(116, FindingKind::LrTooLow, Severity::Warning, false)]
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
    fn updates_a_millionth_of_the_weights_are_a_low_lr_at_the_first_window() {
        let mut d = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        let got = run(&mut d, 100, |s| step(s, 0.693, [0.1, 0.2], 1e-7));
        assert_eq!(
            got,
            vec![(16, FindingKind::LrTooLow, Severity::Warning, false)]
        );
        // Windows fit the run: a sixteenth of a 160-step epoch is 10 steps.
        let mut p = patient(vec![10, 10], 64);
        p.steps_per_epoch = 160;
        let mut d = Doctor::new(p, Thresholds::default());
        let got = run(&mut d, 100, |s| step(s, 0.693, [0.1, 0.2], 1e-7));
        assert_eq!(
            got,
            vec![(10, FindingKind::LrTooLow, Severity::Warning, false)]
        );
    }

    #[test]
    fn a_symptom_names_its_cause_and_offers_the_causes_remedy() {
        let mut d = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        // Updates a millionth of the weights: the LR is too low from the first window.
        run(&mut d, 100, |s| step(s, 2.3, [0.1, 0.2], 1e-7));
        let mut last = Vec::new();
        for n in 1..=3 {
            last = d.on_epoch(&epoch(n, 0.10, 0.10, 2.3));
        }
        let under = last
            .iter()
            .find(|c| c.finding.kind == FindingKind::Underfitting)
            .expect("underfitting at epoch 3");
        assert_eq!(under.finding.severity, Severity::Info);
        assert!(
            under
                .finding
                .evidence
                .starts_with("learning rate too low, see above: train 10.00%"),
            "{}",
            under.finding.evidence
        );
        assert_eq!(under.finding.remedy, Some(Remedy::ScaleLr(10.0)));
        // `r` takes the cause's remedy: the cause comes first.
        let top = d.findings();
        assert_eq!(top[0].kind, FindingKind::LrTooLow);
        // A symptom found before its cause is said again once the cause is known.
        let mut d = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        for n in 1..=3 {
            d.on_epoch(&epoch(n, 0.10, 0.10, 2.3));
        }
        assert_eq!(d.findings()[0].kind, FindingKind::Underfitting);
        let got = d.on_non_finite(400, "loss is NaN");
        let restated = got
            .iter()
            .find(|c| c.finding.kind == FindingKind::Underfitting)
            .expect("restated");
        assert!(restated
            .finding
            .evidence
            .starts_with("learning rate too high, see above: train 10.00%"));
    }

    #[test]
    fn inputs_labels_and_regularisation() {
        let mut p = patient(vec![10, 10], 64);
        p.input_mean = vec![0.5 / 0.0039];
        p.input_std = vec![0.3 / 0.0039];
        let mut d = Doctor::new(p.clone(), Thresholds::default());
        let kinds: Vec<FindingKind> = d.on_start().iter().map(|c| c.finding.kind).collect();
        assert_eq!(kinds, vec![FindingKind::UnnormalisedInput]);
        // Half the training labels wrong: training accuracy far below (clean) validation.
        let mut d = Doctor::new(patient(vec![10; 10], 64), Thresholds::default());
        run(&mut d, 100, |s| step(s, 1.0, [0.1, 0.2], 1e-3));
        let mut e = |n: usize, train: f64, val: f64, train_loss: f64, val_loss: f64| {
            let mut m = epoch(n, train, val, val_loss);
            m.train_loss = train_loss;
            d.on_epoch(&m)
                .into_iter()
                .map(|c| (c.finding.kind, c.finding.severity))
                .collect::<Vec<_>>()
        };
        // The first epoch's training accuracy averages a model still learning: not judged.
        assert_eq!(e(1, 0.3, 0.7, 2.2, 1.5), vec![]);
        assert_eq!(
            e(2, 0.35, 0.77, 2.0, 1.4),
            vec![(FindingKind::LabelNoise, Severity::Warning)]
        );
        // Dropout 0.9 does the same: it is the regularisation, not the labels.
        let mut p = patient(vec![10; 10], 64);
        p.dropout = 0.9;
        let mut d = Doctor::new(p, Thresholds::default());
        run(&mut d, 100, |s| step(s, 1.0, [0.1, 0.2], 1e-3));
        d.on_epoch(&epoch(1, 0.2, 0.5, 2.0));
        let mut m = epoch(2, 0.25, 0.56, 1.5);
        m.train_loss = 2.0;
        let got: Vec<FindingKind> = d.on_epoch(&m).iter().map(|c| c.finding.kind).collect();
        assert_eq!(got, vec![FindingKind::TooMuchRegularisation]);
        assert_eq!(
            d.findings()[0].remedy,
            Some(Remedy::Restart(vec![Setting::new("dropout", 0.25)]))
        );
    }

    #[test]
    fn labels_that_say_nothing_of_the_images_need_a_validation_loss_no_better_than_the_prior() {
        let prior = 10f64.ln();
        // Healthy updates, the loss at the prior of 10 equal classes from the first step.
        let judge = |val_loss: f64, saturated: bool| {
            let mut d = Doctor::new(patient(vec![10; 10], 64), Thresholds::default());
            if saturated {
                d.on_activations(&[layer("features.0", None, Some(0.9), 0.6)]);
            }
            run(&mut d, 100, |s| step(s, prior, [0.1, 0.2], 1e-3));
            for n in 1..=2 {
                let mut m = epoch(n, 0.1, 0.1, val_loss);
                m.train_loss = prior;
                d.on_epoch(&m);
            }
            d.findings()
                .into_iter()
                .find(|f| f.kind == FindingKind::LabelNoise)
        };
        let found = judge(prior + 0.001, false).expect("mismatched labels");
        assert_eq!(found.severity, Severity::Warning);
        assert!(found
            .evidence
            .contains("no better than predicting the class shares (2.3026)"));
        // A model that learns a little (the validation loss 1% under the prior) is not
        // judged: it is slow, and its labels say something.
        assert_eq!(judge(0.99 * prior, false), None);
        // Saturated units hold a model at chance by themselves: the labels are not judged.
        assert_eq!(judge(prior + 0.001, true), None);
    }

    #[test]
    fn divergence_and_vanishing_gradients_are_found_and_clear_when_they_stop() {
        let mut d = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        // The loss jumps to 4x where it began, then comes back down.
        let got = run(&mut d, 120, |s| {
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
                (16, FindingKind::LrTooHigh, Severity::Warning, false),
                (116, FindingKind::LrTooHigh, Severity::Info, true)
            ]
        );
        let mut d = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        // A first layer a millionth of the last: said at the first window.
        let got = run(&mut d, 150, |s| step(s, 0.693, [1e-7, 0.5], 1e-3));
        assert_eq!(
            got,
            vec![(
                16,
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
                66,
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
            vec![FindingKind::SmallBatchNorm, FindingKind::ClassImbalance]
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
        // Units dead from the first measurement on are the model's (ReLU after non-negative
        // inputs), not a dying ReLU: 60% at the start, 70% later, is no finding.
        let mut fresh = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        assert!(fresh
            .on_activations(&[layer("classifier.0", Some(0.6), None, 0.0)])
            .is_empty());
        assert!(fresh
            .on_activations(&[layer("classifier.0", Some(0.7), None, 0.0)])
            .is_empty());
        // Sigmoid outputs pinned to their bounds: saturated, no live remedy (a restart).
        let pinned = [layer("features.0", None, Some(0.7), 0.2)];
        let got = d.on_activations(&pinned);
        let kinds: Vec<(FindingKind, bool)> =
            got.iter().map(|c| (c.finding.kind, c.cleared)).collect();
        assert_eq!(
            kinds,
            vec![
                (FindingKind::SaturatedActivations, false),
                (FindingKind::DeadUnits, true)
            ]
        );
        assert_eq!(got[0].finding.remedy, None);
    }

    /// A window of records at `loss` with median update ratio `ratio` (after step 1).
    fn windows(d: &mut Doctor, upto: u64, loss: f64, ratio: f64) {
        for s in 1..=upto {
            d.on_record(&step(s, loss, [0.1, 0.2], ratio));
        }
    }

    #[test]
    fn dead_units_are_a_warning_after_large_updates_and_a_note_while_the_model_sits_on_the_prior() {
        let dead = [layer("classifier.0", Some(0.85), None, 0.0)];
        let start = [layer("classifier.0", Some(0.02), None, 0.0)];
        let severity = |d: &mut Doctor| {
            d.on_activations(&dead)
                .iter()
                .find(|c| c.finding.kind == FindingKind::DeadUnits)
                .map(|c| (c.finding.severity, c.finding.evidence.clone()))
        };
        // SGD updates of 5% of the weights a step with a loss that does not fall: the LR is
        // too high, and the units it killed are a warning.
        let mut sgd = patient(vec![10, 10], 64);
        sgd.optimizer = crate::optim::OptimizerKind::Sgd;
        let mut d = Doctor::new(sgd, Thresholds::default());
        d.on_activations(&start);
        windows(&mut d, 16, 0.70, 5e-2);
        assert!(d
            .findings()
            .iter()
            .any(|f| f.kind == FindingKind::LrTooHigh));
        let (sev, evidence) = severity(&mut d).unwrap();
        assert_eq!(sev, Severity::Warning, "{evidence}");
        // Healthy updates and a loss that stays at ln 2 (the prior of two equal classes):
        // units died as the model settled on the prior. A note until the labels are judged.
        let mut d = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        d.on_activations(&start);
        windows(&mut d, 16, 0.69, 1e-3);
        let (sev, evidence) = severity(&mut d).unwrap();
        assert_eq!(sev, Severity::Info, "{evidence}");
        assert!(evidence.contains("class prior's 0.6931"), "{evidence}");
        // The same layer while the loss falls far below the prior is the LR's doing: a
        // warning only when the whole layer is dead.
        let mut d = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        d.on_activations(&start);
        windows(&mut d, 16, 0.30, 1e-3);
        assert_eq!(severity(&mut d).unwrap().0, Severity::Info);
        let whole = d.on_activations(&[layer("classifier.0", Some(0.95), None, 0.0)]);
        assert_eq!(whole[0].finding.severity, Severity::Warning);
    }

    #[test]
    fn large_updates_are_a_high_lr_only_with_sgd_and_without_heavy_decay() {
        let mut sgd = patient(vec![10, 10], 64);
        sgd.optimizer = crate::optim::OptimizerKind::Sgd;
        // The first step's update is not counted (Adam's is a sign step of the LR on every
        // weight); the steps after it are 1e-3.
        let mut d = Doctor::new(sgd.clone(), Thresholds::default());
        d.on_record(&step(1, 0.69, [0.1, 0.2], 2e-2));
        for s in 2..=16 {
            d.on_record(&step(s, 0.69, [0.1, 0.2], 1e-3));
        }
        assert!(d.findings().is_empty(), "{:?}", d.findings());
        // Adam moves small weights by 1e-2 at a sane LR: not a high LR by itself.
        let mut d = Doctor::new(patient(vec![10, 10], 64), Thresholds::default());
        windows(&mut d, 16, 0.69, 2e-2);
        assert!(d.findings().is_empty(), "{:?}", d.findings());
        // Large updates that weight decay explains (LR x wd = 2% a step) are too much
        // regularisation, not a high LR.
        let mut p = sgd;
        p.weight_decay = 20.0;
        let mut d = Doctor::new(p, Thresholds::default());
        windows(&mut d, 16, 0.69, 2.5e-2);
        let kinds: Vec<FindingKind> = d.findings().iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![FindingKind::TooMuchRegularisation]);
    }

    fn classes_epoch(n: usize, acc: [f64; 3], taken: [(usize, f64); 3]) -> EpochMetrics {
        EpochMetrics {
            val_class_accuracy: acc.to_vec(),
            val_confusion: taken
                .iter()
                .map(|&(class, share)| Confusion { class, share })
                .collect(),
            val_accuracy: acc.iter().sum::<f64>() / 3.0,
            ..epoch(n, 0.7, 0.7, 0.8)
        }
    }

    #[test]
    fn two_classes_taken_for_each_other_are_a_warning_from_the_second_epoch() {
        let mut d = Doctor::new(patient(vec![10, 10, 10], 64), Thresholds::default());
        // c1 and c2 hold the same images: each is predicted for the other's images about as
        // often as for its own.
        let twins = |n| classes_epoch(n, [0.95, 0.52, 0.47], [(2, 0.03), (2, 0.46), (1, 0.5)]);
        let first = d.on_epoch(&twins(1));
        assert_eq!(first[0].finding.kind, FindingKind::WeakClass);
        assert_eq!(first[0].finding.severity, Severity::Info);
        assert_eq!(
            first[0].finding.evidence,
            "the model cannot tell c1 from c2: c1's validation images are taken for c2 46% of the time (c1 52%), and c2's for c1 50% (c2 47%)"
        );
        let second = d.on_epoch(&twins(2));
        assert_eq!(second[0].finding.severity, Severity::Warning);
        // All of c2's images taken for c1 (one-sided) is the same blindness.
        let mut d = Doctor::new(patient(vec![10, 10, 10], 64), Thresholds::default());
        let lopsided = |n| classes_epoch(n, [0.95, 0.99, 0.0], [(1, 0.03), (0, 0.01), (1, 0.97)]);
        d.on_epoch(&lopsided(1));
        assert_eq!(
            d.on_epoch(&lopsided(2))[0].finding.severity,
            Severity::Warning
        );
        // A model that takes nearly everything for one class (c0) is no pair of twins.
        let mut d = Doctor::new(patient(vec![10, 10, 10], 64), Thresholds::default());
        let collapsed = |n| classes_epoch(n, [0.96, 0.0, 0.1], [(2, 0.04), (0, 1.0), (0, 0.9)]);
        d.on_epoch(&collapsed(1));
        d.on_epoch(&collapsed(2));
        assert!(
            d.findings()
                .iter()
                .all(|f| !f.evidence.contains("cannot tell")),
            "{:?}",
            d.findings()
        );
        // A hard class the model still tells apart (Fashion-MNIST's shirts, after an epoch):
        // a note that says where its images go.
        let mut d = Doctor::new(patient(vec![10, 10, 10], 64), Thresholds::default());
        let hard = |n| classes_epoch(n, [0.95, 0.40, 0.85], [(2, 0.02), (2, 0.35), (1, 0.10)]);
        d.on_epoch(&hard(1));
        let f = d.on_epoch(&hard(2));
        assert!(
            f.is_empty() || f[0].finding.severity == Severity::Info,
            "{f:?}"
        );
        let note = &d.findings()[0];
        assert_eq!(
            note.evidence,
            "class c1 has 40.0% validation accuracy against a mean of 73.3% (10 training images); its images are most often taken for c2 (35%)"
        );
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
