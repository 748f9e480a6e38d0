//! The panels of the terminal UI, each a widget drawn from the run state it is given.

pub mod branch;
pub mod charts;
pub mod data;
pub mod diagnosis;
pub mod events;
pub mod gradients;
pub mod header;
pub mod keys;
pub mod planner;
pub mod plot;

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::Span;
use ratatui::widgets::{Axis, Block, Borders, Clear, Dataset, GraphType, Widget};

pub use branch::{BranchMenuView, BranchResult};
pub use charts::{LrChart, Metric, MetricChart};
pub use data::{ClassesView, SamplesView};
pub use diagnosis::{diagnosis_height, Diagnosis};
pub use events::EventLog;
pub use gradients::{GradientTable, EXPLODING, VANISHING};
pub use header::{header_height, Header};
pub use keys::{Help, KeyBar, Popup};
pub use planner::{EditorView, FinderChart, FinderView};

use super::theme::Theme;

/// A box of at most `w` x `h` in the middle of `area`, cleared: where an overlay goes.
fn centred(area: Rect, w: u16, h: u16, buf: &mut Buffer) -> Rect {
    let (w, h) = (w.min(area.width), h.min(area.height));
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    Clear.render(r, buf);
    r
}

/// A chart axis from `lo` to `hi`, labelled at both ends, in the quiet style.
fn axis<'a>(lo: f64, hi: f64, labels: [String; 2], theme: &Theme) -> Axis<'a> {
    Axis::default()
        .bounds([lo, hi])
        .labels(labels)
        .style(theme.dim())
}

/// A chart's series drawn as a line.
fn line(data: &[(f64, f64)], marker: Marker, style: Style) -> Dataset<'_> {
    Dataset::default()
        .marker(marker)
        .graph_type(GraphType::Line)
        .style(style)
        .data(data)
}

/// A chart's series drawn as separate points.
fn points(data: &[(f64, f64)], marker: Marker, style: Style) -> Dataset<'_> {
    Dataset::default()
        .marker(marker)
        .graph_type(GraphType::Scatter)
        .style(style)
        .data(data)
}

/// A panel's frame with its title; the focused panel's stands out.
fn block<'a>(title: String, theme: &Theme, focused: bool) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(focused))
        .title(Span::styled(title, theme.title()))
}

/// Min and max of `xs`, widened when they are equal or absent.
fn bounds(xs: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = xs
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi - lo < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}
