//! The charts: loss and accuracy over steps or epochs, and the learning rate.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Chart, Widget};

use super::{axis, block, bounds, line, points};
use crate::format::sci;
use crate::protocol::EpochMetrics;
use crate::tui::app::Comparison;
use crate::tui::app::TimeAxis;
use crate::tui::theme::Theme;
use crate::watch::RunState;

type Points = Vec<(f64, f64)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Loss,
    Accuracy,
}

/// Training (per step, smoothed) and validation (per epoch) loss or accuracy, with the current
/// and best values in the title, on steps or epochs.
pub struct MetricChart<'a> {
    pub run: &'a RunState,
    /// Another run, drawn dimmed underneath.
    pub other: Option<&'a Comparison>,
    pub metric: Metric,
    pub axis: TimeAxis,
    /// The last N steps only (step axis).
    pub window: Option<u64>,
    pub marker: Marker,
    pub focused: bool,
    pub theme: Theme,
}

impl Widget for MetricChart<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (run, theme, metric) = (self.run, &self.theme, self.metric);
        let fmt = |x: f64| {
            if metric == Metric::Loss {
                format!("{x:.4}")
            } else {
                format!("{:.2}%", 100.0 * x)
            }
        };
        let (val_now, val_best) = match metric {
            Metric::Loss => (
                run.epochs.last().map(|e| e.val_loss),
                run.best_val_loss().map(|e| e.val_loss),
            ),
            Metric::Accuracy => (
                run.epochs.last().map(|e| e.val_accuracy),
                run.best_val_accuracy().map(|e| e.val_accuracy),
            ),
        };
        let train_now = match metric {
            Metric::Loss => run.loss_smoothed,
            Metric::Accuracy => run.accuracy_smoothed,
        };
        // The title doubles as the legend: each name in its line's colour.
        let title = Line::from(vec![
            Span::styled(
                format!(
                    " {}  ",
                    if metric == Metric::Loss {
                        "Loss"
                    } else {
                        "Accuracy"
                    }
                ),
                theme.title(),
            ),
            Span::styled(
                "train ",
                theme.fg(Theme::TRAIN).add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                format!("{}  ", train_now.map(fmt).unwrap_or_else(|| "-".into())),
                theme.text(),
            ),
            Span::styled("val ", theme.fg(Theme::VAL).add_modifier(Modifier::BOLD)),
            Span::styled(
                format!(
                    "{}{} ",
                    val_now.map(fmt).unwrap_or_else(|| "-".into()),
                    val_best
                        .map(|b| format!(" (best {})", fmt(b)))
                        .unwrap_or_default()
                ),
                theme.text(),
            ),
        ]);
        let marker = self.marker;
        let (train, val, x_name) = self.series(run);
        let other = self.other.map(|o| self.series(&o.run));
        // Axes that stay put while the run grows: redrawing a rescaled chart every step would
        // rewrite every cell of it (bytes over SSH) and make the curve hard to follow.
        let both = |f: fn(&(f64, f64)) -> f64| {
            let mut v: Vec<f64> = train.iter().chain(&val).map(f).collect();
            if let Some((t, e, _)) = &other {
                v.extend(t.iter().chain(e).map(f));
            }
            v
        };
        let other_steps = self
            .other
            .map_or(0, |o| o.run.total_steps().max(o.run.step));
        let (x0, x1) = match (self.axis, self.window) {
            (TimeAxis::Steps, None) => (
                0.0,
                run.total_steps().max(run.step).max(other_steps).max(1) as f64,
            ),
            (TimeAxis::Epochs, _) => {
                let epochs = |r: &RunState| r.info.as_ref().map(|i| i.epochs).unwrap_or(1);
                let other = self.other.map_or(1, |o| epochs(&o.run));
                (1.0, epochs(run).max(other).max(2) as f64)
            }
            (TimeAxis::Steps, Some(_)) => bounds(both(|p| p.0).into_iter()),
        };
        let (y0, y1) = match metric {
            Metric::Accuracy => {
                let (lo, _) = bounds(both(|p| p.1).into_iter());
                (((lo - 5.0) / 10.0).floor().clamp(0.0, 9.0) * 10.0, 100.0)
            }
            Metric::Loss => {
                let (_, hi) = bounds(both(|p| p.1).into_iter());
                (0.0, nice_ceil(hi))
            }
        };
        let val_style = theme.fg(Theme::VAL).add_modifier(Modifier::BOLD);
        let mut datasets = Vec::new();
        // The other run first: this one's lines are drawn over it.
        if let Some((t, v, _)) = &other {
            datasets.push(line(t, marker, theme.dim()));
            datasets.push(points(v, Marker::Dot, theme.dim()));
        }
        datasets.push(line(&train, marker, theme.fg(Theme::TRAIN)));
        // One validation point is a dot; more are a line.
        datasets.push(if val.len() > 1 {
            line(&val, marker, val_style)
        } else {
            points(&val, Marker::Dot, val_style)
        });
        let ylabel = |v: f64| {
            if metric == Metric::Loss {
                format!("{v:.2}")
            } else {
                format!("{v:.0}%")
            }
        };
        Chart::new(datasets)
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(theme.border(self.focused))
                    .title(title),
            )
            .x_axis(
                axis(x0, x1, [format!("{x0:.0}"), format!("{x1:.0}")], theme).title(
                    // The legend of the other run's dimmed lines.
                    Span::styled(
                        match self.other {
                            Some(o) => format!("dim: {}  {x_name}", o.name),
                            None => x_name.to_string(),
                        },
                        theme.dim(),
                    ),
                ),
            )
            .y_axis(axis(y0, y1, [ylabel(y0), ylabel(y1)], theme))
            .legend_position(None)
            .render(area, buf);
    }
}

impl MetricChart<'_> {
    /// Train per step (smoothed) and validation per epoch, on steps; or both per epoch.
    fn series(&self, run: &RunState) -> (Points, Points, &'static str) {
        let metric = self.metric;
        let pct = |x: f64| {
            if metric == Metric::Accuracy {
                100.0 * x
            } else {
                x
            }
        };
        match self.axis {
            TimeAxis::Steps => {
                let series = if metric == Metric::Loss {
                    &run.train_loss
                } else {
                    &run.train_accuracy
                };
                let from = self
                    .window
                    .map(|w| run.step.saturating_sub(w) as f64)
                    .unwrap_or(0.0);
                let train = series
                    .points()
                    .iter()
                    .filter(|p| p.0 >= from)
                    .map(|&(x, y)| (x, pct(y)))
                    .collect();
                let val = run
                    .epochs
                    .iter()
                    .filter(|e| e.step as f64 >= from)
                    .map(|e| {
                        (
                            e.step as f64,
                            pct(if metric == Metric::Loss {
                                e.val_loss
                            } else {
                                e.val_accuracy
                            }),
                        )
                    })
                    .collect();
                (train, val, "step")
            }
            TimeAxis::Epochs => {
                let get = |e: &EpochMetrics, val: bool| match (metric, val) {
                    (Metric::Loss, false) => e.train_loss,
                    (Metric::Loss, true) => e.val_loss,
                    (Metric::Accuracy, false) => e.train_accuracy,
                    (Metric::Accuracy, true) => e.val_accuracy,
                };
                let train = run
                    .epochs
                    .iter()
                    .map(|e| (e.epoch as f64, pct(get(e, false))))
                    .collect();
                let val = run
                    .epochs
                    .iter()
                    .map(|e| (e.epoch as f64, pct(get(e, true))))
                    .collect();
                (train, val, "epoch")
            }
        }
    }
}

/// The learning rate per step on a log scale, the user's changes marked.
pub struct LrChart<'a> {
    pub run: &'a RunState,
    /// Another run, drawn dimmed underneath.
    pub other: Option<&'a Comparison>,
    pub marker: Marker,
    pub focused: bool,
    pub theme: Theme,
}

impl Widget for LrChart<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (run, theme) = (self.run, &self.theme);
        let schedule = run
            .schedule
            .as_ref()
            .map(|s| format!(" {}", s.spec.describe()))
            .unwrap_or_default();
        let title = format!(
            " Learning rate {}{schedule}  ▲ your changes ({}) ",
            sci(run.lr),
            run.lr_marks.len()
        );
        let log = |pts: &[(f64, f64)]| -> Vec<(f64, f64)> {
            pts.iter()
                .map(|&(x, y)| (x, y.max(1e-12).log10()))
                .collect()
        };
        let trace = log(&run.lr_trace.points());
        let other = self.other.map(|o| log(&o.run.lr_trace.points()));
        let marks: Vec<(f64, f64)> = run
            .lr_marks
            .iter()
            .map(|&(s, lr)| (s as f64, lr.max(1e-12).log10()))
            .collect();
        // What the schedule will do, one point per half cell.
        let plan: Vec<(f64, f64)> = run
            .plan(2 * area.width as usize)
            .into_iter()
            .map(|(s, lr)| (s as f64, lr.max(1e-12).log10()))
            .collect();
        let other_steps = self
            .other
            .map_or(0, |o| o.run.total_steps().max(o.run.step));
        let (x0, x1) = (
            0.0,
            run.total_steps().max(run.step).max(other_steps).max(1) as f64,
        );
        let others = other.iter().flatten();
        let (lo, hi) = bounds(
            trace
                .iter()
                .chain(&marks)
                .chain(&plan)
                .chain(others)
                .map(|p| p.1),
        );
        let (y0, y1) = ((lo - 0.25).floor(), (hi + 0.25).ceil());
        let mut datasets = Vec::new();
        if let Some(o) = &other {
            datasets.push(line(o, self.marker, theme.dim()));
        }
        datasets.extend([
            points(&plan, Marker::Dot, theme.dim()),
            line(&trace, self.marker, theme.fg(Theme::LR)),
            points(
                &marks,
                Marker::Block,
                theme.fg(Theme::MARK).add_modifier(Modifier::BOLD),
            ),
        ]);
        Chart::new(datasets)
            .block(block(title, theme, self.focused))
            .x_axis(
                axis(x0, x1, [format!("{x0:.0}"), format!("{x1:.0}")], theme).title(Span::styled(
                    self.other
                        .map(|o| format!("dim: {}", o.name))
                        .unwrap_or_default(),
                    theme.dim(),
                )),
            )
            .y_axis(axis(
                y0,
                y1,
                [format!("1e{y0:.0}"), format!("1e{y1:.0}")],
                theme,
            ))
            .render(area, buf);
    }
}

/// The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `x` (an axis end that
/// changes rarely).
pub fn nice_ceil(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&v| v >= x)
        .unwrap_or(10.0 * p)
}
#[cfg(test)]
mod tests {
    use super::nice_ceil;

    #[test]
    fn axis_ends_are_round_and_cover_the_value() {
        assert_eq!(nice_ceil(2.41), 2.5);
        assert_eq!(nice_ceil(3.0), 5.0);
        assert_eq!(nice_ceil(12.0), 20.0);
        assert_eq!(nice_ceil(0.7), 1.0);
        assert_eq!(nice_ceil(f64::NAN), 1.0);
        for x in [0.013, 0.9, 1.0, 7.7, 99.0, 1234.5] {
            let v = nice_ceil(x);
            assert!(v >= x && v <= 2.5 * x, "{x} -> {v}");
        }
    }
}
