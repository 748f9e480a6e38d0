//! A set of labelled images: held in memory, or (an image folder too large for memory) read
//! from its files as the loaders need them.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use super::decode::decode;
use super::error::DataError;

/// Images (row-major, `channels x height x width` bytes each) with one label each.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    /// The pixels, image after image; empty when the images stay in their files.
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Where the images are when they are not in memory: image i is `files.paths[i]`.
    pub files: Option<Arc<ImageFiles>>,
}

/// Image files decoded when read, to the dataset's channels and size.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFiles {
    pub paths: Vec<PathBuf>,
    /// Resize images of another size (else they are an error).
    pub resize: bool,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether the images are read from their files as they are needed.
    pub fn streamed(&self) -> bool {
        self.files.is_some()
    }

    /// Image `i`: borrowed from memory, or decoded from its file.
    pub fn try_image(&self, i: usize) -> Result<Cow<'_, [u8]>, DataError> {
        match &self.files {
            None => {
                let n = self.image_len();
                Ok(Cow::Borrowed(&self.images[i * n..(i + 1) * n]))
            }
            Some(f) => {
                let path = &f.paths[i];
                let size = (self.height, self.width);
                decode(path, self.channels, size, f.resize)
                    .map(Cow::Owned)
                    .map_err(|e| DataError::Folder {
                        path: path.clone(),
                        problem: format!(
                            "cannot read it any more (it was readable when the run started): {}",
                            e.text()
                        ),
                    })
            }
        }
    }

    /// Image `i`, for sets in memory and for files known to be there (just checked; tests). A
    /// file that no longer decodes is a panic: the loaders use `try_image`.
    pub fn image(&self, i: usize) -> Cow<'_, [u8]> {
        match self.try_image(i) {
            Ok(px) => px,
            Err(e) => panic!("{e}"),
        }
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        if let Some(f) = &self.files {
            return Dataset {
                labels,
                files: Some(Arc::new(ImageFiles {
                    paths: indices.iter().map(|&i| f.paths[i].clone()).collect(),
                    resize: f.resize,
                })),
                ..self.shape()
            };
        }
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            images.extend_from_slice(&self.image(i));
        }
        Dataset {
            images,
            labels,
            ..self.shape()
        }
    }

    /// An empty set of this set's image shape.
    fn shape(&self) -> Dataset {
        Dataset {
            channels: self.channels,
            height: self.height,
            width: self.width,
            ..Dataset::default()
        }
    }
}
