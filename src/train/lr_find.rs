//! The LR range test (fastai's and Lightning's learning-rate finder): train a copy of the model
//! for a few steps while the LR grows exponentially, follow the loss's moving average, and
//! suggest an LR half-way into its longest fall (fastai's valley), or a safe one when it does
//! not clearly fall.

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
pub const METHOD: &str = "fastai's valley: the longest stretch over which the loss's moving average (0.98, bias-corrected) keeps falling, the suggestion half-way into it, skipping the first 10 points (the average still settling); when the loss does not clearly fall, the highest LR it stays flat at, a decade below where it rises, and never far below the run's LR without a fall to show for it";

/// The suggestion skips this many points at the start (the average still settling).
const SKIP_START: usize = 10;
/// A fall of the smoothed loss by this share of its level is a clear one (the average of a
/// short sweep lags: 40 steps that halve the loss move it 8%).
const CLEAR_FALL: f64 = 0.05;
/// A suggestion more than this factor below the run's LR needs a fall this clear.
const FAR_BELOW: f64 = 10.0;
const STRONG_FALL: f64 = 0.25;
/// The loss rises when it passes its lowest by this share.
const RISE: f64 = 0.10;

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
/// `current` is the LR of a run under way (the suggestion does not undercut it without
/// evidence); none from the initial weights.
pub fn sweep(
    learner: &mut Learner,
    batches: &mut dyn Iterator<Item = Batch>,
    s: &FinderSettings,
    current: Option<f64>,
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
    let (suggestion, how) = suggest(&points, current);
    Ok(LrFinding {
        points,
        suggestion,
        how,
        stopped,
    })
}

/// The suggested point and how it was chosen, or why there is none. `current` is the LR the
/// run trains at (mid-run), which a suggestion does not undercut by far without evidence.
///
/// fastai's valley (its default since 2021): the longest run of points over which the
/// smoothed loss keeps falling (the longest decreasing subsequence), the suggestion half-way
/// into it. A stretch whose fall is small against the loss is noise, not a valley: then the
/// loss is flat up to where it rises, and LRs a decade below the rise are safe.
pub fn suggest(points: &[FinderPoint], current: Option<f64>) -> (Option<usize>, String) {
    let n = points.len();
    if n < SKIP_START + 3 {
        return (
            None,
            format!(
                "too few points ({n}) for a suggestion: the loss diverged early; try a lower start"
            ),
        );
    }
    let y = |i: usize| points[i].smoothed;
    let ok: Vec<usize> = (SKIP_START..n).filter(|&i| y(i).is_finite()).collect();
    if ok.len() < 3 {
        return (None, "the loss was not finite past the first points".into());
    }
    // The longest decreasing subsequence of the smoothed loss, as fastai's `valley`.
    let mut len = vec![1usize; ok.len()];
    let mut from = vec![0usize; ok.len()];
    for b in 0..ok.len() {
        from[b] = b;
        for a in 0..b {
            if y(ok[b]) < y(ok[a]) && len[a] + 1 > len[b] {
                len[b] = len[a] + 1;
                from[b] = from[a];
            }
        }
    }
    let end = (0..ok.len())
        .max_by_key(|&b| (len[b], std::cmp::Reverse(b)))
        .unwrap_or(0);
    let (start, end) = (ok[from[end]], ok[end]);
    let fall = (y(start) - y(end)) / y(start).abs().max(1e-12);
    let sections = (end - start) / 3;
    let pick = start + sections + sections / 2;
    let lr = |i: usize| points[i].lr;
    let far_below = current.is_some_and(|c| lr(pick) * FAR_BELOW < c);
    if fall >= CLEAR_FALL && !(far_below && fall < STRONG_FALL) {
        return (
            Some(pick),
            format!(
                "half-way into the longest fall of the loss (fastai's valley): from {:.1e} to {:.1e} it falls {:.0}% ({:.3} -> {:.3})",
                lr(start),
                lr(end),
                100.0 * fall,
                y(start),
                y(end)
            ),
        );
    }
    flat(points, &ok, current)
}

/// No clear fall: where the loss rises, the LRs below it that are safe, and a suggestion
/// among them that keeps the run's own LR when it is safe.
fn flat(points: &[FinderPoint], ok: &[usize], current: Option<f64>) -> (Option<usize>, String) {
    let y = |i: usize| points[i].smoothed;
    let lr = |i: usize| points[i].lr;
    let low = ok.iter().map(|&i| y(i)).fold(f64::INFINITY, f64::min);
    // The rise comes after the lowest point: a noisy flat start that wobbles about 10% over
    // a low reached later is not one (mid-run, at step 11, that once said "rises past 5e-5"
    // of a loss that fell until 1e-3, and suggested a 400th of the run's LR).
    let lowest = ok.iter().copied().find(|&i| y(i) <= low).unwrap_or(ok[0]);
    let rise = ok
        .iter()
        .copied()
        .find(|&i| i > lowest && y(i) > low * (1.0 + RISE));
    let Some(rise) = rise else {
        return (
            current.and_then(|c| nearest(points, c)),
            format!(
                "the loss is flat from {:.0e} to {:.0e}: no LR in the range moves it; keep the LR, or widen the range",
                lr(ok[0]),
                lr(*ok.last().unwrap_or(&0))
            ),
        );
    };
    let flat_end = ok.iter().copied().rfind(|&i| i < rise).unwrap_or(rise);
    let safe = lr(rise) / 10.0;
    let pick = match current {
        Some(c) if c <= safe => nearest(points, c),
        _ => nearest(points, safe),
    };
    (
        pick,
        format!(
            "the loss is flat up to {:.0e} and rises past {:.0e}: LRs below about {:.0e} are safe{}",
            lr(flat_end),
            lr(rise),
            safe,
            match current {
                Some(c) if c <= safe => format!("; the run's {c:.1e} is one of them"),
                _ => String::new(),
            }
        ),
    )
}

/// The point whose LR is nearest `lr` (on a log scale).
fn nearest(points: &[FinderPoint], lr: f64) -> Option<usize> {
    (0..points.len()).min_by(|&a, &b| {
        let d = |i: usize| (points[i].lr.ln() - lr.ln()).abs();
        d(a).total_cmp(&d(b))
    })
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
    fn the_suggestion_is_half_way_into_the_longest_fall() {
        // Falls from 2.0 to 0.5 between about 1e-4 and 1e-2 (a logistic step centred at 1e-3),
        // flat elsewhere, then climbs past 1e-0.5.
        let pts = curve(|x| {
            2.0 - 1.5 / (1.0 + (-(x + 3.0) * 3.0).exp())
                + if x > -0.5 { (x + 0.5) * 4.0 } else { 0.0 }
        });
        let (i, how) = suggest(&pts, None);
        let lr = pts[i.unwrap()].lr;
        assert!((1e-4..=1e-2).contains(&lr), "{lr}: {how}");
        assert!(how.starts_with("half-way into the longest fall"), "{how}");
        // Mid-run at 1e-3 the same curve gives the same suggestion: the fall is evidence.
        assert_eq!(suggest(&pts, Some(1e-3)).0, i);
    }

    /// A loss that wobbles by batch noise (a fixed pseudo-random sequence) around `level`
    /// up to lr 1e-2, then climbs.
    fn flat_then_rising(level: f64) -> Vec<FinderPoint> {
        let mut state = 7u64;
        let mut pts = curve(|x| level + if x > -2.0 { (x + 2.0) * level } else { 0.0 });
        for p in &mut pts {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            p.smoothed += ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.02 * level;
        }
        pts
    }

    #[test]
    fn a_flat_curve_mid_run_keeps_a_safe_lr_and_says_where_the_loss_rises() {
        let pts = flat_then_rising(0.3);
        // The run trains at 1e-3, below where the loss rises: it is kept, not cut a thousandfold.
        let (i, how) = suggest(&pts, Some(1e-3));
        let lr = pts[i.unwrap()].lr;
        assert!((lr / 1e-3 - 1.0).abs() < 0.2, "{lr}: {how}");
        assert!(how.starts_with("the loss is flat up to"), "{how}");
        assert!(
            how.contains("are safe; the run's 1.0e-3 is one of them"),
            "{how}"
        );
        // At 0.1, past the rise, the suggestion is the safe LR a decade below it.
        let (i, how) = suggest(&pts, Some(0.1));
        let lr = pts[i.unwrap()].lr;
        assert!((1e-4..=3e-3).contains(&lr), "{lr}: {how}");
        // The longest falling stretch of noise is no valley.
        let (i, _) = suggest(&pts, None);
        assert!(pts[i.unwrap()].lr > 1e-4, "{:?}", pts[i.unwrap()]);
    }

    #[test]
    fn a_rise_comes_after_the_lowest_point_not_in_a_noisy_start() {
        // Mid-run at step 11 (CI saw it): a flat start at 1.42 that wobbles across 10% over
        // the low, a shallow fall to 1.28 at 1e-3 (11%), then a climb past 1e-2.
        let mut state = 3u64;
        let mut pts = curve(|x| {
            let fall = 0.14 / (1.0 + (-(x + 4.0) * 3.0).exp());
            1.42 - fall + if x > -2.0 { (x + 2.0) * 0.8 } else { 0.0 }
        });
        for p in &mut pts {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            p.smoothed += ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.04;
        }
        // The run trains at 2e-3: a shallow fall is no evidence for a 400th of it, and the
        // loss rises only past 1e-2, so the run's LR is kept.
        let (i, how) = suggest(&pts, Some(2e-3));
        let lr = pts[i.unwrap()].lr;
        assert!(lr >= 2e-4, "{lr}: {how}");
    }

    #[test]
    fn early_spikes_a_diverging_end_and_short_curves() {
        let mut pts = curve(|x| 2.0 - 1.5 / (1.0 + (-(x + 3.0) * 3.0).exp()));
        // A spike and a sharp drop in the first points, where the average still settles.
        pts[2].smoothed = 9.0;
        pts[3].smoothed = 0.1;
        // The end: not finite.
        pts[99].smoothed = f64::NAN;
        pts[98].smoothed = f64::INFINITY;
        let (i, _) = suggest(&pts, None);
        assert!((pts[i.unwrap()].lr.log10() + 3.0).abs() < 1.0);
        let (none, why) = suggest(&pts[..10], None);
        assert!(none.is_none() && why.contains("too few points"), "{why}");
        let flat = curve(|_| 1.0);
        let (keep, why) = suggest(&flat, Some(1e-3));
        assert!((flat[keep.unwrap()].lr / 1e-3 - 1.0).abs() < 0.2, "{why}");
        assert!(why.contains("no LR in the range moves it"), "{why}");
    }
}
