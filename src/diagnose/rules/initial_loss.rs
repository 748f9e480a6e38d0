//! Initial loss off: the first step's loss far from ln(classes), where an untrained model
//! starts. Said once, at the first step: it is about how the run began.

use crate::diagnose::{Patient, Thresholds};
use crate::protocol::{Finding, FindingKind, Severity};

pub fn check(patient: &Patient, th: &Thresholds, loss: f64) -> Option<Finding> {
    let c = patient.classes.len().max(2) as f64;
    let expected = c.ln();
    let (lo, hi) = th.initial_loss_range;
    (loss < lo * expected || loss > hi * expected).then(|| Finding {
        kind: FindingKind::InitialLoss,
        severity: Severity::Warning,
        evidence: format!(
            "the first step's loss is {loss:.3}; an untrained model over {c:.0} classes starts near ln({c:.0}) = {expected:.3}"
        ),
        action: "check the labels, the last layer's initialisation and the loss".into(),
        remedy: None,
    })
}
