//! The header: what the run is doing, how far it is, and what it is.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::block;
use crate::format::{clock, sci};
use crate::tui::theme::Theme;
use crate::watch::{RunState, Status};

/// State, progress, speed, ETA and LR; data, model and optimizer; an error when there is one.
pub struct Header<'a> {
    pub run: &'a RunState,
    /// The user asked to stop and the trainer has not finished yet.
    pub stopping: bool,
    /// Seconds without a step, when far more than the steps take.
    pub quiet_secs: Option<u64>,
    pub theme: Theme,
}

impl Widget for Header<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (run, theme) = (self.run, &self.theme);
        let status = if self.stopping && run.status.is_live() {
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
        let schedule = run
            .schedule
            .as_ref()
            .map(|s| s.spec.describe())
            .unwrap_or_default();
        let progress = format!(
            "  epoch {}/{}  step {}/{}  ",
            run.epoch, epochs, run.step, total
        );
        let line1 = match self.quiet_secs {
            // A trainer that stopped sending steps (frozen, stopped, swapping) does not look
            // alive: no speed or ETA, and how long it has been quiet.
            Some(secs) if run.status == Status::Running && !self.stopping => Line::from(vec![
                Span::styled(" NO STEPS ", theme.alarm().add_modifier(Modifier::REVERSED)),
                Span::raw(progress),
                Span::styled(
                    format!("no step for {} ", clock(secs as f64)),
                    theme.alarm(),
                ),
                Span::raw(format!(" lr {} ", sci(run.lr))),
            ]),
            _ => {
                let mut spans = vec![
                    Span::styled(format!(" {status} "), theme.status(&run.status)),
                    Span::raw(format!(
                        "{progress}{:.0} img/s  ETA {eta}  lr {} ",
                        run.images_per_sec,
                        sci(run.lr)
                    )),
                ];
                match branch_status(run) {
                    Some(text) => spans.push(Span::styled(text, theme.fg(Theme::BRANCH))),
                    None => spans.push(Span::styled(schedule, theme.dim())),
                }
                Line::from(spans)
            }
        };
        Paragraph::new(header_lines(
            run,
            theme,
            (area.height as usize).saturating_sub(2),
            area.width.saturating_sub(2) as usize,
            line1,
        ))
        .block(block(" candletop ".into(), theme, false))
        .render(area, buf);
    }
}

/// A what-if comparison under way or waiting for a decision, as the header says it (in place
/// of the schedule, which the editor and the LR panel show).
fn branch_status(run: &RunState) -> Option<String> {
    let b = run.branch.as_ref()?;
    let change = crate::protocol::Setting::describe_change(&b.change);
    if b.awaiting() {
        return Some(format!("⑂ {change} over: keep m/b"));
    }
    if !b.running() {
        return None;
    }
    let done = run.step.saturating_sub(b.forked_at);
    Some(match b.horizon {
        crate::protocol::Horizon::Open => format!("⑂ {change} {done} steps, b ends, img/s shared"),
        _ => format!(
            "⑂ {change} {done}/{} steps, img/s shared",
            b.until.saturating_sub(b.forked_at)
        ),
    })
}

/// The header's lines: state and progress, data, model and optimizer, and any error; merged
/// when fewer rows are available.
fn header_lines<'a>(
    run: &RunState,
    theme: &Theme,
    rows: usize,
    width: usize,
    first: Line<'a>,
) -> Vec<Line<'a>> {
    let mut lines = vec![first];
    match &run.info {
        Some(i) => {
            // On one line with the model (a small screen), the descriptions lose their details
            // in parentheses when the whole would not fit.
            let merged = rows < 3;
            let short = |s: &str| s.split(" (").next().unwrap_or(s).to_string();
            let long_width = i.data.len() + i.model.len() + i.optimizer.len() + 20;
            let brief = merged && long_width > width;
            let (data_text, model_text) = if brief {
                (short(&i.data), short(&i.model))
            } else {
                (i.data.clone(), i.model.clone())
            };
            let mut data = vec![Span::styled("data ", theme.dim()), Span::raw(data_text)];
            // The data switches, when they are on.
            let f = &i.data_facts;
            if let Some(t) = f.active_transforms() {
                data.push(Span::styled("  aug ", theme.dim()));
                data.push(Span::styled(t, theme.title()));
            }
            if !f.class_weights.is_empty() {
                data.push(Span::styled("  weights ", theme.dim()));
                data.push(Span::styled("balanced", theme.title()));
            }
            if i.clip_grad_norm > 0.0 {
                data.push(Span::styled("  clip ", theme.dim()));
                data.push(Span::styled(format!("{}", i.clip_grad_norm), theme.title()));
            }
            if f.sampler == "balanced" {
                data.push(Span::styled("  sampler ", theme.dim()));
                data.push(Span::raw("balanced"));
            }
            if !f.skipped.is_empty() {
                data.push(Span::styled(
                    format!("  {} bad images skipped", f.skipped.len()),
                    theme.alarm(),
                ));
            }
            let model = vec![
                Span::styled("model ", theme.dim()),
                Span::raw(model_text),
                Span::styled("  opt ", theme.dim()),
                Span::raw(if brief {
                    short(&i.optimizer)
                } else {
                    i.optimizer.clone()
                }),
            ];
            if merged {
                // The data first: what the run learns from matters more than its model.
                lines.push(Line::from([data, vec![Span::raw("  ")], model].concat()));
            } else {
                lines.push(Line::from(data));
                lines.push(Line::from(model));
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
