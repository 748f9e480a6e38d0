//! The shape of one convolution: input, kernel, stride, padding and the output they give.

use candle_core::Result;

/// The shape of one convolution (dilation 1, one group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geometry {
    pub fn new(
        (c, h, w): (usize, usize, usize),
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        let out = |x: usize| (x + 2 * pad).checked_sub(k).map(|v| v / stride + 1);
        match (out(h), out(w)) {
            (Some(oh), Some(ow)) if stride > 0 && k > 0 => Ok(Self {
                c,
                h,
                w,
                k,
                stride,
                pad,
                oh,
                ow,
            }),
            _ => candle_core::bail!("conv2d: kernel {k} does not fit a padded {h}x{w} input"),
        }
    }

    /// Length of one im2col column (one output position's receptive field).
    pub fn row(&self) -> usize {
        self.c * self.k * self.k
    }

    pub fn plane(&self) -> usize {
        self.c * self.h * self.w
    }

    pub fn out_plane(&self) -> usize {
        self.oh * self.ow
    }

    /// A 1x1 convolution with stride 1 and no padding: the image is its own column matrix.
    pub(super) fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }

    /// Multiply-adds of one image's forward pass.
    pub fn macs(&self, out_channels: usize) -> usize {
        out_channels * self.row() * self.out_plane()
    }

    /// The output columns `ox` whose input column `ox * stride + kx - pad` lies inside the image.
    pub(super) fn valid(&self, kx: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.pad);
        let lo = p.saturating_sub(kx).div_ceil(s);
        let hi = (self.w + p).saturating_sub(kx).div_ceil(s).min(self.ow);
        (lo.min(hi), hi)
    }

    /// The input row read by output row `oy` at kernel row `ky`, if inside the image.
    pub(super) fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky)
            .checked_sub(self.pad)
            .filter(|&y| y < self.h)
    }
}
