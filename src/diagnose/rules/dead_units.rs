//! Dead units: most of a layer's units put out zero for a whole batch (ReLU; the issue's "more
//! than half", DeepDiagnosis uses 0.7). A large update knocks a unit's pre-activations below
//! zero for every input; it then gets no gradient and never comes back.

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
        if s.on_prior() {
            return Some((
                format!(
                    "{:.0}% of {}'s units put out zero for the whole batch ({:.0}% at the first measurement), without large updates while the loss has stayed at the class prior's {:.4}: units die this way when nothing in the images predicts the labels (judged after 2 epochs)",
                    100.0 * dead,
                    l.layer,
                    100.0 * at_start(l),
                    s.prior_loss()
                ),
                "wait for the labels to be judged; if they are right, a lower LR, or LeakyReLU (a restart: --activation leaky_relu)".to_string(),
            ));
        }
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

    /// Units killed by too large updates (a ratio over `ratio_high`, or a loss that climbed)
    /// are a warning while the run is not improving, or when nearly the whole layer died.
    /// Without such updates only a whole layer is a warning (and while the model sits on the
    /// class prior, the doctor holds even that back until the labels are judged).
    fn severity(&self, s: &Signals) -> Severity {
        let whole = s
            .activations
            .iter()
            .filter_map(|l| l.dead)
            .any(|d| d >= s.th.dead_whole);
        if whole || (s.shaken.is_some() && !s.improving) {
            Severity::Warning
        } else {
            Severity::Info
        }
    }

    fn remedy(&self, _: &Patient, _: Switches, _: &Thresholds) -> Option<Remedy> {
        Some(Remedy::ScaleLr(0.1))
    }
}
