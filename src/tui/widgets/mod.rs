//! The panels of the terminal UI, each a widget drawn from the run state it is given.

pub mod charts;
pub mod events;
pub mod gradients;
pub mod header;
pub mod keys;
pub mod planner;

use ratatui::text::Span;
use ratatui::widgets::{Block, Borders};

pub use charts::{LrChart, Metric, MetricChart};
pub use events::EventLog;
pub use gradients::{GradientTable, EXPLODING, VANISHING};
pub use header::{header_height, Header};
pub use keys::{Help, KeyBar, Popup};
pub use planner::{EditorView, FinderChart, FinderView};

use super::theme::Theme;

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
