//! Overfitting: train accuracy above validation by more than a limit (AUTOTRAINER: 10 points
//! while train accuracy is under 90%, 7 after), with the validation loss above its best; kept
//! while the gap stays above three quarters of the limit.

use super::signals::{Found, Rule, Signals, Watch};
use crate::diagnose::{Patient, Switches, Thresholds};
use crate::protocol::{FindingKind, Remedy, Severity};

pub struct Overfitting;

impl Rule for Overfitting {
    fn kind(&self) -> FindingKind {
        FindingKind::Overfitting
    }

    fn watches(&self) -> &'static [Watch] {
        &[Watch::Epoch]
    }

    fn check(&self, s: &Signals) -> Option<Found> {
        let (th, ep) = (s.th, s.epochs);
        let e = ep.last()?;
        let gap = e.train_accuracy - e.val_accuracy;
        let limit = if e.train_accuracy < 0.9 {
            th.gap_low
        } else {
            th.gap_high
        };
        let best_loss = ep.iter().map(|x| x.val_loss).fold(f64::INFINITY, f64::min);
        let raised = s.active.contains_key(&FindingKind::Overfitting);
        let found = (gap > limit && e.val_loss > best_loss && ep.len() >= 2)
            || (raised && gap > 0.75 * limit);
        found.then(|| {
            (
                format!(
                    "train accuracy {:.2}% is {:.1} points above validation {:.2}% (over {:.0} is a problem at this accuracy), and the validation loss {:.4} is above its best {:.4}",
                    100.0 * e.train_accuracy,
                    100.0 * gap,
                    100.0 * e.val_accuracy,
                    100.0 * limit,
                    e.val_loss,
                    best_loss
                ),
                "augmentation (a), more dropout or weight decay, or stop and keep best.h5"
                    .to_string(),
            )
        })
    }

    /// Its evidence includes a validation loss above its best: the run is not improving where
    /// it counts, whatever the training loss does.
    fn severity(&self, _: &Signals) -> Severity {
        Severity::Warning
    }

    fn remedy(&self, _: &Patient, sw: Switches, _: &Thresholds) -> Option<Remedy> {
        (!sw.augmenting).then_some(Remedy::Augment(true))
    }
}
