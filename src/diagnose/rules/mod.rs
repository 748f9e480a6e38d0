//! The doctor's rules, one file a finding: what each watches, when it speaks (its thresholds
//! are in `Thresholds`), its evidence and advice, and the live remedy it offers. The doctor
//! runs them in the order of `RULES`; a new finding is a file here and a line there.

use crate::protocol::FindingKind;

mod class_imbalance;
mod dead_units;
mod exploding_gradients;
pub(super) mod initial_loss;
mod label_noise;
mod lr_too_high;
mod lr_too_low;
mod overfitting;
mod plateau;
mod saturated_activations;
mod signals;
mod small_batch_norm;
mod too_much_regularisation;
mod underfitting;
mod unnormalised_input;
mod vanishing_gradients;
mod weak_class;

pub use signals::{Found, Rule, Signals, Watch};

/// Every rule, in the order the doctor runs them and reports what they find: causes first,
/// upstream ones first (the inputs, then the steps, then the units, then the labels), then
/// what the data is, then the symptoms, which name the first cause in force.
pub static RULES: &[&dyn Rule] = &[
    &unnormalised_input::UnnormalisedInput,
    &small_batch_norm::SmallBatchNorm,
    &lr_too_high::LrTooHigh,
    &exploding_gradients::ExplodingGradients,
    &lr_too_low::LrTooLow,
    &vanishing_gradients::VanishingGradients,
    &saturated_activations::SaturatedActivations,
    &dead_units::DeadUnits,
    &label_noise::LabelNoise,
    &too_much_regularisation::TooMuchRegularisation,
    &class_imbalance::ClassImbalance,
    &overfitting::Overfitting,
    &underfitting::Underfitting,
    &plateau::Plateau,
    &weak_class::WeakClass,
];

/// The rule of a finding.
pub fn rule(kind: FindingKind) -> Option<&'static dyn Rule> {
    RULES.iter().copied().find(|r| r.kind() == kind)
}
