//! Augmentation with torchvision's semantics, per sample, on the loader threads. Each sample's
//! random draws come from its own stream (seed, epoch, position in the epoch), so a run repeats
//! on any number of loader threads and a resumed run draws exactly what it would have drawn.
//!
//! ```text
//! spec      := "none" | transform ("," transform)*        applied in the order written
//! crop[:S1[-S2]][:R1-R2]   RandomResizedCrop to the input size; scale S1..S2 of the area
//!                          (0.08-1), aspect ratio R1..R2 (0.75-1.333), bilinear
//! pad-crop[:P]             RandomCrop of the input size after zero padding of P pixels (4)
//! flip[:P]                 RandomHorizontalFlip with probability P (0.5)
//! jitter:B[:C[:S[:H]]]     ColorJitter: brightness B, contrast C (B), saturation S (B) and
//!                          hue H (0, at most 0.5); saturation and hue only on RGB images
//! rotate[:DEG]             RandomRotation by up to DEG degrees either way (10), nearest, zero fill
//! erase[:P]                RandomErasing with probability P (0.5): a rectangle of 2-33% of
//!                          the area, aspect 0.3-3.3, set to 0 after normalisation (the mean)
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// One transform with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    ResizedCrop {
        scale: (f32, f32),
        ratio: (f32, f32),
    },
    PadCrop {
        padding: usize,
    },
    Flip {
        p: f32,
    },
    Jitter {
        brightness: f32,
        contrast: f32,
        saturation: f32,
        hue: f32,
    },
    Rotate {
        degrees: f32,
    },
    Erase {
        p: f32,
    },
}

/// The transforms of `--augment`, in order; empty for none.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AugmentSpec {
    pub transforms: Vec<Transform>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--augment '{spec}': {problem}")]
pub struct AugmentError {
    pub spec: String,
    pub problem: String,
}

/// The transforms and their parameters, for `--help` and errors.
pub const AUGMENT_NAMES: &str = "crop, pad-crop, flip, jitter, rotate, erase";

impl Transform {
    pub fn name(&self) -> &'static str {
        match self {
            Self::ResizedCrop { .. } => "crop",
            Self::PadCrop { .. } => "pad-crop",
            Self::Flip { .. } => "flip",
            Self::Jitter { .. } => "jitter",
            Self::Rotate { .. } => "rotate",
            Self::Erase { .. } => "erase",
        }
    }

    fn parse(item: &str) -> Result<Self, String> {
        let mut parts = item.split(':');
        let name = parts.next().unwrap_or("").trim();
        let args: Vec<&str> = parts.map(str::trim).collect();
        let num = |s: &str| -> Result<f32, String> {
            match s.parse::<f32>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(format!("'{s}' in '{item}' is not a number")),
            }
        };
        let range = |s: &str| -> Result<(f32, f32), String> {
            match s.split_once('-') {
                Some((a, b)) => Ok((num(a)?, num(b)?)),
                None => Err(format!(
                    "'{s}' in '{item}' is not a range such as 0.75-1.33"
                )),
            }
        };
        let at_most = |n: usize| -> Result<(), String> {
            if args.len() > n {
                Err(format!("'{item}': {name} takes at most {n} values"))
            } else {
                Ok(())
            }
        };
        let probability = |v: f32| -> Result<f32, String> {
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(format!("'{item}': the probability must be in [0, 1]"))
            }
        };
        let t = match name {
            "crop" => {
                at_most(2)?;
                let scale = match args.first() {
                    None => (0.08, 1.0),
                    Some(s) if s.contains('-') => range(s)?,
                    Some(s) => (num(s)?, 1.0),
                };
                let ratio = match args.get(1) {
                    None => (0.75, 4.0 / 3.0),
                    Some(s) => range(s)?,
                };
                if !(scale.0 > 0.0 && scale.0 <= scale.1 && scale.1 <= 1.0) {
                    return Err(format!("'{item}': the scale must be 0 < S1 <= S2 <= 1"));
                }
                if !(ratio.0 > 0.0 && ratio.0 <= ratio.1) {
                    return Err(format!("'{item}': the ratio must be 0 < R1 <= R2"));
                }
                Self::ResizedCrop { scale, ratio }
            }
            "pad-crop" => {
                at_most(1)?;
                let padding = match args.first() {
                    None => 4,
                    Some(s) => match s.parse::<usize>() {
                        Ok(p) if p <= 64 => p,
                        _ => return Err(format!("'{item}': the padding must be 0 to 64 pixels")),
                    },
                };
                Self::PadCrop { padding }
            }
            "flip" => {
                at_most(1)?;
                let p = args.first().map_or(Ok(0.5), |s| num(s))?;
                Self::Flip { p: probability(p)? }
            }
            "jitter" => {
                at_most(4)?;
                if args.is_empty() {
                    return Err(format!(
                        "'{item}': jitter needs a strength, e.g. jitter:0.2"
                    ));
                }
                let v: Vec<f32> = args.iter().map(|s| num(s)).collect::<Result<_, _>>()?;
                let b = v[0];
                let (c, s, h) = (
                    v.get(1).copied().unwrap_or(b),
                    v.get(2).copied().unwrap_or(b),
                    v.get(3).copied().unwrap_or(0.0),
                );
                if [b, c, s].iter().any(|&x| x < 0.0) {
                    return Err(format!("'{item}': jitter strengths cannot be negative"));
                }
                if !(0.0..=0.5).contains(&h) {
                    return Err(format!("'{item}': the hue must be in [0, 0.5]"));
                }
                Self::Jitter {
                    brightness: b,
                    contrast: c,
                    saturation: s,
                    hue: h,
                }
            }
            "rotate" => {
                at_most(1)?;
                let degrees = args.first().map_or(Ok(10.0), |s| num(s))?;
                if !(0.0..=180.0).contains(&degrees) {
                    return Err(format!("'{item}': the angle must be 0 to 180 degrees"));
                }
                Self::Rotate { degrees }
            }
            "erase" => {
                at_most(1)?;
                let p = args.first().map_or(Ok(0.5), |s| num(s))?;
                Self::Erase { p: probability(p)? }
            }
            "" => return Err("an empty transform (two commas in a row?)".into()),
            other => {
                return Err(format!(
                    "unknown transform '{other}' (known: {AUGMENT_NAMES})"
                ))
            }
        };
        Ok(t)
    }
}

impl fmt::Display for Transform {
    /// The shortest text that parses back to this transform: defaults are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ResizedCrop { scale, ratio } => {
                write!(f, "crop")?;
                let default_ratio = *ratio == (0.75, 4.0 / 3.0);
                if *scale != (0.08, 1.0) || !default_ratio {
                    match scale.1 {
                        1.0 => write!(f, ":{}", scale.0)?,
                        hi => write!(f, ":{}-{hi}", scale.0)?,
                    }
                }
                if !default_ratio {
                    write!(f, ":{}-{}", ratio.0, ratio.1)?;
                }
                Ok(())
            }
            Self::PadCrop { padding } => write!(f, "pad-crop:{padding}"),
            Self::Flip { p } if *p == 0.5 => write!(f, "flip"),
            Self::Flip { p } => write!(f, "flip:{p}"),
            Self::Jitter {
                brightness: b,
                contrast: c,
                saturation: s,
                hue: h,
            } => {
                if c == b && s == b && *h == 0.0 {
                    write!(f, "jitter:{b}")
                } else {
                    write!(f, "jitter:{b}:{c}:{s}:{h}")
                }
            }
            Self::Rotate { degrees } => write!(f, "rotate:{degrees}"),
            Self::Erase { p } if *p == 0.5 => write!(f, "erase"),
            Self::Erase { p } => write!(f, "erase:{p}"),
        }
    }
}

impl FromStr for AugmentSpec {
    type Err = AugmentError;

    fn from_str(s: &str) -> Result<Self, AugmentError> {
        if let Some(problem) = crate::format::control_character(s.trim()) {
            return Err(AugmentError {
                spec: crate::format::shown(s),
                problem,
            });
        }
        let t = s.trim();
        if t.is_empty() || t == "none" {
            return Ok(Self::default());
        }
        let transforms = t
            .split(',')
            .map(Transform::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|problem| AugmentError {
                spec: crate::format::shown(s),
                problem,
            })?;
        Ok(Self { transforms })
    }
}

impl fmt::Display for AugmentSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.transforms.is_empty() {
            return write!(f, "none");
        }
        let items: Vec<String> = self.transforms.iter().map(|t| t.to_string()).collect();
        write!(f, "{}", items.join(","))
    }
}

impl TryFrom<String> for AugmentSpec {
    type Error = AugmentError;
    fn try_from(s: String) -> Result<Self, AugmentError> {
        s.parse()
    }
}

impl From<AugmentSpec> for String {
    fn from(a: AugmentSpec) -> String {
        a.to_string()
    }
}

impl AugmentSpec {
    pub fn is_empty(&self) -> bool {
        self.transforms.is_empty()
    }

    /// The transforms' names, e.g. "pad-crop flip".
    pub fn names(&self) -> String {
        let n: Vec<&str> = self.transforms.iter().map(Transform::name).collect();
        n.join(" ")
    }

    /// What `a` turns on when no `--augment` was given: the usual recipe for small images,
    /// a random crop after padding by an eighth of the side, and a horizontal flip.
    pub fn default_for(height: usize) -> Self {
        Self {
            transforms: vec![
                Transform::PadCrop {
                    padding: (height / 8).max(1),
                },
                Transform::Flip { p: 0.5 },
            ],
        }
    }
}

/// The random stream of one sample: a function of the seed, the epoch and the sample's position
/// in the epoch alone.
pub fn sample_rng(seed: u64, epoch: usize, position: usize) -> Rng {
    Rng::derive(seed, "augment", ((epoch as u64) << 32) ^ position as u64)
}

/// An image as `channels` planes of floats in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Image {
    pub fn from_bytes(pixels: &[u8], channels: usize, height: usize, width: usize) -> Self {
        Self {
            channels,
            height,
            width,
            data: pixels.iter().map(|&p| p as f32 * (1.0 / 255.0)).collect(),
        }
    }

    fn plane(&self) -> usize {
        self.height * self.width
    }

    fn at(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[c * self.plane() + y * self.width + x]
    }
}

/// Applies the transforms before normalisation (all but `erase`) to `img`.
pub fn apply(spec: &AugmentSpec, img: &mut Image, rng: &mut Rng) {
    for t in &spec.transforms {
        match *t {
            Transform::ResizedCrop { scale, ratio } => {
                let (i, j, h, w) = resized_crop_box(img.height, img.width, scale, ratio, rng);
                *img = resize_bilinear(img, i, j, h, w);
            }
            Transform::PadCrop { padding } => {
                let top = rng.below(2 * padding as u64 + 1) as isize - padding as isize;
                let left = rng.below(2 * padding as u64 + 1) as isize - padding as isize;
                shift(img, top, left);
            }
            Transform::Flip { p } => {
                if rng.next_f32() < p {
                    flip(img);
                }
            }
            Transform::Jitter {
                brightness,
                contrast,
                saturation,
                hue,
            } => jitter(img, brightness, contrast, saturation, hue, rng),
            Transform::Rotate { degrees } => {
                let angle = rng.uniform(-degrees, degrees);
                rotate(img, angle);
            }
            Transform::Erase { .. } => {}
        }
    }
}

/// Applies `erase` (if in the spec) to a normalised image, `channels x height x width`.
pub fn erase_normalised(
    spec: &AugmentSpec,
    x: &mut [f32],
    shape: (usize, usize, usize),
    rng: &mut Rng,
) {
    for t in &spec.transforms {
        if let Transform::Erase { p } = *t {
            if rng.next_f32() >= p {
                continue;
            }
            let (c, h, w) = shape;
            if let Some((i, j, eh, ew)) = erase_box(h, w, rng) {
                for ch in 0..c {
                    for y in i..i + eh {
                        let row = ch * h * w + y * w;
                        x[row + j..row + j + ew].fill(0.0);
                    }
                }
            }
        }
    }
}

/// torchvision's `RandomResizedCrop.get_params`: (top, left, height, width).
pub fn resized_crop_box(
    height: usize,
    width: usize,
    scale: (f32, f32),
    ratio: (f32, f32),
    rng: &mut Rng,
) -> (usize, usize, usize, usize) {
    let area = (height * width) as f32;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.uniform(scale.0, scale.1);
        let aspect = rng.uniform(lr0, lr1).exp();
        let w = (target * aspect).sqrt().round() as usize;
        let h = (target / aspect).sqrt().round() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let i = rng.below((height - h + 1) as u64) as usize;
            let j = rng.below((width - w + 1) as u64) as usize;
            return (i, j, h, w);
        }
    }
    // The central crop at the nearest allowed ratio.
    let in_ratio = width as f32 / height as f32;
    let (h, w) = if in_ratio < ratio.0 {
        (((width as f32 / ratio.0).round() as usize).max(1), width)
    } else if in_ratio > ratio.1 {
        (height, ((height as f32 * ratio.1).round() as usize).max(1))
    } else {
        (height, width)
    };
    ((height - h) / 2, (width - w) / 2, h, w)
}

/// torchvision's `RandomErasing.get_params` with its default scale (0.02-0.33) and ratio
/// (0.3-3.3); `None` when ten draws found no box that fits.
pub fn erase_box(
    height: usize,
    width: usize,
    rng: &mut Rng,
) -> Option<(usize, usize, usize, usize)> {
    let area = (height * width) as f32;
    let (lr0, lr1) = (0.3f32.ln(), 3.3f32.ln());
    for _ in 0..10 {
        let target = area * rng.uniform(0.02, 0.33);
        let aspect = rng.uniform(lr0, lr1).exp();
        let h = (target * aspect).sqrt().round() as usize;
        let w = (target / aspect).sqrt().round() as usize;
        if h < height && w < width && h > 0 && w > 0 {
            let i = rng.below((height - h + 1) as u64) as usize;
            let j = rng.below((width - w + 1) as u64) as usize;
            return Some((i, j, h, w));
        }
    }
    None
}

/// The box (top, left, h, w) of `img` resized to the image's own size, bilinear with
/// half-pixel centres (align_corners=False).
fn resize_bilinear(img: &Image, top: usize, left: usize, h: usize, w: usize) -> Image {
    let (oh, ow) = (img.height, img.width);
    let mut out = vec![0f32; img.channels * oh * ow];
    let sy = h as f32 / oh as f32;
    let sx = w as f32 / ow as f32;
    // Source coordinates and weights per output column, computed once.
    let cols: Vec<(usize, usize, f32)> = (0..ow)
        .map(|x| {
            let fx = ((x as f32 + 0.5) * sx - 0.5).max(0.0);
            let x0 = (fx as usize).min(w - 1);
            let x1 = (x0 + 1).min(w - 1);
            (left + x0, left + x1, fx - x0 as f32)
        })
        .collect();
    for y in 0..oh {
        let fy = ((y as f32 + 0.5) * sy - 0.5).max(0.0);
        let y0 = (fy as usize).min(h - 1);
        let y1 = (y0 + 1).min(h - 1);
        let wy = fy - y0 as f32;
        for c in 0..img.channels {
            let row = c * oh * ow + y * ow;
            for (x, &(x0, x1, wx)) in cols.iter().enumerate() {
                let a = img.at(c, top + y0, x0) * (1.0 - wx) + img.at(c, top + y0, x1) * wx;
                let b = img.at(c, top + y1, x0) * (1.0 - wx) + img.at(c, top + y1, x1) * wx;
                out[row + x] = a * (1.0 - wy) + b * wy;
            }
        }
    }
    Image {
        channels: img.channels,
        height: oh,
        width: ow,
        data: out,
    }
}

/// The window of the zero-padded image whose top-left corner is at (top, left) relative to
/// the original image: RandomCrop after padding.
fn shift(img: &mut Image, top: isize, left: isize) {
    if top == 0 && left == 0 {
        return;
    }
    let (h, w) = (img.height as isize, img.width as isize);
    let mut out = vec![0f32; img.data.len()];
    for c in 0..img.channels {
        let base = c * img.plane();
        for y in 0..h {
            let sy = y + top;
            if !(0..h).contains(&sy) {
                continue;
            }
            for x in 0..w {
                let sx = x + left;
                if (0..w).contains(&sx) {
                    out[base + (y * w + x) as usize] = img.data[base + (sy * w + sx) as usize];
                }
            }
        }
    }
    img.data = out;
}

fn flip(img: &mut Image) {
    let w = img.width;
    for row in img.data.chunks_mut(w) {
        row.reverse();
    }
}

/// Rotation by `degrees` counter-clockwise about the centre, nearest neighbour, zero fill.
fn rotate(img: &mut Image, degrees: f32) {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (h, w) = (img.height, img.width);
    let (cy, cx) = (h as f32 * 0.5, w as f32 * 0.5);
    let mut out = vec![0f32; img.data.len()];
    for y in 0..h {
        let dy = y as f32 + 0.5 - cy;
        for x in 0..w {
            let dx = x as f32 + 0.5 - cx;
            // Inverse map: rotate the output position back by -angle (y grows downwards).
            let sx = cos * dx - sin * dy + cx;
            let sy = sin * dx + cos * dy + cy;
            if sx >= 0.0 && sy >= 0.0 && (sx as usize) < w && (sy as usize) < h {
                let (ix, iy) = (sx as usize, sy as usize);
                for c in 0..img.channels {
                    let p = c * h * w;
                    out[p + y * w + x] = img.data[p + iy * w + ix];
                }
            }
        }
    }
    img.data = out;
}

/// The factors a jitter draws, for tests: each within its range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterDraw {
    pub order: [usize; 4],
    pub brightness: Option<f32>,
    pub contrast: Option<f32>,
    pub saturation: Option<f32>,
    pub hue: Option<f32>,
}

/// torchvision's `ColorJitter.get_params`: a random order of the four adjustments and a
/// factor for each one asked for.
pub fn jitter_draw(b: f32, c: f32, s: f32, h: f32, rng: &mut Rng) -> JitterDraw {
    let mut order = [0, 1, 2, 3];
    rng.shuffle(&mut order);
    let mut factor = |v: f32| (v > 0.0).then(|| rng.uniform((1.0 - v).max(0.0), 1.0 + v));
    let brightness = factor(b);
    let contrast = factor(c);
    let saturation = factor(s);
    let hue = (h > 0.0).then(|| rng.uniform(-h, h));
    JitterDraw {
        order,
        brightness,
        contrast,
        saturation,
        hue,
    }
}

fn jitter(img: &mut Image, b: f32, c: f32, s: f32, h: f32, rng: &mut Rng) {
    let d = jitter_draw(b, c, s, h, rng);
    let rgb = img.channels == 3;
    for op in d.order {
        match op {
            0 => {
                if let Some(f) = d.brightness {
                    for v in &mut img.data {
                        *v = (*v * f).clamp(0.0, 1.0);
                    }
                }
            }
            1 => {
                if let Some(f) = d.contrast {
                    let mean = grayscale(img).iter().sum::<f32>() / img.plane() as f32;
                    for v in &mut img.data {
                        *v = (f * *v + (1.0 - f) * mean).clamp(0.0, 1.0);
                    }
                }
            }
            2 => {
                if let (Some(f), true) = (d.saturation, rgb) {
                    let gray = grayscale(img);
                    let n = img.plane();
                    for (i, v) in img.data.iter_mut().enumerate() {
                        *v = (f * *v + (1.0 - f) * gray[i % n]).clamp(0.0, 1.0);
                    }
                }
            }
            _ => {
                if let (Some(f), true) = (d.hue, rgb) {
                    shift_hue(img, f);
                }
            }
        }
    }
}

/// ITU-R 601-2 luma, as torchvision's `rgb_to_grayscale`; a grayscale image is itself.
fn grayscale(img: &Image) -> Vec<f32> {
    let n = img.plane();
    if img.channels != 3 {
        return img.data[..n].to_vec();
    }
    (0..n)
        .map(|i| 0.2989 * img.data[i] + 0.587 * img.data[n + i] + 0.114 * img.data[2 * n + i])
        .collect()
}

fn shift_hue(img: &mut Image, by: f32) {
    let n = img.plane();
    for i in 0..n {
        let (r, g, b) = (img.data[i], img.data[n + i], img.data[2 * n + i]);
        let (h, s, v) = rgb_to_hsv(r, g, b);
        let (r, g, b) = hsv_to_rgb((h + by).rem_euclid(1.0), s, v);
        img.data[i] = r;
        img.data[n + i] = g;
        img.data[2 * n + i] = b;
    }
}

pub fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    let s = if max > 0.0 { d / max } else { 0.0 };
    let h = if d == 0.0 {
        0.0
    } else if max == r {
        ((g - b) / d).rem_euclid(6.0) / 6.0
    } else if max == g {
        ((b - r) / d + 2.0) / 6.0
    } else {
        ((r - g) / d + 4.0) / 6.0
    };
    (h, s, max)
}

pub fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h * 6.0;
    let i = (h6.floor() as i32).rem_euclid(6);
    let f = h6 - h6.floor();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;

    fn ramp(c: usize, h: usize, w: usize) -> Image {
        let n = c * h * w;
        Image {
            channels: c,
            height: h,
            width: w,
            data: (0..n).map(|i| i as f32 / n as f32).collect(),
        }
    }

    #[test]
    fn specs_parse_and_print_back() {
        let s: AugmentSpec = "crop:0.8,flip,jitter:0.2".parse().unwrap();
        assert_eq!(
            s.transforms,
            vec![
                Transform::ResizedCrop {
                    scale: (0.8, 1.0),
                    ratio: (0.75, 4.0 / 3.0)
                },
                Transform::Flip { p: 0.5 },
                Transform::Jitter {
                    brightness: 0.2,
                    contrast: 0.2,
                    saturation: 0.2,
                    hue: 0.0
                },
            ]
        );
        assert_eq!(s.to_string(), "crop:0.8,flip,jitter:0.2");
        assert_eq!(s.to_string().parse::<AugmentSpec>().unwrap(), s);
        for text in [
            "crop",
            "crop:0.5-0.9:0.5-2",
            "flip:0.3",
            "jitter:0.1:0.2:0.3:0.1",
            "erase",
        ] {
            assert_eq!(text.parse::<AugmentSpec>().unwrap().to_string(), text);
        }
        let p: AugmentSpec = "pad-crop:4,flip".parse().unwrap();
        assert_eq!(p.names(), "pad-crop flip");
        assert_eq!(
            "none".parse::<AugmentSpec>().unwrap(),
            AugmentSpec::default()
        );
        for (bad, want) in [
            ("blur", "unknown transform 'blur'"),
            ("flip:2", "probability"),
            ("crop:1.5", "scale"),
            ("jitter", "needs a strength"),
            ("jitter:0.1:0.1:0.1:0.7", "hue"),
            ("pad-crop:x", "padding"),
            ("flip,,crop", "empty transform"),
            ("rotate:abc", "not a number"),
            ("flip:0.5:1", "at most 1"),
        ] {
            let e = bad.parse::<AugmentSpec>().unwrap_err().to_string();
            assert!(e.starts_with(&format!("--augment '{bad}': ")), "{e}");
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn flip_mirrors_every_row_exactly() {
        let img = ramp(3, 4, 5);
        let mut f = img.clone();
        flip(&mut f);
        for c in 0..3 {
            for y in 0..4 {
                for x in 0..5 {
                    assert_eq!(f.at(c, y, x), img.at(c, y, 4 - x));
                }
            }
        }
    }

    #[test]
    fn resized_crop_boxes_stay_inside_within_scale_and_ratio() {
        let mut rng = Rng::new(7);
        let (h, w) = (28usize, 28usize);
        let (scale, ratio) = ((0.3f32, 1.0f32), (0.75f32, 4.0f32 / 3.0));
        let mut fallbacks = 0;
        for _ in 0..5000 {
            let (i, j, bh, bw) = resized_crop_box(h, w, scale, ratio, &mut rng);
            assert!(bh > 0 && bw > 0 && i + bh <= h && j + bw <= w);
            let area = (bh * bw) as f32 / (h * w) as f32;
            let r = bw as f32 / bh as f32;
            // Rounding the sides to whole pixels moves area and ratio a little.
            let slack = 2.0 / h as f32 + 2.0 / w as f32;
            if (bh, bw) == (h, w) {
                fallbacks += 1;
                continue;
            }
            assert!(
                area >= scale.0 - slack && area <= scale.1 + slack,
                "area {area}"
            );
            assert!(r >= ratio.0 - 0.12 && r <= ratio.1 + 0.12, "ratio {r}");
        }
        assert!(fallbacks < 2500, "{fallbacks}");
    }

    #[test]
    fn bilinear_resizing_matches_a_direct_computation() {
        // The whole image back to its size is the identity.
        let img = ramp(2, 5, 7);
        assert_eq!(resize_bilinear(&img, 0, 0, 5, 7), img);
        // A 2x2 box blown up to 4x4: half-pixel centres, edges clamped.
        let img = Image::from_bytes(&[0, 255, 255, 0], 1, 2, 2);
        let out = resize_bilinear(&img, 0, 0, 2, 2);
        assert_eq!(out, img);
        let big = Image {
            channels: 1,
            height: 4,
            width: 4,
            data: vec![0.0; 16],
        };
        let mut big = big;
        big.data[..4].copy_from_slice(&[0.0, 0.0, 1.0, 1.0]);
        big.data[4..8].copy_from_slice(&[0.0, 0.0, 1.0, 1.0]);
        // Crop the 2x2 top-right quarter (rows 0-1, columns 1-2) back up to 4x4.
        let up = resize_bilinear(&big, 0, 1, 2, 2);
        // Source x for output x: (x + 0.5) / 2 - 0.5, clamped at 0: 0, 0.25, 0.75, 1.
        let want_row = [0.0, 0.25, 0.75, 1.0];
        for y in 0..4 {
            for (x, want) in want_row.iter().enumerate() {
                assert!((up.at(0, y, x) - want).abs() < 1e-6, "({y}, {x})");
            }
        }
    }

    #[test]
    fn pad_crop_shifts_within_the_padding_and_fills_zeros() {
        let img = ramp(1, 8, 8);
        let mut rng = Rng::new(3);
        for _ in 0..200 {
            let mut out = img.clone();
            apply(
                &AugmentSpec {
                    transforms: vec![Transform::PadCrop { padding: 2 }],
                },
                &mut out,
                &mut rng,
            );
            // The result is the image moved by (dy, dx) with |dy|, |dx| <= 2.
            let found = (-2isize..=2)
                .flat_map(|dy| (-2isize..=2).map(move |dx| (dy, dx)))
                .any(|(dy, dx)| {
                    let mut s = img.clone();
                    shift(&mut s, dy, dx);
                    s == out
                });
            assert!(found);
        }
    }

    #[test]
    fn jitter_factors_stay_in_their_ranges() {
        let mut rng = Rng::new(11);
        for _ in 0..2000 {
            let d = jitter_draw(0.2, 0.4, 0.6, 0.1, &mut rng);
            let b = d.brightness.unwrap();
            assert!((0.8..1.2).contains(&b), "{b}");
            assert!((0.6..1.4).contains(&d.contrast.unwrap()));
            assert!((0.4..1.6).contains(&d.saturation.unwrap()));
            assert!((-0.1..0.1).contains(&d.hue.unwrap()));
            let mut o = d.order;
            o.sort();
            assert_eq!(o, [0, 1, 2, 3]);
        }
        let none = jitter_draw(0.0, 0.0, 0.0, 0.0, &mut rng);
        assert_eq!(
            (none.brightness, none.contrast, none.saturation, none.hue),
            (None, None, None, None)
        );
    }

    #[test]
    fn brightness_and_contrast_follow_torchvision() {
        // Contrast blends with the mean of the grayscale image; brightness scales.
        let img = Image::from_bytes(&[0, 51, 102, 255], 1, 2, 2);
        let mut rng = Rng::new(5);
        let mut out = img.clone();
        let d = jitter_draw(0.5, 0.5, 0.0, 0.0, &mut rng.clone());
        jitter(&mut out, 0.5, 0.5, 0.0, 0.0, &mut rng);
        let mut want = img.data.clone();
        for op in d.order {
            match op {
                0 => want
                    .iter_mut()
                    .for_each(|v| *v = (*v * d.brightness.unwrap()).clamp(0.0, 1.0)),
                1 => {
                    let m = want.iter().sum::<f32>() / 4.0;
                    let f = d.contrast.unwrap();
                    want.iter_mut()
                        .for_each(|v| *v = (f * *v + (1.0 - f) * m).clamp(0.0, 1.0));
                }
                _ => {}
            }
        }
        for (a, b) in out.data.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn hsv_round_trips_and_a_full_turn_of_hue_is_the_identity() {
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            let (r, g, b) = (rng.next_f32(), rng.next_f32(), rng.next_f32());
            let (h, s, v) = rgb_to_hsv(r, g, b);
            let (r2, g2, b2) = hsv_to_rgb(h, s, v);
            assert!((r - r2).abs() < 1e-5 && (g - g2).abs() < 1e-5 && (b - b2).abs() < 1e-5);
        }
        // Pure red shifted by a third of a turn is pure green.
        let mut img = Image::from_bytes(&[255, 0, 0], 3, 1, 1);
        shift_hue(&mut img, 1.0 / 3.0);
        assert!((img.data[1] - 1.0).abs() < 1e-5 && img.data[0].abs() < 1e-5);
    }

    #[test]
    fn a_quarter_turn_moves_pixels_exactly() {
        // Counter-clockwise by 90 degrees: the top-right corner goes to the top-left.
        let img = ramp(1, 4, 4);
        let mut r = img.clone();
        rotate(&mut r, 90.0);
        for y in 0..4 {
            for x in 0..4 {
                assert_eq!(r.at(0, y, x), img.at(0, x, 3 - y), "({y}, {x})");
            }
        }
    }

    #[test]
    fn erase_boxes_fit_and_the_draws_repeat_per_sample() {
        let mut rng = Rng::new(2);
        for _ in 0..2000 {
            if let Some((i, j, h, w)) = erase_box(32, 32, &mut rng) {
                assert!(i + h <= 32 && j + w <= 32);
                let share = (h * w) as f32 / 1024.0;
                assert!((0.005..0.4).contains(&share), "{share}");
            }
        }
        let a = sample_rng(1, 3, 17).next_u64();
        assert_eq!(a, sample_rng(1, 3, 17).next_u64());
        assert_ne!(a, sample_rng(1, 4, 17).next_u64());
        assert_ne!(a, sample_rng(1, 3, 18).next_u64());
    }

    proptest! {
        #[test]
        fn any_spec_text_parses_or_errs(s in "[a-z:,.0-9-]{0,30}") {
            let _ = s.parse::<AugmentSpec>();
        }

        #[test]
        fn mutated_specs_never_panic(pos in 0usize..30, c in any::<char>()) {
            let mut s: Vec<char> = "crop:0.5-1:0.75-1.33,flip:0.5,jitter:0.2".chars().collect();
            let p = pos % s.len();
            s[p] = c;
            let text: String = s.into_iter().collect();
            if let Ok(spec) = text.parse::<AugmentSpec>() {
                // What parses prints back to itself.
                prop_assert_eq!(spec.to_string().parse::<AugmentSpec>().unwrap(), spec);
            }
        }

        #[test]
        fn transforms_keep_the_shape_and_the_range(seed in any::<u64>()) {
            let spec: AugmentSpec = "crop:0.3,pad-crop:3,flip,jitter:0.4:0.4:0.4:0.2,rotate:30".parse().unwrap();
            let mut img = ramp(3, 9, 7);
            apply(&spec, &mut img, &mut Rng::new(seed));
            prop_assert_eq!(img.data.len(), 3 * 9 * 7);
            prop_assert!(img.data.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }
}
