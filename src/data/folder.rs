//! Image folders in torchvision's ImageFolder layout: `DIR/train/<class>/*.png` with optional
//! `DIR/val/<class>/` and `DIR/test/<class>/`, or `DIR/<class>/*.png` (validation carved off
//! by `--val-split`). Classes are the sorted folder names. Images are decoded once, in
//! parallel, into memory, converted to the run's channels and size.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::dataset::{Dataset, ImageFiles};
use super::decode::{decode, DecodeError};
use super::error::DataError;

/// Folders with at least this many images say how much memory they take before decoding.
const NOTE_FROM: usize = 2_000;

/// File endings read as images (any case).
pub const EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "gif", "webp"];

/// `--image-size`: `N` (square) or `WxH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageSize {
    pub height: usize,
    pub width: usize,
}

impl std::str::FromStr for ImageSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let side = |v: &str| match v.trim().parse::<usize>() {
            Ok(n) if (1..=4096).contains(&n) => Ok(n),
            _ => Err(format!(
                "'{s}' is not an image size (N or WxH, each 1 to 4096 pixels)"
            )),
        };
        match s.split_once(['x', 'X']) {
            Some((w, h)) => Ok(Self {
                width: side(w)?,
                height: side(h)?,
            }),
            None => {
                let n = side(s)?;
                Ok(Self {
                    height: n,
                    width: n,
                })
            }
        }
    }
}

impl std::fmt::Display for ImageSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl TryFrom<String> for ImageSize {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<ImageSize> for String {
    fn from(s: ImageSize) -> String {
        s.to_string()
    }
}

/// How to turn the files into tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FolderOptions {
    /// 1 (grayscale) or 3 (RGB); `None`: what the first image is.
    pub channels: Option<usize>,
    /// (height, width) every image is resized to; `None`: the first image's, and all must match.
    pub size: Option<(usize, usize)>,
    /// Skip files that do not decode (and list them) instead of stopping.
    pub skip_bad: bool,
    /// Read the images from their files as the loaders need them, even when they would fit
    /// in memory (they are read so when they would not).
    pub stream: bool,
}

/// A file that could not be decoded, skipped with `--skip-bad-images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadImage {
    pub path: PathBuf,
    pub problem: String,
}

/// What a folder holds, decoded.
#[derive(Debug, Clone)]
pub struct Folder {
    pub classes: Vec<String>,
    pub train: Dataset,
    /// `DIR/val/`, when the folder has one.
    pub val: Option<Dataset>,
    /// `DIR/test/`, when the folder has one.
    pub test: Option<Dataset>,
    pub skipped: Vec<BadImage>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn problem(path: &Path, problem: impl Into<String>) -> DataError {
    DataError::Folder {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// The subfolders of `dir`, sorted by name (hidden ones skipped).
fn subfolders(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_dir() {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// The image files of one class folder, sorted.
fn images_in(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let p = entry.map_err(io_error(dir))?.path();
        // A link to nothing is listed too: it then fails to decode like any bad image
        // (an error, or skipped and listed with --skip-bad-images), rather than vanish.
        if (p.is_file() || p.is_symlink()) && is_image(&p) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// The files of one split: (path, label), the classes given by `classes` or found here.
fn list_split(
    root: &Path,
    classes: &mut Vec<String>,
    defines_classes: bool,
) -> Result<Vec<(PathBuf, u8)>, DataError> {
    let folders = subfolders(root)?;
    if defines_classes {
        if folders.is_empty() {
            return Err(problem(
                root,
                "no class folders (expected one folder of images per class)",
            ));
        }
        if folders.len() > 256 {
            return Err(problem(
                root,
                format!("{} class folders; at most 256 classes", folders.len()),
            ));
        }
        *classes = folders.iter().map(|(n, _)| n.clone()).collect();
    }
    let mut files = Vec::new();
    for (name, path) in folders {
        let Some(label) = classes.iter().position(|c| *c == name) else {
            return Err(problem(
                &path,
                format!("not a class of the training set ({})", classes.join(", ")),
            ));
        };
        let images = images_in(&path)?;
        if images.is_empty() && defines_classes {
            return Err(problem(
                &path,
                format!("no images (looked for .{})", EXTENSIONS.join(" .")),
            ));
        }
        files.extend(images.into_iter().map(|p| (p, label as u8)));
    }
    Ok(files)
}

/// The images' channels and size, and whether they are resized to it: as the options say, or
/// as the first image is.
fn shape(first: &Path, opts: &FolderOptions) -> Result<(usize, (usize, usize), bool), DataError> {
    let probe = image::ImageReader::open(first)
        .map_err(io_error(first))?
        .with_guessed_format()
        .map_err(io_error(first))?
        .decode()
        .map_err(|e| problem(first, format!("cannot decode the first image: {e}")))?;
    let channels = opts
        .channels
        .unwrap_or(if probe.color().has_color() { 3 } else { 1 });
    let size = opts
        .size
        .unwrap_or((probe.height() as usize, probe.width() as usize));
    Ok((channels, size, opts.size.is_some()))
}

/// A split from its `files` and their decoded pixels (`results`, in the same order; empty
/// when streamed), of `channels` and `size`. A file that did not decode is skipped (into
/// `skipped`, with `skip_bad`) or an error.
fn assemble(
    files: &[(PathBuf, u8)],
    results: &mut impl Iterator<Item = Result<Vec<u8>, DecodeError>>,
    (channels, size, resize, stream): (usize, (usize, usize), bool, bool),
    skip_bad: bool,
    skipped: &mut Vec<BadImage>,
) -> Result<Dataset, DataError> {
    let mut d = Dataset {
        images: Vec::with_capacity(if stream {
            0
        } else {
            files.len() * channels * size.0 * size.1
        }),
        labels: Vec::with_capacity(files.len()),
        channels,
        height: size.0,
        width: size.1,
        files: None,
    };
    let mut paths = Vec::new();
    for (path, label) in files {
        match results.next().expect("one result per file") {
            Ok(px) => {
                d.images.extend_from_slice(&px);
                d.labels.push(*label);
                if stream {
                    paths.push(path.clone());
                }
            }
            Err(DecodeError::Size(p)) => return Err(problem(path, p)),
            Err(DecodeError::Bad(p)) if skip_bad => skipped.push(BadImage {
                path: path.clone(),
                problem: p,
            }),
            Err(DecodeError::Bad(p)) => {
                return Err(problem(
                    path,
                    format!("cannot decode: {p} (--skip-bad-images skips such files)"),
                ))
            }
        }
    }
    if stream {
        d.files = Some(std::sync::Arc::new(ImageFiles { paths, resize }));
    }
    Ok(d)
}

/// Reads the folder at `dir`; `note` hears what is about to happen (how much memory the
/// decoded set takes) before the slow part.
pub fn load(
    dir: &Path,
    opts: FolderOptions,
    note: &mut dyn FnMut(String),
) -> Result<Folder, DataError> {
    if !dir.is_dir() {
        return Err(io_error(dir)(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such directory",
        )));
    }
    let train_root = dir.join("train");
    let split_layout = train_root.is_dir();
    let mut classes = Vec::new();
    let train_files = if split_layout {
        list_split(&train_root, &mut classes, true)?
    } else {
        list_split(dir, &mut classes, true)?
    };
    let other = |name: &str, classes: &mut Vec<String>| -> Result<Option<_>, DataError> {
        let root = dir.join(name);
        if split_layout && root.is_dir() {
            list_split(&root, classes, false).map(Some)
        } else {
            Ok(None)
        }
    };
    let val_files = other("val", &mut classes)?;
    let test_files = other("test", &mut classes)?;

    let (channels, size, resize) = shape(&train_files[0].0, &opts)?;
    let all: Vec<&(PathBuf, u8)> = train_files
        .iter()
        .chain(val_files.iter().flatten())
        .chain(test_files.iter().flatten())
        .collect();
    let bytes = (all.len() * channels * size.0 * size.1) as u64;
    // Small sets decode in a blink; a large one says what it is about to take first.
    if all.len() >= NOTE_FROM {
        note(format!(
            "{}: decoding {} images to {}x{}x{} ({} in memory)",
            dir.display(),
            all.len(),
            channels,
            size.0,
            size.1,
            crate::format::human_bytes(bytes)
        ));
    }
    // In memory when the decoded set takes at most half the memory available; else (or when
    // asked) the images stay in their files and the loaders decode them batch by batch.
    let stream =
        opts.stream || super::memory::available_memory().is_some_and(|avail| bytes > avail / 2);
    if stream && all.len() >= NOTE_FROM {
        note(format!(
            "{}: {} images are read from disk as they are needed (checking that every one decodes first)",
            dir.display(),
            all.len()
        ));
    }
    // Every file is decoded once here, in parallel: kept, or (streamed) only checked.
    let decoded: Vec<Result<Vec<u8>, DecodeError>> = all
        .par_iter()
        .map(|(p, _)| {
            decode(p, channels, size, resize).map(|px| if stream { Vec::new() } else { px })
        })
        .collect();

    let mut skipped = Vec::new();
    let mut results = decoded.into_iter();
    let mut build = |files: &[(PathBuf, u8)]| {
        let layout = (channels, size, resize, stream);
        assemble(files, &mut results, layout, opts.skip_bad, &mut skipped)
    };
    let train = build(&train_files)?;
    let val = val_files.as_deref().map(&mut build).transpose()?;
    let test = test_files.as_deref().map(&mut build).transpose()?;
    if train.is_empty() {
        return Err(problem(dir, "none of the training images could be decoded"));
    }
    Ok(Folder {
        classes,
        train,
        val,
        test,
        skipped,
    })
}
