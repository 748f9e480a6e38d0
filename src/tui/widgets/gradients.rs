//! The gradient table: per parameter, the gradient's L2 norm as a bar on a log scale fitted to
//! the run's norms (so layers differ visibly), its history as a heat strip (one column per
//! stretch of steps, the shade its log norm on the same scale), the update/weight ratio, and the
//! dead and saturated shares; vanishing and exploding gradients, absolute thresholds, in red.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::block;
use crate::format::sci;
use crate::tui::theme::Theme;
use crate::watch::RunState;

/// A gradient norm below this is vanishing; above `EXPLODING` it is exploding.
pub const VANISHING: f64 = 1e-6;
pub const EXPLODING: f64 = 1e2;

/// `1e-3` for -3: a decade's label.
fn pow10(decade: f64) -> String {
    format!("1e{}", decade.round() as i32)
}

/// The shades of the history strip, lowest first: one per quarter of the scale's span.
const SHADES: [&str; 5] = ["·", "░", "▒", "▓", "█"];
/// Their colours (red is kept for the alarms).
const HEAT: [Color; 5] = [
    Color::DarkGray,
    Color::LightBlue,
    Color::Cyan,
    Color::Green,
    Color::Yellow,
];

/// A log scale for `norms`: whole decades around those that are neither vanishing nor
/// exploding (those have their own absolute marks), at least one decade wide. The bars fit the
/// current norms; the history strip fits all it shows.
pub fn decades(norms: impl Iterator<Item = f64>) -> (f64, f64) {
    let ok = |g: &f64| (VANISHING..=EXPLODING).contains(g) && *g > 0.0;
    let logs = norms.filter(ok).map(f64::log10);
    let (lo, hi) = logs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        return (-8.0, 2.0);
    }
    let (lo, hi) = (lo.floor(), hi.ceil());
    (lo, if hi > lo { hi } else { lo + 1.0 })
}

/// `norms` (x = step) in `width` columns over steps 0..=`last`: the mean log10 norm of each
/// column's steps, carried on over columns without one, `None` before the first.
pub fn strip(norms: &[(f64, f64)], last: f64, width: usize) -> Vec<Option<f64>> {
    let mut sums = vec![(0.0, 0usize); width];
    for &(x, g) in norms {
        if g > 0.0 && width > 0 && last > 0.0 {
            let i = ((x / last * width as f64).ceil() as usize).clamp(1, width) - 1;
            sums[i].0 += g.log10();
            sums[i].1 += 1;
        }
    }
    let mut carry = None;
    sums.into_iter()
        .map(|(s, n)| {
            if n > 0 {
                carry = Some(s / n as f64);
            }
            carry
        })
        .collect()
}

/// A parameter's name in `width` characters: `.weight`/`.bias` shortened first, then the
/// middle elided.
fn short_name(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        return name.to_string();
    }
    let short = name
        .strip_suffix(".weight")
        .map(|s| format!("{s}.w"))
        .or_else(|| name.strip_suffix(".bias").map(|s| format!("{s}.b")))
        .unwrap_or_else(|| name.to_string());
    let n = short.chars().count();
    if n <= width {
        return short;
    }
    let keep = width.saturating_sub(1);
    let head: String = short.chars().take(keep / 2).collect();
    let tail: String = short.chars().skip(n - (keep - keep / 2)).collect();
    format!("{head}…{tail}")
}

pub struct GradientTable<'a> {
    pub run: &'a RunState,
    /// Rows scrolled past.
    pub scroll: usize,
    pub focused: bool,
    pub theme: Theme,
}

/// Columns of the table on a panel `w` cells wide.
struct Columns {
    name: usize,
    bar: usize,
    strip: usize,
    ratio: bool,
    act: bool,
}

impl Columns {
    fn fit(w: usize, longest: usize, activations: bool) -> Columns {
        let name = longest.min(if w >= 80 { 20 } else { 14 }).min(w / 3).max(4);
        let ratio = w >= 52;
        let act = activations && w >= 62;
        let rest =
            w.saturating_sub(name + 1 + 9 + if ratio { 9 } else { 0 } + if act { 10 } else { 0 });
        // The bar keeps room for "vanishing" where it can.
        let (bar, strip) = if rest >= 24 {
            (10, rest - 11)
        } else if rest >= 18 {
            (9, rest - 10)
        } else if rest >= 14 {
            (5, rest - 6)
        } else {
            (rest.max(1), 0)
        };
        Columns {
            name,
            bar,
            strip,
            ratio,
            act,
        }
    }
}

/// The log scales in decades: the bars' (current norms) and the history strip's.
#[derive(Clone, Copy)]
struct Scales {
    bar: (f64, f64),
    strip: (f64, f64),
}

impl Widget for GradientTable<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (run, theme) = (self.run, &self.theme);
        let names: Vec<String> = run
            .info
            .as_ref()
            .map(|i| i.layers.clone())
            .unwrap_or_default();
        let w = area.width.saturating_sub(2) as usize;
        let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(8);
        let cols = Columns::fit(w, longest, run.activations.is_some());
        let histories: Vec<Vec<(f64, f64)>> = run.grad_trends.iter().map(|t| t.points()).collect();
        let scales = Scales {
            bar: decades(run.grad_norms.iter().copied()),
            strip: decades(histories.iter().flatten().map(|p| p.1)),
        };
        let n = run.grad_norms.len();
        let rows = area.height.saturating_sub(2) as usize;
        let start = self.scroll.min(n.saturating_sub(rows.max(1)));
        let title = title(&cols, scales, (start, rows, n), area.width as usize);
        let outer = block(title, theme, self.focused);
        let inner = outer.inner(area);
        outer.render(area, buf);
        if run.grad_norms.is_empty() {
            Paragraph::new(Line::styled("waiting for the first step...", theme.dim()))
                .render(inner, buf);
            return;
        }
        let mut lines = Vec::new();
        for (i, &g) in run.grad_norms.iter().enumerate().skip(start).take(rows) {
            let name = names.get(i).cloned();
            let name = name.unwrap_or_else(|| format!("param {i}"));
            let history = histories.get(i).map(Vec::as_slice).unwrap_or_default();
            let row = Row {
                run,
                theme,
                cols: &cols,
                scales,
            };
            lines.push(row.line(i, &name, g, history));
        }
        // Spare rows under the layers: the scales of the bar and the strip, then a legend.
        let spare = rows.saturating_sub(n);
        if spare >= 1 {
            lines.push(axes(run.step, &cols, scales, theme));
        }
        if spare >= 2 && cols.strip > 0 {
            lines.push(legend(scales, theme));
        }
        Paragraph::new(lines).render(inner, buf);
    }
}

/// The title names the columns, as many as fit in `width`, after which rows are shown when not
/// all `n` fit in `rows` (scroll with the panel focused).
fn title(
    cols: &Columns,
    scales: Scales,
    (start, rows, n): (usize, usize, usize),
    width: usize,
) -> String {
    let mut title = " Gradients ".to_string();
    if n > rows {
        title.push_str(&format!(" {}-{}/{n} ↑↓ ", start + 1, (start + rows).min(n)));
    }
    let (lo, hi) = scales.bar;
    let mut parts = vec![format!(" norm log {}..{} ", pow10(lo), pow10(hi))];
    if cols.strip > 0 {
        let (hlo, hhi) = scales.strip;
        parts.push(format!(" history {}..{} ", pow10(hlo), pow10(hhi)));
    }
    if cols.ratio {
        parts.push(" upd/w ".into());
    }
    if cols.act {
        parts.push(" dead sat ".into());
    }
    for p in parts {
        if title.chars().count() + p.chars().count() + 2 <= width {
            title.push_str(&p);
        }
    }
    title
}

/// What a parameter's row is drawn with.
struct Row<'a> {
    run: &'a RunState,
    theme: &'a Theme,
    cols: &'a Columns,
    scales: Scales,
}

impl Row<'_> {
    /// Parameter `i`, named `name`, with gradient norm `g` and its `history`.
    fn line(&self, i: usize, name: &str, g: f64, history: &[(f64, f64)]) -> Line<'static> {
        let (cols, theme) = (self.cols, self.theme);
        let nw = cols.name;
        let mut spans = vec![Span::raw(format!("{:<nw$} ", short_name(name, nw)))];
        let alarm = if g < VANISHING {
            Some("vanishing")
        } else if g > EXPLODING {
            Some("exploding")
        } else {
            None
        };
        let bw = cols.bar;
        match alarm {
            // The bar's place says what is wrong, in the alarm style.
            Some(tag) => spans.push(Span::styled(format!("{tag:<bw$.bw$}"), theme.alarm())),
            None => {
                let (lo, hi) = self.scales.bar;
                let frac = ((g.log10() - lo) / (hi - lo)).clamp(0.0, 1.0);
                let filled = ((frac * bw as f64).round() as usize).clamp(1, bw);
                spans.push(Span::styled("█".repeat(filled), theme.fg(Color::Green)));
                spans.push(Span::styled("·".repeat(bw - filled), theme.dim()));
            }
        }
        let style = if alarm.is_some() {
            theme.alarm()
        } else {
            Style::new()
        };
        spans.push(Span::styled(format!(" {:>8}", sci(g)), style));
        if cols.strip > 0 {
            spans.push(Span::raw(" "));
            for v in strip(history, self.run.step as f64, cols.strip) {
                spans.push(match v {
                    Some(v) => self.shade(v),
                    None => Span::raw(" "),
                });
            }
        }
        if cols.ratio {
            let ratio = self.run.update_ratios.get(i).copied().unwrap_or(0.0);
            spans.push(Span::raw(format!(" {:>8}", sci(ratio))));
        }
        if cols.act {
            spans.extend(activation_cells(self.run, name, theme));
        }
        Line::from(spans)
    }

    /// A history cell: the shade of log norm `v` on the strip's scale, the alarm beyond it.
    fn shade(&self, v: f64) -> Span<'static> {
        let g = 10f64.powf(v);
        if !(VANISHING..=EXPLODING).contains(&g) {
            return Span::styled("█", self.theme.alarm());
        }
        let (hlo, hhi) = self.scales.strip;
        let level = (((v - hlo) / (hhi - hlo)).clamp(0.0, 1.0) * 4.0).round() as usize;
        Span::styled(SHADES[level], self.theme.fg(HEAT[level]))
    }
}

/// Under the bars their ends; under the strip its steps.
fn axes(step: u64, cols: &Columns, scales: Scales, theme: &Theme) -> Line<'static> {
    let dim = theme.dim();
    let (a, b) = (pow10(scales.bar.0), pow10(scales.bar.1));
    let bw = cols.bar;
    let bar_axis = if bw > a.len() + b.len() {
        format!("{a}{:>w$}", b, w = bw - a.len())
    } else {
        " ".repeat(bw)
    };
    let mut spans = vec![
        Span::styled(format!("{:<w$} ", "", w = cols.name), dim),
        Span::styled(bar_axis, dim),
        Span::raw(" ".repeat(9)),
    ];
    if cols.strip > 0 {
        let end = format!("step {step}");
        let sw = cols.strip;
        spans.push(Span::styled(
            format!(" 0{end:>w$}", w = sw.saturating_sub(1)),
            dim,
        ));
    }
    Line::from(spans)
}

/// The history strip's shades with their decades, and the alarm's.
fn legend(scales: Scales, theme: &Theme) -> Line<'static> {
    let (hlo, hhi) = scales.strip;
    let mut spans = vec![Span::styled("history: ", theme.dim())];
    for (i, s) in SHADES.iter().enumerate() {
        spans.push(Span::styled(*s, theme.fg(HEAT[i])));
        if i == 0 {
            spans.push(Span::styled(format!(" {} ", pow10(hlo)), theme.dim()));
        }
    }
    spans.push(Span::styled(format!(" {}   ", pow10(hhi)), theme.dim()));
    spans.push(Span::styled("█", theme.alarm()));
    spans.push(Span::styled(
        format!(
            " < {} or > {}",
            pow10(VANISHING.log10()),
            pow10(EXPLODING.log10())
        ),
        theme.dim(),
    ));
    Line::from(spans)
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
