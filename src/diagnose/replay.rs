//! The doctor over a run's records, as `candletop diagnose` and the fault suite read them: the
//! same records the live doctor judged, in the same order, so the same findings at the same
//! steps.

use crate::config::RunConfig;
use crate::protocol::{EpochMetrics, Event, Record, Resumed};

use super::{Change, Doctor};

/// What the doctor made of a run's records.
pub struct Replayed {
    /// Every change, with the step of the record that made it.
    pub changes: Vec<(u64, Change)>,
    /// The doctor at the end (None when the records never started a run).
    pub doctor: Option<Doctor>,
    /// The last step and epoch recorded.
    pub steps: u64,
    pub epochs: usize,
    /// A resume whose earlier epochs are neither in the records nor readable from the
    /// checkpoint it resumed from (its path): the epoch rules judge from the resume on.
    pub history_unknown: Option<String>,
}

/// A record that cannot be judged: a step or epoch before the run started (its index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeforeStart(pub usize);

/// The doctor over `records` (each with the step its line carries) of a run configured as
/// `cfg`. A `started` record (a resume, too) begins a new doctor that knows the epochs before,
/// as the live one did: from the records, or, for a run resumed into a new directory, from
/// `earlier` (the history of the checkpoint it resumed from, if it can still be read).
pub fn replay<'a>(
    records: impl IntoIterator<Item = (u64, &'a Record)>,
    cfg: &RunConfig,
    earlier: impl Fn(&Resumed) -> Option<Vec<EpochMetrics>>,
) -> Result<Replayed, BeforeStart> {
    let mut out = Replayed {
        changes: Vec::new(),
        doctor: None,
        steps: 0,
        epochs: 0,
        history_unknown: None,
    };
    let mut epochs = Vec::new();
    for (i, (step, record)) in records.into_iter().enumerate() {
        let changes = match (record, out.doctor.as_mut()) {
            (Record::Event(Event::Started(info)), _) => {
                let mut d = Doctor::for_run(info, cfg);
                // A resumed run's doctor knows the epochs before, as the live one does.
                if let Some(r) = &info.resumed {
                    epochs.retain(|e: &EpochMetrics| e.epoch < r.epoch);
                    if epochs.len() + 1 < r.epoch {
                        match earlier(r) {
                            Some(v) => {
                                epochs = v.into_iter().filter(|e| e.epoch < r.epoch).collect()
                            }
                            None => out.history_unknown = Some(r.from.clone()),
                        }
                    }
                    d.remember(&epochs);
                }
                let changes = d.on_start();
                out.doctor = Some(d);
                changes
            }
            (Record::Step(_) | Record::Event(Event::Epoch(_)), None) => {
                return Err(BeforeStart(i));
            }
            (Record::Step(m), Some(d)) => {
                out.steps = m.step;
                d.on_record(m)
            }
            (Record::Event(Event::Epoch(m)), Some(d)) => {
                out.epochs = m.epoch;
                epochs.push(m.clone());
                d.on_epoch(m)
            }
            (Record::Event(Event::Activations { layers, .. }), Some(d)) => d.on_activations(layers),
            (Record::Event(Event::NonFinite { step, what, .. }), Some(d)) => {
                d.on_non_finite(*step, what)
            }
            _ => Vec::new(),
        };
        out.changes.extend(changes.into_iter().map(|c| (step, c)));
    }
    Ok(out)
}
