//! The `.tcz` container of TinyCompress (all integers little-endian):
//!
//! ```text
//! offset size  field
//! 0      4     magic "TCZ1"
//! 4      1     format version (3; 2 is still read)
//! 5      1     rate: 4, 16 or 64 (pixels per latent value per channel)
//! 6      1     bit planes kept, 1..8
//! 7      1     image channels: 3 (RGB)
//! 8      4     image width (1..=32768)
//! 12     4     image height (1..=32768)
//! 16     1     latent channels: 3
//! 17     4     codec id: CRC-32 of the weights that encoded it (TinyCompress::id)
//! 21     24    per latent channel: minimum f32, maximum f32
//! 45     4     payload length n
//! 49     n     payload: the arithmetic-coded latents (format 3: a stream
//!              per band of rows of each channel, 65,536 values or more
//!              (`entropy::band_rows`), each stream's
//!              length but the last's as u32, then the streams; format 2:
//!              one stream, see `entropy`)
//! 49+n   4     CRC-32 (IEEE) of bytes 0..49+n
//! ```
//!
//! The codec id lets `decompress` refuse a file made with other weights
//! (their latents mean something else: decoding would give a wrong image
//! without any error). Version 1 had no id and is refused.
//!
//! The latents cover the image extended by [`margin`] pixels on every side
//! (edge replication; the convolutions' zero padding then falls outside the
//! image) and padded up to the block factor on the right and bottom, so
//! their size follows from the image size and the rate: no field to
//! disagree with. Parsing checks every field
//! and the CRC before anything is allocated from the payload, and refuses
//! trailing bytes: a corrupt, truncated or foreign file is an error, never a
//! panic, a hang or a huge allocation.

use crate::error::{Error, Result};

/// The magic bytes.
pub const MAGIC: &[u8; 4] = b"TCZ1";
/// The format version this build writes (it reads this and [`OLDEST`]).
pub const VERSION: u8 = 3;
/// The oldest format version this build reads (its payload one stream).
pub const OLDEST: u8 = 2;
/// Largest side accepted.
pub const MAX_SIDE: u32 = 32768;
const HEADER: usize = 49;

/// A parsed `.tcz` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Tcz {
    /// Format version: [`VERSION`] for files this build makes, [`OLDEST`]
    /// for older ones read (the payload's layout differs).
    pub version: u8,
    /// 4, 16 or 64.
    pub rate: u8,
    /// Bit planes kept (1..=8).
    pub bitplanes: u8,
    /// Image width.
    pub width: u32,
    /// Image height.
    pub height: u32,
    /// Id of the weights that encoded it ([`crate::models::tinycompress::TinyCompress::id`]).
    pub codec: u32,
    /// Per latent channel (minimum, maximum) of the unquantised latents.
    pub ranges: [(f32, f32); 3],
    /// The coded latents.
    pub payload: Vec<u8>,
}

pub use crate::fsutil::crc32;

/// The block factor per side of a rate (2, 4 or 8).
pub fn factor(rate: u8) -> Option<usize> {
    match rate {
        4 => Some(2),
        16 => Some(4),
        64 => Some(8),
        _ => None,
    }
}

/// Pixels of edge-replicated margin around the image before encoding, per
/// rate. Without one the networks' zero padding spoils the outer pixels
/// (CSet5 at -4 with the bundled weights: 31.4 dB over the whole image,
/// 32.4 without its outer 4 pixels). Chosen on CSet5 for the best trade:
/// -4 with 2 pixels: +1.0 dB for +3% bits; -16 and -64 with 4: +1.2 dB for
/// +5-6% (8 pixels cost twice the bits for 0.05 dB more).
pub fn margin(rate: u8) -> usize {
    match rate {
        4 => 2,
        16 => 4,
        64 => 4,
        _ => 0,
    }
}

/// Latent width and height for an image of `w` x `h` at `rate`.
pub fn latent_size(rate: u8, w: usize, h: usize) -> (usize, usize) {
    let (f, m) = (factor(rate).unwrap_or(1), margin(rate));
    ((w + 2 * m).div_ceil(f), (h + 2 * m).div_ceil(f))
}

impl Tcz {
    /// Latent width and height: the image with its margin, padded up to the block factor, divided by it.
    pub fn latent_size(&self) -> (usize, usize) {
        latent_size(self.rate, self.width as usize, self.height as usize)
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.header(self.payload.len() as u32);
        b.reserve(self.payload.len() + 4);
        b.extend_from_slice(&self.payload);
        let crc = crc32(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// The bytes before the payload, for a payload of `payload_len` bytes
    /// (`self.payload` is not read): a file written as its payload is
    /// made is this, the payload, then the CRC-32 of all of it (LE).
    pub fn header(&self, payload_len: u32) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&[self.version, self.rate, self.bitplanes, 3]);
        b.extend_from_slice(&self.width.to_le_bytes());
        b.extend_from_slice(&self.height.to_le_bytes());
        b.push(3);
        b.extend_from_slice(&self.codec.to_le_bytes());
        for (lo, hi) in self.ranges {
            b.extend_from_slice(&lo.to_le_bytes());
            b.extend_from_slice(&hi.to_le_bytes());
        }
        b.extend_from_slice(&payload_len.to_le_bytes());
        b
    }

    /// Parses and checks a file (see the module docs for what is refused).
    pub fn parse(b: &[u8]) -> Result<Tcz> {
        let bad = |m: String| Err(Error::invalid("tcz", m));
        if b.len() < 4 || &b[..4] != MAGIC {
            return bad("not a .tcz file (no TCZ1 magic)".into());
        }
        if b.len() < HEADER + 4 {
            return bad(format!("truncated: {} bytes, the header alone is {}", b.len(), HEADER + 4));
        }
        let version = b[4];
        if !(OLDEST..=VERSION).contains(&version) {
            return bad(format!("format version {version} (this build reads {OLDEST}-{VERSION})"));
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let f32_at = |o: usize| f32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let (rate, bitplanes, channels, latent_c) = (b[5], b[6], b[7], b[16]);
        if factor(rate).is_none() {
            return bad(format!("rate {rate} (valid: 4, 16, 64)"));
        }
        if !(1..=8).contains(&bitplanes) {
            return bad(format!("{bitplanes} bit planes (valid: 1-8)"));
        }
        if channels != 3 || latent_c != 3 {
            return bad(format!("{channels} image / {latent_c} latent channels (this version codes RGB: 3 / 3)"));
        }
        let (width, height) = (u32_at(8), u32_at(12));
        if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
            return bad(format!("image size {width}x{height} (sides 1-{MAX_SIDE})"));
        }
        let mut ranges = [(0.0f32, 0.0f32); 3];
        for (c, r) in ranges.iter_mut().enumerate() {
            *r = (f32_at(21 + 8 * c), f32_at(25 + 8 * c));
            if !(r.0.is_finite() && r.1.is_finite() && r.0 <= r.1) {
                return bad(format!("latent channel {c} range {} .. {} is not a finite interval", r.0, r.1));
            }
        }
        let n = u32_at(45) as usize;
        if b.len() != HEADER + n + 4 {
            return bad(format!(
                "payload of {n} bytes does not fit a {}-byte file (truncated or trailing bytes)",
                b.len()
            ));
        }
        let crc = u32_at(HEADER + n);
        if crc32(&b[..HEADER + n]) != crc {
            return bad("CRC mismatch: the file is corrupt".into());
        }
        let payload = b[HEADER..HEADER + n].to_vec();
        Ok(Tcz { version, rate, bitplanes, width, height, codec: u32_at(17), ranges, payload })
    }
}
