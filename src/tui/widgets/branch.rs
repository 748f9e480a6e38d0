//! What-if branches on screen: the `b` menu, and the comparison's result waiting for a line
//! to be kept.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::Popup;
use crate::protocol::{BranchCall, BranchVerdict};
use crate::tui::branch_menu::{BranchMenu, HORIZONS};
use crate::tui::theme::Theme;
use crate::watch::BranchView;

/// The `b` menu: the changes to try, a typed one, and the horizon.
pub struct BranchMenuView<'a> {
    pub menu: &'a BranchMenu,
    pub theme: Theme,
}

impl Widget for BranchMenuView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (menu, theme) = (self.menu, self.theme);
        let mark = |i: usize| if i == menu.pick { "▶ " } else { "  " };
        let style = |i: usize| {
            if i == menu.pick {
                theme.title()
            } else {
                theme.text()
            }
        };
        let mut lines = vec![Line::styled(
            "Try a change on a fork of the run; both lines train on the same batches:",
            theme.dim(),
        )];
        for (i, c) in menu.choices.iter().enumerate() {
            lines.push(Line::from(vec![
                Span::styled(mark(i), theme.title()),
                Span::styled(c.label.clone(), style(i)),
                Span::styled(
                    format!("  {}", crate::protocol::Setting::describe_change(&c.change)),
                    theme.dim(),
                ),
            ]));
        }
        let typed = menu.choices.len();
        let field = if menu.typed.is_empty() && menu.pick != typed {
            Span::styled("key=value,...", theme.dim())
        } else {
            Span::raw(menu.typed.clone())
        };
        let mut row = vec![
            Span::styled(mark(typed), theme.title()),
            Span::styled("type: ", style(typed)),
            field,
        ];
        if menu.pick == typed {
            row.push(Span::styled("█", theme.dim()));
        }
        lines.push(Line::from(row));
        lines.push(Line::from(""));
        let horizons: Vec<Span> = HORIZONS
            .iter()
            .enumerate()
            .flat_map(|(i, h)| {
                let text = h.to_string();
                let s = if i == menu.horizon % HORIZONS.len() {
                    Span::styled(format!("[{text}]"), theme.title())
                } else {
                    Span::styled(format!(" {text} "), theme.dim())
                };
                [s, Span::raw(" ")]
            })
            .collect();
        lines.push(Line::from(
            [vec![Span::styled("for ", theme.text())], horizons].concat(),
        ));
        lines.push(match &menu.error {
            Some(e) => Line::styled(e.clone(), theme.alarm()),
            None => Line::styled(
                "↑/↓ pick   ←/→ how long   Enter fork   Esc cancel",
                theme.dim(),
            ),
        });
        Popup {
            title: "What-if branch",
            lines,
            theme,
        }
        .render(area, buf);
    }
}

/// A comparison that is over, in numbers, with the keys that keep a line.
pub struct BranchResult<'a> {
    pub branch: &'a BranchView,
    pub verdict: &'a BranchVerdict,
    pub theme: Theme,
}

impl Widget for BranchResult<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (v, theme) = (self.verdict, self.theme);
        let (call, style) = match v.call {
            BranchCall::Better => ("better", theme.fg(Theme::BRANCH)),
            BranchCall::Worse => ("worse", theme.alarm()),
            BranchCall::Same => ("no different", theme.text()),
        };
        let row = |what: &str, branch: String, main: String| {
            Line::from(vec![
                Span::styled(format!("{what:<17}"), theme.dim()),
                Span::styled(format!("{branch:>10}"), theme.fg(Theme::BRANCH)),
                Span::raw(format!("{main:>12}")),
            ])
        };
        let lines = vec![
            Line::from(vec![
                Span::styled(
                    format!("{} ", crate::protocol::Setting::describe_change(&v.change)),
                    theme.title(),
                ),
                Span::raw(format!(
                    "forked at step {}, {} steps on the same batches:",
                    self.branch.forked_at, v.steps
                )),
            ]),
            Line::from(vec![
                Span::raw("the branch is "),
                Span::styled(call, style),
                Span::raw(format!(
                    " on training loss ({:+.4} ± {:.4})",
                    v.diff, v.noise
                )),
            ]),
            Line::from(""),
            Line::from(vec![
                Span::raw(" ".repeat(17)),
                Span::styled(format!("{:>10}", "branch"), theme.fg(Theme::BRANCH)),
                Span::styled(format!("{:>12}", "main line"), theme.dim()),
            ]),
            row(
                "training loss",
                format!("{:.4}", v.branch_loss),
                format!("{:.4}", v.main_loss),
            ),
            row(
                "validation loss",
                format!("{:.4}", v.branch_val_loss),
                format!("{:.4}", v.main_val_loss),
            ),
            row(
                "val accuracy",
                format!("{:.2}%", 100.0 * v.branch_val_accuracy),
                format!("{:.2}%", 100.0 * v.main_val_accuracy),
            ),
            Line::from(""),
            Line::from(vec![
                Span::styled("b", theme.key()),
                Span::raw(" keep the branch   "),
                Span::styled("m", theme.key()),
                Span::raw(" keep the main line"),
            ]),
            Line::styled(
                "B / M: keep it and save the other line as a run of its own",
                theme.dim(),
            ),
        ];
        Popup {
            title: "Branch result",
            lines,
            theme,
        }
        .render(area, buf);
    }
}
