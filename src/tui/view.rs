//! Drawing: the screen as a tree of widgets, a pure function of the `App` state.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget, Wrap};

use super::app::{App, Overlay, Panel};
use super::theme::Theme;
use super::widgets::{
    diagnosis_height, header_height, ClassesView, Diagnosis, EditorView, EventLog, FinderView,
    GradientTable, Header, Help, KeyBar, LrChart, Metric, MetricChart, Popup, SamplesView,
};

/// Below this size the panels cannot show their numbers: one line says so instead.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 18;

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
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(42), Constraint::Fill(1)]).areas(body);
        let [loss, acc] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Fill(1)]).areas(top);
        let grads_share = if area.width < 100 { 60 } else { 55 };
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(grads_share), Constraint::Fill(1)])
                .areas(bottom);
        // The diagnosis under the gradients it often refers to; the gradients keep 6 rows.
        let diag_h = diagnosis_height(&self.run, left.height.saturating_sub(6).max(3));
        let [grads, diagnosis] =
            Layout::vertical([Constraint::Fill(1), Constraint::Length(diag_h)]).areas(left);
        let [lr, events] =
            Layout::vertical([Constraint::Percentage(50), Constraint::Fill(1)]).areas(right);

        let run = &self.run;
        let marker = if self.options.braille {
            Marker::Braille
        } else {
            Marker::HalfBlock
        };
        Header {
            run,
            stopping: self.quitting,
            theme,
        }
        .render(header, buf);
        for (metric, panel, area) in [
            (Metric::Loss, Panel::Loss, loss),
            (Metric::Accuracy, Panel::Accuracy, acc),
        ] {
            MetricChart {
                run,
                other: self.compare.as_ref(),
                metric,
                axis: self.axis,
                window: self.window,
                marker,
                focused: self.focus == panel,
                theme,
            }
            .render(area, buf);
        }
        GradientTable {
            run,
            scroll: self.grad_scroll,
            focused: self.focus == Panel::Gradients,
            theme,
        }
        .render(grads, buf);
        Diagnosis { run, theme }.render(diagnosis, buf);
        LrChart {
            run,
            other: self.compare.as_ref(),
            marker,
            focused: self.focus == Panel::LearningRate,
            theme,
        }
        .render(lr, buf);
        EventLog {
            run,
            scroll: self.log_scroll,
            focused: self.focus == Panel::Events,
            theme,
        }
        .render(events, buf);
        KeyBar { theme }.render(footer, buf);

        match &self.overlay {
            Overlay::None => {}
            Overlay::Schedule(editor) => EditorView { editor, run, theme }.render(area, buf),
            Overlay::Finder { pick, .. } => FinderView {
                run,
                pick: *pick,
                theme,
            }
            .render(area, buf),
            Overlay::Help => Help { theme }.render(area, buf),
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
