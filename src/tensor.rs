//! Host tensors: f32, NCHW, contiguous.

use crate::error::{Error, Result};

/// Shape of an NCHW tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Height in pixels.
    pub h: usize,
    /// Width in pixels.
    pub w: usize,
}

impl Shape {
    /// A new shape.
    pub const fn new(n: usize, c: usize, h: usize, w: usize) -> Self {
        Shape { n, c, h, w }
    }
    /// Number of elements.
    pub const fn len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    /// True when any dimension is zero.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of pixels of one plane.
    pub const fn plane(&self) -> usize {
        self.h * self.w
    }
    /// Size in bytes as f32.
    pub const fn bytes(&self) -> u64 {
        (self.len() * 4) as u64
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}x{}", self.n, self.c, self.h, self.w)
    }
}

/// A host tensor of f32 values in NCHW order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Its shape.
    pub shape: Shape,
    /// `shape.len()` values, NCHW.
    pub data: Vec<f32>,
}

impl Tensor {
    /// The first `c` channels of every batch item.
    pub fn first_channels(&self, c: usize) -> Tensor {
        let s = self.shape;
        let mut data = Vec::with_capacity(s.n * c * s.plane());
        for n in 0..s.n {
            data.extend_from_slice(&self.data[n * s.c * s.plane()..][..c * s.plane()]);
        }
        Tensor { shape: Shape::new(s.n, c, s.h, s.w), data }
    }

    /// A tensor of zeros.
    pub fn zeros(shape: Shape) -> Self {
        Tensor { shape, data: vec![0.0; shape.len()] }
    }
    /// Wraps data, checking its length against the shape.
    pub fn from_vec(shape: Shape, data: Vec<f32>) -> Result<Self> {
        if data.len() != shape.len() {
            return Err(Error::invalid(
                "tensor",
                format!("shape {shape} holds {} values, got {}", shape.len(), data.len()),
            ));
        }
        Ok(Tensor { shape, data })
    }
    /// One plane (image `n`, channel `c`).
    pub fn plane(&self, n: usize, c: usize) -> &[f32] {
        let p = self.shape.plane();
        let start = (n * self.shape.c + c) * p;
        &self.data[start..start + p]
    }
}

/// Interleaved integer samples of an image (or of N images back to back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Samples {
    /// 8 bits per sample.
    U8(Vec<u8>),
    /// 16 bits per sample.
    U16(Vec<u16>),
}

impl Samples {
    /// Bits per sample: 8 or 16.
    pub fn bits(&self) -> u32 {
        match self {
            Samples::U8(_) => 8,
            Samples::U16(_) => 16,
        }
    }
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Samples::U8(v) => v.len(),
            Samples::U16(v) => v.len(),
        }
    }
    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The samples as little-endian bytes, the layout the GPU kernels read.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        self.le_bytes().into_owned()
    }
    /// The samples as little-endian bytes, borrowed where the memory already
    /// is that (8-bit samples, and 16-bit ones on little-endian machines):
    /// what uploads take, without a copy.
    pub fn le_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Samples::U8(v) => std::borrow::Cow::Borrowed(v),
            #[cfg(target_endian = "little")]
            Samples::U16(v) => std::borrow::Cow::Borrowed(bytemuck::cast_slice(v)),
            #[cfg(not(target_endian = "little"))]
            Samples::U16(v) => std::borrow::Cow::Owned(v.iter().flat_map(|s| s.to_le_bytes()).collect()),
        }
    }
    /// Samples of `bits` bits from little-endian bytes.
    pub fn from_le_bytes(bits: u32, bytes: &[u8], len: usize) -> Samples {
        if bits == 8 {
            Samples::U8(bytes[..len].to_vec())
        } else {
            Samples::U16(bytes[..len * 2].chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect())
        }
    }
}
