//! Batch norm on small batches: its per-batch statistics are too noisy under a few images.

use super::signals::{Found, Rule, Signals, Watch};
use crate::protocol::FindingKind;

pub struct SmallBatchNorm;

impl Rule for SmallBatchNorm {
    fn kind(&self) -> FindingKind {
        FindingKind::SmallBatchNorm
    }

    fn watches(&self) -> &'static [Watch] {
        &[Watch::Start]
    }

    fn check(&self, s: &Signals) -> Option<Found> {
        let (p, th) = (s.patient, s.th);
        (p.batch_norm && p.batch_size < th.bn_min_batch).then(|| {
            (
                format!(
                    "batch norm estimates each batch's mean and variance from {} images; under {} they are too noisy to train on and differ from the running statistics used at evaluation",
                    p.batch_size, th.bn_min_batch
                ),
                format!(
                    "a batch size of {} or more, or --no-batch-norm",
                    th.bn_min_batch * 4
                ),
            )
        })
    }
}
