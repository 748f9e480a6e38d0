//! The event log: the newest lines at the bottom, long ones wrapped (nothing is cut off), older
//! ones a scroll away.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::block;
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

/// `text` in lines of at most `width` characters, broken between words where it can be.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word.to_string();
        loop {
            let (have, need) = (line.chars().count(), word.chars().count());
            let sep = usize::from(have > 0);
            if have + sep + need <= width {
                if sep == 1 {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if have > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A word longer than a line: cut it.
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(head);
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrapping_keeps_every_character_and_breaks_between_words() {
        assert_eq!(
            wrap("epoch 1: val loss 0.25", 10),
            ["epoch 1:", "val loss", "0.25"]
        );
        assert_eq!(wrap("abcdefghij klm", 4), ["abcd", "efgh", "ij", "klm"]);
        assert_eq!(wrap("", 5), [""]);
        assert_eq!(wrap("short", 80), ["short"]);
        let text = "saved runs/20261201-030610/checkpoints/epoch-001.h5 (5.1 MB, 9 ms)";
        for w in 1..40 {
            let lines = wrap(text, w);
            assert!(
                lines.iter().all(|l| l.chars().count() <= w),
                "{w}: {lines:?}"
            );
            assert_eq!(
                lines.join(" ").replace(' ', ""),
                text.replace(' ', ""),
                "{w}"
            );
        }
    }
}
