//! The gradient table: per parameter, the gradient's L2 norm as a bar on a log scale, its
//! recent trend, and the update/weight ratio; vanishing and exploding gradients named in red.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::{block, bounds};
use crate::format::sci;
use crate::tui::theme::Theme;
use crate::watch::RunState;

/// A gradient norm below this is vanishing; above `EXPLODING` it is exploding.
pub const VANISHING: f64 = 1e-6;
pub const EXPLODING: f64 = 1e2;

const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A sparkline of `ys` on a log scale, `width` characters, newest on the right.
fn spark_log(ys: &[(f64, f64)], width: usize) -> String {
    let vals: Vec<f64> = ys
        .iter()
        .rev()
        .take(width)
        .rev()
        .map(|p| p.1.max(1e-12).log10())
        .collect();
    let (lo, hi) = bounds(vals.iter().copied());
    let mut s: String = vals
        .iter()
        .map(|v| SPARKS[(((v - lo) / (hi - lo)) * 7.0).round().clamp(0.0, 7.0) as usize])
        .collect();
    while s.chars().count() < width {
        s.insert(0, ' ');
    }
    s
}

pub struct GradientTable<'a> {
    pub run: &'a RunState,
    /// Rows scrolled past.
    pub scroll: usize,
    pub focused: bool,
    pub theme: Theme,
}

impl Widget for GradientTable<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (run, theme) = (self.run, &self.theme);
        // Dead and saturated shares of each layer's units, once measured, when there is room.
        let act_w = if run.activations.is_some() && area.width >= 60 {
            10
        } else {
            0
        };
        let title = match (area.width >= 60, act_w > 0) {
            (true, true) => " Gradients  L2 norm (log)  trend  update/weight  dead sat ",
            (true, false) => " Gradients  L2 norm (log scale 1e-8..1e2)  trend  update/weight ",
            _ => " Gradients  L2 norm (log)  update/weight ",
        }
        .to_string();
        let outer = block(title, theme, self.focused);
        let inner = outer.inner(area);
        outer.render(area, buf);
        let names: Vec<String> = run
            .info
            .as_ref()
            .map(|i| i.layers.clone())
            .unwrap_or_default();
        if run.grad_norms.is_empty() {
            Paragraph::new(Line::styled("waiting for the first step...", theme.dim()))
                .render(inner, buf);
            return;
        }
        let w = inner.width as usize;
        // Columns: name, log-scale bar, norm, trend (when there is room), update/weight ratio.
        let name_w = names
            .iter()
            .map(|n| n.len())
            .max()
            .unwrap_or(8)
            .min(w.saturating_sub(26))
            .max(4);
        let rest = w.saturating_sub(name_w + 1 + 9 + 9 + act_w);
        let spark_w = if rest >= 8 + 13 {
            12
        } else if rest >= 8 + 7 {
            6
        } else {
            0
        };
        let bar_w = rest
            .saturating_sub(if spark_w > 0 { spark_w + 1 } else { 0 })
            .max(1);
        let rows = inner.height as usize;
        let start = self
            .scroll
            .min(run.grad_norms.len().saturating_sub(rows.max(1)));
        let mut lines = Vec::new();
        for (i, &g) in run.grad_norms.iter().enumerate().skip(start).take(rows) {
            let name = names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("param {i}"));
            let ratio = run.update_ratios.get(i).copied().unwrap_or(0.0);
            let mut spans = vec![Span::raw(format!("{name:<name_w$.name_w$} "))];
            let alarm = if g < VANISHING {
                Some("vanishing")
            } else if g > EXPLODING {
                Some("exploding")
            } else {
                None
            };
            match alarm {
                // The bar's place says what is wrong, in the alarm style.
                Some(tag) => {
                    spans.push(Span::styled(format!("{tag:<bar_w$.bar_w$}"), theme.alarm()))
                }
                None => {
                    // Log scale from 1e-8 to 1e2.
                    let frac = ((g.max(1e-12).log10() + 8.0) / 10.0).clamp(0.0, 1.0);
                    let filled = ((frac * bar_w as f64).round() as usize).min(bar_w);
                    spans.push(Span::styled(
                        "█".repeat(filled),
                        theme.fg(ratatui::style::Color::Green),
                    ));
                    spans.push(Span::styled("·".repeat(bar_w - filled), theme.dim()));
                }
            }
            spans.push(Span::styled(
                format!(" {:>8}", sci(g)),
                if alarm.is_some() {
                    theme.alarm()
                } else {
                    Style::new()
                },
            ));
            if spark_w > 0 {
                let trend = run
                    .grad_trends
                    .get(i)
                    .map(|t| spark_log(&t.points(), spark_w))
                    .unwrap_or_default();
                spans.push(Span::styled(
                    format!(" {trend}"),
                    theme.fg(ratatui::style::Color::Green),
                ));
            }
            spans.push(Span::raw(format!(" {:>8}", sci(ratio))));
            if act_w > 0 {
                spans.extend(activation_cells(run, &name, theme));
            }
            lines.push(Line::from(spans));
        }
        Paragraph::new(lines).render(inner, buf);
    }
}

/// The dead and saturated shares of the layer a weight belongs to: "  12%   0%", a dash where
/// the activation has no such zone, blank for parameters without activations.
fn activation_cells(run: &RunState, param: &str, theme: &Theme) -> Vec<Span<'static>> {
    let Some(a) = run.activations_of(param) else {
        return vec![Span::raw(" ".repeat(10))];
    };
    let cell = |share: Option<f64>| {
        let text = share.map_or("-".to_string(), |v| format!("{:.0}%", 100.0 * v));
        // Over half is what the doctor's rules call a problem.
        let style = if share.is_some_and(|v| v > 0.5) {
            theme.alarm()
        } else {
            Style::new()
        };
        Span::styled(format!(" {text:>4}"), style)
    };
    vec![cell(a.dead), cell(a.saturated.map(|s| s.max(a.outside_5)))]
}
