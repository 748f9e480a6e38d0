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
        let th = s.th;
        let last = s.newest()?;
        let healthy = last.first_grad > th.vanishing_norm;
        let advice = || "raise the LR x10 (r), or run the LR finder (f)".to_string();
        // Updates a millionth of the weights with a loss where it began: no noise does that.
        let first = s.first_loss?;
        let since_start = (last.loss - first).abs() / first.abs().max(1e-12);
        if last.ratio < th.ratio_tiny && since_start < th.flat_start && healthy {
            return Some((
                format!(
                    "the median update/weight ratio is {} (about 1e-3 is healthy, under {} a thousandth of that) and the loss {:.4} is within {:.2}% of the first step's {:.4}",
                    sci(last.ratio),
                    sci(th.ratio_tiny),
                    last.loss,
                    100.0 * since_start,
                    first
                ),
                advice(),
            ));
        }
        let last = s.past_warm_up()?;
        let w = s.windows;
        if w.len() < 3 {
            return None;
        }
        let before = w[w.len() - 3].loss;
        let change = (last.loss - before).abs() / before.abs().max(1e-12);
        (change < th.flat_change && last.ratio < th.ratio_low && healthy).then(|| {
            (
                format!(
                    "the loss moved {:.2}% over the last {} steps while the median update/weight ratio is {} (about 1e-3 is healthy, under {} too small) and the gradients are not small (first layer {})",
                    100.0 * change,
                    w[w.len() - 2].steps + last.steps,
                    sci(last.ratio),
                    sci(th.ratio_low),
                    sci(last.first_grad)
                ),
                advice(),
            )
        })
    }

    fn remedy(&self, _: &Patient, _: Switches, _: &Thresholds) -> Option<Remedy> {
        Some(Remedy::ScaleLr(10.0))
    }
}
