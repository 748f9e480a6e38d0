//! A class far behind: one class far below the mean validation accuracy though the classes
//! have about as many images (with skewed counts it is class imbalance); kept while the class
//! stays half the gap behind.

use super::class_imbalance;
use super::signals::{weakest, Found, Rule, Signals, Watch};
use crate::protocol::FindingKind;

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
}
