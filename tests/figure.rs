//! `candletop plot` and `--plot`: real runs through the binary drawn as figures. The SVG is
//! parsed: one line per curve with as many points as the run recorded, one marker per epoch,
//! and each panel's axis (read back from its tick labels and frame) covering the values that
//! metrics.jsonl holds.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{candletop, rejects_in, succeeds};

/// What a run's metrics.jsonl recorded, read here on its own.
struct Recorded {
    steps: usize,
    val_loss: Vec<f64>,
    val_acc: Vec<f64>,
    lrs: Vec<f64>,
    grads: Vec<f64>,
    params: usize,
}

fn recorded(run: &Path) -> Recorded {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let mut r = Recorded {
        steps: 0,
        val_loss: vec![],
        val_acc: vec![],
        lrs: vec![],
        grads: vec![],
        params: 0,
    };
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        match v["type"].as_str() {
            Some("step") => {
                r.steps += 1;
                r.lrs.push(v["lr"].as_f64().unwrap());
                let g = v["grad_norms"].as_array().unwrap();
                r.params = g.len();
                r.grads.extend(g.iter().map(|x| x.as_f64().unwrap()));
            }
            Some("epoch") => {
                r.val_loss.push(v["val_loss"].as_f64().unwrap());
                r.val_acc.push(100.0 * v["val_accuracy"].as_f64().unwrap());
            }
            _ => {}
        }
    }
    r
}

/// A panel of the figure as the SVG draws it: its frame (from the axis lines) and its y tick
/// labels with their heights.
#[derive(Debug)]
struct Frame {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    ticks: Vec<(f64, f64)>,
}

impl Frame {
    /// The values at the frame's bottom and top, from the tick labels: a straight line through
    /// them in the value or in its logarithm, whichever fits.
    fn y_range(&self) -> (f64, f64) {
        let fit = |f: &dyn Fn(f64) -> f64| {
            let (a, b) = (self.ticks[0], self.ticks[self.ticks.len() - 1]);
            let slope = (f(b.1) - f(a.1)) / (b.0 - a.0);
            let at = |y: f64| f(a.1) + slope * (y - a.0);
            let err: f64 = self.ticks.iter().map(|t| (at(t.0) - f(t.1)).abs()).sum();
            (err, at(self.bottom), at(self.top))
        };
        let (lin_err, lb, lt) = fit(&|v| v);
        let (log_err, gb, gt) = fit(&|v: f64| v.log10());
        let rel = |e: f64, b: f64, t: f64| e / (t - b).abs();
        if rel(log_err, gb, gt) < rel(lin_err, lb, lt) {
            (10f64.powf(gb), 10f64.powf(gt))
        } else {
            (lb, lt)
        }
    }

    fn covers(&self, name: &str, values: &[f64]) {
        let (lo, hi) = self.y_range();
        // Half a pixel of slack: the labels sit on whole pixels.
        let slack = 0.5 / (self.bottom - self.top) * (hi - lo).abs();
        for &v in values {
            assert!(
                v >= lo - slack && v <= hi + slack,
                "{name}: {v} outside the axis {lo}..{hi} ({self:?})"
            );
        }
    }
}

fn attr(n: &roxmltree::Node, a: &str) -> f64 {
    n.attribute(a).unwrap().parse().unwrap()
}

fn points(n: &roxmltree::Node) -> Vec<(f64, f64)> {
    n.attribute("points")
        .unwrap()
        .split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

/// The four panels, left to right and top to bottom.
fn frames(doc: &roxmltree::Document) -> Vec<Frame> {
    let lines: Vec<Vec<(f64, f64)>> = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some("#000000"))
        .filter(|n| n.attribute("opacity") == Some("1"))
        .map(|n| points(&n))
        .filter(|p| p.len() == 2)
        .collect();
    // The y axes: vertical and long; the x axis of each starts at its bottom.
    let mut frames: Vec<Frame> = lines
        .iter()
        .filter(|p| p[0].0 == p[1].0 && (p[1].1 - p[0].1).abs() > 100.0)
        .filter_map(|y| {
            let (top, bottom) = (y[0].1.min(y[1].1), y[0].1.max(y[1].1));
            let x_axis = lines.iter().find(|p| {
                p[0].1 == p[1].1 && (p[0].1 - bottom).abs() <= 1.0 && (p[0].0 - y[0].0).abs() <= 1.0
            })?;
            Some(Frame {
                left: y[0].0,
                right: x_axis[1].0,
                top,
                bottom,
                ticks: vec![],
            })
        })
        .collect();
    frames.sort_by(|a, b| (a.top, a.left).partial_cmp(&(b.top, b.left)).unwrap());
    // Tick labels: right-aligned just left of a y axis.
    for t in doc
        .descendants()
        .filter(|n| n.has_tag_name("text") && n.attribute("text-anchor") == Some("end"))
    {
        let (x, y) = (attr(&t, "x"), attr(&t, "y"));
        let label = t.text().unwrap_or("").trim().trim_end_matches('%');
        let Ok(v) = label.parse::<f64>() else {
            continue;
        };
        if let Some(f) = frames
            .iter_mut()
            .find(|f| x < f.left && x > f.left - 20.0 && y >= f.top - 2.0 && y <= f.bottom + 2.0)
        {
            f.ticks.push((y, v));
        }
    }
    frames
}

#[test]
fn runs_plot_as_an_svg_with_every_curve_and_axes_that_cover_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let common = [
        "--headless",
        "--epochs",
        "2",
        "--subset",
        "1200",
        "--log-every",
        "2",
        "--seed",
        "3",
    ];
    // --plot writes the run's figure when it ends.
    let mut args = common.to_vec();
    args.extend(["--run-dir", "a", "--plot"]);
    succeeds(d, &args);
    let figure = std::fs::read_to_string(d.join("a/figure.svg")).unwrap();
    roxmltree::Document::parse(&figure).unwrap();
    let mut args = common.to_vec();
    args.extend(["--run-dir", "b", "--lr", "3e-3"]);
    succeeds(d, &args);

    let out = succeeds(d, &["plot", "a", "--compare", "b", "-o", "ab.svg"]);
    assert_eq!(out.trim(), "wrote ab.svg");
    let text = std::fs::read_to_string(d.join("ab.svg")).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let (a, b) = (recorded(&d.join("a")), recorded(&d.join("b")));
    assert!(
        a.steps >= 10 && a.params == 10 && a.val_loss.len() == 2,
        "{}",
        a.steps
    );

    // One line per curve, stroke width 2, by colour: this run's training curves (loss and
    // accuracy, black), the other run's (blue), the LRs, one per parameter of this run.
    let mut curves: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for n in doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some("2"))
    {
        curves
            .entry(n.attribute("stroke").unwrap().to_string())
            .or_default()
            .push(points(&n).len());
    }
    assert_eq!(curves["#212121"], vec![a.steps, a.steps], "{curves:?}");
    // The other run: training curves, then its LR, in its colour.
    assert_eq!(
        curves["#3182BD"],
        vec![b.steps, b.steps, b.steps],
        "{curves:?}"
    );
    assert_eq!(
        curves["#756BB1"],
        vec![a.steps],
        "this run's LR: {curves:?}"
    );
    let lines: usize = curves.values().map(Vec::len).sum();
    assert_eq!(lines, 2 + 3 + 1 + a.params, "{curves:?}");
    // Validation: a filled circle per epoch in the loss and the accuracy panels, for each run;
    // the best of this run ringed in each.
    let circles = |fill: &str| {
        doc.descendants()
            .filter(|n| n.has_tag_name("circle") && n.attribute("fill") == Some(fill))
            .count()
    };
    assert_eq!(circles("#E6550D"), 2 * a.val_loss.len());
    assert_eq!(circles("#08519C"), 2 * b.val_loss.len());
    let rings = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle") && n.attribute("stroke") == Some("#CB181D"))
        .count();
    assert_eq!(rings, 2);

    // The axes cover the data, read back from the tick labels.
    let f = frames(&doc);
    assert_eq!(f.len(), 4, "{f:?}");
    let both = |x: &dyn Fn(&Recorded) -> &Vec<f64>| [x(&a).clone(), x(&b).clone()].concat();
    f[0].covers("validation loss", &both(&|r| &r.val_loss));
    f[1].covers("validation accuracy", &both(&|r| &r.val_acc));
    f[2].covers("learning rate", &both(&|r| &r.lrs));
    let grads: Vec<f64> = a.grads.iter().copied().filter(|&g| g > 0.0).collect();
    f[3].covers("gradient norms", &grads);
    // And every line stays inside its panel.
    for n in doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some("2"))
    {
        let p = points(&n);
        assert!(
            f.iter().any(|f| p.iter().all(|&(x, y)| x >= f.left - 1.0
                && x <= f.right + 1.0
                && y >= f.top - 1.0
                && y <= f.bottom + 1.0)),
            "a line outside every panel: {:?}",
            &p[..3]
        );
    }

    // The same figure as a PNG: an image of the figure's size with something drawn on it.
    succeeds(d, &["plot", "a", "-o", "a.png"]);
    let png = image::open(d.join("a.png")).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (1600, 1150));
    let dark = png.pixels().filter(|p| p.0.iter().all(|&c| c < 80)).count();
    assert!(dark > 5_000, "{dark} dark pixels");
}

#[test]
fn bad_plot_requests_get_one_line_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rejects_in(
        d,
        &["plot", "nowhere", "-o", "x.svg"],
        "nowhere/metrics.jsonl",
    );
    std::fs::create_dir(d.join("junk")).unwrap();
    std::fs::write(
        d.join("junk/metrics.jsonl"),
        "{\"type\":\"step\"\nnot json\n",
    )
    .unwrap();
    rejects_in(
        d,
        &["plot", "junk", "-o", "x.svg"],
        "junk/metrics.jsonl: line 1",
    );
    // A real run, then a figure name that is no known format.
    succeeds(
        d,
        &[
            "--headless",
            "--epochs",
            "1",
            "--subset",
            "600",
            "--run-dir",
            "r",
        ],
    );
    rejects_in(
        d,
        &["plot", "r", "-o", "r.pdf"],
        "r.pdf: unknown figure format",
    );
    // A figure where it cannot be written: the one line names it.
    let out = candletop(&["plot", "r", "-o", "no/such/dir/r.svg"], d);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no/such/dir/r.svg"), "{err}");
}
