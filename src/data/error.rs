//! What can be wrong with data: every error names the file, the directory or the flag.

use std::path::PathBuf;

use super::{cifar, idx};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Idx {
        path: PathBuf,
        source: idx::IdxError,
    },
    #[error("{path}: expected {expected}, found dimensions {dims:?}")]
    Shape {
        path: PathBuf,
        expected: &'static str,
        dims: Vec<usize>,
    },
    #[error("{dir}: no {wanted} file (looked for {tried})")]
    Missing {
        dir: PathBuf,
        wanted: String,
        tried: String,
    },
    #[error("{images} has {n_images} images but {labels} has {n_labels} labels")]
    CountMismatch {
        images: PathBuf,
        n_images: usize,
        labels: PathBuf,
        n_labels: usize,
    },
    #[error("{path}: label {label} at index {index} is out of range (the dataset has {classes} classes)")]
    LabelOutOfRange {
        path: PathBuf,
        index: usize,
        label: u8,
        classes: usize,
    },
    #[error("{path}: the dataset is empty")]
    Empty { path: PathBuf },
    #[error("{path}: {source}")]
    Cifar {
        path: PathBuf,
        source: cifar::CifarError,
    },
    #[error("{path}: {problem}")]
    Folder { path: PathBuf, problem: String },
    #[error("--data '{spec}': {problem}")]
    Spec { spec: String, problem: String },
    #[error("--subset {n}: the training set has only {have} images")]
    Subset { n: usize, have: usize },
    #[error("--normalize '{spec}': {problem}")]
    Normalize { spec: String, problem: String },
    #[error("--val-split {0}: must be strictly between 0 and 1")]
    ValSplit(f64),
    #[error("--val-split {split}: leaves no training or no validation images out of {n}")]
    ValSplitEmpty { split: f64, n: usize },
}
