//! `candletop export`: a run's records as CSV, a checkpoint's weights as safetensors, each
//! read back by an independent reader and checked against what the run recorded and what
//! `candletop eval` predicts.

mod common;

use std::path::Path;

use candletop::data::{DataOptions, DataSpec, DataSplits};
use candletop::model::{Cnn, ModelConfig, NamedTensor};
use candletop::rng::Rng;
use common::{candletop, rejects_in, succeeds};
use serde_json::Value;

/// A short run of a small model in `d/run`.
fn short_run(d: &Path) {
    succeeds(
        d,
        &[
            "--headless",
            "--epochs",
            "2",
            "--subset",
            "1000",
            "--arch",
            "c8,f16",
            "--log-every",
            "5",
            "--seed",
            "5",
            "--run-dir",
            "run",
        ],
    );
}

/// A CSV line's fields (the tests' names hold no quotes).
fn fields(line: &str) -> Vec<&str> {
    line.split(',').collect()
}

#[test]
fn the_csv_holds_every_step_epoch_and_test_record_as_metrics_jsonl_says() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    short_run(d);
    let out = succeeds(d, &["export", "run", "--csv", "run.csv"]);
    let text = std::fs::read_to_string(d.join("run.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        out.trim(),
        format!("wrote run.csv ({} rows)", lines.len() - 1)
    );
    let header = fields(lines[0]);
    let fixed: Vec<&str> = candletop::export::COLUMNS.iter().map(|c| c.0).collect();
    assert_eq!(&header[..fixed.len()], &fixed[..]);
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    // One row a step, epoch and test record, in the file's order, with its values exactly.
    let log = std::fs::read_to_string(d.join("run/metrics.jsonl")).unwrap();
    let records: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| ["step", "epoch", "evaluated"].contains(&v["type"].as_str().unwrap()))
        .collect();
    assert_eq!(records.len(), lines.len() - 1);
    let started: Value = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["type"] == "started")
        .unwrap();
    let layers = started["layers"].as_array().unwrap();
    let classes = started["classes"].as_array().unwrap();
    assert_eq!(header.len(), fixed.len() + 2 * layers.len() + classes.len());
    let f = |row: &[&str], name: &str| row[col(name)].parse::<f64>().unwrap();
    let (mut steps, mut epochs) = (0, 0);
    for (rec, line) in records.iter().zip(&lines[1..]) {
        let row = fields(line);
        assert_eq!(row.len(), header.len());
        assert_eq!(row[col("step")], rec["step"].to_string());
        assert_eq!(row[col("epoch")], rec["epoch"].to_string());
        assert_eq!(row[col("time")], rec["time"].as_str().unwrap());
        match rec["type"].as_str().unwrap() {
            "step" => {
                steps += 1;
                assert_eq!(row[col("type")], "step");
                assert_eq!(f(&row, "loss"), rec["loss"].as_f64().unwrap());
                assert_eq!(f(&row, "accuracy"), rec["accuracy"].as_f64().unwrap());
                assert_eq!(f(&row, "lr"), rec["lr"].as_f64().unwrap());
                for (i, l) in layers.iter().enumerate() {
                    let name = format!("grad_norm/{}", l.as_str().unwrap());
                    assert_eq!(f(&row, &name), rec["grad_norms"][i].as_f64().unwrap());
                }
                assert_eq!(row[col("val_loss")], "");
            }
            "epoch" => {
                epochs += 1;
                assert_eq!(row[col("type")], "epoch");
                assert_eq!(
                    f(&row, "val_accuracy"),
                    rec["val_accuracy"].as_f64().unwrap()
                );
                assert_eq!(f(&row, "train_loss"), rec["train_loss"].as_f64().unwrap());
                for (i, c) in classes.iter().enumerate() {
                    let name = format!("val_accuracy/{}", c.as_str().unwrap());
                    let want = rec["val_class_accuracy"][i].as_f64().unwrap();
                    assert_eq!(f(&row, &name), want);
                }
                assert_eq!(row[col("loss")], "");
            }
            _ => {
                assert_eq!(row[col("type")], "test");
                assert_eq!(f(&row, "accuracy"), rec["accuracy"].as_f64().unwrap());
                // The test set is evaluated after the last epoch, and says so.
                assert_eq!(row[col("epoch")], "2");
            }
        }
    }
    assert!(
        steps >= 6 && epochs == 2,
        "{steps} step rows, {epochs} epoch rows"
    );
    // Python's csv module reads it, header and all.
    if let Some(py) = std::env::var_os("CANDLETOP_PYTHON") {
        let out = std::process::Command::new(py)
            .arg("-c")
            .arg("import csv,sys; r=list(csv.DictReader(open(sys.argv[1]))); print(len(r), r[-1]['type'])")
            .arg(d.join("run.csv"))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(said.trim(), format!("{} test", lines.len() - 1));
    }
}

#[test]
fn safetensors_weights_predict_as_eval_does_in_candle_numpy_and_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    short_run(d);
    let ckpt = "run/checkpoints/last.h5";
    let out = succeeds(d, &["export", ckpt, "--safetensors", "w.safetensors"]);
    assert!(out.starts_with("wrote w.safetensors ("), "{out}");
    succeeds(d, &["eval", "--checkpoint", ckpt, "--predictions", "p.csv"]);
    let csv = std::fs::read_to_string(d.join("p.csv")).unwrap();
    let want: Vec<(u32, Vec<f64>)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f = fields(l);
            let p = f[3..].iter().map(|x| x.parse().unwrap()).collect();
            (f[2].parse().unwrap(), p)
        })
        .collect();

    // Candle reads it: the model its metadata describes, with its tensors, predicts as eval.
    let path = d.join("w.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["format"], "pt");
    let config: ModelConfig = serde_json::from_str(&meta["candletop_model"]).unwrap();
    let norm: Value = serde_json::from_str(&meta["normalize"]).unwrap();
    let loaded = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    let mut tensors = Vec::new();
    let mut counters = Vec::new();
    for (name, t) in &loaded {
        match t.dtype() {
            candle_core::DType::I64 => counters.push((name.clone(), t.to_scalar::<i64>().unwrap())),
            _ => tensors.push(NamedTensor {
                name: name.clone(),
                shape: t.dims().to_vec(),
                data: t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            }),
        }
    }
    let read = candletop::checkpoint::read(&d.join(ckpt)).unwrap();
    assert_eq!(counters.len(), read.counters.len());
    let mut model = Cnn::new(config, &mut Rng::new(0), candle_core::DType::F32).unwrap();
    model.load_state(&tensors, &counters).unwrap();
    let data = DataSplits::load(&DataSpec::Embedded, &DataOptions::new(0.1, 5)).unwrap();
    let mut norm_of = read.data.norm();
    norm_of.mean = serde_json::from_value(norm["mean"].clone()).unwrap();
    norm_of.std = serde_json::from_value(norm["std"].clone()).unwrap();
    let p =
        candletop::train::eval::predict(&mut model, &std::sync::Arc::new(data.test), &norm_of, 256)
            .unwrap();
    assert_eq!(p.predicted.len(), want.len());
    let classes = want[0].1.len();
    for (i, (pred, probs)) in want.iter().enumerate() {
        assert_eq!(p.predicted[i], *pred, "image {i}");
        for (c, q) in probs.iter().enumerate() {
            assert!(
                (p.probabilities[i * classes + c] as f64 - q).abs() < 1e-6,
                "image {i}"
            );
        }
    }

    // Python reads it with safetensors and numpy, and PyTorch where it is installed.
    let python = std::env::var_os("CANDLETOP_PYTHON");
    if !common::available(
        "CANDLETOP_PYTHON, a Python with safetensors and numpy",
        python.is_some(),
    ) {
        return;
    }
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/predict_safetensors.py");
    let images = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/fashion-mnist-subset/t10k-images-idx3-ubyte.gz");
    let out = std::process::Command::new(python.unwrap())
        .arg(script)
        .arg(&path)
        .arg(images)
        .arg(d.join("p.csv"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.starts_with("ok numpy"), "{said}");
}

#[test]
fn export_refuses_what_it_cannot_read_or_write_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    short_run(d);
    rejects_in(d, &["export", "run"], "--csv <FILE>");
    rejects_in(
        d,
        &["export", "run", "--safetensors", "w.st"],
        "run: --safetensors reads a checkpoint file, e.g. run/checkpoints/best.h5",
    );
    rejects_in(
        d,
        &["export", "run/checkpoints/last.h5", "--csv", "x.csv"],
        "--csv reads a run directory (with metrics.jsonl), not a file",
    );
    rejects_in(
        d,
        &["export", "nope", "--csv", "x.csv"],
        "nope/metrics.jsonl: No such file",
    );
    rejects_in(
        d,
        &["export", "run", "--csv", "no/dir/x.csv"],
        "no/dir/x.csv: No such file",
    );
    std::fs::write(d.join("bad.h5"), "not hdf5").unwrap();
    rejects_in(
        d,
        &["export", "bad.h5", "--safetensors", "w.st"],
        "bad.h5: ",
    );
    let both = candletop(&["export", "run", "--csv", "a", "--safetensors", "b"], d);
    assert_eq!(both.status.code(), Some(2));
}
