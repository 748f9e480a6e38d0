//! Learning rate too high: the loss climbs above where it started, updates are a large share
//! of the weights while the loss does not fall, or the loss spikes or rises window after
//! window by more than noise (PyTorch Lightning's spike detection for the spikes).

use super::signals::{Found, Rule, Signals, Watch};
use crate::diagnose::{Patient, Switches, Thresholds};
use crate::format::sci;
use crate::protocol::{FindingKind, Remedy};

pub struct LrTooHigh;

const ADVICE: &str = "cut the LR x0.1 (r), or - a few times";

impl Rule for LrTooHigh {
    fn kind(&self) -> FindingKind {
        FindingKind::LrTooHigh
    }

    fn watches(&self) -> &'static [Watch] {
        &[Watch::Window]
    }

    fn check(&self, s: &Signals) -> Option<Found> {
        let (th, w) = (s.th, s.windows);
        let last = *w.last()?;
        let first_loss = s.first_loss.unwrap_or(f64::INFINITY);
        if last.loss > th.diverge_factor * first_loss {
            return Some((
                format!(
                    "the mean loss of the last {} steps is {:.4}, {:.1}x the first step's {:.4}: the steps overshoot; {} spikes in the window",
                    last.steps,
                    last.loss,
                    last.loss / first_loss,
                    first_loss,
                    last.spikes
                ),
                ADVICE.to_string(),
            ));
        }
        // Updates a large share of the weights while the loss does not fall (DL4J: a ratio
        // above 1e-2 is too large), unless weight decay is most of them. SGD only: Adam's
        // steps are about the LR on every weight, large on small weights at any sane LR.
        let falling = last.loss < (1.0 - th.improving_change) * first_loss;
        let decay = s.patient.decay_per_step();
        let large = s.patient.ratio_tells_the_lr() && last.ratio >= th.ratio_high;
        if large && !falling && decay < last.ratio / 2.0 {
            return Some((
                format!(
                    "the median update/weight ratio of the last {} steps is {} (over {} is too large), and the loss {:.4} has not fallen from the first step's {:.4}: the steps overshoot",
                    last.steps,
                    sci(last.ratio),
                    sci(th.ratio_high),
                    last.loss,
                    first_loss
                ),
                ADVICE.to_string(),
            ));
        }
        if s.closed <= th.warmup_windows {
            return None;
        }
        let span = &w[w.len().saturating_sub(th.trend_windows + 1)..];
        let rising = span.windows(2).filter(|p| p[1].loss > p[0].loss).count();
        // Rising windows count when the loss went up by more than noise over the span (a flat
        // loss wobbles up half the time, a short window's mean by a few percent).
        let rose = last.loss > span[0].loss * (1.0 + th.rise_change);
        (last.spikes >= th.spikes_too_many || (rising >= th.rising_too_many && rose)).then(|| {
            (
                format!(
                    "the loss rose in {rising} of the last {} windows of {} steps ({:.4} -> {:.4}); {} spikes (over {}x the mean of the {} steps before) in the last window",
                    span.len() - 1,
                    last.steps,
                    span[0].loss,
                    last.loss,
                    last.spikes,
                    th.spike_factor,
                    th.spike_span
                ),
                ADVICE.to_string(),
            )
        })
    }

    fn remedy(&self, _: &Patient, _: Switches, _: &Thresholds) -> Option<Remedy> {
        Some(Remedy::ScaleLr(0.1))
    }
}
