//! The doctor's rules, one file a finding: what each watches, when it speaks (its thresholds
//! are in `Thresholds`), its evidence and advice, and the live remedy it offers. The doctor
//! runs them in the order of `RULES`; a new finding is a file here and a line there.

use std::collections::BTreeMap;

use crate::diagnose::window::Window;
use crate::diagnose::{Patient, Switches, Thresholds};
use crate::protocol::{EpochMetrics, Finding, FindingKind, LayerActivations, Remedy};

mod class_imbalance;
mod dead_units;
mod exploding_gradients;
pub(super) mod initial_loss;
mod lr_too_high;
mod lr_too_low;
mod overfitting;
mod plateau;
mod saturated_activations;
mod small_batch_norm;
mod underfitting;
mod vanishing_gradients;
mod weak_class;

/// When a rule looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Before the first step: what the data and the model are.
    Start,
    /// When a window of steps closes.
    Window,
    /// At the end of an epoch.
    Epoch,
    /// When the activations were measured.
    Activations,
}

/// What a rule reads: the run so far, as the doctor keeps it.
pub struct Signals<'a> {
    /// What this look is for.
    pub watch: Watch,
    pub th: &'a Thresholds,
    pub patient: &'a Patient,
    /// Closed windows of steps, the newest last.
    pub windows: &'a [Window],
    /// The first step's loss.
    pub first_loss: Option<f64>,
    /// Finished epochs, the newest last.
    pub epochs: &'a [EpochMetrics],
    /// The latest activation statistics (empty before the first measurement).
    pub activations: &'a [LayerActivations],
    /// The findings in force before this look: for hysteresis, and for a rule that defers to
    /// another.
    pub active: &'a BTreeMap<FindingKind, Finding>,
}

impl Signals<'_> {
    pub fn class(&self, c: usize) -> &str {
        self.patient.classes.get(c).map_or("?", String::as_str)
    }

    /// The newest window, once the first noisy windows of the run are past.
    pub fn past_warm_up(&self) -> Option<Window> {
        let w = self.windows;
        (w.len() > self.th.warmup_windows).then(|| w[w.len() - 1])
    }
}

/// What a rule finds: the evidence (numbers) and the advice.
pub type Found = (String, String);

/// One finding's rule.
pub trait Rule: Sync {
    fn kind(&self) -> FindingKind;
    /// When it looks.
    fn watches(&self) -> &'static [Watch];
    /// What it finds now, if anything.
    fn check(&self, s: &Signals) -> Option<Found>;
    /// The live change that answers it (not offered when the run has it already), or a
    /// restart's config.
    fn remedy(&self, _patient: &Patient, _switches: Switches, _th: &Thresholds) -> Option<Remedy> {
        None
    }
}

/// Every rule, in the order the doctor runs them and reports what they find.
pub static RULES: &[&dyn Rule] = &[
    &lr_too_high::LrTooHigh,
    &lr_too_low::LrTooLow,
    &vanishing_gradients::VanishingGradients,
    &exploding_gradients::ExplodingGradients,
    &plateau::Plateau,
    &overfitting::Overfitting,
    &underfitting::Underfitting,
    &class_imbalance::ClassImbalance,
    &weak_class::WeakClass,
    &small_batch_norm::SmallBatchNorm,
    &dead_units::DeadUnits,
    &saturated_activations::SaturatedActivations,
];

/// The rule of a finding.
pub fn rule(kind: FindingKind) -> Option<&'static dyn Rule> {
    RULES.iter().copied().find(|r| r.kind() == kind)
}

/// The layer where `key` is largest, with its value.
fn worst(
    layers: &[LayerActivations],
    key: impl Fn(&LayerActivations) -> Option<f64>,
) -> Option<(&LayerActivations, f64)> {
    layers
        .iter()
        .filter_map(|l| key(l).map(|v| (l, v)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// The class with the lowest validation accuracy in the latest epoch.
struct Lag {
    low: f64,
    mean: f64,
    evidence: String,
}

fn weakest(s: &Signals) -> Option<Lag> {
    let acc = &s.epochs.last()?.val_class_accuracy;
    if acc.is_empty() {
        return None;
    }
    let mean = acc.iter().sum::<f64>() / acc.len() as f64;
    let (worst, &low) = acc.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1))?;
    let count = s.patient.train_counts.get(worst).copied().unwrap_or(0);
    Some(Lag {
        low,
        mean,
        evidence: format!(
            "class {} has {:.1}% validation accuracy against a mean of {:.1}% ({count} training images)",
            s.class(worst),
            100.0 * low,
            100.0 * mean
        ),
    })
}
