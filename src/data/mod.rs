//! Image datasets: where they come from (`DataSpec`), reading them (IDX, embedded), splitting off
//! validation, normalisation, and batches prepared in the background.

pub mod batch;
pub mod dataset;
pub mod idx;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

pub use batch::{Batch, BatchStream, Normalization};
pub use dataset::Dataset;

pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

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
    #[error("--data '{spec}': {problem}")]
    Spec { spec: String, problem: String },
    #[error("--val-split {0}: must be strictly between 0 and 1")]
    ValSplit(f64),
    #[error("--val-split {split}: leaves no training or no validation images out of {n}")]
    ValSplitEmpty { split: f64, n: usize },
}

/// Which dataset to train on, as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DataSpec {
    /// The Fashion-MNIST subset compiled into the binary.
    Embedded,
    Mnist(PathBuf),
    FashionMnist(PathBuf),
}

impl FromStr for DataSpec {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, DataError> {
        let bad = |problem: &str| DataError::Spec {
            spec: s.to_string(),
            problem: problem.to_string(),
        };
        if s == "embedded" {
            return Ok(Self::Embedded);
        }
        let Some((kind, dir)) = s.split_once(':') else {
            return Err(bad(
                "expected 'embedded', 'mnist:DIR' or 'fashion-mnist:DIR'",
            ));
        };
        if dir.is_empty() {
            return Err(bad("the directory is missing after ':'"));
        }
        match kind {
            "mnist" => Ok(Self::Mnist(dir.into())),
            "fashion-mnist" => Ok(Self::FashionMnist(dir.into())),
            _ => Err(bad(&format!(
                "unknown data kind '{kind}' (known: embedded, mnist:DIR, fashion-mnist:DIR)"
            ))),
        }
    }
}

impl std::fmt::Display for DataSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded => write!(f, "embedded"),
            Self::Mnist(d) => write!(f, "mnist:{}", d.display()),
            Self::FashionMnist(d) => write!(f, "fashion-mnist:{}", d.display()),
        }
    }
}

impl TryFrom<String> for DataSpec {
    type Error = DataError;
    fn try_from(s: String) -> Result<Self, DataError> {
        s.parse()
    }
}

impl From<DataSpec> for String {
    fn from(d: DataSpec) -> String {
        d.to_string()
    }
}

/// Everything a run trains and evaluates on.
#[derive(Debug, Clone)]
pub struct DataSplits {
    pub source: DataSpec,
    pub classes: Vec<String>,
    pub train: Dataset,
    pub val: Dataset,
    pub test: Dataset,
    /// Mean and standard deviation of the training pixels scaled to [0, 1].
    pub norm: Normalization,
}

impl DataSplits {
    /// Loads `spec`, carves a stratified validation split of `val_split` from train (seeded).
    pub fn load(spec: &DataSpec, val_split: f64, seed: u64) -> Result<Self, DataError> {
        if !(val_split > 0.0 && val_split < 1.0) {
            return Err(DataError::ValSplit(val_split));
        }
        let (full_train, test, n_classes) = match spec {
            DataSpec::Embedded => embedded()?,
            DataSpec::Mnist(dir) | DataSpec::FashionMnist(dir) => {
                let train = load_idx_pair(dir, "train", 10)?;
                let test = load_idx_pair(dir, "t10k", 10)?;
                (train, test, 10)
            }
        };
        let classes: Vec<String> = match spec {
            DataSpec::Mnist(_) => (0..n_classes).map(|c| c.to_string()).collect(),
            _ => FASHION_MNIST_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let (train_idx, val_idx) = stratified_split(&full_train.labels, n_classes, val_split, seed);
        if train_idx.is_empty() || val_idx.is_empty() {
            return Err(DataError::ValSplitEmpty {
                split: val_split,
                n: full_train.len(),
            });
        }
        let train = full_train.select(&train_idx);
        let val = full_train.select(&val_idx);
        let norm = Normalization::of(&train);
        Ok(Self {
            source: spec.clone(),
            classes,
            train,
            val,
            test,
            norm,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} ({} train / {} val / {} test, {}x{}x{}, {} classes)",
            self.source,
            self.train.len(),
            self.val.len(),
            self.test.len(),
            self.train.channels,
            self.train.height,
            self.train.width,
            self.classes.len()
        )
    }
}

/// Indices of train and validation: `split` of each class goes to validation.
fn stratified_split(
    labels: &[u8],
    classes: usize,
    split: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Rng::derive(seed, "val-split", 0);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for mut members in by_class {
        rng.shuffle(&mut members);
        let n_val = (members.len() as f64 * split).round() as usize;
        val.extend_from_slice(&members[..n_val]);
        train.extend_from_slice(&members[n_val..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

const EMBEDDED_TRAIN_IMAGES: &[u8] =
    include_bytes!("../../assets/fashion-mnist-subset/train-images-idx3-ubyte.gz");
const EMBEDDED_TRAIN_LABELS: &[u8] =
    include_bytes!("../../assets/fashion-mnist-subset/train-labels-idx1-ubyte.gz");
const EMBEDDED_TEST_IMAGES: &[u8] =
    include_bytes!("../../assets/fashion-mnist-subset/t10k-images-idx3-ubyte.gz");
const EMBEDDED_TEST_LABELS: &[u8] =
    include_bytes!("../../assets/fashion-mnist-subset/t10k-labels-idx1-ubyte.gz");

fn embedded() -> Result<(Dataset, Dataset, usize), DataError> {
    let named = |name: &str, bytes: &[u8]| -> Result<(PathBuf, idx::IdxArray), DataError> {
        let path = PathBuf::from(format!("<embedded>/{name}"));
        let arr = parse_maybe_gzip(&path, bytes)?;
        Ok((path, arr))
    };
    let train = pair(
        named("train-images-idx3-ubyte.gz", EMBEDDED_TRAIN_IMAGES)?,
        named("train-labels-idx1-ubyte.gz", EMBEDDED_TRAIN_LABELS)?,
        10,
    )?;
    let test = pair(
        named("t10k-images-idx3-ubyte.gz", EMBEDDED_TEST_IMAGES)?,
        named("t10k-labels-idx1-ubyte.gz", EMBEDDED_TEST_LABELS)?,
        10,
    )?;
    Ok((train, test, 10))
}

/// Finds `<prefix>-images` and `<prefix>-labels` in either spelling, gzipped or not.
fn find_idx(dir: &Path, prefix: &str, what: &str, rank: u8) -> Result<PathBuf, DataError> {
    let candidates: Vec<String> = [
        format!("{prefix}-{what}-idx{rank}-ubyte"),
        format!("{prefix}-{what}.idx{rank}-ubyte"),
    ]
    .into_iter()
    .flat_map(|n| [format!("{n}.gz"), n])
    .collect();
    for name in &candidates {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(DataError::Missing {
        dir: dir.to_path_buf(),
        wanted: format!("{prefix} {what}"),
        tried: candidates.join(", "),
    })
}

fn load_idx_pair(dir: &Path, prefix: &str, classes: usize) -> Result<Dataset, DataError> {
    if !dir.is_dir() {
        return Err(DataError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        });
    }
    let images = find_idx(dir, prefix, "images", 3)?;
    let labels = find_idx(dir, prefix, "labels", 1)?;
    let read = |p: PathBuf| -> Result<(PathBuf, idx::IdxArray), DataError> {
        let bytes = std::fs::read(&p).map_err(|source| DataError::Io {
            path: p.clone(),
            source,
        })?;
        let arr = parse_maybe_gzip(&p, &bytes)?;
        Ok((p, arr))
    };
    pair(read(images)?, read(labels)?, classes)
}

/// Parses IDX bytes, gunzipping first when they start with the gzip magic.
pub fn parse_maybe_gzip(path: &Path, bytes: &[u8]) -> Result<idx::IdxArray, DataError> {
    let raw;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| DataError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(e.kind(), format!("not valid gzip: {e}")),
            })?;
        raw = out;
        &raw[..]
    } else {
        bytes
    };
    idx::parse(bytes).map_err(|source| DataError::Idx {
        path: path.to_path_buf(),
        source,
    })
}

fn pair(
    (img_path, images): (PathBuf, idx::IdxArray),
    (lbl_path, labels): (PathBuf, idx::IdxArray),
    classes: usize,
) -> Result<Dataset, DataError> {
    if images.dims.len() != 3 {
        return Err(DataError::Shape {
            path: img_path,
            expected: "3 dimensions (count, height, width)",
            dims: images.dims,
        });
    }
    if labels.dims.len() != 1 {
        return Err(DataError::Shape {
            path: lbl_path,
            expected: "1 dimension (count)",
            dims: labels.dims,
        });
    }
    let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
    if n == 0 || h == 0 || w == 0 {
        return Err(DataError::Empty { path: img_path });
    }
    if n != labels.dims[0] {
        return Err(DataError::CountMismatch {
            images: img_path,
            n_images: n,
            labels: lbl_path,
            n_labels: labels.dims[0],
        });
    }
    if let Some((index, &label)) = labels
        .data
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= classes)
    {
        return Err(DataError::LabelOutOfRange {
            path: lbl_path,
            index,
            label,
            classes,
        });
    }
    Ok(Dataset {
        images: images.data,
        labels: labels.data,
        channels: 1,
        height: h,
        width: w,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_data_specs() {
        assert_eq!("embedded".parse::<DataSpec>().unwrap(), DataSpec::Embedded);
        assert_eq!(
            "mnist:/d".parse::<DataSpec>().unwrap(),
            DataSpec::Mnist("/d".into())
        );
        assert_eq!(
            "fashion-mnist:x/y".parse::<DataSpec>().unwrap(),
            DataSpec::FashionMnist("x/y".into())
        );
        let e = "cifar:/d".parse::<DataSpec>().unwrap_err().to_string();
        assert!(e.contains("unknown data kind 'cifar'"), "{e}");
        assert!("mnist:".parse::<DataSpec>().is_err());
        assert!("mnist".parse::<DataSpec>().is_err());
    }

    #[test]
    fn embedded_data_is_stratified_and_normalised() {
        let d = DataSplits::load(&DataSpec::Embedded, 0.1, 1).unwrap();
        assert_eq!(d.classes.len(), 10);
        let n = d.train.len() + d.val.len();
        assert!((d.val.len() as f64 - n as f64 * 0.1).abs() <= 10.0);
        for c in 0..10u8 {
            let tr = d.train.labels.iter().filter(|&&l| l == c).count();
            let va = d.val.labels.iter().filter(|&&l| l == c).count();
            let share = va as f64 / (tr + va) as f64;
            assert!((share - 0.1).abs() < 0.01, "class {c}: {share}");
        }
        // Independent computation of the pixel statistics.
        let px: Vec<f64> = d.train.images.iter().map(|&p| p as f64 / 255.0).collect();
        let mean = px.iter().sum::<f64>() / px.len() as f64;
        let std = (px.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / px.len() as f64).sqrt();
        assert!((d.norm.mean as f64 - mean).abs() < 1e-4);
        assert!((d.norm.std as f64 - std).abs() < 1e-4);
        // Same seed, same split; another seed, another split.
        let again = DataSplits::load(&DataSpec::Embedded, 0.1, 1).unwrap();
        assert_eq!(again.val.labels, d.val.labels);
        assert_eq!(again.val.images, d.val.images);
        let other = DataSplits::load(&DataSpec::Embedded, 0.1, 2).unwrap();
        assert_ne!(other.val.images, d.val.images);
    }

    #[test]
    fn bad_val_split_is_rejected() {
        for s in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
            assert!(DataSplits::load(&DataSpec::Embedded, s, 1).is_err());
        }
    }
}
