//! The messages between the training thread and whoever watches it (the TUI, the headless line
//! reporter, tests). Plain data only: no candle or ratatui type crosses a channel, and every
//! message serialises (metrics.jsonl holds the events as they are; a trainer in another process
//! will send the same messages over a socket).
//!
//! Two channels carry events out of the trainer: a bounded one for per-step metrics, where a
//! full channel makes the trainer fold the step into the next message instead of waiting, and an
//! unbounded one for state events (epoch results, pauses, errors, the end), which are rare and
//! never dropped. Commands go the other way on an unbounded channel the trainer polls between
//! steps.
//!
//! By vocabulary: `commands` (watcher to trainer), `events` (trainer to watchers), `findings`
//! (the doctor's words), `record` (a line of metrics.jsonl), `link` (the channels).

mod commands;
mod events;
mod findings;
mod link;
mod record;

pub use commands::{clip_norm_problem, Command, Horizon, LearningRate, MAX_SAMPLES};
pub use events::{
    BranchCall, BranchRecord, BranchStep, BranchVerdict, Confusion, DataFacts, EpochMetrics,
    EvalMetrics, Event, FinderPoint, FinishReason, LrFinding, LrSource, OnNonFinite, Resumed,
    RunInfo, SampleGrid, ScheduleChange, SettingChange, StepMetrics, Stopping,
};
pub use findings::{
    Finding, FindingKind, LayerActivations, Remedy, RemedyRecord, Setting, Severity, Verdict,
    ACTIVATION_EARLY, ACTIVATION_EARLY_UNTIL, ACTIVATION_EVERY, BRANCH_KEYS, REMEDY_TRIAL_STEPS,
};
pub use link::{link, MonitorLink, TrainerLink, STEP_CHANNEL_CAPACITY};
pub use record::{Record, RecordProblem};

#[cfg(test)]
mod tests {
    use super::*;

    fn step(i: u64, loss: f64) -> StepMetrics {
        StepMetrics {
            step: i,
            epoch: 1,
            steps: 1,
            loss,
            loss_max: 0.0,
            accuracy: 0.5,
            lr: 0.1,
            grad_norms: vec![i as f64],
            update_ratios: vec![0.0],
            images_per_sec: 1.0,
            branch: None,
        }
    }

    #[test]
    fn a_full_channel_folds_steps_instead_of_blocking() {
        let (mut t, m) = link();
        for i in 1..=(STEP_CHANNEL_CAPACITY as u64 + 10) {
            t.send_step(step(i, i as f64));
        }
        t.send(Event::Paused { step: 74 });
        let got: Vec<StepMetrics> = m.steps.try_iter().collect();
        assert_eq!(got.len(), STEP_CHANNEL_CAPACITY);
        // Once there is room again, the folded steps arrive as one message.
        t.send_step(step(75, 75.0));
        let folded = m.steps.try_recv().unwrap();
        assert_eq!(folded.steps, 11);
        assert_eq!(folded.step, 75);
        assert_eq!(folded.grad_norms, vec![75.0]);
        assert!((folded.loss - (65..=75).sum::<u64>() as f64 / 11.0).abs() < 1e-9);
        let total: u32 = got.iter().map(|s| s.steps).sum::<u32>() + folded.steps;
        assert_eq!(total, 75);
        assert_eq!(m.events.try_recv().unwrap(), Event::Paused { step: 74 });
    }

    #[test]
    fn learning_rates_are_positive_and_finite() {
        assert_eq!(
            LearningRate::parse(" 1e-4 ").map(LearningRate::get),
            Ok(1e-4)
        );
        assert_eq!(LearningRate::new(0.5).map(f64::from), Ok(0.5));
        for bad in [
            0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            1e-315,
            5e-324,
            1e-39,
            1e-300,
        ] {
            assert!(LearningRate::new(bad).is_err(), "{bad}");
        }
        assert!(LearningRate::new(1e-315).unwrap_err().contains("too small"));
        assert_eq!(
            LearningRate::new(f32::MIN_POSITIVE as f64).map(f64::from),
            Ok(f32::MIN_POSITIVE as f64)
        );
        for ok in [0.0, 1.0, 1e-30, 1e30] {
            assert_eq!(clip_norm_problem(ok), None, "{ok}");
        }
        for bad in [-0.5, 1e-39, 1e-320, f64::NAN, f64::INFINITY] {
            assert!(clip_norm_problem(bad).is_some(), "{bad}");
        }
        assert!(LearningRate::parse("abc")
            .unwrap_err()
            .contains("not a number"));
        assert!(LearningRate::parse("-1")
            .unwrap_err()
            .contains("not a positive learning rate"));
        assert!(LearningRate::parse("").unwrap_err().contains("type a"));
        assert!(serde_json::from_str::<LearningRate>("-3").is_err());
        assert_eq!(
            serde_json::to_string(&LearningRate::new(0.25).unwrap()).unwrap(),
            "0.25"
        );
    }

    #[test]
    fn commands_and_events_survive_json() {
        for c in [
            Command::SetLr(0.01),
            Command::ScaleLr(0.5),
            Command::Pause,
            Command::Stop,
        ] {
            let text = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), c, "{text}");
        }
        let e = Event::Refused {
            step: 3,
            command: Command::ScaleLr(0.0),
            reason: "x".into(),
        };
        let text = serde_json::to_string(&e).unwrap();
        assert!(
            text.starts_with(
                r#"{"type":"refused","step":3,"command":{"command":"scale_lr","value":0.0}"#
            ),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
    }
}
