//! Underfitting: after some epochs, train and validation accuracy both low and train accuracy
//! hardly gaining. A symptom: while a cause is in force (a bad LR, gradients...) it names it.

use super::signals::{Found, Rule, Signals, Watch};
use crate::diagnose::patient::wider;
use crate::diagnose::{Patient, Switches, Thresholds};
use crate::protocol::{FindingKind, Remedy, Setting};

pub struct Underfitting;

impl Rule for Underfitting {
    fn kind(&self) -> FindingKind {
        FindingKind::Underfitting
    }

    fn watches(&self) -> &'static [Watch] {
        &[Watch::Epoch]
    }

    fn check(&self, s: &Signals) -> Option<Found> {
        let (th, ep) = (s.th, s.epochs);
        let e = ep.last()?;
        if ep.len() < th.underfit_epochs {
            return None;
        }
        let prev = &ep[ep.len() - th.underfit_epochs];
        let gain = (e.train_accuracy - prev.train_accuracy) / (th.underfit_epochs - 1) as f64;
        let found = e.train_accuracy < th.underfit_acc
            && e.val_accuracy < th.underfit_acc
            && gain < th.underfit_gain;
        found.then(|| {
            (
                format!(
                    "train {:.2}% and validation {:.2}% accuracy, train gaining {:.2} points per epoch over the last {} epochs",
                    100.0 * e.train_accuracy,
                    100.0 * e.val_accuracy,
                    100.0 * gain,
                    th.underfit_epochs
                ),
                "a wider or deeper model (a restart, e.g. --arch c64,c128,f256)".to_string(),
            )
        })
    }

    fn remedy(&self, patient: &Patient, _: Switches, _: &Thresholds) -> Option<Remedy> {
        wider(&patient.arch).map(|a| Remedy::Restart(vec![Setting::new("arch", a)]))
    }
}
