//! Exploding gradients: the first layer's gradient far above the last layer's (AUTOTRAINER:
//! 70x), or any layer's norm above an absolute bound.

use super::signals::{Found, Rule, Signals, Watch};
use crate::diagnose::{Patient, Switches, Thresholds};
use crate::format::sci;
use crate::protocol::{FindingKind, Remedy};

pub struct ExplodingGradients;

impl Rule for ExplodingGradients {
    fn kind(&self) -> FindingKind {
        FindingKind::ExplodingGradients
    }

    fn watches(&self) -> &'static [Watch] {
        &[Watch::Window]
    }

    fn check(&self, s: &Signals) -> Option<Found> {
        let (th, last) = (s.th, s.past_warm_up()?);
        let ratio = last.first_grad / last.last_grad.max(1e-30);
        let steep = ratio > th.exploding_ratio && last.first_grad >= th.exploding_floor;
        (steep || last.max_grad > th.exploding_norm).then(|| {
            (
                format!(
                    "the first layer's gradient norm is {ratio:.0}x the last layer's (over {:.0} is a problem); the largest layer norm is {}",
                    th.exploding_ratio,
                    sci(last.max_grad)
                ),
                "gradient clipping (r or x), a lower LR (- or l), or batch norm".to_string(),
            )
        })
    }

    fn remedy(&self, _: &Patient, sw: Switches, th: &Thresholds) -> Option<Remedy> {
        (!sw.clipping).then_some(Remedy::ClipGradNorm(th.clip_to))
    }
}
