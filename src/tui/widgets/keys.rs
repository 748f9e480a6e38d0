//! The keys: the bar at the bottom, the help overlay, and the popup box overlays share.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::{block, centred};
use crate::tui::theme::Theme;

/// The keys on the bottom line, in their order, each with its priority (0 first): on a
/// narrow screen the least needed go.
const KEYS: [(&str, &str, u8); 19] = [
    ("+/-", "lr", 0),
    ("r", "remedy", 1),
    ("u", "undo", 7),
    ("l", "set lr", 1),
    ("e", "schedule", 2),
    ("f", "find lr", 3),
    ("a", "augment", 4),
    ("w", "weights", 6),
    ("g", "samples", 5),
    ("c", "classes", 4),
    ("p", "pause", 0),
    ("n", "step", 7),
    ("s", "save", 5),
    ("Tab", "focus", 3),
    ("Enter", "enlarge", 3),
    ("y", "log", 6),
    ("v", "axis", 7),
    ("?", "help", 0),
    ("q", "quit", 0),
];

/// The bottom line: the most used keys.
pub struct KeyBar {
    pub theme: Theme,
}

impl Widget for KeyBar {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let width = |k: &str, what: &str| k.len() + what.len() + 3;
        let mut shown: Vec<bool> = vec![true; KEYS.len()];
        let total = |shown: &[bool]| -> usize {
            KEYS.iter()
                .zip(shown)
                .filter(|(_, s)| **s)
                .map(|((k, w, _), _)| width(k, w))
                .sum()
        };
        for level in (1..=7).rev() {
            if total(&shown) <= area.width as usize {
                break;
            }
            for (s, (_, _, p)) in shown.iter_mut().zip(KEYS) {
                if p == level {
                    *s = false;
                }
            }
        }
        let mut spans = Vec::new();
        for ((k, what, _), _) in KEYS.iter().zip(&shown).filter(|(_, s)| **s) {
            spans.push(Span::styled(format!(" {k}"), self.theme.key()));
            spans.push(Span::raw(format!(" {what} ")));
        }
        Paragraph::new(Line::from(spans)).render(area, buf);
    }
}

const HELP: [(&str, &str); 31] = [
    ("+ / -", "multiply / divide the LR by --lr-step from the next step (a schedule's plan moves with it)"),
    ("l", "type an exact LR for the next step (the schedule goes on from it)"),
    ("e", "change the schedule: ←/→ kind, ↑/↓ field, type values; Enter applies the plan shown, Esc cancels"),
    ("f", "LR finder: a copy of the model sweeps 1e-7..10; ←/→ pick, Enter uses that LR, Esc discards"),
    ("a", "augmentation off / on from the next batch (--augment, or pad-crop and flip; in the header)"),
    ("w", "class weights off / balanced (inverse class frequency) in the loss from the next step"),
    ("g", "training images as the model sees them; g again for new ones"),
    ("x", "gradient clipping off / on (to the norm of --clip-grad-norm, or 1) from the next step"),
    ("c", "validation accuracy per class, worst marked, with the class counts"),
    ("r", "apply the Diagnosis panel's remedy (a restart's: suggested.toml); once while it is on trial"),
    ("u", "undo that remedy, exactly, within 200 steps (the data goes on)"),
    ("i", "measure activations now (done every 100 steps; dead/sat in Gradients)"),
    ("p, space", "pause / resume"),
    ("n", "one training step while paused"),
    ("s", "save a checkpoint now (<run-dir>/checkpoints/last.h5)"),
    ("q", "quit (asks first while training; Ctrl-C quits at once)"),
    ("Tab / S-Tab", "move the focus between panels"),
    ("Enter", "enlarge the focused panel to the whole screen; Enter or Esc puts it back"),
    ("y", "loss axis log / linear (at first log when the loss spans more than a decade)"),
    ("%", "accuracy axis 0-100% / fitted to the data"),
    ("[ / ]", "smooth the training curves less / more (EMA span: raw, 10 ... 500 steps)"),
    ("v", "loss and accuracy per step or per epoch"),
    ("z", "zoom the step charts: whole run, last 2000/500/100 steps"),
    ("Up / Down", "scroll the focused list (gradients, events)"),
    ("?", "this help; any key closes it"),
    ("", ""),
    ("charts", "━ smoothed training curve, ░ raw values' spread, ◆ validation, ★ best; ▲/▼ what an axis cut"),
    ("gradients", "bars and history on log scales fitted to the norms; red: < 1e-6 vanishing, > 1e2 exploding"),
    ("upd/w", "|update| / |weight| of the last step, per parameter"),
    ("lr chart", "the line is the LR each step used, the dots what the schedule plans, ▲ your changes"),
    ("header", "the LR of the last step and the schedule in force"),
];

/// Every key and what it does, over the panels.
pub struct Help {
    pub theme: Theme,
}

impl Widget for Help {
    fn render(self, area: Rect, buf: &mut Buffer) {
        // Descriptions wrap beside their keys.
        let w = (area.width as usize).saturating_sub(22).clamp(20, 96);
        let mut lines: Vec<Line> = Vec::new();
        for (k, v) in HELP {
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
