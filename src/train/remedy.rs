//! Going back: the run kept in memory so that a remedy can be undone exactly and a non-finite
//! step can roll back to the last good state, and the bookkeeping of remedies on trial. The
//! step counter and the data position go on (the batches in between are not seen again);
//! weights, optimizer, dropout RNG, schedule and the live settings go back.

use std::collections::VecDeque;

use super::learner::Learner;
use crate::model::ModelError;
use crate::protocol::{RemedyRecord, Verdict, REMEDY_TRIAL_STEPS};
use crate::schedule::Schedule;

/// Steps between the in-memory copies a non-finite step rolls back to.
pub const GOOD_STATE_EVERY: u64 = 100;

/// Rollbacks a run with `OnNonFinite::Rollback` makes before it stops.
pub const DEFAULT_MAX_ROLLBACKS: u32 = 3;

/// The run between two steps, in memory.
pub struct RunSnapshot {
    pub step: u64,
    pub learner: Learner,
    pub schedule: Schedule,
    pub augmenting: bool,
}

impl RunSnapshot {
    pub fn take(
        step: u64,
        learner: &Learner,
        schedule: &Schedule,
        augmenting: bool,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            step,
            learner: learner.duplicate(learner.rng.clone())?,
            schedule: schedule.clone(),
            augmenting,
        })
    }
}

/// A remedy on trial: what to go back to, and the numbers for the verdict.
struct Trial {
    /// Index into the history.
    index: usize,
    snapshot: RunSnapshot,
    /// Undo is possible until this step.
    until: u64,
    /// The mean training loss of the steps before the remedy (up to `REMEDY_TRIAL_STEPS`).
    before: f64,
    /// Training losses since.
    sum: f64,
    n: u64,
}

/// The remedies of a run: every one applied, and the one on trial.
#[derive(Default)]
pub struct Remedies {
    pub history: Vec<RemedyRecord>,
    trial: Option<Trial>,
    /// The losses of the latest steps, for the "before" of a verdict.
    recent: VecDeque<f64>,
}

impl Remedies {
    /// A remedy applied after `record.step`, with the run as it was before it. Returns the
    /// step until which it can be undone.
    pub fn start(&mut self, record: RemedyRecord, snapshot: RunSnapshot) -> u64 {
        let until = record.step + REMEDY_TRIAL_STEPS;
        let before = match self.recent.len() {
            0 => f64::NAN,
            n => self.recent.iter().sum::<f64>() / n as f64,
        };
        self.history.push(record);
        self.trial = Some(Trial {
            index: self.history.len() - 1,
            snapshot,
            until,
            before,
            sum: 0.0,
            n: 0,
        });
        until
    }

    /// Takes back the remedy on trial at `step`, if it still can be: what to restore, and its
    /// record, marked undone.
    pub fn undo(&mut self, step: u64) -> Option<(RunSnapshot, RemedyRecord)> {
        let trial = self.trial.take_if(|t| step < t.until)?;
        let record = &mut self.history[trial.index];
        record.undone_at = Some(step);
        Some((trial.snapshot, record.clone()))
    }

    /// Counts step `step`'s loss; the record with its verdict when that ends the trial.
    pub fn count(&mut self, step: u64, loss: f64) -> Option<RemedyRecord> {
        self.recent.push_back(loss);
        if self.recent.len() > REMEDY_TRIAL_STEPS as usize {
            self.recent.pop_front();
        }
        let t = self.trial.as_mut()?;
        t.sum += loss;
        t.n += 1;
        if step >= t.until {
            self.end_trial()
        } else {
            None
        }
    }

    /// Ends the trial (its steps are done, or another remedy cuts it short): the record with
    /// its verdict, when it saw any step.
    pub fn end_trial(&mut self) -> Option<RemedyRecord> {
        let t = self.trial.take()?;
        if t.n == 0 {
            return None;
        }
        let after = t.sum / t.n as f64;
        let record = &mut self.history[t.index];
        record.verdict = Some((t.before, after, Verdict::of(t.before, after)));
        Some(record.clone())
    }
}
