//! The keys: the bar at the bottom, the help overlay, and the popup box overlays share.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Widget};

use super::block;
use crate::tui::theme::Theme;

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

/// The bottom line: the most used keys.
pub struct KeyBar {
    pub theme: Theme,
}

impl Widget for KeyBar {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let mut spans = Vec::new();
        for (k, what) in KEYS {
            spans.push(Span::styled(
                format!(" {k}"),
                self.theme.title().add_modifier(Modifier::REVERSED),
            ));
            spans.push(Span::raw(format!(" {what} ")));
        }
        Paragraph::new(Line::from(spans)).render(area, buf);
    }
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

/// Every key and what it does, over the panels.
pub struct Help {
    pub theme: Theme,
}

impl Widget for Help {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let lines: Vec<Line> = HELP
            .iter()
            .map(|(k, v)| {
                Line::from(vec![
                    Span::styled(format!("{k:>12}  "), self.theme.title()),
                    Span::raw(*v),
                ])
            })
            .collect();
        Popup {
            title: "Keys",
            lines,
            theme: self.theme,
        }
        .render(area, buf);
    }
}

/// A bordered box centred over the panels.
pub struct Popup<'a> {
    pub title: &'a str,
    pub lines: Vec<Line<'a>>,
    pub theme: Theme,
}

impl Widget for Popup<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (title, lines, theme) = (self.title, self.lines, &self.theme);
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
}
