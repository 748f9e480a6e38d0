//! The two LR tools over the panels: the schedule editor with the plan it would give, and the
//! LR finder's curve with its suggestion.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Chart, Gauge, Paragraph, Widget, Wrap};

use super::{axis, block, bounds, centred, line, points};
use crate::format::sci;
use crate::protocol::LrFinding;
use crate::tui::editor::ScheduleEditor;
use crate::tui::theme::Theme;
use crate::watch::RunState;

fn log_points(pts: impl IntoIterator<Item = (u64, f64)>) -> Vec<(f64, f64)> {
    pts.into_iter()
        .map(|(s, lr)| (s as f64, lr.max(1e-12).log10()))
        .collect()
}

pub struct EditorView<'a> {
    pub editor: &'a ScheduleEditor,
    pub run: &'a RunState,
    pub theme: Theme,
}

impl Widget for EditorView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (ed, run, theme) = (self.editor, self.run, &self.theme);
        let outer = block(" Schedule ".into(), theme, true);
        let popup = centred(area, 86, 26, buf);
        let inner = outer.inner(popup);
        outer.render(popup, buf);
        let rows = (ed.fields.len() + ed.ends.len()) as u16 + 5;
        let [form, chart] =
            Layout::vertical([Constraint::Length(rows), Constraint::Fill(1)]).areas(inner);
        let preview = ed.preview(run);
        let mut lines = vec![Line::from(vec![
            Span::styled(" ◀ ", theme.dim()),
            Span::styled(
                ed.kind_name(),
                theme.title().add_modifier(Modifier::REVERSED),
            ),
            Span::styled(" ▶ ", theme.dim()),
            Span::styled(
                " ←/→ kind  ↑/↓ field  type a value  Enter apply  Esc cancel",
                theme.dim(),
            ),
        ])];
        let ends_at = ed.fields.len();
        for (i, f) in ed.fields.iter().chain(&ed.ends).enumerate() {
            if i == ends_at {
                lines.push(Line::styled(" how the run may end early:", theme.dim()));
            }
            let focused = i == ed.focus;
            let value = if focused {
                format!("{}█", f.value)
            } else {
                f.value.clone()
            };
            let key_style = if focused {
                theme.title().add_modifier(Modifier::REVERSED)
            } else {
                theme.title()
            };
            lines.push(Line::from(vec![
                Span::raw("  "),
                Span::styled(format!("{:<11}", f.key), key_style),
                Span::raw(format!(" {value:<14} ")),
                Span::styled(f.hint, theme.dim()),
            ]));
        }
        lines.push(Line::from(vec![
            Span::styled("  spec ", theme.dim()),
            Span::raw(ed.spec(run).unwrap_or_else(|_| ed.spec_text())),
        ]));
        lines.push(match (&ed.error, &preview) {
            (Some(e), _) | (None, Err(e)) => Line::styled(format!("  {e}"), theme.alarm()),
            (None, Ok(s)) => Line::styled(
                format!(
                    "  from step {}: lr {} -> {} at step {}",
                    run.step + 1,
                    sci(s.lr_at(run.step + 1)),
                    sci(s.lr_at(s.total_steps)),
                    s.total_steps
                ),
                theme.dim(),
            ),
        });
        Paragraph::new(lines).render(form, buf);
        // The plan: the LR so far, the schedule in force (dots), this one (line).
        let width = 2 * chart.width as usize;
        let past = log_points(
            run.lr_trace
                .points()
                .into_iter()
                .map(|(x, y)| (x as u64, y)),
        );
        let now = log_points(run.plan(width));
        let next = preview
            .as_ref()
            .map(|s| log_points(s.plan(run.step + 1, width)))
            .unwrap_or_default();
        let (lo, hi) = bounds(past.iter().chain(&now).chain(&next).map(|p| p.1));
        let (y0, y1) = ((lo - 0.25).floor(), (hi + 0.25).ceil());
        let x1 = run.total_steps().max(run.step).max(1) as f64;
        Chart::new(vec![
            line(&past, Marker::Braille, theme.dim()),
            points(&now, Marker::Dot, theme.dim()),
            line(
                &next,
                Marker::Braille,
                theme.fg(Theme::LR).add_modifier(Modifier::BOLD),
            ),
        ])
        .block(block(
            " plan: so far, now (dots), this schedule (line) ".into(),
            theme,
            false,
        ))
        .x_axis(axis(0.0, x1, ["0".into(), format!("{x1:.0}")], theme))
        .y_axis(axis(
            y0,
            y1,
            [format!("1e{y0:.0}"), format!("1e{y1:.0}")],
            theme,
        ))
        .render(chart, buf);
    }
}

pub struct FinderView<'a> {
    pub run: &'a RunState,
    pub pick: Option<usize>,
    pub theme: Theme,
}

impl Widget for FinderView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (run, theme) = (self.run, &self.theme);
        let outer = block(" LR finder ".into(), theme, true);
        let Some(finder) = &run.lr_finder else {
            return;
        };
        let sweeping = finder.finding.is_none();
        let popup = centred(area, 86, if sweeping { 6 } else { 24 }, buf);
        let inner = outer.inner(popup);
        outer.render(popup, buf);
        let Some(f) = &finder.finding else {
            // Under way.
            let [text, gauge, _] = Layout::vertical([
                Constraint::Length(2),
                Constraint::Length(1),
                Constraint::Fill(1),
            ])
            .areas(inner);
            Paragraph::new(
                "Sweeping the LR from 1e-7 to 10 on a copy of the model and optimizer; the run waits, untouched.",
            )
            .wrap(Wrap { trim: true })
            .render(text, buf);
            let ratio = if finder.total > 0 {
                finder.done as f64 / finder.total as f64
            } else {
                0.0
            };
            Gauge::default()
                .ratio(ratio.clamp(0.0, 1.0))
                .label(format!("{}/{} steps", finder.done, finder.total))
                .gauge_style(theme.fg(Theme::LR))
                .render(gauge, buf);
            return;
        };
        let n = f.points.len();
        let pick = self.pick.or(f.first_pick());
        let [chart, text] =
            Layout::vertical([Constraint::Fill(1), Constraint::Length(6)]).areas(inner);
        FinderChart {
            finding: f,
            pick,
            theme: *theme,
        }
        .render(chart, buf);
        let mut lines = vec![match f.suggestion {
            Some(i) => Line::from(vec![
                Span::styled(
                    "suggested ",
                    theme.fg(Theme::VAL).add_modifier(Modifier::BOLD),
                ),
                Span::raw(format!("{}: {}", sci(f.points[i].lr), f.how)),
            ]),
            None => Line::styled(format!("no suggestion: {}", f.how), theme.alarm()),
        }];
        if let Some(p) = pick.filter(|&p| p < n) {
            let pt = f.points[p];
            lines.push(Line::from(vec![
                Span::styled(
                    "picked ",
                    theme.fg(Theme::MARK).add_modifier(Modifier::BOLD),
                ),
                Span::raw(format!(
                    "{}: loss {:.4}, smoothed {:.4}",
                    sci(pt.lr),
                    pt.loss,
                    pt.smoothed
                )),
            ]));
        }
        if let Some(why) = &f.stopped {
            lines.push(Line::styled(format!("ended early: {why}"), theme.dim()));
        }
        lines.push(Line::styled(
            "←/→ pick  Enter use this LR  Esc discard",
            theme.dim(),
        ));
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .render(text, buf);
    }
}

/// The LR finder's curve: the smoothed loss (line) and the loss (dots) against the LR on a log
/// scale, the suggestion and the picked point marked.
pub struct FinderChart<'a> {
    pub finding: &'a LrFinding,
    pub pick: Option<usize>,
    pub theme: Theme,
}

impl Widget for FinderChart<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (f, theme, pick) = (self.finding, &self.theme, self.pick);
        let n = f.points.len();
        let xy = |i: usize, raw: bool| {
            let p = f.points[i];
            (p.lr.log10(), if raw { p.loss } else { p.smoothed })
        };
        let smoothed: Vec<(f64, f64)> = (0..n)
            .map(|i| xy(i, false))
            .filter(|p| p.1.is_finite())
            .collect();
        let raw: Vec<(f64, f64)> = (0..n)
            .map(|i| xy(i, true))
            .filter(|p| p.1.is_finite())
            .collect();
        let suggested: Vec<(f64, f64)> = f.suggestion.map(|i| xy(i, false)).into_iter().collect();
        let picked: Vec<(f64, f64)> = pick
            .filter(|&p| p < n)
            .map(|i| xy(i, false))
            .into_iter()
            .collect();
        // The loss axis from the lowest smoothed value to a little above where it started, so
        // that a diverging end does not flatten the rest.
        let (lo, hi) = bounds(smoothed.iter().map(|p| p.1));
        let start = smoothed.first().map_or(hi, |p| p.1);
        let (y0, y1) = (
            lo - 0.05 * (start - lo).abs(),
            hi.min(start * 1.5).max(lo + 1e-6),
        );
        // Whole decades (a hair of rounding aside); `+ 0.0` turns a -0 into 0 for the label.
        let (x0, x1) = (
            (f.points.first().map_or(-7.0, |p| p.lr.log10()) + 1e-9).floor() + 0.0,
            (f.points.last().map_or(1.0, |p| p.lr.log10()) - 1e-9).ceil() + 0.0,
        );
        Chart::new(vec![
            points(&raw, Marker::Dot, theme.dim()),
            line(&smoothed, Marker::Braille, theme.fg(Theme::TRAIN)),
            points(
                &suggested,
                Marker::Block,
                theme.fg(Theme::VAL).add_modifier(Modifier::BOLD),
            ),
            points(
                &picked,
                Marker::Block,
                theme.fg(Theme::MARK).add_modifier(Modifier::BOLD),
            ),
        ])
        .block(block(
            " smoothed loss (line), loss (dots) against the LR; suggested, picked ".into(),
            theme,
            false,
        ))
        .x_axis(
            axis(x0, x1, [format!("1e{x0:.0}"), format!("1e{x1:.0}")], theme)
                .title(Span::styled("lr", theme.dim())),
        )
        .y_axis(axis(
            y0,
            y1,
            [format!("{y0:.2}"), format!("{y1:.2}")],
            theme,
        ))
        .render(area, buf);
    }
}
