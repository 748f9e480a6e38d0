//! Too much regularisation: dropout that keeps the training accuracy below the validation
//! accuracy (and the training loss above the validation loss), or weight decay that is most of
//! every update (the update/weight ratio far above healthy, and decay alone explains it): the
//! model is held back from fitting even the training set.

use super::signals::{Found, Rule, Signals, Watch};
use crate::diagnose::{Patient, Switches, Thresholds};
use crate::format::sci;
use crate::protocol::{FindingKind, Remedy, Setting, Severity};

fn decay_step(p: &Patient) -> f64 {
    p.decay_per_step()
}

pub struct TooMuchRegularisation;

impl Rule for TooMuchRegularisation {
    fn kind(&self) -> FindingKind {
        FindingKind::TooMuchRegularisation
    }

    fn watches(&self) -> &'static [Watch] {
        &[Watch::Window, Watch::Epoch]
    }

    fn check(&self, s: &Signals) -> Option<Found> {
        let (p, th) = (s.patient, s.th);
        let mut what = Vec::new();
        // Dropout that keeps the training accuracy below the validation accuracy, with the
        // training loss above the validation loss (at the end of an epoch; a window keeps
        // what the last epoch said).
        let e = s.epochs.last();
        if let Some(e) = e.filter(|e| {
            p.dropout >= th.heavy_dropout
                && e.train_loss > e.val_loss
                && e.train_accuracy < e.val_accuracy
        }) {
            what.push(format!(
                "dropout {}: the training loss {:.4} is above the validation loss {:.4} and training accuracy {:.1}% is below validation {:.1}%",
                p.dropout,
                e.train_loss,
                e.val_loss,
                100.0 * e.train_accuracy,
                100.0 * e.val_accuracy
            ));
        }
        // Weight decay that is most of every update: the weights are held small.
        let ratio = s.newest().map_or(0.0, |w| w.ratio);
        // Most of the update: a large LR makes large updates too, with decay a small part.
        if decay_step(p) >= th.decay_step && ratio >= th.ratio_high && decay_step(p) >= ratio / 2.0
        {
            what.push(format!(
                "weight decay {} shrinks the weights {:.2}% a step at LR {:.1e}, and the median update/weight ratio is {} (over {} is too large): decay, not the data, drives the weights",
                p.weight_decay,
                100.0 * decay_step(p),
                p.lr,
                sci(ratio),
                sci(th.ratio_high)
            ));
        }
        (!what.is_empty()).then(|| {
            (
                what.join("; "),
                "less dropout or weight decay (a restart)".into(),
            )
        })
    }

    /// It holds the model back whether or not the run still improves.
    fn severity(&self, _: &Signals) -> Severity {
        Severity::Warning
    }

    fn remedy(&self, p: &Patient, _: Switches, th: &Thresholds) -> Option<Remedy> {
        let mut s = Vec::new();
        if p.dropout >= th.heavy_dropout {
            s.push(Setting::new("dropout", 0.25));
        }
        if decay_step(p) >= th.decay_step {
            s.push(Setting::new("weight_decay", 0.01));
        }
        (!s.is_empty()).then_some(Remedy::Restart(s))
    }
}
