//! A run as a figure to keep (`candletop plot`, `--plot`): loss, accuracy, learning rate and the
//! gradient norm of every parameter over the steps, with axes, units, legends and the run's
//! settings in a caption; other runs overlaid for comparison. SVG or PNG, drawn with plotters.
//!
//! The y axes are those of the terminal UI (`watch::chart`): the training curves smoothed the
//! same way, the loss on a log axis when it spans more than a decade, the first steps' spike
//! left out of a linear one (and said so).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::format::{group_thousands, sci, short, steps_label, wrap};
use crate::protocol::FinishReason;
use crate::watch::chart::{
    self, ema, fit_accuracy, fit_decades, fit_loss, positive_bounds, FitInput, Range,
};
use crate::watch::RunState;

/// One run of the figure: how the legend names it, and what it recorded.
pub struct Run {
    pub name: String,
    pub state: RunState,
}

/// Figure size in pixels (SVG units alike).
pub const WIDTH: u32 = 1600;
pub const HEIGHT: u32 = 1150;

/// The EMA span of the smoothed training curves, as the terminal UI starts with.
const SPAN: u32 = chart::DEFAULT_SPAN;

/// The first run's colours: training, validation; the learning rate.
pub const TRAIN: RGBColor = RGBColor(33, 33, 33);
pub const VAL: RGBColor = RGBColor(230, 85, 13);
pub const LR: RGBColor = RGBColor(117, 107, 177);
pub const BEST: RGBColor = RGBColor(203, 24, 29);
/// A what-if branch of the run.
pub const BRANCH: RGBColor = RGBColor(49, 163, 84);
/// Other runs, in turn: (training, validation) in lighter and darker shades of one hue.
pub const OTHERS: [(RGBColor, RGBColor); 4] = [
    (RGBColor(49, 130, 189), RGBColor(8, 81, 156)),
    (RGBColor(65, 171, 93), RGBColor(0, 109, 44)),
    (RGBColor(166, 118, 29), RGBColor(102, 73, 18)),
    (RGBColor(150, 150, 150), RGBColor(82, 82, 82)),
];
/// One per parameter in the gradient panel (the ten of matplotlib's tab10, then again).
pub const PARAMS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

const FONT: &str = "sans-serif";

/// The figure's text face, compiled in (DejaVu Sans, its licence in assets/fonts): a PNG looks
/// the same on every machine, with or without fonts installed.
fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let face: &'static [u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
        for style in [FontStyle::Normal, FontStyle::Bold] {
            // The face is valid (compiled in and tested): a failure would mean no text.
            let _ = register_font(FONT, style, face);
        }
    });
}

/// Writes the figure of `runs` (the first is the run, the others are compared with it) to
/// `path`, SVG or PNG by its extension.
pub fn write(path: &Path, runs: &[Run]) -> Result<(), String> {
    register();
    if runs.is_empty() {
        return Err("no run to plot".into());
    }
    let fig = figure(runs);
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    // Written beside the target and renamed: a reader never sees half a figure.
    let tmp = path.with_extension(format!("{}.tmp", ext.clone().unwrap_or_default()));
    let result = match ext.as_deref() {
        Some("svg") => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
                draw(&root, &fig)?;
                root.present().map_err(|e| e.to_string())?;
            }
            std::fs::write(&tmp, svg).map_err(|e| e.to_string())
        }
        Some("png") => {
            let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
            {
                let root =
                    BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
                draw(&root, &fig)?;
                root.present().map_err(|e| e.to_string())?;
            }
            image::RgbImage::from_raw(WIDTH, HEIGHT, pixels)
                .ok_or_else(|| "the image buffer has the wrong size".to_string())
                .and_then(|img| {
                    img.save_with_format(&tmp, image::ImageFormat::Png)
                        .map_err(|e| e.to_string())
                })
        }
        _ => {
            return Err(format!(
                "{}: unknown figure format (the name must end in .svg or .png)",
                path.display()
            ))
        }
    };
    result
        .and_then(|()| {
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| e.to_string())
        })
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| e.to_string()))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: {e}", path.display())
        })
}

type Points = Vec<(f64, f64)>;

/// What one panel shows of one run.
struct Curves {
    train: Points,
    val: Points,
}

fn curves(run: &RunState, accuracy: bool) -> Curves {
    let pct = if accuracy { 100.0 } else { 1.0 };
    let series = if accuracy {
        &run.train_accuracy
    } else {
        &run.train_loss
    };
    let raw: Points = series
        .points()
        .into_iter()
        .map(|(x, y)| (x, pct * y))
        .collect();
    Curves {
        train: ema(&raw, SPAN),
        val: run
            .epochs
            .iter()
            .map(|e| {
                (
                    e.step as f64,
                    pct * if accuracy { e.val_accuracy } else { e.val_loss },
                )
            })
            .collect(),
    }
}

/// What a series looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A line through the points.
    Line,
    /// A filled circle at each point.
    Markers,
    /// A ring around each point (the best value).
    Ring,
}

/// One series of a panel, in data coordinates (x = step).
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub kind: Kind,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

/// One chart of the figure: its title, its y axis and what it shows.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub y_desc: &'static str,
    pub range: Range,
    pub percent: bool,
    pub series: Vec<Series>,
    pub legend: SeriesLabelPosition,
}

/// The whole figure, computed before it is drawn (and what the tests check the drawing
/// against).
#[derive(Debug, Clone)]
pub struct Figure {
    pub title: String,
    pub caption: Vec<String>,
    /// The step axis of every panel: 0 to this.
    pub x_max: f64,
    pub panels: Vec<Panel>,
}

/// The figure of `runs`: the first is the run, the others are compared with it.
pub fn figure(runs: &[Run]) -> Figure {
    let main = &runs[0];
    let title = match runs.len() {
        1 => format!("candletop: {}", main.name),
        _ => format!(
            "candletop: {} compared with {}",
            main.name,
            runs[1..]
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let x_max = runs
        .iter()
        .map(|r| r.state.total_steps().max(r.state.step))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    Figure {
        title,
        caption: caption(runs),
        x_max,
        panels: vec![
            metric_panel(runs, false),
            metric_panel(runs, true),
            lr_panel(runs),
            gradient_panel(main),
        ],
    }
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let caption_h = 24 * fig.caption.len() as u32 + 20;
    let (top, rest) = root.split_vertically(56);
    let (body, bottom) = rest.split_vertically(HEIGHT - 56 - caption_h);
    top.draw(&Text::new(
        fig.title.clone(),
        (30, 16),
        (FONT, 28).into_font().style(FontStyle::Bold),
    ))
    .map_err(err)?;
    for (i, line) in fig.caption.iter().enumerate() {
        bottom
            .draw(&Text::new(
                line.clone(),
                (30, 8 + 24 * i as i32),
                (FONT, 17).into_font(),
            ))
            .map_err(err)?;
    }
    for (panel, area) in fig.panels.iter().zip(body.split_evenly((2, 2))) {
        draw_panel(&area, panel, fig.x_max)?;
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    x_max: f64,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let range = &panel.range;
    // A legend of many entries goes beside the plot rather than over it.
    let beside = panel.series.len() > 6;
    let mut chart = chart_on(
        area,
        &panel.title,
        panel.y_desc,
        range,
        panel.percent,
        x_max,
        right_of(beside),
    )?;
    for s in &panel.series {
        let pts = s.points.iter().map(|&(x, y)| (x, at(range, y)));
        let c = s.color;
        let drawn = match s.kind {
            Kind::Line => chart.draw_series(LineSeries::new(pts, c.stroke_width(2))),
            Kind::Markers => chart.draw_series(pts.map(|p| Circle::new(p, 5, c.filled()))),
            Kind::Ring => chart.draw_series(pts.map(|p| Circle::new(p, 9, c.stroke_width(2)))),
        }
        .map_err(e)?;
        drawn.label(s.label.clone()).legend(swatch(c));
    }
    if beside {
        // Beside the plot, drawn here: plotters' own legend box is clipped to the plot.
        let (w, _) = area.dim_in_pixel();
        let x = w as i32 - 14 - right_of(beside) as i32 + 16;
        for (i, s) in panel.series.iter().enumerate() {
            let y = 70 + 20 * i as i32;
            area.draw(&Rectangle::new(
                [(x, y - 3), (x + 18, y + 3)],
                s.color.filled(),
            ))
            .map_err(e)?;
            area.draw(&Text::new(
                s.label.clone(),
                (x + 24, y - 8),
                (FONT, 14).into_font(),
            ))
            .map_err(e)?;
        }
        return Ok(());
    }
    chart
        .configure_series_labels()
        .position(panel.legend.clone())
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(e)
}

/// Room on the right of a plot for a legend beside it.
fn right_of(beside: bool) -> u32 {
    if beside {
        190
    } else {
        0
    }
}

/// The settings and results of each run, one line or two each.
fn caption(runs: &[Run]) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let s = &r.state;
        let who = if runs.len() > 1 {
            format!("{}: ", r.name)
        } else {
            String::new()
        };
        let Some(info) = &s.info else {
            lines.push(format!("{who}(no run information recorded)"));
            continue;
        };
        let schedule = s
            .schedule
            .as_ref()
            .map(|x| x.spec.describe())
            .unwrap_or_default();
        lines.push(format!(
            "{who}data {}; model {}; {}; batch {}; {} epochs of {} steps; LR schedule {schedule}",
            info.data,
            info.model,
            info.optimizer,
            info.batch_size,
            info.epochs,
            group_thousands(info.steps_per_epoch),
        ));
        let mut result = format!(
            "{}reached step {} of {} (epoch {}){}",
            if runs.len() > 1 {
                " ".repeat(r.name.chars().count() + 2)
            } else {
                String::new()
            },
            group_thousands(s.step as usize),
            group_thousands(s.total_steps() as usize),
            s.epoch,
            match &s.status {
                crate::watch::Status::Finished(reason) => match reason {
                    FinishReason::Completed => ", completed".to_string(),
                    FinishReason::Stopped => ", stopped".to_string(),
                    FinishReason::NonFinite => ", stopped on a NaN".to_string(),
                    FinishReason::EarlyStopped => ", stopped early".to_string(),
                    FinishReason::TargetReached => ", stopped at its target".to_string(),
                },
                crate::watch::Status::Error(m) => format!(", failed: {m}"),
                _ => String::new(),
            }
        );
        if let Some(b) = s.best_val_accuracy() {
            result.push_str(&format!(
                "; best validation accuracy {:.2}% (epoch {})",
                100.0 * b.val_accuracy,
                b.epoch
            ));
        }
        if let Some(b) = s.best_val_loss() {
            result.push_str(&format!("; best validation loss {:.4}", b.val_loss));
        }
        if let Some(t) = &s.test {
            result.push_str(&format!("; test accuracy {:.2}%", 100.0 * t.accuracy));
        }
        lines.push(result);
        if i == 0 && runs.len() == 1 {
            lines.push(format!(
                "Training curves: exponential moving average over {SPAN} steps of the per-batch values; validation once per epoch (circles), the best ringed in red."
            ));
        }
    }
    if runs.len() > 1 {
        lines.push(format!(
            "Training curves: EMA over {SPAN} steps; validation per epoch (circles). Gradient norms: {} only.",
            runs[0].name
        ));
    }
    // Lines longer than the figure is wide go on, indented, on the next.
    lines
        .iter()
        .flat_map(|l| {
            let indent = l.len() - l.trim_start().len();
            wrap(l.trim_start(), CAPTION_CHARS - indent - 4)
                .into_iter()
                .enumerate()
                .map(move |(i, part)| {
                    format!(
                        "{}{part}",
                        " ".repeat(if i == 0 { indent } else { indent + 4 })
                    )
                })
        })
        .collect()
}

/// Characters of the caption's font on a line of the figure (DejaVu Sans at 17 px averages
/// under 9 px a character).
const CAPTION_CHARS: usize = 165;

/// The mapped value of `y` on `range`, kept inside it (a linear loss axis leaves the first
/// steps' spike out: drawn along the top, and said in the panel's title).
fn at(range: &Range, y: f64) -> f64 {
    let (lo, hi) = range.bounds();
    range.map(y).clamp(lo, hi)
}

/// A panel's chart: the x axis in steps, the y axis `range` with its ticks as labelled grid
/// lines (log axes labelled in the data's values, not their logarithms).
fn chart_on<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    range: &Range,
    percent: bool,
    x_max: f64,
    right: u32,
) -> Result<
    ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    String,
> {
    let (lo, hi) = range.bounds();
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 21).into_font().style(FontStyle::Bold))
        .margin(14)
        .margin_right(14 + right)
        .x_label_area_size(44)
        .y_label_area_size(78)
        .build_cartesian_2d(0.0..x_max, lo..hi)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_labels(8)
        .x_desc("step")
        .y_desc(y_desc)
        .x_label_formatter(&|x| steps_label(x.round().max(0.0)))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(|e| e.to_string())?;
    // The y ticks of `range`: a faint grid line and a label each.
    for &t in &range.ticks {
        let y = range.map(t);
        chart
            .draw_series(LineSeries::new(
                [(0.0, y), (x_max, y)],
                BLACK.mix(0.08).stroke_width(1),
            ))
            .map_err(|e| e.to_string())?;
        // The chart gives the backend's pixel; the area draws relative to its own corner.
        let (px, py) = chart.backend_coord(&(0.0, y));
        let (bx, by) = area.get_base_pixel();
        let label = chart::tick_label(t, range, percent);
        area.draw(&Text::new(
            label,
            (px - bx - 8, py - by),
            (FONT, 15)
                .into_font()
                .color(&BLACK)
                .pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Right,
                    plotters::style::text_anchor::VPos::Center,
                )),
        ))
        .map_err(|e| e.to_string())?;
    }
    Ok(chart)
}

/// A legend mark: a short thick bar in the series' colour (a bar, not a line, so that the
/// figure's lines are only its data).
fn swatch(c: RGBColor) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    move |(x, y)| Rectangle::new([(x, y - 3), (x + 18, y + 3)], c.filled())
}

fn metric_panel(runs: &[Run], accuracy: bool) -> Panel {
    let all: Vec<Curves> = runs.iter().map(|r| curves(&r.state, accuracy)).collect();
    let branch_points = (!accuracy)
        .then(|| runs[0].state.branch_curve(SPAN))
        .flatten();
    let mut fit = FitInput::default();
    for c in &all {
        fit.curves.push(&c.train);
        fit.points.extend(c.val.iter().map(|p| p.1));
    }
    if let Some(p) = &branch_points {
        fit.curves.push(p);
    }
    let range = if accuracy {
        fit_accuracy(&fit, false, 9)
    } else {
        fit_loss(&fit, None, 9)
    };
    let mut title = if accuracy {
        "Accuracy".to_string()
    } else {
        "Loss (cross-entropy)".to_string()
    };
    if range.scale == chart::Scale::Log {
        title.push_str(", log scale");
    }
    if let Some(a) = range.above {
        title.push_str(&format!(
            " (first steps above the axis, up to {})",
            short(a)
        ));
    }
    if let (Some(b), true) = (range.below, accuracy) {
        title.push_str(&format!(" (first steps below the axis, from {b:.0}%)"));
    }
    let mut series = Vec::new();
    // The other runs first: the run's own are drawn over them.
    for (i, (run, c)) in runs.iter().zip(&all).enumerate().rev() {
        let (tc, vc) = if i == 0 {
            (TRAIN, VAL)
        } else {
            OTHERS[(i - 1) % OTHERS.len()]
        };
        let name = if runs.len() > 1 {
            format!("{} ", run.name)
        } else {
            String::new()
        };
        series.push(Series {
            label: format!("{name}train (EMA {SPAN})"),
            kind: Kind::Line,
            color: tc,
            points: c.train.clone(),
        });
        series.push(Series {
            label: format!("{name}validation"),
            kind: Kind::Markers,
            color: vc,
            points: c.val.clone(),
        });
    }
    // The run's latest what-if branch, where it ran, and each line's validation at its end.
    let branch = runs[0].state.branch.as_ref();
    if let (Some(b), Some(points)) = (branch, branch_points.clone()) {
        let label = format!(
            "branch {}",
            crate::protocol::Setting::describe_change(&b.change)
        );
        if let Some(v) = &b.verdict {
            let at = (b.forked_at + v.steps) as f64;
            series.push(Series {
                label: format!("{label}: validation"),
                kind: Kind::Markers,
                color: BRANCH,
                points: vec![(at, v.branch_val_loss)],
            });
        }
        series.push(Series {
            label: format!("{label} (EMA {SPAN})"),
            kind: Kind::Line,
            color: BRANCH,
            points,
        });
    }
    let best = if accuracy {
        runs[0]
            .state
            .best_val_accuracy()
            .map(|b| (b.step, 100.0 * b.val_accuracy))
    } else {
        runs[0].state.best_val_loss().map(|b| (b.step, b.val_loss))
    };
    if let Some((step, v)) = best {
        series.push(Series {
            label: format!(
                "best {}",
                if accuracy {
                    format!("{v:.2}%")
                } else {
                    format!("{v:.4}")
                }
            ),
            kind: Kind::Ring,
            color: BEST,
            points: vec![(step as f64, v)],
        });
    }
    Panel {
        title,
        y_desc: if accuracy { "accuracy (%)" } else { "loss" },
        range,
        percent: accuracy,
        series,
        legend: if accuracy {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperRight
        },
    }
}

fn lr_panel(runs: &[Run]) -> Panel {
    let traces: Vec<Points> = runs.iter().map(|r| r.state.lr_trace.points()).collect();
    let (lo, hi) = positive_bounds(traces.iter().flatten(), (1e-4, 1e-2));
    let mut series = Vec::new();
    for (i, (run, trace)) in runs.iter().zip(&traces).enumerate().rev() {
        series.push(Series {
            label: if runs.len() > 1 {
                format!("{} (last {})", run.name, sci(run.state.lr))
            } else {
                format!("learning rate (last {})", sci(run.state.lr))
            },
            kind: Kind::Line,
            color: if i == 0 {
                LR
            } else {
                OTHERS[(i - 1) % OTHERS.len()].0
            },
            points: trace.clone(),
        });
    }
    Panel {
        title: "Learning rate, log scale".into(),
        y_desc: "learning rate",
        range: fit_decades(lo, hi, 9),
        percent: false,
        series,
        legend: SeriesLabelPosition::UpperRight,
    }
}

fn gradient_panel(run: &Run) -> Panel {
    let s = &run.state;
    let histories: Vec<Points> = s
        .grad_trends
        .iter()
        .map(|t| t.points().into_iter().filter(|p| p.1 > 0.0).collect())
        .collect();
    let (lo, hi) = positive_bounds(histories.iter().flatten(), (1e-3, 1e1));
    let names: Vec<String> = s
        .info
        .as_ref()
        .map(|i| i.layers.clone())
        .unwrap_or_default();
    let series = histories
        .into_iter()
        .enumerate()
        .map(|(i, points)| Series {
            label: names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("param {i}")),
            kind: Kind::Line,
            color: PARAMS[i % PARAMS.len()],
            points,
        })
        .collect();
    Panel {
        title: "Gradient L2 norm per parameter, log scale".into(),
        y_desc: "gradient norm",
        range: fit_decades(lo, hi, 9),
        percent: false,
        series,
        legend: SeriesLabelPosition::LowerRight,
    }
}
