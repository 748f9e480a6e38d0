//! Ending a run on its validation metrics: early stopping (`--early-stop`, as Keras'
//! `EarlyStopping` and Lightning's) and a target accuracy (`--target-acc`). Plain data: the
//! spec as the flag, a config file and the editor write it, and the state a checkpoint keeps.

use serde::{Deserialize, Serialize};

/// The validation metric early stopping watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    ValLoss,
    ValAcc,
}

impl Monitor {
    pub fn name(self) -> &'static str {
        match self {
            Monitor::ValLoss => "val_loss",
            Monitor::ValAcc => "val_acc",
        }
    }

    /// The metric's value out of an epoch's validation loss and accuracy.
    pub fn of(self, val_loss: f64, val_acc: f64) -> f64 {
        match self {
            Monitor::ValLoss => val_loss,
            Monitor::ValAcc => val_acc,
        }
    }

    /// Whether `new` beats `best` by more than `min_delta` (lower loss, higher accuracy). A
    /// value that is not finite never improves.
    pub fn improves(self, new: f64, best: Option<f64>, min_delta: f64) -> bool {
        if !new.is_finite() {
            return false;
        }
        match (self, best) {
            (_, None) => true,
            (Monitor::ValLoss, Some(b)) => new < b - min_delta,
            (Monitor::ValAcc, Some(b)) => new > b + min_delta,
        }
    }
}

/// The rules that may end a run before its last epoch, and the accuracy it aims for.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Stopping {
    pub early_stop: EarlyStop,
    /// Validation accuracy in percent; 0: none.
    pub target_acc: f64,
    pub stop_at_target: bool,
}

/// `PATIENCE[:monitor=val_loss|val_acc][,min_delta=D][,restore_best]`, or off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EarlyStop {
    /// Epochs without improvement before the run ends; 0: off.
    pub patience: u32,
    pub monitor: Monitor,
    /// How much the metric must move to count as an improvement (absolute; accuracy 0-1).
    pub min_delta: f64,
    /// Put back the best epoch's weights before the test evaluation and last.h5.
    pub restore_best: bool,
}

impl Default for EarlyStop {
    fn default() -> Self {
        EarlyStop::OFF
    }
}

impl EarlyStop {
    pub const OFF: EarlyStop = EarlyStop {
        patience: 0,
        monitor: Monitor::ValLoss,
        min_delta: 0.0,
        restore_best: false,
    };

    pub fn is_on(&self) -> bool {
        self.patience > 0
    }

    /// As the header says it: `stop 5 val_loss`.
    pub fn brief(&self) -> String {
        format!("{} {}", self.patience, self.monitor.name())
    }
}

impl std::fmt::Display for EarlyStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.is_on() {
            return write!(f, "off");
        }
        write!(f, "{}:monitor={}", self.patience, self.monitor.name())?;
        if self.min_delta > 0.0 {
            write!(f, ",min_delta={}", self.min_delta)?;
        }
        if self.restore_best {
            write!(f, ",restore_best")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for EarlyStop {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let s = text.trim();
        let bad =
            |problem: String| format!("--early-stop {}: {problem}", crate::format::shown(text));
        if s == "off" || s == "none" || s == "0" {
            return Ok(EarlyStop::OFF);
        }
        let (patience, rest) = match s.find([':', ',']) {
            Some(i) => (&s[..i], &s[i + 1..]),
            None => (s, ""),
        };
        let patience: u32 = match patience.parse() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(bad(format!(
                    "'{patience}' is not a patience: PATIENCE[:monitor=val_loss|val_acc][,min_delta=D][,restore_best] (epochs, from 1), or off"
                )))
            }
        };
        let mut stop = EarlyStop {
            patience,
            ..EarlyStop::OFF
        };
        for part in rest
            .split([',', ':'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match part.split_once('=') {
                Some(("monitor", "val_loss")) => stop.monitor = Monitor::ValLoss,
                Some(("monitor", "val_acc")) => stop.monitor = Monitor::ValAcc,
                Some(("monitor", m)) => {
                    return Err(bad(format!("unknown monitor '{m}' (val_loss or val_acc)")))
                }
                Some(("min_delta", d)) => match d.parse::<f64>() {
                    Ok(d) if d.is_finite() && d >= 0.0 => stop.min_delta = d,
                    _ => return Err(bad(format!("min_delta '{d}' is not a number from 0 up"))),
                },
                None if part == "restore_best" => stop.restore_best = true,
                _ => {
                    return Err(bad(format!(
                        "unknown part '{part}' (monitor=, min_delta=, restore_best)"
                    )))
                }
            }
        }
        Ok(stop)
    }
}

impl TryFrom<String> for EarlyStop {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<EarlyStop> for String {
    fn from(s: EarlyStop) -> String {
        s.to_string()
    }
}

/// Where early stopping stands: the best value of the monitored metric, its epoch, and the
/// epochs since. A checkpoint keeps it, so a resumed run stops where the whole run would.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct StopState {
    pub best: Option<f64>,
    pub best_epoch: usize,
    pub bad_epochs: u32,
}

/// What an epoch's end means for early stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The metric improved: this epoch is the best so far.
    Improved,
    /// No improvement for this many epochs, fewer than the patience.
    Waiting(u32),
    /// No improvement for the patience: the run ends.
    Stop,
}

impl StopState {
    /// Folds in epoch `epoch`'s validation metrics.
    pub fn end_epoch(
        &mut self,
        spec: &EarlyStop,
        epoch: usize,
        val_loss: f64,
        val_acc: f64,
    ) -> Verdict {
        let value = spec.monitor.of(val_loss, val_acc);
        if spec.monitor.improves(value, self.best, spec.min_delta) {
            *self = StopState {
                best: Some(value),
                best_epoch: epoch,
                bad_epochs: 0,
            };
            return Verdict::Improved;
        }
        self.bad_epochs += 1;
        if spec.is_on() && self.bad_epochs >= spec.patience {
            Verdict::Stop
        } else {
            Verdict::Waiting(self.bad_epochs)
        }
    }

    /// The state after `epochs` (validation loss and accuracy, in order from epoch 1): what a
    /// spec set or changed mid-run starts from, as if it had watched from the start.
    pub fn replay(spec: &EarlyStop, epochs: impl IntoIterator<Item = (f64, f64)>) -> Self {
        let mut s = StopState::default();
        for (i, (loss, acc)) in epochs.into_iter().enumerate() {
            s.end_epoch(
                &EarlyStop {
                    patience: u32::MAX,
                    ..*spec
                },
                i + 1,
                loss,
                acc,
            );
        }
        s
    }
}

/// `--target-acc`: a validation accuracy in percent (0 < T < 100), or 0 for none.
pub fn parse_target(text: &str) -> Result<f64, String> {
    match text.trim().trim_end_matches('%').parse::<f64>() {
        Ok(t) if t == 0.0 || (t > 1.0 && t < 100.0) => Ok(t),
        Ok(t) if t > 0.0 && t <= 1.0 => Err(format!(
            "--target-acc {t}: a percentage, e.g. 91 (for {}%)",
            t * 100.0
        )),
        _ => Err(format!(
            "--target-acc {}: not a validation accuracy in percent (above 1, below 100; 0: none)",
            crate::format::shown(text)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_read_and_write_back() {
        for (text, want) in [
            ("5", "5:monitor=val_loss"),
            ("3:monitor=val_acc", "3:monitor=val_acc"),
            (
                "3:monitor=val_acc,min_delta=0.001,restore_best",
                "3:monitor=val_acc,min_delta=0.001,restore_best",
            ),
            ("2,restore_best", "2:monitor=val_loss,restore_best"),
            ("off", "off"),
        ] {
            let s: EarlyStop = text.parse().unwrap();
            assert_eq!(s.to_string(), want);
            assert_eq!(want.parse::<EarlyStop>().unwrap(), s);
        }
        for (text, problem) in [
            ("-1", "'-1' is not a patience"),
            ("x", "'x' is not a patience"),
            ("3:monitor=acc", "unknown monitor 'acc'"),
            ("3:min_delta=-1", "min_delta '-1' is not a number"),
            ("3:patience=2", "unknown part 'patience=2'"),
        ] {
            let e = text.parse::<EarlyStop>().unwrap_err();
            assert!(
                e.starts_with(&format!("--early-stop {text}: ")) && e.contains(problem),
                "{e}"
            );
        }
    }

    /// As Keras' EarlyStopping(patience=2, min_delta=0.01) counts: an improvement smaller than
    /// min_delta is none, and the run ends at the patience'th epoch without one.
    #[test]
    fn the_patience_counts_epochs_without_an_improvement_beyond_min_delta() {
        let spec: EarlyStop = "2:monitor=val_loss,min_delta=0.01".parse().unwrap();
        let mut s = StopState::default();
        let losses = [1.0, 0.8, 0.795, 0.79, 0.7, 0.75, 0.71];
        let verdicts: Vec<Verdict> = losses
            .iter()
            .enumerate()
            .map(|(i, &l)| s.end_epoch(&spec, i + 1, l, 0.0))
            .collect();
        use Verdict::*;
        assert_eq!(verdicts[..4], [Improved, Improved, Waiting(1), Stop]);
        let mut s = StopState::default();
        let acc: EarlyStop = "2:monitor=val_acc".parse().unwrap();
        let v: Vec<Verdict> = [0.5, 0.6, 0.6, 0.61, 0.6, f64::NAN]
            .iter()
            .enumerate()
            .map(|(i, &a)| s.end_epoch(&acc, i + 1, 0.0, a))
            .collect();
        assert_eq!(
            v,
            [Improved, Improved, Waiting(1), Improved, Waiting(1), Stop]
        );
        assert_eq!((s.best, s.best_epoch), (Some(0.61), 4));
        let replayed = StopState::replay(&acc, [(0.0, 0.5), (0.0, 0.6), (0.0, 0.6), (0.0, 0.61)]);
        assert_eq!(
            replayed,
            StopState {
                best: Some(0.61),
                best_epoch: 4,
                bad_epochs: 0
            }
        );
    }

    #[test]
    fn targets_are_percentages() {
        assert_eq!(parse_target("91"), Ok(91.0));
        assert_eq!(parse_target("91.5%"), Ok(91.5));
        assert_eq!(parse_target("0"), Ok(0.0));
        assert!(parse_target("0.91")
            .unwrap_err()
            .contains("a percentage, e.g. 91 (for 91%)"));
        assert!(parse_target("100").is_err() && parse_target("x").is_err());
    }
}

/// When a run's validation accuracy will reach a target, from its epochs so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Forecast {
    /// Fewer epochs than a fit needs ([`FIT_EPOCHS`]).
    TooEarly,
    /// Epoch `epoch` reached it.
    Reached { epoch: usize },
    /// The fitted curve crosses the target during epoch `epoch`.
    At { epoch: usize, plateau: f64 },
    /// The curve levels off below the target, beyond its uncertainty: `plateau` (0-1), give
    /// or take `spread` (two standard errors).
    Unlikely { plateau: f64, spread: f64 },
    /// The plateau is below the target but within its uncertainty.
    Uncertain { plateau: f64, spread: f64 },
}

/// Epochs a forecast needs: three parameters and at least one degree of freedom.
pub const FIT_EPOCHS: usize = 4;

/// A saturating curve through validation accuracies `acc` (0-1, epoch 1 first): the error
/// 1 - acc(t) = E + B t^-c (an inverse power law, as learning curves follow), E, B >= 0,
/// fitted by least squares with c on a grid and E, B exact for each c. Where it says the
/// target `target` (percent) falls: the epoch, or the plateau 1 - E it cannot pass.
///
/// c is kept from 0.5 to 3: below 0.5 the curve hardly bends over the epochs a run has seen,
/// its plateau is not determined by them, and the fit puts it near 100% (on a recorded run of
/// the default model, 98-100% from its first 4-8 epochs, which reached 91.7% by epoch 12).
pub fn forecast(acc: &[f64], target: f64) -> Forecast {
    let goal = target / 100.0;
    if let Some(i) = acc.iter().position(|&a| a >= goal) {
        return Forecast::Reached { epoch: i + 1 };
    }
    let n = acc.len();
    if n < FIT_EPOCHS || acc.iter().any(|a| !a.is_finite()) {
        return Forecast::TooEarly;
    }
    let err: Vec<f64> = acc.iter().map(|a| 1.0 - a).collect();
    let mut best: Option<(f64, f64, f64, f64)> = None; // (sse, c, e, b)
    for k in 0..=60 {
        let c = 0.5 * 1.031f64.powi(k); // 0.5 .. about 3.1
        let x: Vec<f64> = (1..=n).map(|t| (t as f64).powf(-c)).collect();
        let (e, b) = line_fit(&x, &err);
        let sse: f64 = x
            .iter()
            .zip(&err)
            .map(|(x, y)| (y - e - b * x).powi(2))
            .sum();
        if best.is_none_or(|(s, ..)| sse < s) {
            best = Some((sse, c, e, b));
        }
    }
    let (sse, c, e, b) = best.expect("the grid is not empty");
    // The plateau's standard error, as the linear fit at this c gives it.
    let x: Vec<f64> = (1..=n).map(|t| (t as f64).powf(-c)).collect();
    let (sx, sxx) = (x.iter().sum::<f64>(), x.iter().map(|v| v * v).sum::<f64>());
    let sigma2 = sse / (n - 3) as f64;
    let det = n as f64 * sxx - sx * sx;
    let se = if det > 0.0 {
        (sigma2 * sxx / det).sqrt()
    } else {
        f64::INFINITY
    };
    let plateau = 1.0 - e;
    let spread = 2.0 * se;
    let need = 1.0 - goal;
    if need > e && b > 0.0 {
        let t = (b / (need - e)).powf(1.0 / c);
        if t.is_finite() && t < 1e6 {
            return Forecast::At {
                epoch: (t.ceil() as usize).max(n + 1),
                plateau,
            };
        }
    }
    if plateau + spread < goal {
        Forecast::Unlikely { plateau, spread }
    } else {
        Forecast::Uncertain { plateau, spread }
    }
}

/// Least squares y = e + b x with e, b >= 0 (a negative one is set to 0 and the other refit).
fn line_fit(x: &[f64], y: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let (sx, sy) = (x.iter().sum::<f64>(), y.iter().sum::<f64>());
    let sxx: f64 = x.iter().map(|v| v * v).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| a * b).sum();
    let det = n * sxx - sx * sx;
    let (e, b) = if det.abs() > 1e-300 {
        ((sy * sxx - sx * sxy) / det, (n * sxy - sx * sy) / det)
    } else {
        (sy / n, 0.0)
    };
    if e < 0.0 {
        (0.0, (sxy / sxx).max(0.0))
    } else if b < 0.0 {
        (sy / n, 0.0)
    } else {
        (e, b)
    }
}

#[cfg(test)]
mod forecast_tests {
    use super::*;

    /// Accuracies on a known curve with a small deterministic wobble (the noise of a
    /// validation set of a few thousand images).
    fn curve(f: impl Fn(f64) -> f64, epochs: usize) -> Vec<f64> {
        (1..=epochs)
            .map(|t| f(t as f64) + 0.0015 * ((t * 7919) % 5) as f64 / 4.0 - 0.00075)
            .collect()
    }

    #[test]
    fn a_curve_that_passes_the_target_is_given_the_epoch_it_does() {
        // 93% - 15% / t: 91% during epoch 8 (t = 7.5).
        let acc = curve(|t| 0.93 - 0.15 / t, 5);
        match forecast(&acc, 91.0) {
            Forecast::At { epoch, plateau } => {
                assert!((7..=9).contains(&epoch), "epoch {epoch}");
                assert!((plateau - 0.93).abs() < 0.01, "plateau {plateau}");
            }
            f => panic!("{f:?}"),
        }
    }

    #[test]
    fn a_curve_that_levels_off_below_the_target_is_unlikely_to_reach_it() {
        // Levels off at 89.5%.
        let acc = curve(|t| 0.895 - 0.12 * t.powf(-1.5), 6);
        match forecast(&acc, 91.0) {
            Forecast::Unlikely { plateau, spread } => {
                assert!(
                    (plateau - 0.895).abs() < 0.005,
                    "plateau {plateau} ± {spread}"
                );
            }
            f => panic!("{f:?}"),
        }
    }

    #[test]
    fn reached_and_too_early_are_said_as_such() {
        assert_eq!(forecast(&[0.8, 0.92], 91.0), Forecast::Reached { epoch: 2 });
        assert_eq!(forecast(&[0.8, 0.85, 0.87], 91.0), Forecast::TooEarly);
    }
}

#[cfg(test)]
mod recorded_run {
    use super::*;

    /// Validation accuracy per epoch of a real run (the default model on the embedded data,
    /// `--epochs 12`, seed 42): 91% first at epoch 8; 92% never in 12 epochs.
    const RUN: [f64; 12] = [
        0.847, 0.870, 0.888, 0.891, 0.904, 0.909, 0.903, 0.913, 0.914, 0.916, 0.908, 0.917,
    ];

    #[test]
    fn forecasts_from_the_first_epochs_match_what_the_run_did() {
        // From 5 to 7 epochs, within 2 epochs of the 8th.
        for k in 5..=7 {
            let f = forecast(&RUN[..k], 91.0);
            match f {
                Forecast::At { epoch, .. } => assert!((6..=10).contains(&epoch), "{k}: {f:?}"),
                f => panic!("{k} epochs: {f:?}"),
            }
            let f = forecast(&RUN[..k], 92.0);
            match f {
                Forecast::At { epoch, .. } => assert!(epoch > 12, "{k}: {f:?}"),
                Forecast::Unlikely { .. } | Forecast::Uncertain { .. } => {}
                f => panic!("{k} epochs: {f:?}"),
            }
        }
        assert_eq!(forecast(&RUN[..9], 91.0), Forecast::Reached { epoch: 8 });
    }
}
