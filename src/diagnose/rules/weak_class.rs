//! A class far behind: one class far below the mean validation accuracy though the classes
//! have about as many images (with skewed counts it is class imbalance); kept while the class
//! stays half the gap behind.

use super::class_imbalance;
use super::signals::{weakest, Found, Rule, Signals, Watch};
use crate::protocol::{FindingKind, Severity};

pub struct WeakClass;

impl Rule for WeakClass {
    fn kind(&self) -> FindingKind {
        FindingKind::WeakClass
    }

    fn watches(&self) -> &'static [Watch] {
        &[Watch::Epoch]
    }

    fn check(&self, s: &Signals) -> Option<Found> {
        if class_imbalance::skew(s).is_some() {
            return None;
        }
        let lag = weakest(s)?;
        let raised = s.active.contains_key(&FindingKind::WeakClass);
        let gap = s.th.class_gap;
        (lag.low < lag.mean - gap || (raised && lag.low < lag.mean - gap / 2.0)).then(|| {
            (
                lag.evidence,
                "look at its images (g); more images of it, or augmentation (a)".into(),
            )
        })
    }

    /// Some classes are harder than others (Fashion-MNIST's shirts): a class behind is a
    /// warning only when it stopped catching up, behind all the while, and the run as a whole
    /// stopped improving.
    fn severity(&self, s: &Signals) -> Severity {
        let (th, ep) = (s.th, s.epochs);
        if ep.len() <= th.weak_epochs {
            return Severity::Info;
        }
        let span = &ep[ep.len() - th.weak_epochs - 1..];
        let class = |e: &crate::protocol::EpochMetrics| {
            let acc = &e.val_class_accuracy;
            let mean = acc.iter().sum::<f64>() / acc.len().max(1) as f64;
            let (i, low) = acc
                .iter()
                .copied()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((0, 0.0));
            (i, low, mean)
        };
        let (worst, _, _) = class(&span[span.len() - 1]);
        let behind = span.iter().all(|e| {
            let acc = e.val_class_accuracy.get(worst).copied().unwrap_or(0.0);
            acc < class(e).2 - th.class_gap
        });
        let at = |e: &crate::protocol::EpochMetrics| {
            e.val_class_accuracy.get(worst).copied().unwrap_or(0.0)
        };
        let gained = at(&span[span.len() - 1]) - at(&span[0]);
        if behind && gained < th.weak_gain && !s.improving {
            Severity::Warning
        } else {
            Severity::Info
        }
    }
}
