//! Vanishing gradients: the first layer's gradient a tiny share of the last layer's, and tiny
//! itself (AUTOTRAINER: 1e-3 and 1e-4).

use super::signals::{Found, Rule, Signals, Watch};
use crate::diagnose::patient::relu_and_batch_norm;
use crate::diagnose::{Patient, Switches, Thresholds};
use crate::format::sci;
use crate::protocol::{FindingKind, Remedy};

pub struct VanishingGradients;

impl Rule for VanishingGradients {
    fn kind(&self) -> FindingKind {
        FindingKind::VanishingGradients
    }

    fn watches(&self) -> &'static [Watch] {
        &[Watch::Window]
    }

    fn check(&self, s: &Signals) -> Option<Found> {
        let th = s.th;
        // A first layer a millionth of the last vanishes from the first window; a thousandth,
        // once the first windows are past.
        let newest = s.newest()?;
        let strong = newest.first_grad / newest.last_grad.max(1e-30) < th.vanishing_ratio_strong;
        let last = if strong { newest } else { s.past_warm_up()? };
        let ratio = last.first_grad / last.last_grad.max(1e-30);
        (ratio < th.vanishing_ratio && last.first_grad < th.vanishing_norm).then(|| {
            (
                format!(
                    "the first layer's gradient norm ({}) is {} of the last layer's ({}); under {} with a norm under {}, the early layers stop learning",
                    sci(last.first_grad),
                    sci(ratio),
                    sci(last.last_grad),
                    sci(th.vanishing_ratio),
                    sci(th.vanishing_norm)
                ),
                "ReLU or LeakyReLU with batch norm (a restart: --activation relu --batch-norm)"
                    .to_string(),
            )
        })
    }

    fn remedy(&self, patient: &Patient, _: Switches, _: &Thresholds) -> Option<Remedy> {
        relu_and_batch_norm(patient)
    }
}
