//! The arithmetic of a readable chart, shared by the terminal UI and the saved figures:
//! smoothing (a debiased EMA over the raw per-step values), the y range that fits what is worth
//! seeing (robust to the first steps' spike, logarithmic when the data spans more than a
//! decade), and round tick values.

/// How a y axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log,
}

/// A y axis: its ends, how values map, its tick values, and what lies beyond the ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub lo: f64,
    pub hi: f64,
    pub scale: Scale,
    pub ticks: Vec<f64>,
    /// The largest value above `hi`, when the range cut the curve off (the first steps' spike).
    pub above: Option<f64>,
    /// The smallest value below `lo`, likewise.
    pub below: Option<f64>,
}

impl Range {
    /// Where `y` goes on the axis: itself, or its log10 on a log scale.
    pub fn map(&self, y: f64) -> f64 {
        match self.scale {
            Scale::Linear => y,
            Scale::Log => y.max(f64::MIN_POSITIVE).log10(),
        }
    }

    /// The mapped ends.
    pub fn bounds(&self) -> (f64, f64) {
        (self.map(self.lo), self.map(self.hi))
    }
}

/// Smoothing spans the user steps through, in steps (1 is the raw values).
pub const SPANS: [u32; 7] = [1, 10, 25, 50, 100, 250, 500];
/// The span a run starts with.
pub const DEFAULT_SPAN: u32 = 50;

/// A debiased exponential moving average of `points` (x = step), with the weight of a point
/// decaying per step of x, not per point: folded or thinned-out series smooth the same as full
/// ones. `span` is in steps (alpha = 2 / (span + 1)), as pandas' `ewm(span=...)`; the first
/// values are not pulled towards zero (TensorBoard's debiasing).
pub fn ema(points: &[(f64, f64)], span: u32) -> Vec<(f64, f64)> {
    if span <= 1 {
        return points.to_vec();
    }
    let alpha = 2.0 / (span as f64 + 1.0);
    let (mut acc, mut weight) = (0.0, 0.0);
    let mut last_x: Option<f64> = None;
    points
        .iter()
        .map(|&(x, y)| {
            let steps = last_x.map_or(1.0, |l| (x - l).max(1.0));
            last_x = Some(x);
            let keep = (1.0 - alpha).powf(steps);
            acc = keep * acc + (1.0 - keep) * y;
            weight = keep * weight + (1.0 - keep);
            (x, acc / weight)
        })
        .collect()
}

/// The value below which a share `q` of `ys` lies (nearest rank).
fn quantile(ys: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = ys.iter().copied().filter(|y| y.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    Some(v[i])
}

fn min_max(ys: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    ys.into_iter()
        .filter(|y| y.is_finite())
        .fold(None, |acc, y| match acc {
            None => Some((y, y)),
            Some((a, b)) => Some((f64::min(a, y), f64::max(b, y))),
        })
}

/// What a y range is fitted to: curves (in time order; the robust fit looks at their shape)
/// and single points (validation, always inside).
#[derive(Debug, Default)]
pub struct FitInput<'a> {
    pub curves: Vec<&'a [(f64, f64)]>,
    pub points: Vec<f64>,
}

impl FitInput<'_> {
    fn all(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .curves
            .iter()
            .flat_map(|c| c.iter().map(|p| p.1))
            .collect();
        v.extend(&self.points);
        v.retain(|y| y.is_finite());
        v
    }

    /// The extreme a robust fit keeps on one side: of each curve, the `q` quantile and the
    /// extreme of its most recent quarter (a divergence at the end always shows), and every
    /// point. `high` picks maxima, else minima.
    fn robust(&self, q: f64, high: bool) -> Option<f64> {
        let pick = |a: f64, b: f64| if high { a.max(b) } else { a.min(b) };
        let mut out: Option<f64> = None;
        let mut add = |v: f64| {
            if v.is_finite() {
                out = Some(out.map_or(v, |o| pick(o, v)));
            }
        };
        for c in &self.curves {
            let ys: Vec<f64> = c.iter().map(|p| p.1).collect();
            if let Some(v) = quantile(&ys, if high { q } else { 1.0 - q }) {
                add(v);
            }
            let recent = &ys[ys.len() - ys.len().div_ceil(4)..];
            if let Some((lo, hi)) = min_max(recent.iter().copied()) {
                add(if high { hi } else { lo });
            }
        }
        for &p in &self.points {
            add(p);
        }
        out
    }
}

/// Share of a curve's values the robust fit may leave out at its far end (the start's spike).
const ROBUST_Q: f64 = 0.9;

/// The loss axis. `log`: `None` chooses (log when the data spans more than a decade), else as
/// the user asked. Linear: fitted to the data with the spike of the first steps cut off (and
/// said so in `above`); log: everything, between round 1-2-5 values.
pub fn fit_loss(input: &FitInput, log: Option<bool>, max_ticks: usize) -> Range {
    let all = input.all();
    let Some((min, max)) = min_max(all.iter().copied()) else {
        return linear(0.0, 1.0, max_ticks);
    };
    let positive_min = all
        .iter()
        .copied()
        .filter(|&y| y > 0.0)
        .fold(f64::INFINITY, f64::min);
    let wide = positive_min.is_finite() && max / positive_min > 10.0;
    if log.unwrap_or(wide) && positive_min.is_finite() {
        // A twentieth of the span spare at each end, in log space, the ends on a grid of
        // twentieths of a decade so that they stay put while the run goes on.
        let pad = ((max.max(positive_min) / positive_min).log10() * 0.05).max(0.01);
        let lo = ((positive_min.log10() - pad) * 20.0).floor() / 20.0;
        let hi = ((max.max(positive_min).log10() + pad) * 20.0).ceil() / 20.0;
        let mut r = log_range(10f64.powf(lo), 10f64.powf(hi), max_ticks);
        r.below = (min < r.lo).then_some(min);
        return r;
    }
    let hi = input.robust(ROBUST_Q, true).unwrap_or(max);
    let lo = min.max(0.0);
    let pad = 0.05 * (hi - lo).max(hi.abs() * 0.01).max(1e-6);
    let (lo, hi) = settle((lo - pad).max(0.0), hi + pad);
    let mut r = linear(lo, hi, max_ticks);
    r.above = (max > r.hi).then_some(max);
    r
}

/// The accuracy axis, in percent: fitted to the data (the first steps' low values cut off), or
/// the full 0-100%.
pub fn fit_accuracy(input: &FitInput, full: bool, max_ticks: usize) -> Range {
    let all = input.all();
    let Some((min, max)) = min_max(all.iter().copied()) else {
        return linear(0.0, 100.0, max_ticks);
    };
    if full {
        return linear(0.0, 100.0, max_ticks);
    }
    let lo = input.robust(ROBUST_Q, false).unwrap_or(min);
    let pad = 0.05 * (max - lo).max(1.0);
    let (lo, hi) = settle((lo - pad).max(0.0), (max + pad).min(100.0));
    let mut r = linear(lo, hi, max_ticks);
    r.below = (min < r.lo).then_some(min);
    r
}

/// `lo..hi` widened to a grid of a fortieth of the span (a round step): the ends change only
/// when the data crosses a grid line, not with every new value (a rescaled chart is redrawn
/// whole: bytes over SSH, and a curve that will not sit still).
fn settle(lo: f64, hi: f64) -> (f64, f64) {
    let q = nice_step((hi - lo).abs().max(1e-9) / 40.0);
    (clean((lo / q).floor() * q), clean((hi / q).ceil() * q))
}

/// The smallest and largest positive finite values, or `fallback` when there are none.
pub fn positive_bounds<'a>(
    pts: impl Iterator<Item = &'a (f64, f64)>,
    fallback: (f64, f64),
) -> (f64, f64) {
    let (lo, hi) = pts
        .map(|p| p.1)
        .filter(|&v| v > 0.0 && v.is_finite())
        .fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    if lo.is_finite() {
        (lo, hi)
    } else {
        fallback
    }
}

/// A log axis between `lo` and `hi` (both > 0) whatever they span, for the learning rate:
/// whole decades, with a quarter of one spare at each end so that a constant LR is not drawn on
/// the frame.
pub fn fit_decades(lo: f64, hi: f64, max_ticks: usize) -> Range {
    let a = (lo.max(1e-30).log10() - 0.25).floor();
    let b = (hi.max(1e-30).log10() + 0.25).ceil();
    log_range(10f64.powf(a), 10f64.powf(b), max_ticks)
}

/// A linear axis from `lo` to `hi` (the data's own ends: every row shows data), with at most
/// `max_ticks` round ticks inside (1, 2, 2.5 or 5 times a power of ten apart), never closer
/// than the range split in `max_ticks - 1` (so ticks keep the spacing the caller asked for).
pub fn linear(lo: f64, hi: f64, max_ticks: usize) -> Range {
    let (lo, hi) = if hi - lo > 1e-12 {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    };
    let n = max_ticks.max(2) as f64;
    let mut step = nice_step((hi - lo) / (n - 1.0));
    let count = |step: f64| (hi / step).floor() - (lo / step).ceil() + 1.0;
    while count(step) > n {
        step = nice_step(step * 1.01);
    }
    // Two ticks at least (the plot thins them if they come too close): smaller round steps.
    for _ in 0..4 {
        if count(step) >= 2.0 {
            break;
        }
        step = [0.5, 0.4, 0.5]
            .iter()
            .map(|f| clean(step * f))
            .find(|&s| nice_step(s) == s)
            .unwrap_or(step / 2.0);
    }
    let first = (lo / step).ceil() as i64;
    let ticks = (0..count(step).max(0.0) as i64)
        .map(|i| clean((first + i) as f64 * step))
        .collect();
    Range {
        lo,
        hi,
        scale: Scale::Linear,
        ticks,
        above: None,
        below: None,
    }
}

/// A log axis from `lo` to `hi` (both > 0, the data's ends), with ticks on the round values
/// inside (1, 2 and 5 times powers of ten; decades only when those are too many; every
/// integer multiple when the range is too narrow for two).
fn log_range(lo: f64, hi: f64, max_ticks: usize) -> Range {
    let hi = hi.max(lo * 1.01);
    let inside = |mults: &[f64]| -> Vec<f64> {
        let mut ticks = Vec::new();
        let mut decade = lo.log10().floor() as i32;
        while 10f64.powi(decade) <= hi {
            for m in mults {
                let t = clean(m * 10f64.powi(decade));
                if t >= lo && t <= hi {
                    ticks.push(t);
                }
            }
            decade += 1;
        }
        ticks
    };
    let n = max_ticks.max(2);
    let mut ticks = inside(&[1.0, 2.0, 5.0]);
    if ticks.len() > n {
        ticks = thin(inside(&[1.0]), n);
    } else if ticks.len() < 2 {
        ticks = inside(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        if ticks.len() > n {
            ticks = thin(ticks, n);
        }
    }
    Range {
        lo,
        hi,
        scale: Scale::Log,
        ticks,
        above: None,
        below: None,
    }
}

/// Every k-th value, so that at most `n` remain.
fn thin(v: Vec<f64>, n: usize) -> Vec<f64> {
    let k = v.len().div_ceil(n).max(1);
    v.into_iter().step_by(k).collect()
}

/// The round step (1, 2, 2.5 or 5 times a power of ten) at or above `x`.
fn nice_step(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&v| v >= x * 0.9999)
        .unwrap_or(10.0 * p)
}

/// `x` without the float noise of `3 * 0.1` (twelve significant digits are plenty for a tick).
fn clean(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let digits = 11 - x.abs().log10().floor() as i32;
    let f = 10f64.powi(digits.clamp(-300, 300));
    (x * f).round() / f
}

/// A tick label: as few digits as tell the ticks apart (`0.25`, `2`, `1e-4`, `85%`).
pub fn tick_label(t: f64, range: &Range, percent: bool) -> String {
    if percent {
        return format!("{}%", trim(t, decimals_for(range)));
    }
    // A log axis reaching far from 1 labels every tick alike, in powers of ten.
    let far = range.scale == Scale::Log && (range.lo < 1e-2 || range.hi >= 1e5);
    if t != 0.0 && (far || t.abs() < 1e-3 || t.abs() >= 1e5) {
        let e = t.abs().log10().floor() as i32;
        let m = t / 10f64.powi(e);
        if (m - m.round()).abs() < 1e-9 {
            return format!("{}e{e}", m.round());
        }
        // As many digits as the ticks' spacing needs to tell them apart.
        let d = match (range.scale, range.ticks.as_slice()) {
            (Scale::Linear, [a, b, ..]) => (e - (b - a).abs().log10().floor() as i32).clamp(1, 8),
            _ => 1,
        } as usize;
        return format!("{m:.d$}e{e}");
    }
    let d = match range.scale {
        Scale::Log => (-(t.abs().log10().floor() as i32)).max(0) as usize,
        Scale::Linear => decimals_for(range),
    };
    trim(t, d)
}

/// Decimals that tell a linear range's ticks apart.
fn decimals_for(range: &Range) -> usize {
    let step = match range.ticks.as_slice() {
        [a, b, ..] => (b - a).abs(),
        [a] => a.abs(),
        [] => (range.hi - range.lo).abs(),
    };
    if step <= 0.0 {
        return 2;
    }
    let mut d = 0;
    while d < 6
        && ((step * 10f64.powi(d as i32)).round() - step * 10f64.powi(d as i32)).abs() > 1e-6
    {
        d += 1;
    }
    d
}

fn trim(x: f64, decimals: usize) -> String {
    format!("{x:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A typical loss: fast fall from 2.3, slow after, noise.
    fn typical(n: usize) -> Vec<(f64, f64)> {
        (1..=n)
            .map(|s| {
                let s = s as f64;
                (s, 0.2 + 2.1 * (-s / 20.0).exp() + 0.01 * (s * 0.7).sin())
            })
            .collect()
    }

    #[test]
    fn the_ema_matches_pandas_debiased_ewm() {
        // pandas: Series([1, 2, 3, 4]).ewm(span=3, adjust=True).mean()
        let pts: Vec<(f64, f64)> = (1..=4).map(|i| (i as f64, i as f64)).collect();
        let want = [
            1.0,
            1.6666666666666667,
            2.4285714285714284,
            3.2666666666666666,
        ];
        for (got, want) in ema(&pts, 3).iter().zip(want) {
            assert!((got.1 - want).abs() < 1e-12, "{} vs {want}", got.1);
        }
        // Every other point dropped, steps of 2: each kept point is weighted as two steps.
        let sparse: Vec<(f64, f64)> = (0..50).map(|i| (2.0 * i as f64, 1.0)).collect();
        assert!(ema(&sparse, 10).iter().all(|p| (p.1 - 1.0).abs() < 1e-12));
        assert_eq!(ema(&pts, 1), pts, "span 1 is the raw values");
    }

    #[test]
    fn a_long_run_gets_a_log_axis_and_a_short_flat_one_a_fitted_linear_axis() {
        let curve = typical(400);
        let r = fit_loss(
            &FitInput {
                curves: vec![&curve],
                points: vec![0.31],
            },
            None,
            6,
        );
        assert_eq!(
            r.scale,
            Scale::Log,
            "2.3 -> 0.19 spans more than a decade: {r:?}"
        );
        assert!(
            r.lo <= 0.19 && r.hi >= 2.3,
            "a log axis shows it all: {r:?}"
        );
        // Linear (the user's choice, or less than a decade): the spike cut off.
        let r = fit_loss(
            &FitInput {
                curves: vec![&curve],
                points: vec![],
            },
            Some(false),
            6,
        );
        assert_eq!(r.scale, Scale::Linear);
        assert!(
            r.hi < 1.0,
            "the spike of the first steps does not set the top: {r:?}"
        );
        assert!(r.lo <= 0.19 && r.lo >= 0.0, "{r:?}");
        assert!(r.above.is_some_and(|a| a > 2.0), "the cut is said: {r:?}");
        assert!(r.ticks.len() <= 6 && r.ticks.len() >= 2, "{r:?}");
    }

    #[test]
    fn a_divergence_at_the_end_is_always_inside() {
        let mut c = typical(400);
        c.extend((401..=420).map(|s| (s as f64, 0.3 + (s - 400) as f64)));
        let r = fit_loss(
            &FitInput {
                curves: vec![&c],
                points: vec![],
            },
            Some(false),
            6,
        );
        assert!(r.hi >= 20.3, "{r:?}");
    }

    #[test]
    fn accuracy_fits_the_data_or_shows_it_all() {
        let acc: Vec<(f64, f64)> = (1..=400)
            .map(|s| (s as f64, 90.0 - 80.0 * (-(s as f64) / 20.0).exp()))
            .collect();
        let input = FitInput {
            curves: vec![&acc],
            points: vec![87.1, 89.2],
        };
        let r = fit_accuracy(&input, false, 6);
        assert!(r.lo >= 70.0 && r.hi <= 95.0, "{r:?}");
        assert!(r.below.is_some());
        let r = fit_accuracy(&input, true, 6);
        assert_eq!((r.lo, r.hi), (0.0, 100.0));
    }

    #[test]
    fn ticks_are_round_and_labels_tell_them_apart() {
        let labels = |r: &Range, pct| -> Vec<String> {
            r.ticks.iter().map(|&t| tick_label(t, r, pct)).collect()
        };
        let r = linear(0.23, 0.61, 6);
        assert_eq!((r.lo, r.hi), (0.23, 0.61), "the ends are the data's");
        assert_eq!(labels(&r, false), ["0.3", "0.4", "0.5", "0.6"]);
        let r = linear(0.0, 2.5, 6);
        assert_eq!(
            labels(&r, false),
            ["0.0", "0.5", "1.0", "1.5", "2.0", "2.5"]
        );
        let r = linear(0.0, 2.5, 3);
        assert_eq!(labels(&r, false), ["0", "2"]);
        let r = linear(0.2, 1.8, 3);
        assert_eq!(labels(&r, false), ["0.5", "1.0", "1.5"], "two at least");
        let r = log_range(0.23, 2.4, 8);
        assert_eq!(labels(&r, false), ["0.5", "1", "2"]);
        let r = log_range(0.23, 0.45, 8);
        assert_eq!(labels(&r, false), ["0.3", "0.4"]);
        let r = fit_decades(3e-5, 2e-3, 4);
        assert_eq!((r.lo, r.hi), (1e-5, 1e-2));
        assert_eq!(labels(&r, false), ["1e-5", "1e-4", "1e-3", "1e-2"]);
        let r = fit_decades(1e-3, 1e-3, 8);
        assert_eq!((r.lo, r.hi), (1e-4, 1e-2));
        let r = linear(80.0, 95.0, 4);
        assert_eq!(labels(&r, true), ["80%", "85%", "90%", "95%"]);
        // A diverged loss that barely moves: ticks still tell apart.
        let r = linear(8.13e33, 8.17e33, 3);
        assert_eq!(labels(&r, false), ["8.14e33", "8.16e33"]);
    }
}
