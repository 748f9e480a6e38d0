//! Dead units: most of a layer's units put out zero for a whole batch (ReLU; the issue's "more
//! than half", DeepDiagnosis uses 0.7).

use super::signals::{worst, Found, Rule, Signals, Watch};
use crate::diagnose::{Patient, Switches, Thresholds};
use crate::protocol::{FindingKind, Remedy};

pub struct DeadUnits;

impl Rule for DeadUnits {
    fn kind(&self) -> FindingKind {
        FindingKind::DeadUnits
    }

    fn watches(&self) -> &'static [Watch] {
        &[Watch::Activations]
    }

    fn check(&self, s: &Signals) -> Option<Found> {
        let (l, dead) = worst(s.activations, |l| l.dead)?;
        (dead > s.th.dead_share).then(|| {
            (
                format!(
                    "{:.0}% of {}'s units put out zero for the whole batch (over {:.0}% is a problem): they no longer learn",
                    100.0 * dead,
                    l.layer,
                    100.0 * s.th.dead_share
                ),
                "a lower LR, or LeakyReLU (a restart: --activation leaky_relu)".to_string(),
            )
        })
    }

    fn remedy(&self, _: &Patient, _: Switches, _: &Thresholds) -> Option<Remedy> {
        Some(Remedy::ScaleLr(0.1))
    }
}
