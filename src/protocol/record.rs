//! A line of a run's record (metrics.jsonl).

use serde::{Deserialize, Serialize};

use super::events::{Event, StepMetrics};

/// One line of a run's record (`metrics.jsonl`): a step's metrics (the means since the last
/// step record) or an event. The only definition of a line: the trainer writes it, and every
/// reader (view, replay, diagnose, ls, plot) reads it back through `run_dir::Recorded`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Step(StepMetrics),
    Event(Event),
}

/// Why a line is not a record this version reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordProblem {
    /// A type this version does not know (a newer version wrote it): skipped and counted.
    Unknown(String),
    /// A known type with fields that do not fit it, or no type at all.
    Malformed(String),
}

impl Record {
    /// The record a JSON object holds; its `type` says which.
    pub fn from_value(v: serde_json::Value) -> Result<Self, RecordProblem> {
        let Some(kind) = v.get("type").and_then(|t| t.as_str()).map(str::to_string) else {
            return Err(RecordProblem::Malformed("a record without a type".into()));
        };
        if kind == "step" {
            return StepMetrics::deserialize(v)
                .map(Record::Step)
                .map_err(|e| RecordProblem::Malformed(format!("a step record: {e}")));
        }
        match Event::deserialize(v) {
            Ok(e) => Ok(Record::Event(e)),
            // serde's word for a tag that names no variant.
            Err(e) if e.to_string().starts_with("unknown variant") => {
                Err(RecordProblem::Unknown(kind))
            }
            Err(e) => Err(RecordProblem::Malformed(format!("a {kind} record: {e}"))),
        }
    }
}

impl Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Tagged<'a> {
            Step(&'a StepMetrics),
        }
        match self {
            Record::Step(m) => Tagged::Step(m).serialize(s),
            Record::Event(e) => e.serialize(s),
        }
    }
}
