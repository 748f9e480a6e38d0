//! The training doctor: it watches the numbers a run reports (per-step loss, gradient norms and
//! update/weight ratios; per-epoch train and validation metrics; the class counts) and says, with
//! the evidence, why accuracy is not improving. Plain data in, findings out: the trainer runs it
//! live, `candletop diagnose` runs it over a finished run's metrics.jsonl.
//!
//! Every threshold is in `Thresholds`, with where it comes from; every finding's rule is a file
//! of `rules/`.

mod patient;
mod rules;
mod thresholds;
mod window;

use std::collections::{BTreeMap, VecDeque};

pub use patient::{Patient, Switches};
pub use thresholds::Thresholds;

use crate::protocol::{
    EpochMetrics, Finding, FindingKind, LayerActivations, Remedy, Severity, StepMetrics,
};
use rules::{Found, Rule, Signals, Watch, RULES};
use window::{median, Filling, Window};

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
    /// The latest activation statistics.
    activations: Vec<LayerActivations>,
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
            activations: Vec::new(),
            active: BTreeMap::new(),
            switches: Switches::default(),
        }
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
            first_loss: self.first_loss,
            epochs: &self.epochs,
            activations: &self.activations,
            active: &self.active,
        };
        let looking: Vec<&dyn Rule> = RULES
            .iter()
            .copied()
            .filter(|r| r.watches().contains(&watch))
            .collect();
        let now: BTreeMap<FindingKind, Found> = looking
            .iter()
            .filter_map(|r| r.check(&signals).map(|found| (r.kind(), found)))
            .collect();
        let kinds: Vec<FindingKind> = looking.iter().map(|r| r.kind()).collect();
        self.update(now, &kinds, refresh)
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
        self.activations = layers.to_vec();
        self.look(Watch::Activations, true)
    }

    /// What holds before the first step: the class counts and batch norm's batch size.
    pub fn on_start(&mut self) -> Vec<Change> {
        self.look(Watch::Start, false)
    }

    /// One step's (or, replayed from metrics.jsonl, several steps') metrics.
    pub fn on_step(&mut self, m: &StepMetrics) -> Vec<Change> {
        let mut out = Vec::new();
        if !m.loss.is_finite() {
            return out;
        }
        if self.first_loss.is_none() {
            self.first_loss = Some(m.loss);
            out.extend(
                rules::initial_loss::check(&self.patient, &self.th, m.loss).map(|finding| Change {
                    finding,
                    cleared: false,
                }),
            );
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
            out.extend(self.look(Watch::Window, false));
        }
        out
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

    /// Epochs a resumed run did before: known, not judged again.
    pub fn remember(&mut self, epochs: &[EpochMetrics]) {
        self.epochs.extend_from_slice(epochs);
    }

    /// One finished epoch.
    pub fn on_epoch(&mut self, e: &EpochMetrics) -> Vec<Change> {
        self.epochs.push(e.clone());
        self.look(Watch::Epoch, true)
    }

    /// Applies what the rules of `kinds` find now: a new finding (or one whose severity
    /// changed) is raised, one no longer found is cleared; the evidence of the others is kept
    /// current. Severity: a warning only while the run is not improving.
    fn update(
        &mut self,
        now: BTreeMap<FindingKind, Found>,
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
    use crate::model::Activation;

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
