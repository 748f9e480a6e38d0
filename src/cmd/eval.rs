//! `candletop eval`: a checkpoint evaluated on a split, with per-sample predictions.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::checkpoint;
use crate::cli::{EvalArgs, Split};
use crate::data::DataSpec;
use crate::error::Error;
use crate::run_dir::RunDirError;
use crate::runtime;
use crate::train::{eval, TrainError};

use super::data_info::load_data;

pub(super) fn eval(args: &EvalArgs) -> Result<ExitCode, Error> {
    let path = &args.checkpoint;
    let ckpt = checkpoint::read(path)?;
    let mut cfg = ckpt.train_config.clone();
    if let Some(t) = args.threads {
        cfg.threads = t;
    }
    runtime::set_threads(cfg.threads(), cfg.kernels);
    if let Some(d) = &args.data {
        cfg.data = d.parse::<DataSpec>()?;
    }
    let data = load_data(&cfg)?;
    let shape = [data.train.channels, data.train.height, data.train.width];
    let model_cfg = &ckpt.model_config;
    if shape != model_cfg.input || data.classes.len() != model_cfg.classes {
        return Err(TrainError::Mismatch {
            path: path.clone(),
            problem: format!(
                "the model takes {:?} images in {} classes; --data {} has {:?} in {}",
                model_cfg.input,
                model_cfg.classes,
                cfg.data,
                shape,
                data.classes.len()
            ),
        }
        .into());
    }
    let described = data.describe();
    let name = format!("{:?}", args.split).to_lowercase();
    let split = Arc::new(match args.split {
        Split::Train => data.train,
        Split::Val => data.val,
        Split::Test => data.test,
    });
    let mut model = eval::load_model(&ckpt, path)?;
    if split.is_empty() {
        return Err(Error::Data(crate::data::DataError::Spec {
            spec: cfg.data.to_string(),
            problem: format!("no {name} split (an image folder needs {name}/ beside train/)"),
        }));
    }
    // The normalisation the model was trained with.
    let p = eval::predict(&mut model, &split, &ckpt.data.norm(), eval::EVAL_BATCH)?;
    let classes = &ckpt.classes;
    let c = classes.len();
    let mut confusion = vec![vec![0usize; c]; c];
    for (&y, &yhat) in p.labels.iter().zip(&p.predicted) {
        confusion[y as usize][yhat as usize] += 1;
    }
    let n = p.labels.len();
    let correct: usize = (0..c).map(|i| confusion[i][i]).sum();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}: {} split of {}, {n} images",
        args.checkpoint.display(),
        name,
        described
    );
    let _ = writeln!(
        out,
        "loss {:.4}  accuracy {:.2}%",
        p.loss,
        100.0 * correct as f64 / n.max(1) as f64
    );
    let _ = writeln!(out, "\nper class:");
    let w = classes.iter().map(|s| s.len()).max().unwrap_or(5).max(5);
    for (i, name) in classes.iter().enumerate() {
        let total: usize = confusion[i].iter().sum();
        let _ = writeln!(
            out,
            "  {name:<w$}  {:6.2}%  ({}/{total})",
            100.0 * confusion[i][i] as f64 / total.max(1) as f64,
            confusion[i][i]
        );
    }
    let _ = writeln!(out, "\nconfusion matrix (rows: label, columns: predicted):");
    let _ = write!(out, "  {:<w$}", "");
    for i in 0..c {
        let _ = write!(out, " {i:>5}");
    }
    let _ = writeln!(out);
    for (i, row) in confusion.iter().enumerate() {
        let _ = write!(
            out,
            "  {:<w$}",
            format!("{i} {}", classes[i])
                .chars()
                .take(w)
                .collect::<String>()
        );
        for v in row {
            let _ = write!(out, " {v:>5}");
        }
        let _ = writeln!(out);
    }
    if let Some(csv) = &args.predictions {
        write_predictions(csv, &p, c)?;
        let _ = writeln!(out, "\npredictions: {}", csv.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn write_predictions(path: &Path, p: &eval::Predictions, classes: usize) -> Result<(), Error> {
    let io = |source| {
        Error::RunDir(RunDirError {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    let header: Vec<String> = ["index", "label", "predicted"]
        .iter()
        .map(|s| s.to_string())
        .chain((0..classes).map(|i| format!("p{i}")))
        .collect();
    writeln!(f, "{}", header.join(",")).map_err(io)?;
    for i in 0..p.labels.len() {
        let probs: Vec<String> = p.probabilities[i * classes..(i + 1) * classes]
            .iter()
            .map(|x| format!("{x:.6}"))
            .collect();
        writeln!(
            f,
            "{i},{},{},{}",
            p.labels[i],
            p.predicted[i],
            probs.join(",")
        )
        .map_err(io)?;
    }
    f.flush().map_err(io)
}
