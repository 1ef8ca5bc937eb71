//! `compress` and `decompress` of images too large for the whole-image way,
//! in bands of rows (issue #18: a 16000 x 16000 image in bounded memory).
//!
//! ```text
//! compress:   RowReader ─> band + halo ─> edge padding ─> encoder ─> latent rows ─┐
//!             (PNG row by row)                                                    │ all bands
//!             ranges and codes of all latents (quantise) ─> arithmetic coder ─> .tcz
//!
//! decompress: .tcz ─> arithmetic decoder ─> codes ─> latent band + halo ─> decoder ─> crop ─> PNG/TIFF rows
//! ```
//!
//! The quantisation's ranges are those of all latents, so the encoder's
//! output (f32, 3 values per 4^blocks pixels: 3 bytes per pixel at -4,
//! 0.75 at -16, 0.19 at -64) waits in a temporary file beside the output
//! until the last band; in memory are the codes (a quarter of that) and one
//! band. Each band carries the networks' receptive halo and
//! starts on the block factor's grid, so its core rows are what the whole
//! image gives there: the `.tcz` and the decoded image are the same bytes as
//! the whole-image way's on the CPU path (`tests/bands.rs` compares them).

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use super::{check_channels, container, entropy, padded_size, upload_blocks, Tcz, Uploaded};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::image_io::Image;
use crate::kernels::tinycompress_dec::{crop_packed_at, dec_block_fast};
use crate::kernels::tinycompress_enc::edge_padded_rows;
use crate::kernels::UnpackPixels;
use crate::models::tinycompress::TinyCompress;
use crate::rows::{RowReader, Window};
use crate::tensor::{Shape, Tensor};

/// Rows of the padded image above and below a band that its latent rows
/// depend on: per block, the 9x9 convolution's 4 rows, the 3x3's 1 row at
/// half resolution (2 rows) and one of alignment, 7 rows at the block's
/// input resolution; 7 (1 + 2 + ... + 2^(blocks-1)) = 7 (factor - 1) over
/// the blocks, rounded up to the factor's grid: 8 (factor - 1).
pub fn enc_halo(m: &TinyCompress) -> usize {
    8 * (m.factor() - 1)
}

/// Latent rows above and below a band that its output depends on: per
/// block, the 3x3 convolution's row and the 5x5's 2 rows at twice the
/// resolution, 2 rows at the block's input; 2 + 1 + 1/2 over three blocks,
/// rounded up.
pub const DEC_HALO: usize = 4;

/// Bytes of working memory per pixel of a band (the whole-image way's
/// measured peaks, [`super::compress_peak_bytes`] and
/// [`super::decompress_peak_bytes`]).
const ENC_BYTES_PER_PIXEL: u64 = super::COMPRESS_BYTES_PER_PIXEL;
const DEC_BYTES_PER_PIXEL: u64 = super::DECOMPRESS_BYTES_PER_PIXEL;

/// Latent rows per band: `rows` image rows (0: what [`crate::stream::BAND_WORK`]
/// allows at `bytes_per_pixel` over `width` padded pixels), at least one.
fn latent_rows(rows: usize, width: usize, bytes_per_pixel: u64, halo: usize, factor: usize) -> usize {
    let rows = if rows > 0 { rows } else { crate::stream::rows_for(width as u64 * bytes_per_pixel, halo) };
    (rows / factor).max(1)
}

/// Peak memory of [`compress_rows`] for a `w` x `h` image, in bytes: one
/// band, and the codes of an entropy band per channel with their streams
/// (the stream table: 16 bytes per stream).
pub fn compress_bands_peak_bytes(m: &TinyCompress, w: usize, h: usize, band_rows: usize) -> u64 {
    let (pw, ph) = padded_size(w, h, m);
    let f = m.factor();
    let l = latent_rows(band_rows, pw, ENC_BYTES_PER_PIXEL, enc_halo(m), f);
    let band = ((l * f + 2 * enc_halo(m)) * pw) as u64 * ENC_BYTES_PER_PIXEL;
    let (lw, lh) = (pw / f, ph / f);
    let entropy_band = 3 * 2 * (entropy::band_rows(lw) * lw) as u64;
    let table = 3 * 16 * lh.div_ceil(entropy::band_rows(lw)) as u64;
    band + entropy_band + table
}

/// Peak memory of [`decompress_rows`] for `t`, in bytes: the payload, the
/// codes, one band and the band queued for the writer.
pub fn decompress_bands_peak_bytes(t: &Tcz, band_rows: usize) -> u64 {
    let (lw, lh) = t.latent_size();
    let f = container::factor(t.rate).unwrap_or(1);
    let l = latent_rows(band_rows, lw * f, DEC_BYTES_PER_PIXEL, DEC_HALO * f, f);
    let band = ((l + 2 * DEC_HALO) * f * lw * f) as u64 * DEC_BYTES_PER_PIXEL;
    t.payload.len() as u64 + (lw * lh * 3) as u64 + band + 2 * (l * f * t.width as usize * 3) as u64
}

/// The encoder on padded planes (1, 3, H, W), H and W on the block
/// factor's grid: the layer path on the CPU, or on the GPU the fused blocks
/// on the planes (weights uploaded once into `up`), the f32 latents read back.
fn encode_planes(gpu: Option<&Gpu>, m: &TinyCompress, up: &OnceLock<Uploaded>, x: &Tensor) -> Result<Tensor> {
    let Some(gpu) = gpu else { return m.enc.forward(x, None) };
    use crate::kernels::tinycompress_enc::{EncInput, TinyCompressEnc, FLAT_LEN};
    let weights = up.get_or_init(|| upload_blocks(gpu, &m.enc, FLAT_LEN));
    let src = gpu.upload_bytes(bytemuck::cast_slice(&x.data))?;
    let (lw, lh) = (x.shape.w / m.factor(), x.shape.h / m.factor());
    let out_bytes = (3 * lw * lh * 4) as u64;
    let bytes = crate::gpu::run_recorded(gpu, "gpuimg.tinycompress.encode_band", out_bytes, |enc| {
        let (mut w, mut h) = (x.shape.w, x.shape.h);
        let mut scratch: Vec<wgpu::Buffer> = Vec::new();
        let mut input = src.clone();
        for wb in weights {
            let op = TinyCompressEnc { w, h, input: EncInput::Planes, ranges: false };
            let bytes = op.out().bytes();
            let out = gpu.take_buffer(bytes, Gpu::TENSOR_USAGE);
            scratch.push(out.clone());
            let r = gpu.check_size("tinycompress latents", bytes).and_then(|_| op.encode(gpu, enc, &input, wb, &out));
            if let Err(e) = r {
                scratch.into_iter().for_each(|b| gpu.recycle_buffer(b));
                return Err(e);
            }
            input = out;
            (w, h) = (w / 2, h / 2);
        }
        let out = scratch.pop().ok_or_else(|| Error::invalid("tinycompress", "no encoding blocks"))?;
        let layout =
            crate::kernels::unpack_pixels::PixelLayout { n: 1, height: 3 * lh, width: lw, channels: 1, bits: 32 };
        Ok(crate::gpu::Recorded { out, out_bytes, layout, scratch })
    });
    gpu.recycle_buffer(src);
    let data = bytemuck::pod_collect_to_vec::<u8, f32>(&bytes?);
    Tensor::from_vec(Shape::new(1, 3, lh, lw), data)
}

/// Writes to `output` (atomically; an existing file only when `replace`)
/// the `.tcz` of the RGB image `src` reads, made band by band of
/// `band_rows` image rows (0: the default, from the band budget): the
/// same file as [`super::compress`] of the whole image on the CPU path.
///
/// The quantisation's ranges are those of all latents, so the encoder's
/// output goes to a temporary file beside `output` (f32, band after band)
/// while the ranges gather; then each band is read back and quantised, and
/// every entropy band ([`entropy::band_rows`] latent rows of a channel)
/// is arithmetic-coded as soon as its codes are in, its stream going to a
/// second temporary file; the container is then written from the streams
/// in the file's order. Memory: one band, whatever the image's size.
pub fn compress_rows(
    gpu: Option<&Gpu>,
    m: &TinyCompress,
    up: &OnceLock<Uploaded>,
    src: &mut RowReader,
    bitplanes: u32,
    band_rows: usize,
    (output, replace): (&Path, bool),
) -> Result<()> {
    use crate::kernels::tinycompress_quant::{channel_keys, codes_in, range_from};
    use std::io::{BufReader, BufWriter, Read, Seek, Write};
    if !(1..=8).contains(&bitplanes) {
        return Err(Error::invalid("compress", format!("{bitplanes} bit planes (valid: 1-8)")));
    }
    check_channels(src.channels)?;
    let (w, h) = (src.width as usize, src.height as usize);
    let (f, margin) = (m.factor(), container::margin(m.rate() as u8));
    let (pw, ph) = padded_size(w, h, m);
    let (lw, lh) = (pw / f, ph / f);
    let halo = enc_halo(m);
    let step = latent_rows(band_rows, pw, ENC_BYTES_PER_PIXEL, halo, f);
    let bands: Vec<Range<usize>> = (0..lh.div_ceil(step)).map(|i| i * step..((i + 1) * step).min(lh)).collect();
    let mut scratch = crate::fsutil::Scratch::beside(output)?;
    // Each channel's range keys ([`quantise`]'s, gathered band by band).
    let mut keys = [(0u32, 0u32); 3];
    {
        let path = scratch.path().to_path_buf();
        let mut out = BufWriter::new(scratch.file());
        let mut win = Window::new(src);
        // Padded row r is image row r - margin, clamped.
        let image_row = |r: usize| r.saturating_sub(margin).min(h - 1);
        for rows in &bands {
            let (la, lb) = (rows.start, rows.end);
            // On the factor's grid, so that the pixel unshuffles pair the
            // rows the whole image's do.
            let padded: Range<usize> = (la * f).saturating_sub(halo)..(lb * f + halo).min(ph);
            let band = win.take(src, image_row(padded.start)..image_row(padded.end - 1) + 1)?;
            let x = UnpackPixels(band.layout()).cpu(&band.samples)?;
            let planes = edge_padded_rows(&x, (win.lo, h), margin, pw, padded.clone())?;
            drop(x);
            let y = encode_planes(gpu, m, up, &planes)?;
            drop(planes);
            let off = la - padded.start / f;
            if y.shape.w != lw || y.shape.h < off + (lb - la) {
                return Err(Error::invalid(
                    "compress",
                    format!("the encoder gave {} for latent rows {la}..{lb}", y.shape),
                ));
            }
            for (c, k) in keys.iter_mut().enumerate() {
                let core = &y.plane(0, c)[off * lw..(off + lb - la) * lw];
                let (hi, not_lo) = channel_keys(core);
                *k = (k.0.max(hi), k.1.max(not_lo));
                out.write_all(bytemuck::cast_slice(core)).map_err(|e| Error::io(&path, e))?;
            }
        }
        out.flush().map_err(|e| Error::io(&path, e))?;
    }
    let ranges: Vec<(f32, f32)> = keys.iter().map(|&(hi, not_lo)| range_from(hi, not_lo)).collect();
    // Each channel's codes of the entropy band being filled, and every
    // stream written so far: (channel, offset in `streams`, bytes).
    let ebr = entropy::band_rows(lw) * lw;
    let mut pending: [Vec<u8>; 3] = Default::default();
    let mut coded: Vec<(usize, u64, u64)> = Vec::new();
    let mut streams = crate::fsutil::Scratch::beside(output)?;
    let spath = streams.path().to_path_buf();
    let path = scratch.path().to_path_buf();
    scratch.file().rewind().map_err(|e| Error::io(&path, e))?;
    let mut input = BufReader::new(scratch.file());
    {
        let mut out = BufWriter::new(streams.file());
        let mut at = 0u64;
        let mut flush =
            |pending: &mut [Vec<u8>; 3], last: bool, out: &mut BufWriter<&mut std::fs::File>| -> Result<()> {
                while pending[0].len() >= ebr || (last && !pending[0].is_empty()) {
                    let n = pending[0].len().min(ebr);
                    // The three channels' streams of this band, coded in parallel.
                    let made: Vec<Vec<u8>> = {
                        use rayon::prelude::*;
                        pending.par_iter().map(|p| entropy::encode_stream(&p[..n], lw, bitplanes)).collect()
                    };
                    for (c, s) in made.iter().enumerate() {
                        out.write_all(s).map_err(|e| Error::io(&spath, e))?;
                        coded.push((c, at, s.len() as u64));
                        at += s.len() as u64;
                        pending[c].drain(..n);
                    }
                }
                Ok(())
            };
        for rows in &bands {
            let n = rows.len() * lw;
            let mut band = vec![0f32; 3 * n];
            input.read_exact(bytemuck::cast_slice_mut(&mut band)).map_err(|e| Error::io(&path, e))?;
            let q = codes_in(&band, &ranges, bitplanes);
            for (c, p) in pending.iter_mut().enumerate() {
                p.extend_from_slice(&q[c * n..(c + 1) * n]);
            }
            flush(&mut pending, false, &mut out)?;
        }
        flush(&mut pending, true, &mut out)?;
        out.flush().map_err(|e| Error::io(&spath, e))?;
    }
    drop(input);
    drop(scratch);
    // The file: header, the stream table (every stream's length but the
    // last's), the streams channel by channel, the CRC-32.
    coded.sort_by_key(|&(c, at, _)| (c, at));
    let table = 4 * coded.len().saturating_sub(1) as u64;
    let payload = table + coded.iter().map(|s| s.2).sum::<u64>();
    let payload = u32::try_from(payload)
        .map_err(|_| Error::invalid("compress", format!("a {payload}-byte payload is over the .tcz limit of 4 GiB")))?;
    let t = Tcz {
        version: container::VERSION,
        rate: m.rate() as u8,
        bitplanes: bitplanes as u8,
        width: src.width,
        height: src.height,
        codec: m.id(),
        ranges: [ranges[0], ranges[1], ranges[2]],
        payload: Vec::new(),
    };
    let file = streams.file();
    crate::fsutil::write_atomic_stream(output, replace, |f| {
        let mut crc = crate::fsutil::Crc32::new();
        let mut put = |f: &mut BufWriter<std::fs::File>, b: &[u8]| {
            crc.update(b);
            f.write_all(b).map_err(|e| Error::io(output, e))
        };
        put(f, &t.header(payload))?;
        for s in &coded[..coded.len().saturating_sub(1)] {
            put(f, &(s.2 as u32).to_le_bytes())?;
        }
        let mut buf = Vec::new();
        for &(_, at, len) in &coded {
            file.seek(std::io::SeekFrom::Start(at)).map_err(|e| Error::io(&spath, e))?;
            buf.resize(len as usize, 0);
            file.read_exact(&mut buf).map_err(|e| Error::io(&spath, e))?;
            put(f, &buf)?;
        }
        let end = crc.finish().to_le_bytes();
        f.write_all(&end).map_err(|e| Error::io(output, e))
    })
}

/// The decoder on latent planes (1, 3, lh, lw) to full-resolution planes:
/// the fused CPU blocks, or on the GPU the fused blocks (weights uploaded
/// once into `up`), the planes read back.
fn decode_planes(gpu: Option<&Gpu>, m: &TinyCompress, up: &OnceLock<Uploaded>, x: Tensor) -> Result<Tensor> {
    use crate::kernels::tinycompress_dec::{DecInput, DecOutput, TinyCompressDec, FLAT_LEN};
    let flat = m.dec.flatten();
    let Some(gpu) = gpu else {
        let mut y = x;
        for block in flat.chunks(FLAT_LEN) {
            y = dec_block_fast(block, &y)?;
        }
        return Ok(y);
    };
    let weights = up.get_or_init(|| upload_blocks(gpu, &m.dec, FLAT_LEN));
    let f = m.factor();
    let (ow, oh) = (x.shape.w * f, x.shape.h * f);
    let src = gpu.upload_bytes(bytemuck::cast_slice(&x.data))?;
    let out_bytes = (3 * ow * oh * 4) as u64;
    let bytes = crate::gpu::run_recorded(gpu, "gpuimg.tinycompress.decode_band", out_bytes, |enc| {
        let (mut w, mut h) = (x.shape.w, x.shape.h);
        let mut scratch: Vec<wgpu::Buffer> = Vec::new();
        let mut input = src.clone();
        for wb in weights {
            let op = TinyCompressDec { w, h, input: DecInput::Planes, output: DecOutput::Planes };
            let bytes = op.out().bytes();
            let out = gpu.take_buffer(bytes, Gpu::TENSOR_USAGE);
            scratch.push(out.clone());
            let r = gpu
                .check_size("tinycompress decoder output", bytes)
                .and_then(|_| op.encode(gpu, enc, &input, wb, &out));
            if let Err(e) = r {
                scratch.into_iter().for_each(|b| gpu.recycle_buffer(b));
                return Err(e);
            }
            input = out;
            (w, h) = (w * 2, h * 2);
        }
        let out = scratch.pop().ok_or_else(|| Error::invalid("tinycompress", "no decoding blocks"))?;
        let layout =
            crate::kernels::unpack_pixels::PixelLayout { n: 1, height: 3 * oh, width: ow, channels: 1, bits: 32 };
        Ok(crate::gpu::Recorded { out, out_bytes, layout, scratch })
    });
    gpu.recycle_buffer(src);
    let data = bytemuck::pod_collect_to_vec::<u8, f32>(&bytes?);
    Tensor::from_vec(Shape::new(1, 3, oh, ow), data)
}

/// Decodes `t` (whose rate and codec id the caller has matched to `m`)
/// band by band of about `band_rows` image rows (0: the default), handing
/// each band of full 8-bit RGB rows to `sink` top to bottom: the same
/// pixels as [`super::decompress`] of the whole image on the CPU path.
pub fn decompress_rows(
    gpu: Option<&Gpu>,
    m: &TinyCompress,
    up: &OnceLock<Uploaded>,
    t: &Tcz,
    band_rows: usize,
    sink: &mut dyn FnMut(Image) -> Result<()>,
) -> Result<()> {
    let (lw, lh) = t.latent_size();
    let bitplanes = t.bitplanes as u32;
    let codes = entropy::decode_payload(t.version, &t.payload, 3, lw, lh, bitplanes)?;
    let (w, h) = (t.width as usize, t.height as usize);
    let (f, margin) = (m.factor(), container::margin(t.rate));
    let step = latent_rows(band_rows, lw * f, DEC_BYTES_PER_PIXEL, DEC_HALO * f, f);
    let plane = lw * lh;
    let mut la = 0;
    while la < lh {
        let lb = (la + step).min(lh);
        let rows = la.saturating_sub(DEC_HALO)..(lb + DEC_HALO).min(lh);
        let mut band = Vec::with_capacity(3 * rows.len() * lw);
        for c in 0..3 {
            band.extend_from_slice(&codes[c * plane + rows.start * lw..c * plane + rows.end * lw]);
        }
        let x = Tensor::from_vec(Shape::new(1, 3, rows.len(), lw), super::dequantise(&band, &t.ranges, bitplanes))?;
        // Image rows of this band's core: padded rows la f .. lb f, less the margin.
        let (ya, yb) = ((la * f).saturating_sub(margin).min(h), (lb * f).saturating_sub(margin).min(h));
        if ya < yb {
            let y = decode_planes(gpu, m, up, x)?;
            let samples = crop_packed_at(&y, (w, yb - ya), (margin, ya + margin - rows.start * f))?;
            sink(Image::new(t.width, (yb - ya) as u32, 3, samples)?)?;
        }
        la = lb;
    }
    Ok(())
}

/// Reads a `.tcz`'s header fields that size the work: (rate, width,
/// height), or `None` when `path` does not start like one (the whole
/// parse then says why).
pub fn peek(path: &Path) -> Option<(u8, u32, u32)> {
    use std::io::Read;
    let mut head = [0u8; 16];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    if &head[..4] != container::MAGIC {
        return None;
    }
    let le = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    Some((head[5], le(8), le(12)))
}
