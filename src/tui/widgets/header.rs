//! The header: what the run is doing, how far it is, and what it is.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
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
            "epoch {}/{}  step {}/{}",
            run.epoch, epochs, run.step, total
        );
        let width = area.width.saturating_sub(2) as usize;
        let line1 = match self.quiet_secs {
            // A trainer that stopped sending steps (frozen, stopped, swapping) does not look
            // alive: no speed or ETA, and how long it has been quiet.
            Some(secs) if run.status == Status::Running && !self.stopping => fit(
                width,
                vec![
                    seg(
                        0,
                        " NO STEPS ",
                        theme.alarm().add_modifier(Modifier::REVERSED),
                    ),
                    seg(0, format!("  {progress}"), Style::default()),
                    seg(
                        1,
                        format!("  no step for {}", clock(secs as f64)),
                        theme.alarm(),
                    ),
                    seg(2, format!("  lr {}", sci(run.lr)), Style::default()),
                ],
            ),
            _ => {
                let tail = match branch_status(run) {
                    Some(text) => seg(3, format!(" {text}"), theme.fg(Theme::BRANCH)),
                    None => seg(4, format!(" {schedule}"), theme.dim()),
                };
                let mut pieces = vec![
                    seg(0, format!(" {status} "), theme.status(&run.status)),
                    seg(0, format!("  {progress}"), Style::default()),
                    seg(
                        6,
                        format!("  {:.0} img/s", run.images_per_sec),
                        Style::default(),
                    ),
                    seg(1, format!("  ETA {eta}"), Style::default()),
                    seg(2, format!("  lr {}", sci(run.lr)), Style::default()),
                    tail,
                ];
                if let Some(text) = target_text(run) {
                    pieces.push(seg(3, format!("  {text}"), theme.title()));
                }
                if let Some((bad, patience)) = run.early_stop_count() {
                    let style = if bad > 0 && bad + 1 >= patience {
                        theme.alarm()
                    } else {
                        theme.dim()
                    };
                    pieces.push(seg(5, format!("  stop {bad}/{patience}"), style));
                }
                fit(width, pieces)
            }
        };
        Paragraph::new(header_lines(
            run,
            theme,
            (area.height as usize).saturating_sub(2),
            width,
            line1,
        ))
        .block(block(" candletop ".into(), theme, false))
        .render(area, buf);
    }
}

/// The target accuracy and the forecast of the epoch that reaches it, in a few words:
/// `91% ≈ ep 9 (in 2:10)`, `91% unlikely (plateau ~89.5%)`, `91% ✓ ep 8`.
fn target_text(run: &RunState) -> Option<String> {
    use crate::stopping::{Forecast, FIT_EPOCHS};
    let (target, f, secs) = run.target_forecast()?;
    let epochs = run.info.as_ref().map_or(0, |i| i.epochs);
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    Some(match f {
        Forecast::Reached { epoch } => format!("{target}% ✓ ep {epoch}"),
        Forecast::TooEarly => format!("{target}%: forecast at ep {FIT_EPOCHS}"),
        Forecast::At { epoch, .. } if epoch > epochs => {
            format!("{target}% ≈ ep {epoch}, after the last")
        }
        Forecast::At { epoch, .. } => match secs {
            Some(s) => format!("{target}% ≈ ep {epoch} (in {})", clock(s)),
            None => format!("{target}% ≈ ep {epoch}"),
        },
        Forecast::Unlikely { plateau, .. } => {
            format!("{target}% unlikely (plateau ~{})", pct(plateau))
        }
        Forecast::Uncertain { plateau, spread } => {
            format!(
                "{target}%? (plateau ~{}±{:.1})",
                pct(plateau),
                100.0 * spread
            )
        }
    })
}

/// A piece of a header line: the lower its rank, the longer it stays when the line is short
/// of room.
struct Segment {
    rank: u8,
    spans: Vec<Span<'static>>,
}

fn seg(rank: u8, text: impl Into<String>, style: Style) -> Segment {
    Segment {
        rank,
        spans: vec![Span::styled(text.into(), style)],
    }
}

/// The segments, in their order, without those of the highest ranks that do not fit in
/// `width` columns: a line loses whole pieces, never the end of a word.
fn fit(width: usize, mut segments: Vec<Segment>) -> Line<'static> {
    let used = |s: &[Segment]| {
        s.iter()
            .flat_map(|s| &s.spans)
            .map(Span::width)
            .sum::<usize>()
    };
    while used(&segments) > width {
        let Some(worst) = segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.rank > 0)
            .max_by_key(|(i, s)| (s.rank, *i))
            .map(|(i, _)| i)
        else {
            break;
        };
        segments.remove(worst);
    }
    Line::from(
        segments
            .into_iter()
            .flat_map(|s| s.spans)
            .collect::<Vec<_>>(),
    )
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
            let opt_text = if brief {
                short(&i.optimizer)
            } else {
                i.optimizer.clone()
            };
            let model = vec![Span::styled("model ", theme.dim()), Span::raw(model_text)];
            let opt = vec![Span::styled("  opt ", theme.dim()), Span::raw(opt_text)];
            if merged {
                // The data first: what the run learns from matters more than its model, and
                // the model more than its optimizer, when the line is short of room.
                let whole = |spans, rank| Segment { rank, spans };
                lines.push(fit(
                    width,
                    vec![
                        whole(data, 0),
                        whole([vec![Span::raw("  ")], model].concat(), 1),
                        whole(opt, 2),
                    ],
                ));
            } else {
                lines.push(Line::from(data));
                lines.push(Line::from([model, opt].concat()));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn text(line: &Line) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    #[test]
    fn a_short_line_loses_whole_pieces_by_rank() {
        let pieces = || {
            vec![
                seg(0, " RUNNING ", Style::default()),
                seg(0, "  epoch 2/10  step 282/1410", Style::default()),
                seg(5, "  2309 img/s", Style::default()),
                seg(1, "  ETA 0:31", Style::default()),
                seg(2, "  lr 1.00e-3", Style::default()),
                seg(4, " constant", Style::default()),
            ]
        };
        let all = " RUNNING   epoch 2/10  step 282/1410  2309 img/s  ETA 0:31  lr 1.00e-3 constant";
        assert_eq!(text(&fit(all.len(), pieces())), all);
        // One column short: the speed goes, the schedule's name stays whole.
        assert_eq!(
            text(&fit(all.len() - 1, pieces())),
            " RUNNING   epoch 2/10  step 282/1410  ETA 0:31  lr 1.00e-3 constant"
        );
        assert_eq!(
            text(&fit(60, pieces())),
            " RUNNING   epoch 2/10  step 282/1410  ETA 0:31  lr 1.00e-3"
        );
        // What ranks 0 keeps, even when it does not fit.
        assert_eq!(
            text(&fit(10, pieces())),
            " RUNNING   epoch 2/10  step 282/1410"
        );
    }
}
