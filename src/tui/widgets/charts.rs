//! The charts: loss and accuracy over steps or epochs, and the learning rate.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Widget};

use super::block;
use super::plot::{Mark, Plot};
use crate::format::sci;
use crate::protocol::EpochMetrics;
use crate::tui::app::Comparison;
use crate::tui::app::TimeAxis;
use crate::tui::theme::Theme;
use crate::watch::chart::{
    ema, fit_accuracy, fit_decades, fit_loss, positive_bounds, FitInput, Range, Scale,
};
use crate::watch::RunState;

type Points = Vec<(f64, f64)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Loss,
    Accuracy,
}

/// Training loss or accuracy per step (raw, dim, and smoothed, bright) and validation per
/// epoch (◆, the best ★), on steps or epochs, on a y axis fitted to what is worth seeing.
pub struct MetricChart<'a> {
    pub run: &'a RunState,
    /// Another run, drawn underneath.
    pub other: Option<&'a Comparison>,
    pub metric: Metric,
    pub axis: TimeAxis,
    /// The last N steps only (step axis).
    pub window: Option<u64>,
    pub marker: Marker,
    pub focused: bool,
    pub theme: Theme,
    /// EMA span of the smoothed training curve, in steps.
    pub span: u32,
    /// Loss: log or linear as the user chose, `None` for the automatic choice.
    pub log: Option<bool>,
    /// Accuracy: the full 0-100% rather than the fitted range.
    pub full: bool,
}

/// One run's curves for a chart.
struct Curves {
    raw: Points,
    smooth: Points,
    val: Points,
}

/// A what-if branch's training loss since its fork (smoothed as the main line's, from the
/// main line's values before the fork) and each line's validation at the end.
struct BranchCurves {
    smooth: Points,
    val: Points,
    main_val: Points,
    label: String,
}

/// The best validation value: (epoch, step, value as drawn).
type Best = Option<(usize, u64, f64)>;

impl Widget for MetricChart<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let mine = self.curves(self.run);
        let other = self.other.map(|o| self.curves(&o.run));
        let branch = self.branch_curves();
        let best = match self.metric {
            Metric::Loss => (self.run.best_val_loss()).map(|e| (e.epoch, e.step, e.val_loss)),
            Metric::Accuracy => {
                (self.run.best_val_accuracy()).map(|e| (e.epoch, e.step, 100.0 * e.val_accuracy))
            }
        };
        let x = self.x_range();
        let range = self.fit(&mine, other.as_ref(), branch.as_ref(), max_ticks(area));
        // With a branch in the legend, the best value gives way.
        let best_shown = if branch.is_some() { None } else { best };
        let mut title = self.title(&mine, best_shown, area.width);
        let mut marks = self.marks(&mine, other.as_ref(), best, x);
        let mut bottom = self.bottom(&range);
        if let Some(b) = &branch {
            let latest = b.smooth.last().map_or("-".into(), |p| self.value(p.1));
            title.insert(3, Span::styled(format!("{latest}  "), self.theme.text()));
            title.insert(3, Span::styled("━ branch ", self.bold(Theme::BRANCH)));
            marks.push(Mark::Line(&b.smooth, Theme::BRANCH));
            marks.push(Mark::Glyph(b.main_val.clone(), "◆", self.bold(Theme::VAL)));
            marks.push(Mark::Glyph(b.val.clone(), "◇", self.bold(Theme::BRANCH)));
            bottom.push(Span::styled(
                format!(" ⑂ {} ", b.label),
                self.theme.fg(Theme::BRANCH),
            ));
        }
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(self.theme.border(self.focused))
            .title(Line::from(title))
            .title_bottom(Line::from(bottom));
        Plot {
            block,
            x,
            y: &range,
            percent: self.metric == Metric::Accuracy,
            marks,
            marker: self.marker,
            theme: self.theme,
        }
        .render(area, buf);
    }
}

impl MetricChart<'_> {
    /// A value as the title shows it.
    fn value(&self, x: f64) -> String {
        if self.metric == Metric::Accuracy {
            format!("{x:.2}%")
        } else if x.abs() >= 1e4 {
            // A diverged loss: a number that fits.
            format!("{x:.3e}")
        } else {
            format!("{x:.4}")
        }
    }

    fn bold(&self, c: Color) -> Style {
        self.theme.fg(c).add_modifier(Modifier::BOLD)
    }

    /// The title doubles as the legend: each name in its mark's colour and shape, with the
    /// latest values, and the best validation value with its epoch where there is room.
    fn title(&self, mine: &Curves, best: Best, width: u16) -> Vec<Span<'static>> {
        let theme = self.theme;
        let name = match self.metric {
            Metric::Accuracy => " Accuracy  ",
            Metric::Loss => " Loss  ",
        };
        let latest = |p: &Points| p.last().map_or("-".into(), |p| self.value(p.1));
        let mut title = vec![
            Span::styled(name, theme.title()),
            Span::styled("━ train ", self.bold(Theme::TRAIN)),
            Span::styled(format!("{}  ", latest(&mine.smooth)), theme.text()),
            Span::styled("◆ val ", self.bold(Theme::VAL)),
            Span::styled(format!("{} ", latest(&mine.val)), theme.text()),
        ];
        if let Some((epoch, _, v)) = best {
            let room = (width as usize).saturating_sub(2 + Line::from(title.clone()).width());
            let v = self.value(v);
            for text in [format!("{v} (epoch {epoch}) "), format!("{v} ")] {
                if text.chars().count() + 8 <= room {
                    title.push(Span::styled(" ★ best ", self.bold(Theme::MARK)));
                    title.push(Span::styled(text, theme.text()));
                    break;
                }
            }
        }
        title
    }

    /// The x range. Steps: the run's planned length, so the axis stays put while the run
    /// grows, or the window's last steps.
    fn x_range(&self) -> (f64, f64) {
        let run = self.run;
        let other_steps = self
            .other
            .map_or(0, |o| o.run.total_steps().max(o.run.step));
        match (self.axis, self.window) {
            (TimeAxis::Steps, None) => (
                0.0,
                run.total_steps().max(run.step).max(other_steps).max(1) as f64,
            ),
            (TimeAxis::Epochs, _) => {
                let epochs = |r: &RunState| r.info.as_ref().map(|i| i.epochs).unwrap_or(1);
                let other = self.other.map_or(1, |o| epochs(&o.run));
                (1.0, epochs(run).max(other).max(2) as f64)
            }
            (TimeAxis::Steps, Some(w)) => {
                (run.step.saturating_sub(w) as f64, run.step.max(1) as f64)
            }
        }
    }

    /// What is drawn: the other run first (this one's marks go over it), the spread of the raw
    /// values, the smoothed curve, validation, the best.
    fn marks<'c>(
        &self,
        mine: &'c Curves,
        other: Option<&'c Curves>,
        best: Best,
        x: (f64, f64),
    ) -> Vec<Mark<'c>> {
        let theme = self.theme;
        let mut marks = Vec::new();
        if let Some(o) = other {
            marks.push(Mark::Line(&o.smooth, Theme::OTHER));
            marks.push(Mark::Glyph(o.val.clone(), "◇", theme.fg(Theme::OTHER)));
        }
        if self.span > 1 {
            marks.push(Mark::Band(&mine.raw, theme.fg(Theme::RAW)));
        }
        marks.push(Mark::Line(&mine.smooth, Theme::TRAIN));
        if theme.color && mine.val.len() > 1 {
            marks.push(Mark::Line(&mine.val, Theme::VAL));
        }
        marks.push(Mark::Glyph(mine.val.clone(), "◆", self.bold(Theme::VAL)));
        if let Some((epoch, step, v)) = best {
            let at = match self.axis {
                TimeAxis::Steps => step as f64,
                TimeAxis::Epochs => epoch as f64,
            };
            if at >= x.0 {
                marks.push(Mark::Glyph(vec![(at, v)], "★", self.bold(Theme::MARK)));
            }
        }
        marks
    }

    /// Under the chart, in its frame: the x axis, the smoothing, the scale, the other run.
    fn bottom(&self, range: &Range) -> Vec<Span<'static>> {
        let dim = self.theme.dim();
        let axis = match self.axis {
            TimeAxis::Steps => " step ",
            TimeAxis::Epochs => " epoch ",
        };
        let mut bottom = vec![Span::styled(axis, dim)];
        if self.axis == TimeAxis::Steps {
            let smoothing = match self.span {
                n if n > 1 => format!(" ema {n} "),
                _ => " raw ".into(),
            };
            bottom.push(Span::styled(smoothing, dim));
        }
        if range.scale == Scale::Log {
            bottom.push(Span::styled(" log ", dim));
        }
        if let Some(o) = self.other {
            let name = format!(" ◇ {} ", o.name);
            bottom.push(Span::styled(name, self.theme.fg(Theme::OTHER)));
        }
        bottom
    }

    /// Whether the y axis is on a log scale (the choice does not depend on the chart's size).
    pub fn is_log(&self) -> bool {
        let mine = self.curves(self.run);
        let other = self.other.map(|o| self.curves(&o.run));
        let branch = self.branch_curves();
        self.fit(&mine, other.as_ref(), branch.as_ref(), 5).scale == Scale::Log
    }

    fn fit(
        &self,
        mine: &Curves,
        other: Option<&Curves>,
        branch: Option<&BranchCurves>,
        max_ticks: usize,
    ) -> Range {
        let mut fit = FitInput::default();
        for c in std::iter::once(mine).chain(other) {
            fit.curves.push(&c.smooth);
            fit.points.extend(c.val.iter().map(|p| p.1));
        }
        if let Some(b) = branch {
            fit.curves.push(&b.smooth);
            fit.points
                .extend(b.val.iter().chain(&b.main_val).map(|p| p.1));
        }
        match self.metric {
            Metric::Loss => fit_loss(&fit, self.log, max_ticks),
            Metric::Accuracy => fit_accuracy(&fit, self.full, max_ticks),
        }
    }

    /// The latest what-if branch's loss, on the loss chart over steps, within the window.
    fn branch_curves(&self) -> Option<BranchCurves> {
        let b = self.run.branch.as_ref()?;
        if self.metric != Metric::Loss || self.axis != TimeAxis::Steps {
            return None;
        }
        let fork = b.forked_at as f64;
        let from = self
            .window
            .map(|w| self.run.step.saturating_sub(w) as f64)
            .unwrap_or(0.0);
        let smooth = (self.run.branch_curve(self.span)?)
            .into_iter()
            .filter(|p| p.0 >= from)
            .collect();
        let at = |v: f64| b.verdict.as_ref().map(|d| vec![(fork + d.steps as f64, v)]);
        let verdict = b.verdict.as_ref();
        Some(BranchCurves {
            smooth,
            val: verdict
                .and_then(|v| at(v.branch_val_loss))
                .unwrap_or_default(),
            main_val: verdict
                .and_then(|v| at(v.main_val_loss))
                .unwrap_or_default(),
            label: crate::protocol::Setting::describe_change(&b.change),
        })
    }

    /// Train per step (raw and smoothed) and validation per epoch, on steps; or both per epoch.
    fn curves(&self, run: &RunState) -> Curves {
        let metric = self.metric;
        let pct = |x: f64| {
            if metric == Metric::Accuracy {
                100.0 * x
            } else {
                x
            }
        };
        let get = |e: &EpochMetrics, val: bool| match (metric, val) {
            (Metric::Loss, false) => e.train_loss,
            (Metric::Loss, true) => e.val_loss,
            (Metric::Accuracy, false) => e.train_accuracy,
            (Metric::Accuracy, true) => e.val_accuracy,
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
                let raw: Points = series.points().iter().map(|&(x, y)| (x, pct(y))).collect();
                // Smoothed over the whole run, then cut to the window.
                let smooth = ema(&raw, self.span)
                    .into_iter()
                    .filter(|p| p.0 >= from)
                    .collect();
                let val = run
                    .epochs
                    .iter()
                    .filter(|e| e.step as f64 >= from)
                    .map(|e| (e.step as f64, pct(get(e, true))))
                    .collect();
                Curves {
                    raw: raw.into_iter().filter(|p| p.0 >= from).collect(),
                    smooth,
                    val,
                }
            }
            TimeAxis::Epochs => {
                let per_epoch = |val: bool| {
                    run.epochs
                        .iter()
                        .map(|e| (e.epoch as f64, pct(get(e, val))))
                        .collect()
                };
                Curves {
                    raw: Vec::new(),
                    smooth: per_epoch(false),
                    val: per_epoch(true),
                }
            }
        }
    }
}

/// The learning rate per step on a log scale, the user's changes marked.
pub struct LrChart<'a> {
    pub run: &'a RunState,
    /// Another run, drawn underneath.
    pub other: Option<&'a Comparison>,
    pub marker: Marker,
    pub focused: bool,
    pub theme: Theme,
}

impl Widget for LrChart<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (run, theme) = (self.run, self.theme);
        let schedule = run
            .schedule
            .as_ref()
            .map(|s| format!(" {}", s.spec.describe()))
            .unwrap_or_default();
        let mut title = format!(
            " Learning rate {}{schedule}  ▲ your changes ({}) ",
            sci(run.lr),
            run.lr_marks.len()
        );
        if title.chars().count() + 2 > area.width as usize {
            title = format!(" LR {}{schedule}  ▲ {} ", sci(run.lr), run.lr_marks.len());
        }
        let trace = run.lr_trace.points();
        let other = self.other.map(|o| o.run.lr_trace.points());
        let marks: Vec<(f64, f64)> = run.lr_marks.iter().map(|&(s, lr)| (s as f64, lr)).collect();
        // What the schedule will do, one point per half cell.
        let plan: Vec<(f64, f64)> = run
            .plan(2 * area.width as usize)
            .into_iter()
            .map(|(s, lr)| (s as f64, lr))
            .collect();
        let other_steps = self
            .other
            .map_or(0, |o| o.run.total_steps().max(o.run.step));
        let x = (
            0.0,
            run.total_steps().max(run.step).max(other_steps).max(1) as f64,
        );
        let (lo, hi) = positive_bounds(
            trace
                .iter()
                .chain(&marks)
                .chain(&plan)
                .chain(other.iter().flatten()),
            (1e-4, 1e-2),
        );
        let range = fit_decades(lo, hi, max_ticks(area));
        let mut datasets = Vec::new();
        if let Some(o) = &other {
            datasets.push(Mark::Line(o, Theme::OTHER));
        }
        datasets.extend([
            Mark::Dots(&plan, Theme::RAW),
            Mark::Line(&trace, Theme::LR),
            Mark::Glyph(
                marks.clone(),
                "▲",
                theme.fg(Theme::MARK).add_modifier(Modifier::BOLD),
            ),
        ]);
        let mut bottom = vec![Span::styled(" step  log ", theme.dim())];
        if let Some(o) = self.other {
            bottom.push(Span::styled(
                format!(" {} ", o.name),
                theme.fg(Theme::OTHER),
            ));
        }
        Plot {
            block: block(title, &theme, self.focused).title_bottom(Line::from(bottom)),
            x,
            y: &range,
            percent: false,
            marks: datasets,
            marker: self.marker,
            theme,
        }
        .render(area, buf);
    }
}

/// Ticks for a chart in `area`: at least two rows apart in its plot (the frame and the x labels
/// take three rows).
fn max_ticks(area: Rect) -> usize {
    (area.height.saturating_sub(4) as usize / 2 + 1).clamp(2, 12)
}
