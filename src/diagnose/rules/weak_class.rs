//! A class far behind: one class far below the mean validation accuracy though the classes
//! have about as many images (with skewed counts it is class imbalance); kept while the class
//! stays half the gap behind. Two classes the model cannot tell apart (each one's images taken
//! for the other about as often as for itself: the same images under two labels, or labels
//! mixed up) are the strong form of it.

use super::class_imbalance;
use super::signals::{weakest, Found, Rule, Signals, Watch};
use crate::diagnose::Thresholds;
use crate::protocol::{EpochMetrics, FindingKind, Severity};

pub struct WeakClass;

/// Two classes whose validation images the model sorts as if the labels were a coin toss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Twins {
    a: usize,
    b: usize,
    acc_a: f64,
    acc_b: f64,
    /// Share of `a`'s images taken for `b`, and of `b`'s for `a`.
    a_as_b: f64,
    b_as_a: f64,
}

/// The pair of classes the model cannot tell apart in epoch `e`, if any: class `a` whose
/// images are most often taken for `b` such that nearly all of both classes' images go to one
/// of the two (`twin_mass`), each of the two is predicted for the other's images about as
/// often as for its own (within `twin_separation`: the predictions do not depend on which of
/// the two labels an image has), and the other classes are `class_gap` ahead of the pair.
pub(super) fn twins(e: &EpochMetrics, th: &Thresholds) -> Option<Twins> {
    let (acc, conf) = (&e.val_class_accuracy, &e.val_confusion);
    (0..conf.len().min(acc.len())).find_map(|a| {
        let b = conf[a].class;
        let (&acc_b, other) = (acc.get(b)?, conf.get(b)?);
        let a_as_b = conf[a].share;
        // Only a lower bound when `b`'s images go most often to a third class.
        let b_as_a = if other.class == a { other.share } else { 0.0 };
        let t = Twins {
            a,
            b,
            acc_a: acc[a],
            acc_b,
            a_as_b,
            b_as_a,
        };
        let pair = t.acc_a + a_as_b >= th.twin_mass && acc_b + b_as_a >= th.twin_mass;
        let blind = acc_b - a_as_b < th.twin_separation && t.acc_a - b_as_a < th.twin_separation;
        // The rest of the model works: the other classes are well ahead of the pair (a model
        // that takes nearly everything for one class is not a pair of twins).
        let others: Vec<f64> = (0..acc.len())
            .filter(|&c| c != a && c != b)
            .map(|c| acc[c])
            .collect();
        let rest = others.iter().sum::<f64>() / others.len().max(1) as f64;
        let ahead = !others.is_empty() && rest > (t.acc_a + acc_b) / 2.0 + th.class_gap;
        (b != a && pair && blind && ahead).then_some(t)
    })
}

impl Rule for WeakClass {
    fn kind(&self) -> FindingKind {
        FindingKind::WeakClass
    }

    fn watches(&self) -> &'static [Watch] {
        &[Watch::Epoch]
    }

    fn check(&self, s: &Signals) -> Option<Found> {
        if let Some(t) = twins(s.epochs.last()?, s.th) {
            return Some((
                format!(
                    "the model cannot tell {a} from {b}: {a}'s validation images are taken for {b} {ab:.0}% of the time ({a} {acc_a:.0}%), and {b}'s for {a} {ba:.0}% ({b} {acc_b:.0}%)",
                    a = s.class(t.a),
                    b = s.class(t.b),
                    ab = 100.0 * t.a_as_b,
                    ba = 100.0 * t.b_as_a,
                    acc_a = 100.0 * t.acc_a,
                    acc_b = 100.0 * t.acc_b,
                ),
                "look at both classes' images (g): the same images under two labels, or labels mixed up between them (a restart with the data fixed)".into(),
            ));
        }
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
    /// stopped improving. Two classes the model cannot tell apart two epochs running are a
    /// warning at once: more training does not separate them.
    fn severity(&self, s: &Signals) -> Severity {
        let (th, ep) = (s.th, s.epochs);
        let twin = |e: &EpochMetrics| twins(e, th).map(|t| (t.a.min(t.b), t.a.max(t.b)));
        if ep.len() >= 2 {
            let (now, before) = (twin(&ep[ep.len() - 1]), twin(&ep[ep.len() - 2]));
            if now.is_some() && now == before {
                return Severity::Warning;
            }
        }
        if ep.len() <= th.weak_epochs {
            return Severity::Info;
        }
        let span = &ep[ep.len() - th.weak_epochs - 1..];
        let class = |e: &EpochMetrics| {
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
        let at = |e: &EpochMetrics| e.val_class_accuracy.get(worst).copied().unwrap_or(0.0);
        let gained = at(&span[span.len() - 1]) - at(&span[0]);
        if behind && gained < th.weak_gain && !s.improving {
            Severity::Warning
        } else {
            Severity::Info
        }
    }
}
