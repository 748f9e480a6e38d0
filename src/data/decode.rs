//! One image file to the pixels a dataset holds: decoded with the `image` crate, converted to
//! grayscale or RGB, resized if asked, laid out as channel planes.

use std::path::Path;

/// Why one file did not become an image.
#[derive(Debug)]
pub enum DecodeError {
    /// The file is not a readable image: skippable.
    Bad(String),
    /// Its size differs from the first image's: a setting is missing, not skippable.
    Size(String),
}

pub fn decode(
    path: &Path,
    channels: usize,
    size: (usize, usize),
    resize: bool,
) -> Result<Vec<u8>, DecodeError> {
    let img = image::ImageReader::open(path)
        .map_err(|e| DecodeError::Bad(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| DecodeError::Bad(e.to_string()))?
        .decode()
        .map_err(|e| DecodeError::Bad(e.to_string()))?;
    let (h, w) = size;
    let (ih, iw) = (img.height() as usize, img.width() as usize);
    let img = if (ih, iw) == (h, w) {
        img
    } else if resize {
        img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle)
    } else {
        return Err(DecodeError::Size(format!(
            "is {iw}x{ih} (width x height) but the first image is {w}x{h}; pass --image-size to resize every image"
        )));
    };
    // Interleaved pixels to channel planes.
    Ok(if channels == 1 {
        img.to_luma8().into_raw()
    } else {
        let rgb = img.to_rgb8().into_raw();
        let n = h * w;
        let mut planes = vec![0u8; 3 * n];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            planes[i] = px[0];
            planes[n + i] = px[1];
            planes[2 * n + i] = px[2];
        }
        planes
    })
}

impl DecodeError {
    pub fn text(&self) -> &str {
        match self {
            Self::Bad(t) | Self::Size(t) => t,
        }
    }
}
