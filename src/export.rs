//! Front end: a run's records (metrics.jsonl) as one CSV table, a row a record, for a
//! spreadsheet, pandas or R. The columns are [`COLUMNS`] and then, for each parameter and each
//! class the run names, `grad_norm/NAME`, `update_ratio/NAME` and `val_accuracy/CLASS`; a cell
//! a record does not fill is empty.

use crate::protocol::{Event, Record};
use crate::run_dir::Recorded;

/// The fixed columns, with what each holds; `export --help` and the README list them.
pub const COLUMNS: &[(&str, &str)] = &[
    (
        "type",
        "step (training steps), epoch (an epoch's end) or test (the test set, at the end)",
    ),
    ("step", "the run's step (1-based) the record was written at"),
    ("epoch", "the epoch (1-based) of that step"),
    ("time", "wall time, ISO 8601"),
    (
        "elapsed_secs",
        "seconds since the run (or its last resumption) started",
    ),
    (
        "steps",
        "step rows: the steps the row's means cover (--log-every)",
    ),
    (
        "loss",
        "step rows: mean training loss over those steps; test: the test loss",
    ),
    ("loss_max", "step rows: the largest step loss among them"),
    (
        "accuracy",
        "step rows: training accuracy over their batches (0-1); test: test accuracy",
    ),
    ("lr", "the learning rate of the row's last step"),
    ("images_per_sec", "training throughput (images a second)"),
    (
        "train_loss",
        "epoch rows: mean training loss over the epoch",
    ),
    (
        "train_accuracy",
        "epoch rows: training accuracy over the epoch (0-1)",
    ),
    ("val_loss", "epoch rows: validation loss"),
    ("val_accuracy", "epoch rows: validation accuracy (0-1)"),
];

/// The table as CSV text (a header line, then a line a step, epoch or test record).
pub fn csv(recorded: &Recorded) -> String {
    let mut layers: Vec<String> = Vec::new();
    let mut classes: Vec<String> = Vec::new();
    for s in &recorded.records {
        if let Record::Event(Event::Started(info)) = &s.record {
            for l in &info.layers {
                if !layers.contains(l) {
                    layers.push(l.clone());
                }
            }
            for c in &info.classes {
                if !classes.contains(c) {
                    classes.push(c.clone());
                }
            }
        }
    }
    let mut header: Vec<String> = COLUMNS.iter().map(|(c, _)| c.to_string()).collect();
    header.extend(layers.iter().map(|l| format!("grad_norm/{l}")));
    header.extend(layers.iter().map(|l| format!("update_ratio/{l}")));
    header.extend(classes.iter().map(|c| format!("val_accuracy/{c}")));
    let mut out = line(&header);
    for s in &recorded.records {
        let mut row = vec![String::new(); header.len()];
        let mut set = |column: &str, value: String| {
            if let Some(i) = header.iter().position(|h| h == column) {
                row[i] = value;
            }
        };
        let (kind, per_layer, per_class) = match &s.record {
            Record::Step(m) => {
                set("steps", m.steps.to_string());
                set("loss", num(m.loss));
                set("loss_max", num(m.loss_max));
                set("accuracy", num(m.accuracy));
                set("lr", num(m.lr));
                set("images_per_sec", num(m.images_per_sec));
                ("step", Some((&m.grad_norms, &m.update_ratios)), None)
            }
            Record::Event(Event::Epoch(e)) => {
                set("lr", num(e.lr));
                set("images_per_sec", num(e.images_per_sec));
                set("train_loss", num(e.train_loss));
                set("train_accuracy", num(e.train_accuracy));
                set("val_loss", num(e.val_loss));
                set("val_accuracy", num(e.val_accuracy));
                ("epoch", None, Some(&e.val_class_accuracy))
            }
            Record::Event(Event::Evaluated(e)) => {
                set("loss", num(e.loss));
                set("accuracy", num(e.accuracy));
                ("test", None, None)
            }
            Record::Event(_) => continue,
        };
        set("type", kind.to_string());
        set("step", s.step.to_string());
        set("epoch", s.epoch.to_string());
        set("time", s.time.clone().unwrap_or_default());
        set("elapsed_secs", s.elapsed_secs.map(num).unwrap_or_default());
        // Per-parameter and per-class values follow the run's order of names; a resumed run
        // names the same ones.
        if let Some((norms, ratios)) = per_layer {
            for (l, (n, r)) in layers.iter().zip(norms.iter().zip(ratios)) {
                set(&format!("grad_norm/{l}"), num(*n));
                set(&format!("update_ratio/{l}"), num(*r));
            }
        }
        if let Some(acc) = per_class {
            for (c, a) in classes.iter().zip(acc) {
                set(&format!("val_accuracy/{c}"), num(*a));
            }
        }
        out.push_str(&line(&row));
    }
    out
}

/// A number as it reads back exactly (Rust's shortest round-trip form); non-finite as
/// `nan`, `inf`, `-inf`, which pandas and R read.
fn num(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{x}")
    }
}

/// One CSV line (RFC 4180): a field with a comma, quote or line break is quoted.
fn line(fields: &[String]) -> String {
    let quoted: Vec<String> = fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.clone()
            }
        })
        .collect();
    quoted.join(",") + "\n"
}

/// `export --help`'s list of the columns.
pub fn columns_help() -> String {
    let mut out = String::from("CSV columns (a row a step record, epoch or test result):\n");
    for (c, what) in COLUMNS {
        out.push_str(&format!("  {c:<16} {what}\n"));
    }
    out.push_str(
        "  grad_norm/P      step rows: the gradient L2 norm of parameter P (one column each)\n  \
         update_ratio/P   step rows: ||update|| / ||weight|| of parameter P\n  \
         val_accuracy/C   epoch rows: validation accuracy of class C (one column each)\n\
         An empty cell: the row's record does not have that value.",
    );
    out
}
