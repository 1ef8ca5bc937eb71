//! Plain image types every layer shares: a decoded image and the layout of
//! interleaved samples (no I/O, no GPU).

use crate::error::{Error, Result};
use crate::tensor::{Samples, Shape};

/// A decoded image: interleaved samples, 1-4 channels of 8 or 16 bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA.
    pub channels: usize,
    /// The samples, row-major, interleaved.
    pub samples: Samples,
}

impl Image {
    /// Checks that the sample count fits the size and channel count.
    pub fn new(width: u32, height: u32, channels: usize, samples: Samples) -> Result<Image> {
        let want = width as usize * height as usize * channels;
        if !(1..=4).contains(&channels) || samples.len() != want {
            return Err(Error::invalid(
                "image",
                format!("{} samples for {width}x{height} with {channels} channels", samples.len()),
            ));
        }
        Ok(Image { width, height, channels, samples })
    }
    /// The pixel layout of this image (one image).
    pub fn layout(&self) -> PixelLayout {
        PixelLayout {
            n: 1,
            height: self.height as usize,
            width: self.width as usize,
            channels: self.channels,
            bits: self.samples.bits(),
        }
    }
    /// True when the last channel is alpha (grey+alpha or RGBA).
    pub fn has_alpha(&self) -> bool {
        self.channels == 2 || self.channels == 4
    }
}

/// Layout of interleaved samples: `n` images of `height x width` pixels with
/// `channels` samples each (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA), `bits` 8 or 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelLayout {
    /// Images back to back.
    pub n: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Samples per pixel, 1..=4.
    pub channels: usize,
    /// Bits per sample: 8 or 16.
    pub bits: u32,
}

impl PixelLayout {
    /// Checks the layout itself.
    pub fn check(&self) -> Result<()> {
        if !(1..=4).contains(&self.channels) || !(self.bits == 8 || self.bits == 16) {
            return Err(Error::invalid(
                "pixels",
                format!("{} channels of {} bits (need 1-4 channels of 8 or 16 bits)", self.channels, self.bits),
            ));
        }
        Ok(())
    }
    /// Planar shape `(n, channels, height, width)`.
    pub fn shape(&self) -> Shape {
        Shape::new(self.n, self.channels, self.height, self.width)
    }
    /// Number of samples.
    pub fn samples(&self) -> usize {
        self.shape().len()
    }
    /// Bytes of the packed samples.
    pub fn bytes(&self) -> u64 {
        (self.samples() * self.bits as usize / 8) as u64
    }
    /// Largest sample value, `2^bits - 1`.
    pub fn max_value(&self) -> f32 {
        if self.bits == 8 {
            255.0
        } else {
            65535.0
        }
    }
}
