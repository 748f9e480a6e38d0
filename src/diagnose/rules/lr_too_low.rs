//! Learning rate too low: the loss barely moves while the updates are a tiny share of the
//! weights and the gradients are not small (DL4J: an update/weight ratio of about 1e-3 is
//! healthy, under 1e-4 too small).

use super::signals::{Found, Rule, Signals, Watch};
use crate::diagnose::{Patient, Switches, Thresholds};
use crate::format::sci;
use crate::protocol::{FindingKind, Remedy};

pub struct LrTooLow;

impl Rule for LrTooLow {
    fn kind(&self) -> FindingKind {
        FindingKind::LrTooLow
    }

    fn watches(&self) -> &'static [Watch] {
        &[Watch::Window]
    }

    fn check(&self, s: &Signals) -> Option<Found> {
        let (th, last) = (s.th, s.past_warm_up()?);
        let w = s.windows;
        let before = w[w.len() - 3].loss;
        let change = (last.loss - before).abs() / before.abs().max(1e-12);
        let healthy = last.first_grad > th.vanishing_norm;
        (change < th.flat_change && last.ratio < th.ratio_low && healthy).then(|| {
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
            )
        })
    }

    fn remedy(&self, _: &Patient, _: Switches, _: &Thresholds) -> Option<Remedy> {
        Some(Remedy::ScaleLr(10.0))
    }
}
