//! What the benchmark parts share: printing a line, and writing an image folder to read.

use std::io::Write;

use crate::error::Error;
use crate::run_dir::RunDirError;

/// A line on stdout; a closed pipe (`| head`) is not an error worth a panic.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// `n` images of `d` (28x28 grayscale) as 32x32 RGB PNG files in `dir/<class>/`: padded by 2,
/// image i of class c in the folder of `class_of(i, c)` (none: left out), tinted `tint_of(i, c)`.
pub fn write_png_folder(
    dir: &std::path::Path,
    d: &crate::data::Dataset,
    n: usize,
    class_of: &dyn Fn(usize, usize) -> Option<usize>,
    tint_of: &dyn Fn(usize, usize) -> [f32; 3],
) -> Result<(), Error> {
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| Error::RunDir(RunDirError { path, source: e })
    };
    for i in 0..n.min(d.len()) {
        let Some(class) = class_of(i, d.labels[i] as usize) else {
            continue;
        };
        let tint = tint_of(i, class);
        let folder = dir.join(format!("{class:02}"));
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
        let src = d.image(i);
        let mut px = vec![0u8; 32 * 32 * 3];
        for y in 0..28 {
            for x in 0..28 {
                for (c, t) in tint.iter().enumerate() {
                    px[((y + 2) * 32 + x + 2) * 3 + c] = (src[y * 28 + x] as f32 * t) as u8;
                }
            }
        }
        let path = folder.join(format!("{i:05}.png"));
        image::RgbImage::from_raw(32, 32, px)
            .expect("the size matches")
            .save(&path)
            .map_err(|e| io(&path)(std::io::Error::other(e.to_string())))?;
    }
    Ok(())
}
