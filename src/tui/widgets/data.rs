//! What the model learns from: training images as it sees them (augmented when on), and how
//! well it does on each class.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::{block, centred};
use crate::format::group_thousands;
use crate::protocol::SampleGrid;
use crate::tui::theme::Theme;
use crate::watch::RunState;

/// A grid of training images drawn with half blocks: each cell shows two pixels, the upper in
/// the foreground colour of '▀', the lower in the background. Without colour, shades.
pub struct SamplesView<'a> {
    pub run: &'a RunState,
    pub theme: Theme,
}

/// A pixel of `grid`'s image `i` at (y, x) as RGB.
fn pixel(grid: &SampleGrid, i: usize, y: usize, x: usize) -> (u8, u8, u8) {
    let plane = grid.height * grid.width;
    let img = &grid.images[i];
    let at = y * grid.width + x;
    if grid.channels == 3 {
        (img[at], img[plane + at], img[2 * plane + at])
    } else {
        (img[at], img[at], img[at])
    }
}

fn shade(v: f32) -> char {
    const SHADES: [char; 5] = [' ', '░', '▒', '▓', '█'];
    SHADES[((v / 255.0) * 4.0).round().clamp(0.0, 4.0) as usize]
}

/// Tiles for `grid` in an area `width` cells wide with `rows` for them: the largest (never
/// scaled up) that show at least a dozen images, or all. (tile height in pixels, width, height
/// in cells, tiles across, down.)
fn tiles(grid: &SampleGrid, width: usize, rows: usize) -> (usize, usize, usize, usize, usize) {
    let (h, w) = (grid.height.max(1), grid.width.max(1));
    let want = grid.images.len().min(12);
    let layout = |scale: f64| {
        let th = ((h as f64 * scale) as usize).max(2);
        let tw = ((w as f64 * scale) as usize).max(2);
        let cells_h = th.div_ceil(2);
        let across = ((width + 1) / (tw + 1)).max(1);
        let down = rows / (cells_h + 1);
        (th, tw, cells_h, across, down)
    };
    let fit = (1.0f64)
        .min(rows.saturating_sub(1).max(1) as f64 * 2.0 / h as f64)
        .min(width.max(2) as f64 / w as f64);
    let mut chosen = layout(fit);
    for step in 1..=8 {
        let l = layout(fit * (1.0 - step as f64 / 10.0));
        if chosen.3 * chosen.4 >= want || l.0 < 8 {
            break;
        }
        chosen = l;
    }
    chosen
}

/// Image `i` of `grid` scaled to `th` x `tw` pixels, two pixels a cell, with its top left
/// at `(x0, y0)`; what falls outside `clip` is left out.
fn draw_tile(
    grid: &SampleGrid,
    i: usize,
    (th, tw): (usize, usize),
    (x0, y0): (u16, u16),
    clip: Rect,
    color: bool,
    buf: &mut Buffer,
) {
    let (h, w) = (grid.height.max(1), grid.width.max(1));
    for cy in 0..th.div_ceil(2) {
        for cx in 0..tw {
            let (x, y) = (x0 + cx as u16, y0 + cy as u16);
            if x >= clip.right() || y >= clip.bottom() {
                continue;
            }
            let src = |ty: usize| {
                let sy = (ty * h / th).min(h - 1);
                let sx = (cx * w / tw).min(w - 1);
                pixel(grid, i, sy, sx)
            };
            let top = src(2 * cy);
            let bottom = if 2 * cy + 1 < th {
                src(2 * cy + 1)
            } else {
                top
            };
            let cell = &mut buf[(x, y)];
            if color {
                cell.set_char('▀').set_style(
                    Style::default()
                        .fg(Color::Rgb(top.0, top.1, top.2))
                        .bg(Color::Rgb(bottom.0, bottom.1, bottom.2)),
                );
            } else {
                let luma =
                    |p: (u8, u8, u8)| 0.299 * p.0 as f32 + 0.587 * p.1 as f32 + 0.114 * p.2 as f32;
                cell.set_char(shade((luma(top) + luma(bottom)) / 2.0));
            }
        }
    }
}

impl Widget for SamplesView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let theme = &self.theme;
        let outer = centred(
            area,
            area.width.saturating_sub(4),
            area.height.saturating_sub(2),
            buf,
        );
        let Some((step, grid)) = &self.run.samples else {
            let title = " Samples ".to_string();
            Paragraph::new(Line::styled(
                "asking the trainer for images...",
                theme.dim(),
            ))
            .block(block(title, theme, true))
            .render(outer, buf);
            return;
        };
        let classes = self
            .run
            .info
            .as_ref()
            .map(|i| i.classes.clone())
            .unwrap_or_default();
        let what = if grid.augmented {
            "augmented as the model sees them"
        } else {
            "augmentation off: as stored"
        };
        let title = format!(" Training images at step {step}, {what} ");
        let b = block(title, theme, true);
        let inner = b.inner(outer);
        b.render(outer, buf);
        // The footer line, then tiles: each image scaled down (never up) to fit.
        let rows_for_tiles = inner.height.saturating_sub(1) as usize;
        let (h, w) = (grid.height.max(1), grid.width.max(1));
        let (th, tw, cells_h, across, down) = tiles(grid, inner.width as usize, rows_for_tiles);
        let down = down.max(1);
        let shown = grid.images.len().min(across * down);
        for i in 0..shown {
            let (gy, gx) = (i / across, i % across);
            let x0 = inner.x + (gx * (tw + 1)) as u16;
            let y0 = inner.y + (gy * (cells_h + 1)) as u16;
            draw_tile(grid, i, (th, tw), (x0, y0), inner, theme.color, buf);
            let label = grid.labels[i] as usize;
            let name = classes
                .get(label)
                .cloned()
                .unwrap_or_else(|| label.to_string());
            let name: String = name.chars().take(tw).collect();
            let ly = y0 + cells_h as u16;
            if ly < inner.bottom() {
                buf.set_string(x0, ly, name, theme.dim());
            }
        }
        let footer = Line::from(vec![
            Span::styled("g", theme.title()),
            Span::raw(" new images   "),
            Span::styled("a", theme.title()),
            Span::raw(" augmentation on/off   "),
            Span::styled("Esc", theme.title()),
            Span::raw(format!(
                " close   {shown} of {} images, {}x{} px",
                grid.images.len(),
                w,
                h
            )),
        ]);
        let fy = inner.bottom().saturating_sub(1);
        buf.set_line(inner.x, fy, &footer, inner.width);
    }
}

/// Validation accuracy per class after the latest epoch, with the change from the epoch
/// before, the class counts, and the worst classes marked.
pub struct ClassesView<'a> {
    pub run: &'a RunState,
    pub theme: Theme,
}

/// Classes marked as the worst.
const WORST: usize = 3;

/// Class `c`'s row: name (in `name_w`), validation accuracy `acc[c]` with its change since
/// `prev` and a bar, the class counts, its loss weight when weights are on, and the class its
/// images were most often taken for when the epoch says (`taken`).
fn class_row(
    info: &crate::protocol::RunInfo,
    c: usize,
    acc: &[f64],
    prev: Option<&crate::protocol::EpochMetrics>,
    name_w: usize,
    taken: Option<&[crate::protocol::Confusion]>,
) -> String {
    let facts = &info.data_facts;
    let name: String = info.classes[c].chars().take(name_w).collect();
    let count = |v: &Vec<usize>| v.get(c).map_or("-".into(), |&n| group_thousands(n));
    let (val, change, bar) = match acc.get(c) {
        Some(&a) => {
            let change = prev
                .and_then(|p| p.val_class_accuracy.get(c))
                .map_or(String::new(), |&p| format!("{:+.1}", 100.0 * (a - p)));
            let filled = (a.clamp(0.0, 1.0) * 12.0).round() as usize;
            (
                format!("{:.1}%", 100.0 * a),
                change,
                "█".repeat(filled) + &"·".repeat(12 - filled),
            )
        }
        None => ("-".into(), String::new(), String::new()),
    };
    let mut text = format!(
        "{name:<name_w$}  {val:>6}  {change:>6}  {bar:<12}  {:>7}  {:>6}",
        count(&facts.train_counts),
        count(&facts.val_counts)
    );
    if !facts.class_weights.is_empty() {
        let weight = facts.class_weights.get(c).copied().unwrap_or(0.0);
        text.push_str(&format!("  {weight:>6.2}"));
    }
    if let Some(taken) = taken {
        let cell = taken
            .get(c)
            .filter(|t| t.share > 0.0 && t.class != c)
            .map_or("-".into(), |t| {
                let name: String = info
                    .classes
                    .get(t.class)
                    .map_or("?".into(), |n| n.chars().take(name_w).collect());
                format!("{name} {:.0}%", 100.0 * t.share)
            });
        text.push_str(&format!("  {cell}"));
    }
    text
}

/// The worst classes of the latest epoch, or that there are none.
fn summary(
    info: &crate::protocol::RunInfo,
    last: Option<&crate::protocol::EpochMetrics>,
    acc: &[f64],
    worst: &[usize],
) -> String {
    match last {
        None => "per-class accuracy comes after the first epoch".to_string(),
        Some(e) if worst.is_empty() => {
            format!(
                "epoch {}: every class within half a point of the mean",
                e.epoch
            )
        }
        Some(e) => {
            let names: Vec<String> = worst
                .iter()
                .map(|&c| format!("{} {:.1}%", info.classes[c], 100.0 * acc[c]))
                .collect();
            format!("epoch {}: worst {}", e.epoch, names.join(", "))
        }
    }
}

impl Widget for ClassesView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (run, theme) = (self.run, &self.theme);
        let Some(info) = &run.info else { return };
        let facts = &info.data_facts;
        let last = run.epochs.last();
        let prev = run.epochs.len().checked_sub(2).map(|i| &run.epochs[i]);
        let acc = last
            .map(|e| e.val_class_accuracy.clone())
            .unwrap_or_default();
        let name_w = info
            .classes
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(5)
            .clamp(5, 18);
        let mut order: Vec<usize> = (0..acc.len()).collect();
        order.sort_by(|&a, &b| acc[a].total_cmp(&acc[b]));
        // The worst few, if they are worse than the mean by more than a rounding.
        let mean = acc.iter().sum::<f64>() / acc.len().max(1) as f64;
        let worst: Vec<usize> = order
            .iter()
            .take(WORST.min(acc.len()))
            .copied()
            .filter(|&c| acc[c] < mean - 0.005)
            .collect();
        let weighted = !facts.class_weights.is_empty();
        let mut lines = Vec::new();
        let mut head = format!(
            "{:<name_w$}  {:>6}  {:>6}  {:<12}  {:>7}  {:>6}",
            "class", "val", "change", "", "train", "val n"
        );
        if weighted {
            head.push_str("  weight");
        }
        // Records from before the confusion summary have none.
        let taken = last
            .map(|e| e.val_confusion.as_slice())
            .filter(|t| t.len() == info.classes.len());
        if taken.is_some() {
            head.push_str("  most taken for");
        }
        lines.push(Line::styled(head, theme.dim()));
        // As many rows as fit; the worst classes first when they do not all fit.
        let room = (area.height as usize).saturating_sub(7).max(3);
        let rows: Vec<usize> = if info.classes.len() <= room || acc.is_empty() {
            (0..info.classes.len()).take(room).collect()
        } else {
            order.iter().take(room).copied().collect()
        };
        for &c in &rows {
            let text = class_row(info, c, &acc, prev, name_w, taken);
            let style = if worst.contains(&c) {
                theme.alarm()
            } else {
                Style::default()
            };
            lines.push(Line::styled(text, style));
        }
        if rows.len() < info.classes.len() {
            lines.push(Line::styled(
                format!(
                    "... {} more classes; the {} worst are shown",
                    info.classes.len() - rows.len(),
                    rows.len()
                ),
                theme.dim(),
            ));
        }
        lines.push(Line::from(""));
        let summary = summary(info, last, &acc, &worst);
        lines.push(Line::styled(summary, theme.title()));
        lines.push(Line::styled(
            format!(
                "w class weights {}   Esc close",
                if weighted { "off" } else { "on" }
            ),
            theme.dim(),
        ));
        super::Popup {
            title: "Validation accuracy per class",
            lines,
            theme: *theme,
        }
        .render(area, buf);
    }
}
