//! Saturated activations: most of a layer's inputs sit where its activation is flat (sigmoid,
//! tanh, ELU's lower side; DeepDiagnosis: 0.5). A ReLU's large inputs pass their gradient on.

use super::signals::{worst, Found, Rule, Signals, Watch};
use crate::diagnose::patient::relu_and_batch_norm;
use crate::diagnose::{Patient, Switches, Thresholds};
use crate::protocol::{FindingKind, LayerActivations, Remedy};

pub struct SaturatedActivations;

impl Rule for SaturatedActivations {
    fn kind(&self) -> FindingKind {
        FindingKind::SaturatedActivations
    }

    fn watches(&self) -> &'static [Watch] {
        &[Watch::Activations]
    }

    fn check(&self, s: &Signals) -> Option<Found> {
        let saturation = |l: &LayerActivations| l.saturated.map(|v| v.max(l.outside_5));
        let (l, sat) = worst(s.activations, saturation)?;
        (sat > s.th.saturated_share).then(|| {
            (
                format!(
                    "{:.0}% of {}'s activations are saturated (inputs outside [-5, 5] or outputs within 1% of a bound; over {:.0}% is a problem): their gradients vanish",
                    100.0 * sat,
                    l.layer,
                    100.0 * s.th.saturated_share
                ),
                "ReLU with batch norm (a restart: --activation relu --batch-norm)".to_string(),
            )
        })
    }

    fn remedy(&self, patient: &Patient, _: Switches, _: &Thresholds) -> Option<Remedy> {
        relu_and_batch_norm(patient)
    }
}
