//! Class imbalance: the largest training class has many times the images of the smallest
//! (said before the first step); at each epoch it stands while the least accurate class lags
//! half the weak-class gap behind the mean.

use super::signals::{weakest, Found, Rule, Signals, Watch};
use crate::diagnose::{Patient, Switches, Thresholds};
use crate::protocol::{FindingKind, Remedy};

pub struct ClassImbalance;

/// The evidence of a skewed training set, when it is.
pub fn skew(s: &Signals) -> Option<String> {
    let counts = &s.patient.train_counts;
    let present: Vec<usize> = counts.iter().copied().filter(|&c| c > 0).collect();
    let (max, min) = (*present.iter().max()?, *present.iter().min()?);
    let ratio = max as f64 / min as f64;
    (ratio > s.th.imbalance_ratio).then(|| {
        let big = counts.iter().position(|&c| c == max).unwrap_or(0);
        let small = counts.iter().position(|&c| c == min).unwrap_or(0);
        format!(
            "the largest training class ({}, {max}) has {ratio:.1}x the images of the smallest ({}, {min}); over {:.0} is a problem",
            s.class(big),
            s.class(small),
            s.th.imbalance_ratio
        )
    })
}

impl Rule for ClassImbalance {
    fn kind(&self) -> FindingKind {
        FindingKind::ClassImbalance
    }

    fn watches(&self) -> &'static [Watch] {
        &[Watch::Start, Watch::Epoch]
    }

    fn check(&self, s: &Signals) -> Option<Found> {
        let counts = skew(s)?;
        if s.watch == Watch::Start {
            return Some((
                counts,
                "class weights (r or w) or --sampler balanced".to_string(),
            ));
        }
        // Weights help a class that has fewer images than the others.
        let lag = weakest(s)?;
        (lag.low < lag.mean - s.th.class_gap / 2.0).then(|| {
            (
                format!("{counts}; {}", lag.evidence),
                "class weights (w), --sampler balanced, or more images of it".into(),
            )
        })
    }

    fn remedy(&self, _: &Patient, sw: Switches, _: &Thresholds) -> Option<Remedy> {
        (!sw.class_weights).then_some(Remedy::ClassWeights(true))
    }
}
