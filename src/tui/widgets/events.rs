//! The event log: the newest lines at the bottom, long ones wrapped (nothing is cut off), older
//! ones a scroll away.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::block;
use crate::format::wrap;
use crate::tui::theme::Theme;
use crate::watch::RunState;

pub struct EventLog<'a> {
    pub run: &'a RunState,
    /// Lines scrolled up from the newest.
    pub scroll: usize,
    pub focused: bool,
    pub theme: Theme,
}

/// Width of the step column.
const STEP_W: usize = 7;

impl Widget for EventLog<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (run, theme) = (self.run, &self.theme);
        let scrolled = if self.scroll > 0 {
            format!(" (scrolled {})", self.scroll)
        } else {
            String::new()
        };
        let outer = block(format!(" Events{scrolled} "), theme, self.focused);
        let inner = outer.inner(area);
        outer.render(area, buf);
        let rows = inner.height as usize;
        let width = (inner.width as usize).saturating_sub(STEP_W).max(1);
        let end = run.log.len().saturating_sub(self.scroll);
        // From the newest line back until the panel is full.
        let mut shown: Vec<Line> = Vec::new();
        for l in run.log.range(..end).rev() {
            if shown.len() >= rows {
                break;
            }
            let style = theme.log(l.kind);
            let mut parts: Vec<Line> = wrap(&l.text, width)
                .into_iter()
                .enumerate()
                .map(|(i, part)| {
                    let step = if i == 0 {
                        format!("{:>6} ", l.step)
                    } else {
                        " ".repeat(STEP_W)
                    };
                    Line::from(vec![
                        Span::styled(step, theme.dim()),
                        Span::styled(part, style),
                    ])
                })
                .collect();
            // A line whose start does not fit shows its end, marked as continued.
            let room = rows - shown.len();
            if parts.len() > room {
                parts.drain(..parts.len() - room);
                if let Some(first) = parts.first_mut() {
                    first.spans[0] = Span::styled(format!("{:>6} ", "…"), theme.dim());
                }
            }
            shown.extend(parts.into_iter().rev());
        }
        shown.reverse();
        Paragraph::new(shown).render(inner, buf);
    }
}
