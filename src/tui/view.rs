//! Drawing: a pure function of the `App` state.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Chart, Clear, Dataset, GraphType, Paragraph, Widget, Wrap,
};

use super::app::{App, Overlay, Panel, TimeAxis};
use super::theme::Theme;
use crate::headless::clock;
use crate::run_state::Status;

/// Below this size the panels cannot show their numbers: one line says so instead.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 18;

/// A gradient norm below this is vanishing; above `EXPLODING` it is exploding.
pub const VANISHING: f64 = 1e-6;
pub const EXPLODING: f64 = 1e2;

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let theme = Theme {
            color: self.options.color,
        };
        if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
            let msg = format!(
                "terminal too small: {}x{}, candletop needs {MIN_WIDTH}x{MIN_HEIGHT}",
                area.width, area.height
            );
            Paragraph::new(msg)
                .wrap(Wrap { trim: true })
                .render(area, buf);
            return;
        }
        let [header, body, footer] = Layout::vertical([
            Constraint::Length(header_height(area)),
            Constraint::Fill(1),
            Constraint::Length(1),
        ])
        .areas(area);
        render_header(self, &theme, header, buf);
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(42), Constraint::Fill(1)]).areas(body);
        let [loss, acc] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Fill(1)]).areas(top);
        let grads_share = if area.width < 100 { 60 } else { 55 };
        let [grads, right] =
            Layout::horizontal([Constraint::Percentage(grads_share), Constraint::Fill(1)])
                .areas(bottom);
        let [lr, events] =
            Layout::vertical([Constraint::Percentage(50), Constraint::Fill(1)]).areas(right);
        render_metric_chart(self, &theme, Metric::Loss, loss, buf);
        render_metric_chart(self, &theme, Metric::Accuracy, acc, buf);
        render_gradients(self, &theme, grads, buf);
        render_lr(self, &theme, lr, buf);
        render_events(self, &theme, events, buf);
        render_footer(self, &theme, footer, buf);
        match &self.overlay {
            Overlay::None => {}
            Overlay::Help => render_help(&theme, area, buf),
            Overlay::ConfirmQuit => render_popup(
                &theme,
                "Quit",
                vec![
                    Line::from("Stop training and quit?"),
                    Line::from(""),
                    Line::from("y: stop and quit   any other key: go on"),
                ],
                area,
                buf,
            ),
            Overlay::LrPrompt { input, error } => {
                let mut lines = vec![
                    Line::from(format!("current: {:.3e}", self.run.lr)),
                    Line::from(vec![
                        Span::styled("new lr: ", theme.title()),
                        Span::raw(input.clone()),
                        Span::styled("█", theme.dim()),
                    ]),
                ];
                lines.push(match error {
                    Some(e) => Line::styled(e.clone(), theme.alarm()),
                    None => Line::styled("Enter: apply   Esc: cancel", theme.dim()),
                });
                render_popup(&theme, "Learning rate", lines, area, buf);
            }
        }
    }
}

fn block<'a>(title: String, theme: &Theme, focused: bool) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(focused))
        .title(Span::styled(title, theme.title()))
}

/// `1.23e-3` style for learning rates and norms.
fn sci(x: f64) -> String {
    format!("{x:.2e}")
}

fn render_header(app: &App, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let run = &app.run;
    let status = if app.quitting && run.status.is_live() {
        "STOPPING"
    } else {
        run.status.label()
    };
    let (epochs, total) = run
        .info
        .as_ref()
        .map(|i| (i.epochs, run.total_steps()))
        .unwrap_or((0, 0));
    let eta = match (&run.status, run.eta_secs()) {
        (Status::Paused, _) => "paused".to_string(),
        (_, Some(s)) => clock(s),
        _ => "-".to_string(),
    };
    let line1 = Line::from(vec![
        Span::styled(format!(" {status} "), theme.status(&run.status)),
        Span::raw(format!(
            "  epoch {}/{}  step {}/{}  {:.0} img/s  ETA {}  lr {}",
            run.epoch,
            epochs,
            run.step,
            total,
            run.images_per_sec,
            eta,
            sci(run.lr)
        )),
    ]);
    Paragraph::new(header_lines(app, theme, area.height as usize - 2, line1))
        .block(block(" candletop ".into(), theme, false))
        .render(area, buf);
}

/// The header's lines: state and progress, data, model and optimizer, and any error; merged
/// when fewer rows are available.
fn header_lines<'a>(app: &App, theme: &Theme, rows: usize, first: Line<'a>) -> Vec<Line<'a>> {
    let run = &app.run;
    let mut lines = vec![first];
    match &run.info {
        Some(i) => {
            let data = vec![
                Span::styled("data ", theme.dim()),
                Span::raw(i.data.clone()),
            ];
            let model = vec![
                Span::styled("model ", theme.dim()),
                Span::raw(i.model.clone()),
                Span::styled("  opt ", theme.dim()),
                Span::raw(i.optimizer.clone()),
            ];
            if rows >= 3 {
                lines.push(Line::from(data));
                lines.push(Line::from(model));
            } else {
                lines.push(Line::from([model, vec![Span::raw("  ")], data].concat()));
            }
        }
        None => lines.push(Line::styled("waiting for the trainer...", theme.dim())),
    }
    if let Status::Error(m) = &run.status {
        // The error matters more than the model description.
        let at = lines.len().min(rows.max(1)) - 1;
        lines.truncate(at.max(1));
        lines.push(Line::styled(format!("error: {m}"), theme.alarm()));
    }
    lines
}

/// Rows of the header block: borders plus up to three lines, two on small screens.
pub fn header_height(area: Rect) -> u16 {
    if area.height >= 30 {
        5
    } else {
        4
    }
}

type Points = Vec<(f64, f64)>;

#[derive(Clone, Copy, PartialEq)]
enum Metric {
    Loss,
    Accuracy,
}

fn render_metric_chart(app: &App, theme: &Theme, metric: Metric, area: Rect, buf: &mut Buffer) {
    let run = &app.run;
    let panel = if metric == Metric::Loss {
        Panel::Loss
    } else {
        Panel::Accuracy
    };
    let pct = |x: f64| {
        if metric == Metric::Accuracy {
            100.0 * x
        } else {
            x
        }
    };
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
    let marker = if app.options.braille {
        Marker::Braille
    } else {
        Marker::HalfBlock
    };
    // Train per step (smoothed) and validation per epoch, on steps; or both per epoch.
    let (train, val, x_name): (Points, Points, &str) = match app.axis {
        TimeAxis::Steps => {
            let series = if metric == Metric::Loss {
                &run.train_loss
            } else {
                &run.train_accuracy
            };
            let from = app
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
            let get = |e: &crate::protocol::EpochMetrics, val: bool| match (metric, val) {
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
    };
    // Axes that stay put while the run grows: redrawing a rescaled chart every step would
    // rewrite every cell of it (bytes over SSH) and make the curve hard to follow.
    let (x0, x1) = match (app.axis, app.window) {
        (TimeAxis::Steps, None) => (0.0, run.total_steps().max(run.step).max(1) as f64),
        (TimeAxis::Epochs, _) => (
            1.0,
            run.info.as_ref().map(|i| i.epochs).unwrap_or(1).max(2) as f64,
        ),
        (TimeAxis::Steps, Some(_)) => bounds(train.iter().chain(&val).map(|p| p.0)),
    };
    let (y0, y1) = match metric {
        Metric::Accuracy => {
            let (lo, _) = bounds(train.iter().chain(&val).map(|p| p.1));
            (((lo - 5.0) / 10.0).floor().clamp(0.0, 9.0) * 10.0, 100.0)
        }
        Metric::Loss => {
            let (_, hi) = bounds(train.iter().chain(&val).map(|p| p.1));
            (0.0, nice_ceil(hi))
        }
    };
    let datasets = vec![
        Dataset::default()
            .name("train")
            .marker(marker)
            .graph_type(GraphType::Line)
            .style(theme.fg(Theme::TRAIN))
            .data(&train),
        Dataset::default()
            .name("val")
            .marker(if val.len() > 1 { marker } else { Marker::Dot })
            .graph_type(if val.len() > 1 {
                GraphType::Line
            } else {
                GraphType::Scatter
            })
            .style(theme.fg(Theme::VAL).add_modifier(Modifier::BOLD))
            .data(&val),
    ];
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
                .border_style(theme.border(app.focus == panel))
                .title(title),
        )
        .x_axis(
            Axis::default()
                .title(Span::styled(x_name, theme.dim()))
                .bounds([x0, x1])
                .labels([format!("{x0:.0}"), format!("{x1:.0}")])
                .style(theme.dim()),
        )
        .y_axis(
            Axis::default()
                .bounds([y0, y1])
                .labels([ylabel(y0), ylabel(y1)])
                .style(theme.dim()),
        )
        .legend_position(None)
        .render(area, buf);
}

/// The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `x` (an axis end that
/// changes rarely).
fn nice_ceil(x: f64) -> f64 {
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

/// Min and max of `xs`, widened when they are equal or absent.
fn bounds(xs: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = xs
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi - lo < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

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

fn render_gradients(app: &App, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let run = &app.run;
    let title = if area.width >= 60 {
        " Gradients  L2 norm (log scale 1e-8..1e2)  trend  update/weight "
    } else {
        " Gradients  L2 norm (log)  update/weight "
    }
    .to_string();
    let outer = block(title, theme, app.focus == Panel::Gradients);
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
    let rest = w.saturating_sub(name_w + 1 + 9 + 9);
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
    let start = app
        .grad_scroll
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
            Some(tag) => spans.push(Span::styled(format!("{tag:<bar_w$.bar_w$}"), theme.alarm())),
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
        lines.push(Line::from(spans));
    }
    Paragraph::new(lines).render(inner, buf);
}

fn render_lr(app: &App, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let run = &app.run;
    let title = format!(
        " Learning rate {}  ▲ your changes ({}) ",
        sci(run.lr),
        run.lr_marks.len()
    );
    let trace: Vec<(f64, f64)> = run
        .lr_trace
        .points()
        .iter()
        .map(|&(x, y)| (x, y.max(1e-12).log10()))
        .collect();
    let marks: Vec<(f64, f64)> = run
        .lr_marks
        .iter()
        .map(|&(s, lr)| (s as f64, lr.max(1e-12).log10()))
        .collect();
    let (x0, x1) = (0.0, run.total_steps().max(run.step).max(1) as f64);
    let (lo, hi) = bounds(trace.iter().chain(&marks).map(|p| p.1));
    let (y0, y1) = ((lo - 0.25).floor(), (hi + 0.25).ceil());
    let marker = if app.options.braille {
        Marker::Braille
    } else {
        Marker::HalfBlock
    };
    let datasets = vec![
        Dataset::default()
            .marker(marker)
            .graph_type(GraphType::Line)
            .style(theme.fg(Theme::LR))
            .data(&trace),
        Dataset::default()
            .marker(Marker::Block)
            .graph_type(GraphType::Scatter)
            .style(theme.fg(Theme::MARK).add_modifier(Modifier::BOLD))
            .data(&marks),
    ];
    Chart::new(datasets)
        .block(block(title, theme, app.focus == Panel::LearningRate))
        .x_axis(
            Axis::default()
                .bounds([x0, x1])
                .labels([format!("{x0:.0}"), format!("{x1:.0}")])
                .style(theme.dim()),
        )
        .y_axis(
            Axis::default()
                .bounds([y0, y1])
                .labels([format!("1e{y0:.0}"), format!("1e{y1:.0}")])
                .style(theme.dim()),
        )
        .render(area, buf);
}

fn render_events(app: &App, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let run = &app.run;
    let scrolled = if app.log_scroll > 0 {
        format!(" (scrolled {})", app.log_scroll)
    } else {
        String::new()
    };
    let outer = block(
        format!(" Events{scrolled} "),
        theme,
        app.focus == Panel::Events,
    );
    let inner = outer.inner(area);
    outer.render(area, buf);
    let rows = inner.height as usize;
    let end = run.log.len().saturating_sub(app.log_scroll);
    let start = end.saturating_sub(rows);
    let lines: Vec<Line> = run
        .log
        .range(start..end)
        .map(|l| {
            Line::from(vec![
                Span::styled(format!("{:>6} ", l.step), theme.dim()),
                Span::styled(l.text.clone(), theme.log(l.kind)),
            ])
        })
        .collect();
    Paragraph::new(lines).render(inner, buf);
}

const KEYS: [(&str, &str); 9] = [
    ("+/-", "lr"),
    ("l", "set lr"),
    ("p", "pause"),
    ("n", "step"),
    ("s", "save"),
    ("Tab", "focus"),
    ("v", "axis"),
    ("?", "help"),
    ("q", "quit"),
];

fn render_footer(app: &App, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let mut spans = Vec::new();
    for (k, what) in KEYS {
        spans.push(Span::styled(
            format!(" {k}"),
            theme.title().add_modifier(Modifier::REVERSED),
        ));
        spans.push(Span::raw(format!(" {what} ")));
    }
    let _ = app;
    Paragraph::new(Line::from(spans)).render(area, buf);
}

const HELP: [(&str, &str); 14] = [
    ("+ / -", "multiply / divide the learning rate by --lr-step"),
    (
        "l",
        "type an exact learning rate (Enter applies, Esc cancels)",
    ),
    ("p, space", "pause / resume"),
    ("n", "one training step while paused"),
    ("s", "save a checkpoint now (<run-dir>/checkpoints/last.h5)"),
    (
        "q",
        "quit (asks first while training; Ctrl-C quits at once)",
    ),
    ("Tab / S-Tab", "move the focus between panels"),
    ("v", "loss and accuracy per step or per epoch"),
    (
        "z",
        "zoom the step charts: whole run, last 2000/500/100 steps",
    ),
    ("Up / Down", "scroll the focused list (gradients, events)"),
    ("?", "this help; any key closes it"),
    ("", ""),
    (
        "gradients",
        "a red bar is vanishing (< 1e-6) or exploding (> 1e2)",
    ),
    ("lr chart", "red squares mark the changes you made"),
];

fn render_help(theme: &Theme, area: Rect, buf: &mut Buffer) {
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!("{k:>12}  "), theme.title()),
                Span::raw(*v),
            ])
        })
        .collect();
    render_popup(theme, "Keys", lines, area, buf);
}

fn render_popup(theme: &Theme, title: &str, lines: Vec<Line>, area: Rect, buf: &mut Buffer) {
    let w = lines
        .iter()
        .map(|l| l.width())
        .max()
        .unwrap_or(20)
        .max(title.len() + 4) as u16
        + 4;
    let h = lines.len() as u16 + 2;
    let w = w.min(area.width);
    let h = h.min(area.height);
    let popup = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    Clear.render(popup, buf);
    Paragraph::new(lines)
        .alignment(Alignment::Left)
        .block(
            block(format!(" {title} "), theme, true)
                .padding(ratatui::widgets::Padding::horizontal(1)),
        )
        .render(popup, buf);
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
