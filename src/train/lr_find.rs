//! The LR range test (fastai's and Lightning's learning-rate finder): train a copy of the model
//! for a few steps while the LR grows exponentially, follow the loss's moving average, and
//! suggest the LR where it falls fastest.

use std::sync::Arc;

use super::learner::{Learner, StepOutcome};
use crate::data::{Batch, BatchStream, Dataset, Loader, Normalization};
use crate::protocol::{FinderPoint, LearningRate, LrFinding};
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FinderSettings {
    pub start_lr: f64,
    pub end_lr: f64,
    pub steps: usize,
    /// Weight of the past in the loss's moving average.
    pub smoothing: f64,
    /// The sweep stops when the smoothed loss exceeds this many times its best.
    pub diverge: f64,
}

impl Default for FinderSettings {
    fn default() -> Self {
        Self {
            start_lr: 1e-7,
            end_lr: 10.0,
            steps: 100,
            smoothing: 0.98,
            diverge: 4.0,
        }
    }
}

/// How the suggestion is chosen, in words.
pub const METHOD: &str = "the steepest fall of the loss's moving average (0.98, bias-corrected) against log10(lr), skipping the first 10 points (the average still settling), the last one (where the loss turns) and any that is not finite";

/// The suggestion skips this many points at the start (the average still settling) ...
const SKIP_START: usize = 10;
/// ... and at the end (where the loss has begun to climb).
const SKIP_END: usize = 1;

/// Endless batches of `data` for the sweep, in orders of its own (the run's batch order and
/// RNG are not touched), reshuffled each pass.
pub fn batches(
    data: Arc<Dataset>,
    batch_size: usize,
    norm: Normalization,
    seed: u64,
) -> impl Iterator<Item = Batch> {
    let mut pass = 0u64;
    let mut stream: Option<BatchStream> = None;
    std::iter::from_fn(move || loop {
        match stream.as_mut().and_then(Iterator::next) {
            Some(Ok(b)) => return Some(b),
            // An image that cannot be read ends the sweep's batches.
            Some(Err(_)) => return None,
            None => {}
        }
        if pass > 0 && data.len() < batch_size.min(1) {
            return None;
        }
        let mut order: Vec<usize> = (0..data.len()).collect();
        Rng::derive(seed, "lr-find", pass).shuffle(&mut order);
        pass += 1;
        stream = Some(BatchStream::spawn(
            data.clone(),
            order,
            batch_size,
            0,
            Loader::plain(norm.clone()),
        ));
        if data.is_empty() {
            return None;
        }
    })
}

/// Trains `learner` (a copy: it is changed) on `batches` at exponentially growing learning
/// rates. `progress` hears of each step done and may end the sweep by returning false.
pub fn sweep(
    learner: &mut Learner,
    batches: &mut dyn Iterator<Item = Batch>,
    s: &FinderSettings,
    progress: &mut dyn FnMut(usize) -> bool,
) -> candle_core::Result<LrFinding> {
    let steps = s.steps.max(2);
    let ratio = (s.end_lr / s.start_lr).ln();
    let mut points = Vec::with_capacity(steps);
    let (mut avg, mut best) = (0.0, f64::INFINITY);
    let mut stopped = None;
    for i in 0..steps {
        let Some(batch) = batches.next() else {
            stopped = Some(format!("the training set ran out after {i} steps"));
            break;
        };
        let lr = s.start_lr * (ratio * i as f64 / (steps - 1) as f64).exp();
        learner.lr = LearningRate::new(lr).unwrap_or(learner.lr);
        let loss = match learner.step(&batch)? {
            StepOutcome::Updated(st) => st.loss,
            StepOutcome::NonFinite { .. } => f64::NAN,
        };
        let smoothed = if loss.is_finite() {
            avg = s.smoothing * avg + (1.0 - s.smoothing) * loss;
            avg / (1.0 - s.smoothing.powi(i as i32 + 1))
        } else {
            f64::NAN
        };
        points.push(FinderPoint { lr, loss, smoothed });
        if !smoothed.is_finite() {
            stopped = Some(format!("the loss was not finite at lr {lr:.2e}"));
            break;
        }
        if i > 0 && smoothed > s.diverge * best {
            stopped = Some(format!(
                "the smoothed loss passed {}x its best at lr {lr:.2e}",
                s.diverge
            ));
            break;
        }
        best = best.min(smoothed);
        if !progress(i + 1) {
            stopped = Some("stopped".into());
            break;
        }
    }
    let (suggestion, how) = suggest(&points);
    Ok(LrFinding {
        points,
        suggestion,
        how,
        stopped,
    })
}

/// The point where the smoothed loss falls fastest against log10(lr), skipping the first
/// `SKIP_START` points and the last `SKIP_END`, and any point not finite; and how it was
/// chosen, or why there is none.
pub fn suggest(points: &[FinderPoint]) -> (Option<usize>, String) {
    let n = points.len();
    if n < SKIP_START + SKIP_END + 3 {
        return (
            None,
            format!(
                "too few points ({n}) for a suggestion: the loss diverged early; try a lower start"
            ),
        );
    }
    let x = |i: usize| points[i].lr.log10();
    let y = |i: usize| points[i].smoothed;
    // Central differences (one-sided at the ends), as numpy.gradient.
    let slope = |i: usize| -> f64 {
        let (a, b) = if i == 0 {
            (0, 1)
        } else if i == n - 1 {
            (n - 2, n - 1)
        } else {
            (i - 1, i + 1)
        };
        (y(b) - y(a)) / (x(b) - x(a))
    };
    let best = (SKIP_START..n - SKIP_END)
        .filter(|&i| slope(i).is_finite())
        .min_by(|&a, &b| slope(a).total_cmp(&slope(b)));
    match best {
        Some(i) if slope(i) < 0.0 => (
            Some(i),
            format!(
                "the smoothed loss falls fastest there: {:.3} per decade",
                slope(i)
            ),
        ),
        _ => (
            None,
            "the smoothed loss never fell: no LR in the range trains this model; try a wider range"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(f: impl Fn(f64) -> f64) -> Vec<FinderPoint> {
        (0..100)
            .map(|i| {
                let lr = 1e-7 * (10f64.ln() * 8.0 * i as f64 / 99.0).exp();
                let v = f(lr.log10());
                FinderPoint {
                    lr,
                    loss: v,
                    smoothed: v,
                }
            })
            .collect()
    }

    #[test]
    fn the_suggestion_is_the_steepest_fall() {
        // Falls fastest at lr 1e-3 (a logistic step centred there), flat elsewhere.
        let pts = curve(|x| 2.0 - 1.5 / (1.0 + (-(x + 3.0) * 3.0).exp()));
        let (i, how) = suggest(&pts);
        let lr = pts[i.unwrap()].lr;
        assert!((lr.log10() + 3.0).abs() < 0.1, "{lr}");
        assert!(how.contains("falls fastest there"), "{how}");
    }

    #[test]
    fn early_spikes_and_a_diverging_end_do_not_fool_it() {
        let mut pts = curve(|x| 2.0 - 1.5 / (1.0 + (-(x + 3.0) * 3.0).exp()));
        // A spike and a sharp drop in the first points, where the average still settles.
        pts[2].smoothed = 9.0;
        pts[3].smoothed = 0.1;
        // The end: not finite.
        pts[99].smoothed = f64::NAN;
        pts[98].smoothed = f64::INFINITY;
        let (i, _) = suggest(&pts);
        assert!((pts[i.unwrap()].lr.log10() + 3.0).abs() < 0.1);
        let (none, why) = suggest(&pts[..10]);
        assert!(none.is_none() && why.contains("too few points"), "{why}");
        let flat = curve(|_| 1.0);
        let (none, why) = suggest(&flat);
        assert!(none.is_none() && why.contains("never fell"), "{why}");
    }
}
