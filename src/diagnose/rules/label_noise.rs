//! Noisy or mismatched labels. Mismatched: for two epochs the training loss is still where it
//! started, validation accuracy is at chance and the validation loss no better than the class
//! prior's, though the gradients and updates were healthy and no other cause holds the model
//! at chance (nothing in the images predicts the labels). Noisy: the training accuracy far below the
//! validation accuracy, with the training loss far above the validation loss, while the
//! regularisation is light (the validation labels are right; many training labels are not).

use super::signals::{Found, Rule, Signals, Watch};
use crate::diagnose::{Patient, Switches, Thresholds};
use crate::format::sci;
use crate::protocol::{FindingKind, Remedy, Severity};

pub struct LabelNoise;

/// Whether the run's dropout or weight decay is heavy (a reason for a training accuracy
/// below validation other than the labels).
pub fn heavy_regularisation(p: &Patient, th: &Thresholds) -> bool {
    p.dropout >= th.heavy_dropout || p.decay_per_epoch() >= th.heavy_decay
}

impl Rule for LabelNoise {
    fn kind(&self) -> FindingKind {
        FindingKind::LabelNoise
    }

    fn watches(&self) -> &'static [Watch] {
        &[Watch::Epoch]
    }

    fn check(&self, s: &Signals) -> Option<Found> {
        let (th, e) = (s.th, s.epochs.last()?);
        let classes = s.patient.classes.len().max(2) as f64;
        let chance = th.chance_factor / classes;
        let first = s.first_loss?;
        // Learnt nothing: the loss no lower than the first step's or the class prior's (a
        // model that predicts the label shares), whichever is lower.
        let floor = (1.0 - th.stuck_loss) * first.min(s.prior_loss());
        // The model could learn: some window had healthy updates and gradients (a bad LR or
        // vanishing gradients hold a loss at its start too, and never have).
        let could = s.could_learn;
        // No better on held-out images than predicting the class shares: a model that learns
        // a little, however slowly, gets below the prior's validation loss; one whose labels
        // say nothing of the images cannot.
        let held_out = (1.0 - th.prior_margin) * s.prior_loss();
        // Another cause that holds a model at chance, as a warning: the labels are not judged.
        let other = s
            .active
            .values()
            .any(|f| f.severity == Severity::Warning && f.kind.holds_at_chance());
        let stuck = s.epochs.len() >= 2
            && !other
            && s.epochs[s.epochs.len() - 2..]
                .iter()
                .all(|e| e.val_accuracy < chance && e.train_loss > floor && e.val_loss > held_out);
        if let (true, Some(w)) = (stuck, could) {
            return Some((
                format!(
                    "after {} epochs the training loss {:.4} is still near the first step's {:.4}, the validation loss {:.4} is no better than predicting the class shares ({:.4}) and validation accuracy {:.1}% is at chance ({:.0} classes), though the updates were healthy (update/weight ratio {}): nothing in the images predicts the labels",
                    s.epochs.len(),
                    e.train_loss,
                    first,
                    e.val_loss,
                    s.prior_loss(),
                    100.0 * e.val_accuracy,
                    classes,
                    sci(w.ratio)
                ),
                "check that labels and images are read in the same order (a restart)".into(),
            ));
        }
        // The first epoch's training accuracy averages a model still learning: not comparable.
        let gap = e.val_accuracy - e.train_accuracy;
        let light = !heavy_regularisation(s.patient, th);
        (s.epochs.len() >= 2 && light && gap > th.noisy_gap && e.train_loss > th.noisy_loss_factor * e.val_loss).then(|| {
            (
                format!(
                    "training accuracy {:.1}% is {:.1} points below validation {:.1}% and the training loss {:.4} is {:.1}x the validation loss {:.4}, with light regularisation: many training labels look wrong",
                    100.0 * e.train_accuracy,
                    100.0 * gap,
                    100.0 * e.val_accuracy,
                    e.train_loss,
                    e.train_loss / e.val_loss.max(1e-12),
                    e.val_loss
                ),
                "clean the labels (g shows training images), or label smoothing (a restart: --label-smoothing 0.1)".into(),
            )
        })
    }

    /// Wrong labels hold a run back whether or not it still improves.
    fn severity(&self, _: &Signals) -> Severity {
        Severity::Warning
    }

    fn remedy(&self, _: &Patient, _: Switches, _: &Thresholds) -> Option<Remedy> {
        None
    }
}
