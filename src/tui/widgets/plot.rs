//! A chart drawn on a canvas with axes that say what they show: round ticks on the y axis
//! (linear or log, from `watch::chart`), step ticks along the bottom, curves as lines or dots,
//! points as glyphs on top (validation ◆, best ★, your LR changes ▲: shapes that read without
//! colour), and a note where the range cut a curve off.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::canvas::{Canvas, Line as Segment, Points};
use ratatui::widgets::{Block, Widget};

use crate::format::compact;
use crate::tui::theme::Theme;
use crate::watch::chart::{tick_label, Range};

/// Something drawn in the plot area, in data coordinates (x, y unmapped).
pub enum Mark<'a> {
    /// A curve.
    Line(&'a [(f64, f64)], Color),
    /// Separate points, as fine as the marker draws them.
    Dots(&'a [(f64, f64)], Color),
    /// The spread of noisy values: per column, the cells from their least to their greatest,
    /// shaded, under everything else (the raw values under a smoothed curve).
    Band(&'a [(f64, f64)], Style),
    /// A symbol per point, one cell each, over everything else.
    Glyph(Vec<(f64, f64)>, &'static str, Style),
}

pub struct Plot<'a> {
    pub block: Block<'a>,
    /// The x range (steps or epochs).
    pub x: (f64, f64),
    pub y: &'a Range,
    /// Tick labels in percent.
    pub percent: bool,
    pub marks: Vec<Mark<'a>>,
    pub marker: Marker,
    pub theme: Theme,
}

/// Round x ticks between `x0` and `x1` that fit in `width` cells with their labels apart.
fn x_ticks(x0: f64, x1: f64, width: u16) -> Vec<f64> {
    let n = (width / 12).clamp(1, 8) as usize + 1;
    let r = crate::watch::chart::linear(x0, x1, n);
    let mut t: Vec<f64> = r.ticks.into_iter().filter(|&t| t > x0 && t < x1).collect();
    t.insert(0, x0);
    t.push(x1);
    t
}

/// Where things go: the plot area beside the y labels, and data to cell.
struct Frame<'a> {
    /// Inside the block.
    inner: Rect,
    /// The plot area, right of the y labels and above the x labels.
    graph: Rect,
    /// The y labels' width.
    lw: u16,
    x: (f64, f64),
    /// The y bounds, mapped (log when the range is).
    y: (f64, f64),
    range: &'a Range,
}

impl Frame<'_> {
    /// The cell row of `v`, when it is in range.
    fn row_of(&self, v: f64) -> Option<u16> {
        let f = (self.y.1 - self.range.map(v)) / (self.y.1 - self.y.0);
        (-1e-9..=1.0 + 1e-9)
            .contains(&f)
            .then(|| self.graph.y + (f * (self.graph.height - 1) as f64).round() as u16)
    }

    /// The cell row of `v`, at the edge when it is out of range.
    fn clamped_row(&self, v: f64) -> u16 {
        let f = ((self.y.1 - self.range.map(v)) / (self.y.1 - self.y.0)).clamp(0.0, 1.0);
        self.graph.y + (f * (self.graph.height - 1) as f64).round() as u16
    }

    /// The cell column of `x`, when it is in range.
    fn col_of(&self, x: f64) -> Option<u16> {
        let f = (x - self.x.0) / (self.x.1 - self.x.0);
        (-1e-9..=1.0 + 1e-9)
            .contains(&f)
            .then(|| self.graph.x + (f * (self.graph.width - 1) as f64).round() as u16)
    }
}

impl Widget for Plot<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let inner = self.block.inner(area);
        (&self.block).render(area, buf);
        if inner.height < 3 || inner.width < 12 {
            return;
        }
        let x = if self.x.1 > self.x.0 {
            self.x
        } else {
            (self.x.0, self.x.0 + 1.0)
        };
        // The y tick labels, right-aligned in a column, then the axis line.
        let labels: Vec<(f64, String)> = (self.y.ticks.iter())
            .map(|&t| (t, tick_label(t, self.y, self.percent)))
            .collect();
        let lw = labels.iter().map(|(_, l)| l.len()).max().unwrap_or(1) as u16;
        let graph = Rect {
            x: inner.x + lw + 1,
            y: inner.y,
            width: inner.width.saturating_sub(lw + 1),
            height: inner.height - 1,
        };
        if graph.width < 4 {
            return;
        }
        let frame = Frame {
            inner,
            graph,
            lw,
            x,
            y: self.y.bounds(),
            range: self.y,
        };
        let dim = self.theme.dim();
        y_axis(&frame, &labels, dim, buf);
        x_axis(&frame, dim, buf);
        // Bands first: the canvas leaves the cells it does not paint as they are.
        for mark in &self.marks {
            if let Mark::Band(pts, style) = mark {
                band(&frame, pts, *style, buf);
            }
        }
        self.curves(&frame, buf);
        for mark in &self.marks {
            if let Mark::Glyph(pts, glyph, style) = mark {
                for &(x, y) in pts {
                    if let (Some(c), Some(r)) = (frame.col_of(x), frame.row_of(y)) {
                        buf[(c, r)].set_symbol(glyph).set_style(*style);
                    }
                }
            }
        }
        self.cut_off_notes(&frame, dim, buf);
    }
}

/// The y axis: its line and the labels of ticks at least two rows apart.
fn y_axis(frame: &Frame, labels: &[(f64, String)], dim: Style, buf: &mut Buffer) {
    let (inner, graph, lw) = (frame.inner, frame.graph, frame.lw);
    for y in graph.y..graph.bottom() {
        buf[(inner.x + lw, y)].set_symbol("│").set_style(dim);
    }
    // Ticks closer than two rows read as one: keep every other until they are apart.
    let mut ticks: Vec<(u16, &String)> = labels
        .iter()
        .filter_map(|(t, l)| frame.row_of(*t).map(|r| (r, l)))
        .collect();
    while ticks.len() > 2 && ticks.windows(2).any(|w| w[0].0.abs_diff(w[1].0) < 2) {
        ticks = ticks.into_iter().step_by(2).collect();
    }
    for (row, label) in ticks {
        buf.set_string(inner.x + lw - label.len() as u16, row, label, dim);
        buf[(inner.x + lw, row)].set_symbol("┤");
    }
}

/// The x axis: its end labels and round ticks between, where they fit.
fn x_axis(frame: &Frame, dim: Style, buf: &mut Buffer) {
    let (inner, graph) = (frame.inner, frame.graph);
    let bottom = graph.bottom();
    buf[(inner.x + frame.lw, bottom)]
        .set_symbol("└")
        .set_style(dim);
    let mut taken_until = graph.x;
    let ticks = x_ticks(frame.x.0, frame.x.1, graph.width);
    for (i, &t) in ticks.iter().enumerate() {
        let Some(col) = frame.col_of(t) else { continue };
        let label = compact(t);
        let len = label.len() as u16;
        let is_last = i + 1 == ticks.len();
        let start = if is_last {
            graph.right().saturating_sub(len)
        } else if i == 0 {
            col
        } else {
            col.saturating_sub(len / 2)
        };
        // Round ticks keep clear of the end labels.
        if start < taken_until || (!is_last && start + len + 1 > graph.right() - 4) {
            continue;
        }
        buf.set_string(start, bottom, &label, dim);
        taken_until = start + len + 1;
    }
}

/// Per column, the cells from the least to the greatest of the values that fall in it.
fn band(frame: &Frame, pts: &[(f64, f64)], style: Style, buf: &mut Buffer) {
    let (graph, (x0, x1), (y0, y1)) = (frame.graph, frame.x, frame.y);
    let dx = (x1 - x0) / (graph.width.max(2) - 1) as f64;
    let mut i = 0;
    for c in 0..graph.width {
        let mid = x0 + c as f64 * dx;
        let (from, to) = (mid - dx / 2.0, mid + dx / 2.0);
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        while i < pts.len() && pts[i].0 < to {
            if pts[i].0 >= from {
                lo = lo.min(pts[i].1);
                hi = hi.max(pts[i].1);
            }
            i += 1;
        }
        if lo > hi || frame.range.map(hi) < y0 || frame.range.map(lo) > y1 {
            continue;
        }
        for row in frame.clamped_row(hi)..=frame.clamped_row(lo) {
            buf[(graph.x + c, row)].set_symbol("░").set_style(style);
        }
    }
}

impl Plot<'_> {
    /// The lines and dots, each on its own layer so the later ones stay on top.
    fn curves(&self, frame: &Frame, buf: &mut Buffer) {
        let theme = self.theme;
        let range = frame.range;
        let color = |c: Color| if theme.color { c } else { Color::Reset };
        let marks = &self.marks;
        let map = |p: &(f64, f64)| (p.0, range.map(p.1));
        Canvas::default()
            .x_bounds([frame.x.0, frame.x.1])
            .y_bounds([frame.y.0, frame.y.1])
            .marker(self.marker)
            .paint(|ctx| {
                for mark in marks {
                    match mark {
                        Mark::Line(pts, c) => {
                            let pts: Vec<(f64, f64)> = pts.iter().map(map).collect();
                            if pts.len() == 1 {
                                ctx.draw(&Points {
                                    coords: &pts,
                                    color: color(*c),
                                });
                            }
                            for w in pts.windows(2) {
                                ctx.draw(&Segment::new(w[0].0, w[0].1, w[1].0, w[1].1, color(*c)));
                            }
                        }
                        Mark::Dots(pts, c) => {
                            let pts: Vec<(f64, f64)> = pts.iter().map(map).collect();
                            ctx.draw(&Points {
                                coords: &pts,
                                color: color(*c),
                            });
                        }
                        Mark::Glyph(..) | Mark::Band(..) => continue,
                    }
                    ctx.layer();
                }
            })
            .render(frame.graph, buf);
    }

    /// Where the range cut a curve off, the extreme it left out.
    fn cut_off_notes(&self, frame: &Frame, dim: Style, buf: &mut Buffer) {
        let (range, graph) = (frame.range, frame.graph);
        let fmt = |v: f64| {
            if self.percent {
                format!("{v:.0}%")
            } else {
                crate::format::short(v)
            }
        };
        for (value, up) in [(range.above, true), (range.below, false)] {
            let Some(v) = value else { continue };
            let note = Line::from(Span::styled(
                format!("{} {} ", if up { "▲" } else { "▼" }, fmt(v)),
                dim,
            ));
            let w = note.width() as u16;
            let row = if up { graph.y } else { graph.bottom() - 1 };
            buf.set_line(graph.right().saturating_sub(w), row, &note, w);
        }
    }
}
