//! The doctor's findings in force, most severe first: what, since when, the evidence, what to try.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::block;
use crate::format::wrap;
use crate::protocol::Severity;
use crate::tui::theme::Theme;
use crate::watch::{LogKind, RunState};

pub struct Diagnosis<'a> {
    pub run: &'a RunState,
    pub focused: bool,
    /// Evidence and action whole (the panel enlarged), not their first lines.
    pub whole: bool,
    pub theme: Theme,
}

/// Rows the panel wants for the findings in `run`: a line when there are none, else a title
/// line and two of evidence and action per finding, within `max`.
pub fn diagnosis_height(run: &RunState, max: u16) -> u16 {
    let n = run.findings.len() as u16;
    let undo = u16::from(run.undoable().is_some());
    (2 + undo + if n == 0 { 1 } else { 3 * n }).min(max)
}

impl Widget for Diagnosis<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (run, theme) = (self.run, &self.theme);
        let findings = run.findings_by_severity();
        let warnings = findings
            .iter()
            .filter(|f| f.1.severity == Severity::Warning)
            .count();
        let title = match (findings.len(), warnings) {
            (0, _) => " Diagnosis ".to_string(),
            (n, 0) => format!(" Diagnosis  {n} note{} ", if n == 1 { "" } else { "s" }),
            (n, w) => format!(
                " Diagnosis  {w} warning{} of {n} ",
                if w == 1 { "" } else { "s" }
            ),
        };
        let width = area.width.saturating_sub(4) as usize;
        let mut lines = Vec::new();
        if let Some(r) = run.undoable() {
            let until = run.remedy_trial.as_ref().map_or(0, |t| t.1);
            lines.push(Line::from(vec![
                Span::styled("u", theme.key()),
                Span::raw(format!(
                    " undoes: {} (until step {until})",
                    r.remedy.describe()
                )),
            ]));
        }
        if findings.is_empty() {
            lines.push(Line::styled("no findings so far", theme.dim()));
        }
        // `r` applies the remedy of the first finding that has one.
        let mut offered = false;
        for (step, f) in findings {
            let (mark, style) = match f.severity {
                Severity::Warning => ("▲ ", theme.log(LogKind::Warning)),
                Severity::Info => ("· ", theme.title()),
            };
            let mut title = vec![
                Span::styled(format!("{mark}{}", f.kind.title()), style),
                Span::styled(format!("  since step {step}"), theme.dim()),
            ];
            if let (Some(r), false) = (&f.remedy, offered) {
                offered = true;
                title.push(Span::raw("   "));
                title.push(Span::styled("r", theme.key()));
                title.push(Span::raw(format!(" {}", r.describe())));
            }
            lines.push(Line::from(title));
            // One line each of evidence and remedy (Enter shows them whole; the event log has
            // them too).
            let parts = |text: &str, w: usize| {
                let mut parts = wrap(text, w.max(10));
                if !self.whole && parts.len() > 1 {
                    parts.truncate(1);
                    parts[0].push('…');
                }
                parts
            };
            for part in parts(&f.evidence, width) {
                lines.push(Line::raw(format!("  {part}")));
            }
            for (i, part) in parts(&f.action, width.saturating_sub(4))
                .into_iter()
                .enumerate()
            {
                let lead = if i == 0 { "  try " } else { "      " };
                lines.push(Line::from(vec![
                    Span::styled(lead, theme.dim()),
                    Span::raw(part),
                ]));
            }
        }
        Paragraph::new(lines)
            .block(block(title, theme, self.focused))
            .render(area, buf);
    }
}
