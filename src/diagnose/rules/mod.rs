//! The doctor's rules, one file a finding: what each watches, when it speaks (its thresholds
//! are in `Thresholds`), its evidence and advice, and the live remedy it offers. The doctor
//! runs them in the order of `RULES`; a new finding is a file here and a line there.

use crate::protocol::FindingKind;

mod class_imbalance;
mod dead_units;
mod exploding_gradients;
pub(super) mod initial_loss;
mod lr_too_high;
mod lr_too_low;
mod overfitting;
mod plateau;
mod saturated_activations;
mod signals;
mod small_batch_norm;
mod underfitting;
mod vanishing_gradients;
mod weak_class;

pub use signals::{Found, Rule, Signals, Watch};

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
