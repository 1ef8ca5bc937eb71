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
    /// Branch-free like [`Decoder::bit`].
    #[inline]
    pub fn bit(&mut self, p: &mut u16, bit: bool) {
        let p0 = *p as u32;
        let bound = (self.range >> PROB_BITS) * p0;
        let one = (bit as u32).wrapping_neg();
        self.low += (bound & one) as u64;
        self.range = (bound & !one) | (self.range.wrapping_sub(bound) & one);
        let up = p0 + ((PROB_ONE as u32 - p0) >> MOVE_BITS);
        let down = p0 - (p0 >> MOVE_BITS);
        *p = ((up & !one) | (down & one)) as u16;
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
    /// Branch-free: the coded bits are close to random, so a branch on
    /// them mispredicts about half the time (the update is the same
    /// arithmetic as the encoder's, selected by a mask).
    #[inline]
    pub fn bit(&mut self, p: &mut u16) -> bool {
        let p0 = *p as u32;
        let bound = (self.range >> PROB_BITS) * p0;
        let bit = self.code >= bound;
        let one = (bit as u32).wrapping_neg();
        self.code -= bound & one;
        self.range = (bound & !one) | (self.range.wrapping_sub(bound) & one);
        let up = p0 + ((PROB_ONE as u32 - p0) >> MOVE_BITS);
        let down = p0 - (p0 >> MOVE_BITS);
        *p = ((up & !one) | (down & one)) as u16;
        while self.range < TOP {
            self.range <<= 8;
            self.code = (self.code << 8) | self.byte() as u32;
        }
        bit
    }
}

/// Context buckets per channel (from the neighbours' mean).
const BUCKETS: usize = 16;

/// Latent values per band, at least: format 3 codes each band of rows of
/// each channel as its own stream (own coder, own adaptive model, no
/// neighbour above its first row), so the bands code and decode in
/// parallel. Each stream's model learns afresh, which costs about 160 bytes
/// (measured on the sample photo's planes); at 64 K values that is under
/// 1% of the stream. Part of the format.
pub const BAND_VALUES: usize = 65536;

/// Rows per band of a plane `w` wide ([`BAND_VALUES`]).
pub fn band_rows(w: usize) -> usize {
    BAND_VALUES.div_ceil(w.max(1))
}

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
    /// The tree of channel `c` at (x, y) of a plane `w` wide, given the
    /// values so far; rows before `top` (another band's) are not seen.
    fn tree(&self, plane: &[u8], w: usize, x: usize, y: usize, top: usize, c: usize) -> usize {
        let left = if x > 0 {
            plane[y * w + x - 1] as usize
        } else if y > top {
            plane[(y - 1) * w + x] as usize
        } else {
            0
        };
        let up = if y > top { plane[(y - 1) * w + x] as usize } else { left };
        let mean = (left + up) << (8 - self.bitplanes) >> 1; // on the 8-bit scale
        let bucket = (mean * BUCKETS) >> 8;
        (c * BUCKETS + bucket) << self.bitplanes
    }
}

/// Codes rows `y0..y1` of channel `c`'s plane into `e` with model `m`.
#[allow(clippy::too_many_arguments)]
fn encode_rows(e: &mut Encoder, m: &mut Model, plane: &[u8], w: usize, (y0, y1): (usize, usize), top: usize, c: usize) {
    let bitplanes = m.bitplanes;
    for y in y0..y1 {
        for x in 0..w {
            let base = m.tree(plane, w, x, y, top, c);
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

/// Decodes rows `y0..y1` of channel `c`'s plane from `d` with model `m`;
/// `Err(())` at the first row that starts past the end of the stream.
#[allow(clippy::too_many_arguments)]
fn decode_rows(
    d: &mut Decoder,
    m: &mut Model,
    plane: &mut [u8],
    w: usize,
    (y0, y1): (usize, usize),
    top: usize,
    c: usize,
) -> std::result::Result<(), ()> {
    let bitplanes = m.bitplanes;
    for y in y0..y1 {
        if d.overrun() {
            return Err(());
        }
        for x in 0..w {
            let base = m.tree(plane, w, x, y, top, c);
            let mut node = 1usize;
            for _ in 0..bitplanes {
                let bit = d.bit(&mut m.probs[base + node]);
                node = (node << 1) | bit as usize;
            }
            plane[y * w + x] = (node - (1 << bitplanes)) as u8;
        }
    }
    Ok(())
}

/// The streams of format 3, in order: (channel, first row, end row).
fn bands(channels: usize, w: usize, h: usize) -> Vec<(usize, usize, usize)> {
    let rows = band_rows(w);
    (0..channels).flat_map(|c| (0..h).step_by(rows).map(move |y0| (c, y0, (y0 + rows).min(h)))).collect()
}

/// Codes latent planes (`channels` planes of `w` x `h` values below
/// 2^`bitplanes`) as format 3: one stream per band of [`band_rows`] rows of
/// each channel, coded in parallel, each with its own model; the payload is
/// the byte length of every stream but the last (u32 LE), then the streams.
pub fn encode_latents(values: &[u8], channels: usize, w: usize, h: usize, bitplanes: u32) -> Vec<u8> {
    use rayon::prelude::*;
    assert!((1..=8).contains(&bitplanes) && values.len() == channels * w * h);
    let streams: Vec<Vec<u8>> = bands(channels, w, h)
        .into_par_iter()
        .map(|(c, y0, y1)| encode_stream(&values[(c * h + y0) * w..(c * h + y1) * w], w, bitplanes))
        .collect();
    let mut out = Vec::with_capacity(4 * streams.len() + streams.iter().map(Vec::len).sum::<usize>());
    for s in &streams[..streams.len().saturating_sub(1)] {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    }
    for s in &streams {
        out.extend_from_slice(s);
    }
    out
}

/// One stream of format 3: the rows of one band of one channel (`rows`,
/// whole rows of `w` values below 2^`bitplanes`), with a model of its own
/// ([`encode_latents`] makes one per band; a band-by-band writer calls it
/// as each band's codes are ready).
pub fn encode_stream(rows: &[u8], w: usize, bitplanes: u32) -> Vec<u8> {
    let mut m = Model::new(1, bitplanes);
    let mut e = Encoder::new();
    encode_rows(&mut e, &mut m, rows, w, (0, rows.len() / w.max(1)), 0, 0);
    e.finish()
}

/// Codes latent planes as format 2 did: one stream, raster order, channel
/// by channel (kept so old files can be made in tests; decoded by
/// [`decode_latents_v2`]).
pub fn encode_latents_v2(values: &[u8], channels: usize, w: usize, h: usize, bitplanes: u32) -> Vec<u8> {
    assert!((1..=8).contains(&bitplanes) && values.len() == channels * w * h);
    let mut m = Model::new(channels, bitplanes);
    let mut e = Encoder::new();
    for c in 0..channels {
        encode_rows(&mut e, &mut m, &values[c * w * h..(c + 1) * w * h], w, (0, h), 0, c);
    }
    e.finish()
}

fn check_decode(channels: usize, w: usize, h: usize, bitplanes: u32) -> crate::error::Result<usize> {
    use crate::error::Error;
    if !(1..=8).contains(&bitplanes) {
        return Err(Error::invalid("tcz", format!("{bitplanes} bit planes (valid: 1-8)")));
    }
    channels
        .checked_mul(w)
        .and_then(|v| v.checked_mul(h))
        .ok_or_else(|| Error::invalid("tcz", format!("{channels}x{w}x{h} latent values overflow")))
}

fn short(len: usize, n: usize) -> crate::error::Error {
    crate::error::Error::invalid("tcz", format!("the payload ends early ({len} bytes for {n} latent values)"))
}

/// A stream of `len` bytes (of a `payload`-byte payload of `n` values)
/// decoded: an error if it needed more bytes or left some over.
fn finished(d: &Decoder, len: usize, payload: usize, n: usize) -> crate::error::Result<()> {
    if d.overrun() {
        return Err(short(payload, n));
    }
    if d.consumed() < len {
        let extra = len - d.consumed();
        return Err(crate::error::Error::invalid(
            "tcz",
            format!("{extra} bytes left over after the latent values (a corrupt payload)"),
        ));
    }
    Ok(())
}

/// Decodes what [`encode_latents`] wrote (format 3): `channels * w * h`
/// values, the bands in parallel, or an error when the stream table does
/// not fit the payload, a stream ends before its values (a truncated or
/// forged payload: decoding stops at the first row that reads past the end)
/// or has bytes left after them.
pub fn decode_latents(
    data: &[u8],
    channels: usize,
    w: usize,
    h: usize,
    bitplanes: u32,
) -> crate::error::Result<Vec<u8>> {
    use crate::error::Error;
    use rayon::prelude::*;
    let n = check_decode(channels, w, h, bitplanes)?;
    let bands = bands(channels, w, h);
    // The stream table: lengths of all but the last, then the streams.
    let table = 4 * bands.len().saturating_sub(1);
    if data.len() < table {
        return Err(short(data.len(), n));
    }
    let mut spans = Vec::with_capacity(bands.len());
    let mut at = table;
    for i in 0..bands.len() {
        let len = if i + 1 < bands.len() {
            u32::from_le_bytes(data[4 * i..4 * i + 4].try_into().expect("4 bytes")) as usize
        } else {
            data.len().saturating_sub(at)
        };
        let end = at.checked_add(len).filter(|&e| e <= data.len()).ok_or_else(|| {
            let what = format!("stream {i} of {} runs past its {} bytes", bands.len(), data.len());
            Error::invalid("tcz", format!("the payload ends early ({what})"))
        })?;
        spans.push((at, end));
        at = end;
    }
    let mut values = crate::fsutil::try_vec("the decoded latents", n, 0u8)?;
    // Each band's rows are a disjoint slice of the output.
    let mut parts: Vec<&mut [u8]> = Vec::with_capacity(bands.len());
    let mut rest: &mut [u8] = &mut values;
    for &(_, y0, y1) in &bands {
        let (band, tail) = rest.split_at_mut((y1 - y0) * w);
        parts.push(band);
        rest = tail;
    }
    parts.into_par_iter().zip(bands.par_iter()).zip(spans.par_iter()).try_for_each(
        |((band, &(_, y0, y1)), &(a, b))| {
            let mut m = Model::new(1, bitplanes);
            let mut d = Decoder::new(&data[a..b]);
            decode_rows(&mut d, &mut m, band, w, (0, y1 - y0), 0, 0).map_err(|()| short(data.len(), n))?;
            finished(&d, b - a, data.len(), n)
        },
    )?;
    Ok(values)
}

/// Decodes a format-2 payload ([`encode_latents_v2`]): one stream.
pub fn decode_latents_v2(
    data: &[u8],
    channels: usize,
    w: usize,
    h: usize,
    bitplanes: u32,
) -> crate::error::Result<Vec<u8>> {
    let n = check_decode(channels, w, h, bitplanes)?;
    let mut m = Model::new(channels, bitplanes);
    let mut d = Decoder::new(data);
    let mut values = crate::fsutil::try_vec("the decoded latents", n, 0u8)?;
    for c in 0..channels {
        let plane = &mut values[c * w * h..(c + 1) * w * h];
        decode_rows(&mut d, &mut m, plane, w, (0, h), 0, c).map_err(|()| short(data.len(), n))?;
    }
    finished(&d, data.len(), data.len(), n)?;
    Ok(values)
}

/// Decodes a payload of container format `version` (2 or 3).
pub fn decode_payload(
    version: u8,
    data: &[u8],
    channels: usize,
    w: usize,
    h: usize,
    bitplanes: u32,
) -> crate::error::Result<Vec<u8>> {
    if version == 2 {
        decode_latents_v2(data, channels, w, h, bitplanes)
    } else {
        decode_latents(data, channels, w, h, bitplanes)
    }
}
