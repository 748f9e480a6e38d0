//! PyTorch itself beside candletop: `bench/pytorch_reference.py` (built into the binary) run by a
//! python that has torch, on the same images, model, batch sizes and threads, in rounds
//! interleaved with candletop's own, so that a change in the machine's load hits both alike.

use std::path::PathBuf;
use std::process::Command;

use crate::error::Error;

const SCRIPT: &str = include_str!("../../bench/pytorch_reference.py");

/// Where to find a python with torch: this variable, else `python3`.
pub const PYTHON_VAR: &str = "CANDLETOP_TORCH_PYTHON";

/// A python with torch, and the script and the training files written for it.
pub struct Reference {
    python: String,
    dir: PathBuf,
    pub version: String,
}

/// What one batch size measured: training and evaluation images per second.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub train: f64,
    pub eval: f64,
}

impl Reference {
    /// The reference, or why there is none (no python, or no torch in it).
    pub fn find() -> Result<Reference, String> {
        let python = std::env::var(PYTHON_VAR).unwrap_or_else(|_| "python3".into());
        let out = Command::new(&python)
            .args(["-c", "import torch; print(torch.__version__)"])
            .output()
            .map_err(|e| format!("{python}: {e}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or("").trim().to_string();
            return Err(format!("{python} -c 'import torch' failed ({last})"));
        }
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let dir = std::env::temp_dir().join(format!("candletop-torch-{}", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("pytorch_reference.py"), SCRIPT)?;
            for (name, bytes) in crate::data::embedded_train_files() {
                std::fs::write(dir.join(name), bytes)?;
            }
            Ok(())
        })();
        written.map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Reference {
            python,
            dir,
            version,
        })
    }

    /// PyTorch's training and evaluation rates at `batch` on `threads` threads.
    pub fn measure(&self, batch: usize, steps: usize, threads: usize) -> Result<Rates, Error> {
        let failed = |why: String| Error::Training(format!("bench: the PyTorch run failed: {why}"));
        let out = Command::new(&self.python)
            .arg(self.dir.join("pytorch_reference.py"))
            .args(["--threads", &threads.to_string()])
            .args(["--steps", &steps.to_string()])
            .args(["--batch", &batch.to_string()])
            .arg("--assets")
            .arg(&self.dir)
            .output()
            .map_err(|e| failed(e.to_string()))?;
        if !out.status.success() {
            return Err(failed(String::from_utf8_lossy(&out.stderr).trim().into()));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let rate = |what: &str| {
            let label = format!("{what}, batch {batch}");
            text.lines()
                .find(|l| l.starts_with(&label))
                .and_then(|l| l[label.len()..].split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| failed(format!("no '{label}' row in:\n{text}")))
        };
        Ok(Rates {
            train: rate("train")?,
            eval: rate("eval")?,
        })
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The median of `v` (the middle round of three).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
