//! Dead units: most of a layer's units put out zero for a whole batch (ReLU; the issue's "more
//! than half", DeepDiagnosis uses 0.7).

use super::signals::{worst, Found, Rule, Signals, Watch};
use crate::diagnose::{Patient, Switches, Thresholds};
use crate::protocol::{FindingKind, LayerActivations, Remedy, Severity};

pub struct DeadUnits;

impl Rule for DeadUnits {
    fn kind(&self) -> FindingKind {
        FindingKind::DeadUnits
    }

    fn watches(&self) -> &'static [Watch] {
        &[Watch::Activations]
    }

    fn check(&self, s: &Signals) -> Option<Found> {
        // Units dead from the first measurement are the architecture's (a ReLU layer after
        // non-negative inputs): those that died since are the finding.
        let at_start = |l: &LayerActivations| {
            s.baseline
                .iter()
                .find(|b| b.layer == l.layer)
                .and_then(|b| b.dead)
                .unwrap_or(0.0)
        };
        let died = |l: &LayerActivations| {
            l.dead
                .filter(|&d| d > s.th.dead_share && d > at_start(l) + s.th.dead_growth)
        };
        let (l, dead) = worst(s.activations, died)?;
        Some((
                format!(
                    "{:.0}% of {}'s units put out zero for the whole batch (over {:.0}% is a problem; {:.0}% at the first measurement): they no longer learn",
                    100.0 * dead,
                    l.layer,
                    100.0 * s.th.dead_share,
                    100.0 * at_start(l)
                ),
                "a lower LR, or LeakyReLU (a restart: --activation leaky_relu)".to_string(),
            ))
    }

    /// Nearly a whole layer dead is capacity lost whatever the loss does; fewer dead units
    /// matter while the run is not improving.
    fn severity(&self, s: &Signals) -> Severity {
        let whole = s
            .activations
            .iter()
            .filter_map(|l| l.dead)
            .any(|d| d >= s.th.dead_whole);
        if whole || !s.improving {
            Severity::Warning
        } else {
            Severity::Info
        }
    }

    fn remedy(&self, _: &Patient, _: Switches, _: &Thresholds) -> Option<Remedy> {
        Some(Remedy::ScaleLr(0.1))
    }
}
