//! Adaptive binary arithmetic coding in integers (the LZMA range coder's
//! scheme: 11-bit probabilities adapted by 1/32 per bit, 32-bit range,
//! carry propagation through a cache byte), and the latent model on top:
//! each value's bit planes are coded most significant first through a
//! binary tree of probabilities, chosen by a context made of the channel and
//! the neighbours' values (left, above). Everything is integer arithmetic on
//! the CPU, so a stream decodes identically on every machine.
//!
//! Why not a crate: `constriction` (the maintained Rust entropy-coding
//! library) was considered. It brings range and ANS coders over categorical
//! models, but adaptive binary contexts, the part that matters here, would
//! still be ours as a custom model, called once per coded bit through its
//! generic model interface; the binary range coder itself is under a hundred
//! lines. So the coder stays here, with no dependency.

/// Probability bits (probabilities are of a 0 bit, in 1/2048).
const PROB_BITS: u32 = 11;
const PROB_ONE: u16 = 1 << PROB_BITS;
const MOVE_BITS: u32 = 5;
const TOP: u32 = 1 << 24;

/// The range encoder.
#[derive(Debug)]
pub struct Encoder {
    low: u64,
    range: u32,
    cache: u8,
    cache_size: u64,
    out: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// An empty stream.
    pub fn new() -> Self {
        Encoder { low: 0, range: u32::MAX, cache: 0, cache_size: 1, out: Vec::new() }
    }

    fn shift_low(&mut self) {
        if (self.low as u32) < 0xFF00_0000 || (self.low >> 32) != 0 {
            let carry = (self.low >> 32) as u8;
            let mut temp = self.cache;
            loop {
                self.out.push(temp.wrapping_add(carry));
                temp = 0xFF;
                self.cache_size -= 1;
                if self.cache_size == 0 {
                    break;
                }
            }
            self.cache = ((self.low >> 24) & 0xFF) as u8;
        }
        self.cache_size += 1;
        self.low = (self.low & 0x00FF_FFFF) << 8;
    }

    /// Codes one bit with probability `p` (of a 0) and adapts it.
    pub fn bit(&mut self, p: &mut u16, bit: bool) {
        let bound = (self.range >> PROB_BITS) * *p as u32;
        if !bit {
            self.range = bound;
            *p += (PROB_ONE - *p) >> MOVE_BITS;
        } else {
            self.low += bound as u64;
            self.range -= bound;
            *p -= *p >> MOVE_BITS;
        }
        while self.range < TOP {
            self.range <<= 8;
            self.shift_low();
        }
    }

    /// Flushes and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        for _ in 0..5 {
            self.shift_low();
        }
        self.out
    }
}

/// The range decoder. Reading past the end yields zero bytes and is
/// recorded ([`Decoder::overrun`]): a stream the encoder wrote is read to its
/// last byte and never beyond (its flush writes exactly the bytes the
/// decoder's renormalisations consume), so a decoder that needs more bytes
/// than there are has met a truncated or forged stream.
#[derive(Debug)]
pub struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    range: u32,
    code: u32,
}

impl<'a> Decoder<'a> {
    /// Starts decoding `data`.
    pub fn new(data: &'a [u8]) -> Self {
        let mut d = Decoder { data, pos: 0, range: u32::MAX, code: 0 };
        for _ in 0..5 {
            d.code = (d.code << 8) | d.byte() as u32;
        }
        d
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// True when more bytes were needed than the stream has.
    pub fn overrun(&self) -> bool {
        self.pos > self.data.len()
    }

    /// Bytes consumed so far.
    pub fn consumed(&self) -> usize {
        self.pos
    }

    /// Decodes one bit with probability `p` (of a 0) and adapts it.
    pub fn bit(&mut self, p: &mut u16) -> bool {
        let bound = (self.range >> PROB_BITS) * *p as u32;
        let bit = if self.code < bound {
            self.range = bound;
            *p += (PROB_ONE - *p) >> MOVE_BITS;
            false
        } else {
            self.code -= bound;
            self.range -= bound;
            *p -= *p >> MOVE_BITS;
            true
        };
        while self.range < TOP {
            self.range <<= 8;
            self.code = (self.code << 8) | self.byte() as u32;
        }
        bit
    }
}

/// Context buckets per channel (from the neighbours' mean).
const BUCKETS: usize = 16;

/// The adaptive model of `bitplanes`-bit latent values: per channel and
/// neighbour bucket, a binary tree of 2^planes probabilities.
struct Model {
    bitplanes: u32,
    probs: Vec<u16>,
}

impl Model {
    fn new(channels: usize, bitplanes: u32) -> Self {
        Model { bitplanes, probs: vec![PROB_ONE / 2; channels * BUCKETS * (1 << bitplanes)] }
    }
    /// The tree of channel `c` at (x, y) of a plane `w` wide, given the values so far.
    fn tree(&self, plane: &[u8], w: usize, x: usize, y: usize, c: usize) -> usize {
        let left = if x > 0 {
            plane[y * w + x - 1] as usize
        } else if y > 0 {
            plane[(y - 1) * w + x] as usize
        } else {
            0
        };
        let up = if y > 0 { plane[(y - 1) * w + x] as usize } else { left };
        let mean = (left + up) << (8 - self.bitplanes) >> 1; // on the 8-bit scale
        let bucket = (mean * BUCKETS) >> 8;
        (c * BUCKETS + bucket) << self.bitplanes
    }
}

/// Codes latent planes (`channels` planes of `w` x `h` values below
/// 2^`bitplanes`), in raster order, channel by channel.
pub fn encode_latents(values: &[u8], channels: usize, w: usize, h: usize, bitplanes: u32) -> Vec<u8> {
    assert!((1..=8).contains(&bitplanes) && values.len() == channels * w * h);
    let mut m = Model::new(channels, bitplanes);
    let mut e = Encoder::new();
    for c in 0..channels {
        let plane = &values[c * w * h..(c + 1) * w * h];
        for y in 0..h {
            for x in 0..w {
                let base = m.tree(plane, w, x, y, c);
                let v = plane[y * w + x] as usize;
                let mut node = 1usize;
                for b in (0..bitplanes).rev() {
                    let bit = (v >> b) & 1 == 1;
                    e.bit(&mut m.probs[base + node], bit);
                    node = (node << 1) | bit as usize;
                }
            }
        }
    }
    e.finish()
}

/// Decodes what [`encode_latents`] wrote: `channels * w * h` values, or an
/// error when the stream ends before them (a truncated or forged payload:
/// decoding stops at the first row that reads past the end) or has bytes
/// left after them.
pub fn decode_latents(
    data: &[u8],
    channels: usize,
    w: usize,
    h: usize,
    bitplanes: u32,
) -> crate::error::Result<Vec<u8>> {
    use crate::error::Error;
    if !(1..=8).contains(&bitplanes) {
        return Err(Error::invalid("tcz", format!("{bitplanes} bit planes (valid: 1-8)")));
    }
    let n = channels
        .checked_mul(w)
        .and_then(|v| v.checked_mul(h))
        .ok_or_else(|| Error::invalid("tcz", format!("{channels}x{w}x{h} latent values overflow")))?;
    let mut m = Model::new(channels, bitplanes);
    let mut d = Decoder::new(data);
    let mut values = crate::fsutil::try_vec("the decoded latents", n, 0u8)?;
    let short =
        || Error::invalid("tcz", format!("the payload ends early ({} bytes for {n} latent values)", data.len()));
    for c in 0..channels {
        let plane = &mut values[c * w * h..(c + 1) * w * h];
        for y in 0..h {
            if d.overrun() {
                return Err(short());
            }
            for x in 0..w {
                let base = m.tree(plane, w, x, y, c);
                let mut node = 1usize;
                for _ in 0..bitplanes {
                    let bit = d.bit(&mut m.probs[base + node]);
                    node = (node << 1) | bit as usize;
                }
                plane[y * w + x] = (node - (1 << bitplanes)) as u8;
            }
        }
    }
    if d.overrun() {
        return Err(short());
    }
    if d.consumed() < data.len() {
        return Err(Error::invalid(
            "tcz",
            format!("{} bytes left over after the latent values (a corrupt payload)", data.len() - d.consumed()),
        ));
    }
    Ok(values)
}
