//! Image datasets: where they come from (`DataSpec`), reading them (IDX, CIFAR, image folders,
//! embedded), splitting off validation, class balance, normalisation, augmentation, and batches
//! prepared in the background.

pub mod augment;
pub mod balance;
pub mod batch;
pub mod cifar;
pub mod dataset;
mod decode;
mod error;
pub mod folder;
pub mod idx;
mod memory;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

pub use augment::AugmentSpec;
pub use balance::{ClassWeights, Sampler};
pub use batch::{Batch, BatchStream, Loader, Normalization, NormalizeSpec};
pub use dataset::Dataset;
pub use decode::{decode, DecodeError};
pub use error::DataError;
pub use folder::{BadImage, FolderOptions};
pub use memory::available_memory;

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

/// Which dataset to train on, as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DataSpec {
    /// The Fashion-MNIST subset compiled into the binary.
    Embedded,
    Mnist(PathBuf),
    FashionMnist(PathBuf),
    /// The binary version of CIFAR-10.
    Cifar10(PathBuf),
    /// The binary version of CIFAR-100, fine labels.
    Cifar100(PathBuf),
    /// CIFAR-100 with the 20 coarse labels.
    Cifar100Coarse(PathBuf),
    /// An ImageFolder layout.
    Folder(PathBuf),
}

/// The kinds of `--data`, for errors and help.
pub const DATA_KINDS: &str =
    "embedded, mnist:DIR, fashion-mnist:DIR, cifar10:DIR, cifar100:DIR, cifar100-coarse:DIR, folder:DIR";

impl FromStr for DataSpec {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, DataError> {
        let bad = |problem: &str| DataError::Spec {
            spec: crate::format::shown(s),
            problem: problem.to_string(),
        };
        if let Some(problem) = crate::format::control_character(s) {
            return Err(bad(&problem));
        }
        if s == "embedded" {
            return Ok(Self::Embedded);
        }
        let Some((kind, dir)) = s.split_once(':') else {
            return Err(bad(&format!("expected one of {DATA_KINDS}")));
        };
        if dir.is_empty() {
            return Err(bad("the directory is missing after ':'"));
        }
        match kind {
            "mnist" => Ok(Self::Mnist(dir.into())),
            "fashion-mnist" => Ok(Self::FashionMnist(dir.into())),
            "cifar10" => Ok(Self::Cifar10(dir.into())),
            "cifar100" => Ok(Self::Cifar100(dir.into())),
            "cifar100-coarse" => Ok(Self::Cifar100Coarse(dir.into())),
            "folder" => Ok(Self::Folder(dir.into())),
            _ => Err(bad(&format!(
                "unknown data kind '{kind}' (known: {DATA_KINDS})"
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
            Self::Cifar10(d) => write!(f, "cifar10:{}", d.display()),
            Self::Cifar100(d) => write!(f, "cifar100:{}", d.display()),
            Self::Cifar100Coarse(d) => write!(f, "cifar100-coarse:{}", d.display()),
            Self::Folder(d) => write!(f, "folder:{}", d.display()),
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

/// How to read and split the data: everything besides the source that decides which images
/// a run sees and how they are scaled.
#[derive(Debug, Clone, PartialEq)]
pub struct DataOptions {
    pub val_split: f64,
    pub seed: u64,
    pub folder: FolderOptions,
    /// Stratified subset of the training set; 0 keeps it all.
    pub subset: usize,
    /// Skew the training set so the first class has this many times the last; 0 or 1: no skew.
    pub imbalance: f64,
    /// Share of the training labels changed to another class (validation and test stay clean).
    pub label_noise: f64,
    pub normalize: NormalizeSpec,
}

impl DataOptions {
    pub fn new(val_split: f64, seed: u64) -> Self {
        Self {
            val_split,
            seed,
            folder: FolderOptions::default(),
            subset: 0,
            imbalance: 0.0,
            label_noise: 0.0,
            normalize: NormalizeSpec::Auto,
        }
    }
}

/// Images per class in each split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassCounts {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
}

/// Everything a run trains and evaluates on.
#[derive(Debug, Clone)]
pub struct DataSplits {
    pub source: DataSpec,
    pub classes: Vec<String>,
    pub train: Dataset,
    pub val: Dataset,
    /// Empty when the source has no test split (an image folder without `test/`).
    pub test: Dataset,
    /// Mean and standard deviation per channel of the training pixels scaled to [0, 1] (or
    /// the given ones).
    pub norm: Normalization,
    /// Files left out with `--skip-bad-images`.
    pub skipped: Vec<BadImage>,
    /// Training labels changed to another class (`--label-noise`).
    pub noisy_labels: usize,
}

/// A source's images before validation is split off.
struct Source {
    classes: Vec<String>,
    train: Dataset,
    /// A validation split of its own (an image folder's `val/`).
    val: Option<Dataset>,
    test: Dataset,
    skipped: Vec<BadImage>,
}

impl DataSplits {
    /// Loads `spec` as `opts` say: validation split off the training set (stratified, seeded)
    /// unless the source has its own, then the training set's subset or skew.
    pub fn load(spec: &DataSpec, opts: &DataOptions) -> Result<Self, DataError> {
        Self::load_noting(spec, opts, &mut |_| {})
    }

    /// `load`, telling `note` what a slow load is about to do.
    pub fn load_noting(
        spec: &DataSpec,
        opts: &DataOptions,
        note: &mut dyn FnMut(String),
    ) -> Result<Self, DataError> {
        if !(opts.val_split > 0.0 && opts.val_split < 1.0) {
            return Err(DataError::ValSplit(opts.val_split));
        }
        let numbered = |n: usize| (0..n).map(|c| c.to_string()).collect::<Vec<_>>();
        let fashion = || FASHION_MNIST_CLASSES.map(String::from).to_vec();
        let src = match spec {
            DataSpec::Embedded => {
                let (train, test) = embedded()?;
                Source::plain(fashion(), train, test)
            }
            DataSpec::Mnist(dir) | DataSpec::FashionMnist(dir) => {
                let train = load_idx_pair(dir, "train", 10)?;
                let test = load_idx_pair(dir, "t10k", 10)?;
                let classes = match spec {
                    DataSpec::Mnist(_) => numbered(10),
                    _ => fashion(),
                };
                Source::plain(classes, train, test)
            }
            DataSpec::Cifar10(dir) => load_cifar(dir, cifar::Layout::Cifar10)?,
            DataSpec::Cifar100(dir) => load_cifar(dir, cifar::Layout::Cifar100Fine)?,
            DataSpec::Cifar100Coarse(dir) => load_cifar(dir, cifar::Layout::Cifar100Coarse)?,
            DataSpec::Folder(dir) => {
                let f = folder::load(dir, opts.folder, note)?;
                let empty = f.train.select(&[]);
                Source {
                    classes: f.classes,
                    train: f.train,
                    val: f.val,
                    test: f.test.unwrap_or(empty),
                    skipped: f.skipped,
                }
            }
        };
        src.check_sizes(spec)?;
        let n_classes = src.classes.len();
        let (mut train, val) = match src.val {
            Some(val) if !val.is_empty() => (src.train, val),
            _ => {
                let full = src.train;
                let (train_idx, val_idx) =
                    stratified_split(&full.labels, n_classes, opts.val_split, opts.seed);
                if train_idx.is_empty() || val_idx.is_empty() {
                    return Err(DataError::ValSplitEmpty {
                        split: opts.val_split,
                        n: full.len(),
                    });
                }
                (full.select(&train_idx), full.select(&val_idx))
            }
        };
        if opts.subset > 0 {
            if opts.subset > train.len() {
                return Err(DataError::Subset {
                    n: opts.subset,
                    have: train.len(),
                });
            }
            train = train.select(&balance::subset(
                &train.labels,
                n_classes,
                opts.subset,
                opts.seed,
            ));
        }
        if opts.imbalance > 1.0 {
            train = train.select(&balance::skewed(
                &train.labels,
                n_classes,
                opts.imbalance,
                opts.seed,
            ));
        }
        let noisy_labels =
            balance::flip_labels(&mut train.labels, n_classes, opts.label_noise, opts.seed);
        let norm = opts.normalize.resolve(&train)?;
        Ok(Self {
            source: spec.clone(),
            classes: src.classes,
            train,
            val,
            test: src.test,
            norm,
            skipped: src.skipped,
            noisy_labels,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} ({} train / {} val / {} test, {}x{}x{}, {} classes{})",
            self.source,
            self.train.len(),
            self.val.len(),
            self.test.len(),
            self.train.channels,
            self.train.height,
            self.train.width,
            self.classes.len(),
            match self.noisy_labels {
                0 => String::new(),
                n => format!(", {n} train labels flipped"),
            }
        )
    }

    pub fn counts(&self) -> ClassCounts {
        let c = self.classes.len();
        ClassCounts {
            train: balance::class_counts(&self.train.labels, c),
            val: balance::class_counts(&self.val.labels, c),
            test: balance::class_counts(&self.test.labels, c),
        }
    }
}

impl Source {
    /// Every split's images have the training images' size: a test set of another size would
    /// otherwise be found only when the run ends.
    fn check_sizes(&self, spec: &DataSpec) -> Result<(), DataError> {
        let size = |d: &Dataset| [d.channels, d.height, d.width];
        let want = size(&self.train);
        let splits = [
            ("validation", self.val.as_ref()),
            ("test", Some(&self.test)),
        ];
        for (name, split) in splits {
            let Some(d) = split.filter(|d| !d.is_empty()) else {
                continue;
            };
            if size(d) != want {
                let [c, h, w] = size(d);
                return Err(DataError::Spec {
                    spec: spec.to_string(),
                    problem: format!(
                        "the {name} images are {c}x{h}x{w} but the training images are {}x{}x{}: every split needs one size",
                        want[0], want[1], want[2]
                    ),
                });
            }
        }
        Ok(())
    }

    fn plain(classes: Vec<String>, train: Dataset, test: Dataset) -> Self {
        Self {
            classes,
            train,
            val: None,
            test,
            skipped: Vec::new(),
        }
    }
}

/// The CIFAR files of `dir` (or of the folder the archive unpacks to inside it).
fn load_cifar(dir: &Path, layout: cifar::Layout) -> Result<Source, DataError> {
    let (inner, train_names, test_name, names_file): (&str, Vec<String>, &str, &str) = match layout
    {
        cifar::Layout::Cifar10 => (
            "cifar-10-batches-bin",
            (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            "test_batch.bin",
            "batches.meta.txt",
        ),
        cifar::Layout::Cifar100Fine => (
            "cifar-100-binary",
            vec!["train.bin".into()],
            "test.bin",
            "fine_label_names.txt",
        ),
        cifar::Layout::Cifar100Coarse => (
            "cifar-100-binary",
            vec!["train.bin".into()],
            "test.bin",
            "coarse_label_names.txt",
        ),
    };
    if !dir.is_dir() {
        return Err(DataError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        });
    }
    let base = if dir.join(inner).is_dir() {
        dir.join(inner)
    } else {
        dir.to_path_buf()
    };
    let read = |name: &str| -> Result<Dataset, DataError> {
        let path = base.join(name);
        if !path.is_file() {
            return Err(DataError::Folder {
                path: base.clone(),
                problem: format!(
                    "no {name} here (the binary version of {} has {})",
                    if layout == cifar::Layout::Cifar10 {
                        "CIFAR-10"
                    } else {
                        "CIFAR-100"
                    },
                    if layout == cifar::Layout::Cifar10 {
                        "data_batch_1.bin to data_batch_5.bin and test_batch.bin"
                    } else {
                        "train.bin and test.bin"
                    }
                ),
            });
        }
        let bytes = std::fs::read(&path).map_err(|source| DataError::Io {
            path: path.clone(),
            source,
        })?;
        let (images, labels) =
            cifar::parse(&bytes, layout).map_err(|source| DataError::Cifar { path, source })?;
        Ok(Dataset {
            images,
            labels,
            channels: 3,
            height: 32,
            width: 32,
            files: None,
        })
    };
    let mut train = read(&train_names[0])?;
    for name in &train_names[1..] {
        let more = read(name)?;
        train.images.extend_from_slice(&more.images);
        train.labels.extend_from_slice(&more.labels);
    }
    let test = read(test_name)?;
    let classes = match std::fs::read_to_string(base.join(names_file)) {
        Ok(text) => {
            let names: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            if names.len() != layout.classes() {
                return Err(DataError::Folder {
                    path: base.join(names_file),
                    problem: format!("{} class names, expected {}", names.len(), layout.classes()),
                });
            }
            names
        }
        // The names are a nicety: numbers stand in without the file.
        Err(_) => (0..layout.classes()).map(|c| c.to_string()).collect(),
    };
    Ok(Source::plain(classes, train, test))
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

/// The embedded training images and labels as their gzipped IDX files (for a reference
/// implementation that reads them itself).
pub fn embedded_train_files() -> [(&'static str, &'static [u8]); 2] {
    [
        ("train-images-idx3-ubyte.gz", EMBEDDED_TRAIN_IMAGES),
        ("train-labels-idx1-ubyte.gz", EMBEDDED_TRAIN_LABELS),
    ]
}

fn embedded() -> Result<(Dataset, Dataset), DataError> {
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
    Ok((train, test))
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
        files: None,
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
        assert_eq!(
            "cifar100-coarse:/c".parse::<DataSpec>().unwrap(),
            DataSpec::Cifar100Coarse("/c".into())
        );
        for s in [
            "cifar10:/a",
            "cifar100:/b",
            "folder:/f",
            "cifar100-coarse:/c",
        ] {
            assert_eq!(s.parse::<DataSpec>().unwrap().to_string(), s);
        }
        let e = "cifar:/d".parse::<DataSpec>().unwrap_err().to_string();
        assert!(e.contains("unknown data kind 'cifar'"), "{e}");
        assert!("mnist:".parse::<DataSpec>().is_err());
        assert!("mnist".parse::<DataSpec>().is_err());
    }

    #[test]
    fn embedded_data_is_stratified_and_normalised() {
        let d = DataSplits::load(&DataSpec::Embedded, &DataOptions::new(0.1, 1)).unwrap();
        assert_eq!(d.classes.len(), 10);
        let n = d.train.len() + d.val.len();
        assert!((d.val.len() as f64 - n as f64 * 0.1).abs() <= 10.0);
        // What --help says it holds.
        assert_eq!((n, d.val.len(), d.test.len()), (10_000, 1_000, 2_000));
        let help = (crate::config::setting("data").unwrap().long_help.unwrap())();
        assert!(
            help.contains("10,000 training and 2,000 test images"),
            "{help}"
        );
        assert!(
            help.contains("holds 1,000 of the training images out"),
            "{help}"
        );
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
        assert!((d.norm.mean[0] as f64 - mean).abs() < 1e-4);
        assert!((d.norm.std[0] as f64 - std).abs() < 1e-4);
        // Same seed, same split; another seed, another split.
        let again = DataSplits::load(&DataSpec::Embedded, &DataOptions::new(0.1, 1)).unwrap();
        assert_eq!(again.val.labels, d.val.labels);
        assert_eq!(again.val.images, d.val.images);
        let other = DataSplits::load(&DataSpec::Embedded, &DataOptions::new(0.1, 2)).unwrap();
        assert_ne!(other.val.images, d.val.images);
    }

    #[test]
    fn bad_val_split_is_rejected() {
        for s in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
            assert!(DataSplits::load(&DataSpec::Embedded, &DataOptions::new(s, 1)).is_err());
        }
    }
}
