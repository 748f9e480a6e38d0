//! A checkpoint's weights as a safetensors file, under their `state_dict` names, for
//! `safetensors.torch.load_file` + `load_state_dict`, candle's `safetensors::load`, and the
//! Hugging Face tools: the parameters and batch-norm running statistics in f32, and each
//! `num_batches_tracked` as PyTorch keeps it (an int64 scalar). The header's metadata says how
//! to rebuild the model and feed it: `format` ("pt"), `candletop_model` (the model config,
//! JSON), `classes` (JSON), `normalize` (per-channel mean and std, JSON) and `global_step`.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use super::writer::replace_atomically;
use super::{Checkpoint, CheckpointError};

/// The metadata keys of the header.
pub const MODEL_KEY: &str = "candletop_model";

/// The file's bytes.
pub fn to_bytes(ckpt: &Checkpoint) -> Result<Vec<u8>, String> {
    let floats: Vec<(String, Vec<usize>, Vec<u8>)> = ckpt
        .tensors
        .iter()
        .map(|t| {
            let bytes = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (t.name.clone(), t.shape.clone(), bytes)
        })
        .collect();
    let ints: Vec<(String, Vec<usize>, Vec<u8>)> = ckpt
        .counters
        .iter()
        .map(|(name, n)| (name.clone(), vec![], n.to_le_bytes().to_vec()))
        .collect();
    let mut views = Vec::new();
    for (list, dtype) in [(&floats, Dtype::F32), (&ints, Dtype::I64)] {
        for (name, shape, bytes) in list.iter() {
            let view =
                TensorView::new(dtype, shape.clone(), bytes).map_err(|e| format!("{name}: {e}"))?;
            views.push((name.as_str(), view));
        }
    }
    let json = |v: serde_json::Result<String>| v.map_err(|e| e.to_string());
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (
            MODEL_KEY.to_string(),
            json(serde_json::to_string(&ckpt.model_config))?,
        ),
        (
            "classes".to_string(),
            json(serde_json::to_string(&ckpt.classes))?,
        ),
        (
            "normalize".to_string(),
            json(serde_json::to_string(&serde_json::json!({
                "mean": ckpt.data.mean,
                "std": ckpt.data.std,
            })))?,
        ),
        ("global_step".to_string(), ckpt.global_step.to_string()),
    ]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
}

/// Writes the file atomically (beside it, fsync, rename); its size.
pub fn write(ckpt: &Checkpoint, path: &Path) -> Result<u64, CheckpointError> {
    let bytes = to_bytes(ckpt).map_err(|what| CheckpointError::Content {
        path: path.to_path_buf(),
        what,
    })?;
    replace_atomically(path, |tmp| {
        use std::io::Write;
        let io = |source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut f = std::fs::File::create(tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(bytes.len() as u64)
    })
}
