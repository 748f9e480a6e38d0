//! Drawing: the screen as a tree of widgets, a pure function of the `App` state.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget, Wrap};

use super::app::{App, Overlay, Panel};
use super::theme::Theme;
use super::widgets::{
    diagnosis_height, header_height, BranchMenuView, BranchResult, ClassesView, Diagnosis,
    EditorView, EventLog, FinderView, GradientTable, Header, Help, KeyBar, LrChart, Metric,
    MetricChart, Popup, SamplesView,
};

/// Below this size the panels cannot show their numbers: one line says so instead.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 18;

impl App {
    /// The loss or accuracy chart with the user's choices of axis, zoom and smoothing.
    fn metric_chart(&self, metric: Metric, marker: Marker, theme: Theme) -> MetricChart<'_> {
        MetricChart {
            run: &self.run,
            other: self.compare.as_ref(),
            metric,
            axis: self.axis,
            window: self.window,
            marker,
            focused: self.focus
                == match metric {
                    Metric::Loss => Panel::Loss,
                    Metric::Accuracy => Panel::Accuracy,
                },
            theme,
            span: self.span,
            log: self.loss_log,
            full: self.accuracy_full,
        }
    }

    /// Whether the loss chart is drawn on a log scale now (what `y` turns the other way).
    pub fn loss_is_log(&self) -> bool {
        self.metric_chart(Metric::Loss, Marker::Braille, Theme { color: false })
            .is_log()
    }

    /// One panel in `area`; the focused one enlarged to the body shows more (the diagnosis
    /// whole, the gradient history wide).
    fn panel(&self, panel: Panel, area: Rect, buf: &mut Buffer, marker: Marker, theme: Theme) {
        let (run, focused) = (&self.run, self.focus == panel);
        match panel {
            Panel::Loss => self
                .metric_chart(Metric::Loss, marker, theme)
                .render(area, buf),
            Panel::Accuracy => self
                .metric_chart(Metric::Accuracy, marker, theme)
                .render(area, buf),
            Panel::Gradients => GradientTable {
                run,
                scroll: self.grad_scroll,
                focused,
                theme,
            }
            .render(area, buf),
            Panel::Diagnosis => Diagnosis {
                run,
                focused,
                whole: self.enlarged,
                theme,
            }
            .render(area, buf),
            Panel::LearningRate => LrChart {
                run,
                other: self.compare.as_ref(),
                marker,
                focused,
                theme,
            }
            .render(area, buf),
            Panel::Events => EventLog {
                run,
                scroll: self.log_scroll,
                focused,
                theme,
            }
            .render(area, buf),
        }
    }
}

impl App {
    /// Where each panel goes in `body`: the charts on top; under them the gradients, which
    /// need the width (names, bar, norm, history strip, ratio, dead/sat), with the diagnosis
    /// under them (it often refers to them; they keep 6 rows), and the LR and the event log.
    fn panels(&self, body: Rect) -> [(Panel, Rect); 6] {
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(42), Constraint::Fill(1)]).areas(body);
        let [loss, acc] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Fill(1)]).areas(top);
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(60), Constraint::Fill(1)]).areas(bottom);
        let diag_h = diagnosis_height(&self.run, left.height.saturating_sub(6).max(3));
        let [grads, diagnosis] =
            Layout::vertical([Constraint::Fill(1), Constraint::Length(diag_h)]).areas(left);
        let [lr, events] =
            Layout::vertical([Constraint::Percentage(50), Constraint::Fill(1)]).areas(right);
        [
            (Panel::Loss, loss),
            (Panel::Accuracy, acc),
            (Panel::Gradients, grads),
            (Panel::Diagnosis, diagnosis),
            (Panel::LearningRate, lr),
            (Panel::Events, events),
        ]
    }

    /// A what-if comparison that is over and waits for a line to be kept: its numbers and
    /// keys, in the lower right, leaving the loss chart in view.
    fn branch_result(&self, area: Rect, buf: &mut Buffer, theme: Theme) {
        let Some(b) = self.run.branch.as_ref().filter(|b| b.awaiting()) else {
            return;
        };
        let Some(verdict) = &b.verdict else { return };
        let [_, lower] =
            Layout::vertical([Constraint::Percentage(40), Constraint::Fill(1)]).areas(area);
        let [_, right] =
            Layout::horizontal([Constraint::Percentage(35), Constraint::Fill(1)]).areas(lower);
        BranchResult {
            branch: b,
            verdict,
            theme,
        }
        .render(right, buf);
    }

    /// The overlay open over the screen, if any.
    fn overlay(&self, area: Rect, buf: &mut Buffer, theme: Theme) {
        let run = &self.run;
        match &self.overlay {
            Overlay::None => self.branch_result(area, buf, theme),
            Overlay::Branch(menu) => BranchMenuView { menu, theme }.render(area, buf),
            Overlay::Schedule(editor) => EditorView { editor, run, theme }.render(area, buf),
            Overlay::Finder { pick, .. } => FinderView {
                run,
                pick: *pick,
                theme,
            }
            .render(area, buf),
            Overlay::Help => Help {
                context: self.key_context(),
                theme,
            }
            .render(area, buf),
            Overlay::Samples => SamplesView { run, theme }.render(area, buf),
            Overlay::Classes => ClassesView { run, theme }.render(area, buf),
            Overlay::ConfirmQuit => Popup {
                title: "Quit",
                lines: if self.options.attached {
                    vec![
                        Line::from("Stop training and quit?"),
                        Line::from(""),
                        Line::from("y: stop the run and quit   d: detach (the run goes on)"),
                        Line::from("any other key: stay"),
                    ]
                } else {
                    vec![
                        Line::from("Stop training and quit?"),
                        Line::from(""),
                        Line::from("y: stop and quit   any other key: go on"),
                    ]
                },
                theme,
            }
            .render(area, buf),
            Overlay::LrPrompt { input, error } => {
                let mut lines = vec![
                    Line::from(format!("current: {:.3e}", run.lr)),
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
                Popup {
                    title: "Learning rate",
                    lines,
                    theme,
                }
                .render(area, buf);
            }
        }
    }
}

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
        let marker = if self.options.braille {
            Marker::Braille
        } else {
            Marker::HalfBlock
        };
        Header {
            run: &self.run,
            stopping: self.quitting,
            quiet_secs: self.quiet_secs,
            theme,
        }
        .render(header, buf);
        if self.enlarged {
            self.panel(self.focus, body, buf, marker, theme);
        } else {
            for (panel, area) in self.panels(body) {
                self.panel(panel, area, buf, marker, theme);
            }
        }
        KeyBar {
            context: self.key_context(),
            theme,
        }
        .render(footer, buf);

        self.overlay(area, buf, theme);
    }
}
