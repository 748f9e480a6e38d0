//! Plateau: validation accuracy has not beaten its best for some epochs.

use super::signals::{Found, Rule, Signals, Watch};
use crate::diagnose::{Patient, Switches, Thresholds};
use crate::protocol::{FindingKind, Remedy};

pub struct Plateau;

impl Rule for Plateau {
    fn kind(&self) -> FindingKind {
        FindingKind::Plateau
    }

    fn watches(&self) -> &'static [Watch] {
        &[Watch::Epoch]
    }

    fn check(&self, s: &Signals) -> Option<Found> {
        let ep = s.epochs;
        let e = ep.last()?;
        // The first epoch to reach the best accuracy: matching it is not beating it.
        let best = ep.iter().fold(&ep[0], |b, x| {
            if x.val_accuracy > b.val_accuracy {
                x
            } else {
                b
            }
        });
        let since_best = e.epoch.saturating_sub(best.epoch);
        (since_best >= s.th.plateau_epochs).then(|| {
            (
                format!(
                    "validation accuracy has not beaten {:.2}% (epoch {}) for {since_best} epochs",
                    100.0 * best.val_accuracy,
                    best.epoch
                ),
                "decay the LR: e, then step or plateau".to_string(),
            )
        })
    }

    fn remedy(&self, _: &Patient, _: Switches, _: &Thresholds) -> Option<Remedy> {
        Some(Remedy::ScaleLr(0.1))
    }
}
