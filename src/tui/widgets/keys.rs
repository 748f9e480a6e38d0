//! The keys: the bar at the bottom, the help overlay, and the popup box overlays share.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::{block, centred};
use crate::tui::keymap::{self, Context};
use crate::tui::theme::Theme;

/// The bottom line: the most used keys that work here.
pub struct KeyBar {
    pub context: Context,
    pub theme: Theme,
}

impl Widget for KeyBar {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let keys: Vec<(&str, &str, u8)> = keymap::bar(self.context).collect();
        let width = |k: &str, what: &str| k.len() + what.len() + 3;
        let mut shown: Vec<bool> = vec![true; keys.len()];
        let total = |shown: &[bool]| -> usize {
            keys.iter()
                .zip(shown)
                .filter(|(_, s)| **s)
                .map(|((k, w, _), _)| width(k, w))
                .sum()
        };
        for level in (1..=7).rev() {
            if total(&shown) <= area.width as usize {
                break;
            }
            for (s, (_, _, p)) in shown.iter_mut().zip(&keys) {
                if *p == level {
                    *s = false;
                }
            }
        }
        let mut spans = Vec::new();
        for ((k, what, _), _) in keys.iter().zip(&shown).filter(|(_, s)| **s) {
            spans.push(Span::styled(format!(" {k}"), self.theme.key()));
            spans.push(Span::raw(format!(" {what} ")));
        }
        Paragraph::new(Line::from(spans)).render(area, buf);
    }
}

/// What the marks on the panels mean, under the keys in the help.
const LEGEND: [(&str, &str); 5] = [
    ("charts", "━ smoothed training curve, ░ raw values' spread, ◆ validation, ★ best; ▲/▼ what an axis cut"),
    ("gradients", "bars and history on log scales fitted to the norms; red: < 1e-6 vanishing, > 1e2 exploding"),
    ("upd/w", "|update| / |weight| of the last step, per parameter"),
    ("lr chart", "the line is the LR each step used, the dots what the schedule plans, ▲ your changes"),
    ("header", "the LR of the last step, the schedule; 91% ≈ ep 9: the target's forecast; stop 1/3: early stop"),
];

/// Every key and what it does, over the panels, then what the marks mean.
pub struct Help {
    pub context: Context,
    pub theme: Theme,
}

impl Widget for Help {
    fn render(self, area: Rect, buf: &mut Buffer) {
        // Descriptions wrap beside their keys.
        let w = (area.width as usize).saturating_sub(22).clamp(20, 96);
        let mut lines: Vec<Line> = Vec::new();
        let help = keymap::help(self.context);
        for (k, v) in help.chain([("", "")]).chain(LEGEND) {
            for (i, part) in crate::format::wrap(v, w).into_iter().enumerate() {
                let key = if i == 0 { k } else { "" };
                lines.push(Line::from(vec![
                    Span::styled(format!("{key:>12}  "), self.theme.title()),
                    Span::raw(part),
                ]));
            }
        }
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
        let popup = centred(area, w, lines.len() as u16 + 2, buf);
        Paragraph::new(lines)
            .alignment(Alignment::Left)
            .block(
                block(format!(" {title} "), theme, true)
                    .padding(ratatui::widgets::Padding::horizontal(1)),
            )
            .render(popup, buf);
    }
}
