//! TinyCompress as a codec: latent quantisation (per-channel min-max to u8,
//! then bit-plane reduction), the adaptive arithmetic coder with its
//! neighbour-context model, the `.tcz` container, and `compress` /
//! `decompress` (blocking and as streamed ops) around the learned
//! transforms of [`crate::models::tinycompress`].

pub mod bands;
pub mod container;
pub mod entropy;

pub use container::Tcz;

/// Quantises planar latents (`channels` planes of `plane` values) to
/// `bitplanes`-bit codes: min-max normalised per channel to 0..=255, then the
/// low `8 - bitplanes` bits dropped (rounding). Returns the codes and each
/// channel's (minimum, maximum); (0, 0) and codes 0 for a channel with a NaN
/// or infinity. The arithmetic is the `tinycompress_quant` kernel's (3
/// channels on the GPU), so both paths write the same ranges.
pub fn quantise(latents: &[f32], channels: usize, bitplanes: u32) -> (Vec<u8>, Vec<(f32, f32)>) {
    use crate::kernels::tinycompress_quant::{channel_keys, codes_in, range_from};
    let plane = latents.len() / channels.max(1);
    let ranges: Vec<(f32, f32)> = (0..channels)
        .map(|c| {
            let (hi, not_lo) = channel_keys(&latents[c * plane..(c + 1) * plane]);
            range_from(hi, not_lo)
        })
        .collect();
    (codes_in(latents, &ranges, bitplanes), ranges)
}

/// Inverts [`quantise`]: codes back to latent values (the arithmetic the
/// decoder kernel's code input applies as it loads).
pub fn dequantise(codes: &[u8], ranges: &[(f32, f32)], bitplanes: u32) -> Vec<f32> {
    crate::kernels::tinycompress_quant::dequantise(codes, ranges, bitplanes)
}

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::image_io::Image;
use crate::kernels::unpack_pixels::PixelLayout;
use crate::kernels::UnpackPixels;
use crate::models::tinycompress::TinyCompress;
use crate::stream::StreamOp;
use crate::tensor::{Samples, Shape, Tensor};

/// Refuses anything but RGB.
fn check_rgb(img: &Image) -> Result<()> {
    check_channels(img.channels)
}

/// Refuses images of other than 3 channels.
fn check_channels(channels: usize) -> Result<()> {
    if channels != 3 {
        let what = match channels {
            1 => "grey",
            2 => "grey+alpha",
            _ => "RGBA",
        };
        return Err(Error::invalid(
            "compress",
            format!("{what} images are not supported by TinyCompress (RGB only): convert to RGB first"),
        ));
    }
    Ok(())
}

/// The encoder's input size for a `width` x `height` image: `model`'s
/// margin of edge-replicated pixels on every side ([`container::margin`]),
/// then on the right and bottom up to a multiple of its block factor.
/// (width, height)
pub(crate) fn padded_size(width: usize, height: usize, model: &TinyCompress) -> (usize, usize) {
    let (f, m) = (model.factor(), container::margin(model.rate() as u8));
    ((width + 2 * m).div_ceil(f) * f, (height + 2 * m).div_ceil(f) * f)
}

/// The RGB image as (1, 3, H', W') float planes of [`padded_size`], the
/// padding edge-replicated.
fn padded_planes(img: &Image, model: &TinyCompress) -> Result<Tensor> {
    let (pw, ph) = padded_size(img.width as usize, img.height as usize, model);
    let x = UnpackPixels(img.layout()).cpu(&img.samples)?;
    crate::kernels::tinycompress_enc::edge_padded(&x, container::margin(model.rate() as u8), pw, ph)
}

/// A network's weights on the GPU: one flat buffer per block, for the
/// fused `tinycompress_enc` / `tinycompress_dec` kernels.
pub type Uploaded = Vec<wgpu::Buffer>;

/// Uploads `net`'s blocks of `len` weights each.
pub fn upload_blocks(gpu: &Gpu, net: &crate::models::tinycompress::Net, len: usize) -> Uploaded {
    net.flatten().chunks(len).map(|c| gpu.constant("gpuimg.tinycompress.block", c)).collect()
}

fn gpu_of(backend: &Backend) -> Option<&Gpu> {
    match backend {
        Backend::Cpu => None,
        Backend::Gpu(g) => Some(g),
    }
}

/// Where the blocks of [`encode_blocks`] and [`decode_blocks`] get their
/// output buffers (label, bytes): the pool for [`record_encode`] and
/// [`record_decode`], a model object's own for [`crate::embed::Codec`].
pub(crate) type Alloc<'a> = &'a mut dyn FnMut(&'static str, u64) -> Result<wgpu::Buffer>;

/// Records the encoder and the quantisation on the packed RGB samples of
/// layout `l` in `src`: one `tinycompress_enc` dispatch per block, the first
/// reading the packed pixels with the codec's padding and the last
/// gathering the channel ranges, then one `tinycompress_quant` dispatch.
/// The output holds the ranges and the `bitplanes`-bit codes as bytes
/// ([`split_codes`]); its layout names the codes as one 8-bit plane of
/// 3 x lh rows of lw (the ranges' 24 bytes come first, counted in
/// `out_bytes`).
pub fn record_encode(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    m: &TinyCompress,
    weights: &[wgpu::Buffer],
    l: PixelLayout,
    bitplanes: u32,
    src: &wgpu::Buffer,
) -> Result<crate::gpu::Recorded> {
    let mut all: Vec<wgpu::Buffer> = Vec::new();
    let r = encode_blocks(gpu, enc, m, weights, l, bitplanes, src, &mut from_pool(gpu, &mut all));
    pooled(gpu, r, all, |lw, lh| PixelLayout { n: 1, height: 3 * lh, width: lw, channels: 1, bits: 8 })
}

/// Buffers from `gpu`'s pool (checked against its limits), each also kept in `all`.
fn from_pool<'a>(
    gpu: &'a Gpu,
    all: &'a mut Vec<wgpu::Buffer>,
) -> impl FnMut(&'static str, u64) -> Result<wgpu::Buffer> + 'a {
    move |label, bytes| {
        gpu.check_size(label, bytes)?;
        let b = gpu.take_buffer(bytes, Gpu::TENSOR_USAGE);
        all.push(b.clone());
        Ok(b)
    }
}

/// A [`crate::gpu::Recorded`] of the pooled buffers `all`, the output being
/// the one `r` names (of `layout(lw, lh)`), or, when recording failed, the
/// buffers back in the pool and the error.
fn pooled(
    gpu: &Gpu,
    r: Result<(wgpu::Buffer, u64, usize, usize)>,
    all: Vec<wgpu::Buffer>,
    layout: impl Fn(usize, usize) -> PixelLayout,
) -> Result<crate::gpu::Recorded> {
    match r {
        Ok((out, out_bytes, w, h)) => {
            let scratch = all.into_iter().filter(|b| *b != out).collect();
            Ok(crate::gpu::Recorded { out, out_bytes, layout: layout(w, h), scratch })
        }
        Err(e) => {
            all.into_iter().for_each(|b| gpu.recycle_buffer(b));
            Err(e)
        }
    }
}

/// [`record_encode`]'s dispatches with buffers from `alloc`; the packed
/// input may be RGB or RGBA (alpha unread). Returns the codes' buffer,
/// its bytes (ranges first) and the latent size (lw, lh).
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_blocks(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    m: &TinyCompress,
    weights: &[wgpu::Buffer],
    l: PixelLayout,
    bitplanes: u32,
    src: &wgpu::Buffer,
    alloc: Alloc<'_>,
) -> Result<(wgpu::Buffer, u64, usize, usize)> {
    use crate::kernels::tinycompress_enc::{EncInput, TinyCompressEnc};
    use crate::kernels::tinycompress_quant::TinyCompressQuant;
    let margin = container::margin(m.rate() as u8);
    let (mut w, mut h) = padded_size(l.width, l.height, m);
    let mut input = src.clone();
    for (i, wb) in weights.iter().enumerate() {
        let last = i + 1 == weights.len();
        let op = TinyCompressEnc {
            w,
            h,
            input: if i == 0 { EncInput::Packed { layout: l, margin } } else { EncInput::Planes },
            ranges: last,
        };
        let out = alloc("tinycompress latents", op.out().bytes())?;
        op.encode(gpu, enc, &input, wb, &out)?;
        input = out;
        if last {
            let q = TinyCompressQuant { plane: (w / 2) * (h / 2), bitplanes };
            let codes = alloc("tinycompress codes", q.out().bytes())?;
            q.encode(gpu, enc, &input, &codes)?;
            return Ok((codes, q.out_len() as u64, w / 2, h / 2));
        }
        (w, h) = (w / 2, h / 2);
    }
    Err(Error::invalid("tinycompress", "no encoding blocks"))
}

/// Latent codes and each channel's (minimum, maximum).
pub type CodesAndRanges = (Vec<u8>, Vec<(f32, f32)>);

/// The bytes [`record_encode`] writes, as the codes and the three channel ranges.
pub fn split_codes(bytes: &[u8]) -> Result<CodesAndRanges> {
    let n = crate::kernels::tinycompress_quant::RANGE_BYTES;
    if bytes.len() < n {
        return Err(Error::invalid(
            "tinycompress",
            format!("{} bytes of codes, fewer than the ranges' {n}", bytes.len()),
        ));
    }
    let f = |i: usize| f32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    Ok((bytes[n..].to_vec(), (0..3).map(|c| (f(2 * c), f(2 * c + 1))).collect()))
}

/// Records the decoder on the latent codes (planar u8, 3 x lh x lw, of
/// `bitplanes` bits within `ranges`) in `src`: one `tinycompress_dec`
/// dispatch per block, the first dequantising the codes as it loads them,
/// the last writing the cropped `width` x `height` image as packed 8-bit RGB.
#[allow(clippy::too_many_arguments)]
pub fn record_decode(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    m: &TinyCompress,
    weights: &[wgpu::Buffer],
    q: ([(f32, f32); 3], u32),
    latent: (usize, usize),
    (width, height): (usize, usize),
    src: &wgpu::Buffer,
) -> Result<crate::gpu::Recorded> {
    let mut all: Vec<wgpu::Buffer> = Vec::new();
    let layout = PixelLayout { n: 1, height, width, channels: 3, bits: 8 };
    let r = decode_blocks(gpu, enc, m, weights, q, latent, (width, height, None), src, &mut from_pool(gpu, &mut all))
        .map(|(b, _)| (b, layout.bytes(), width, height));
    pooled(gpu, r, all, |_, _| layout)
}

/// [`record_decode`]'s dispatches with buffers from `alloc`, the last
/// writing packed 8-bit RGB, or with `rgba` Some(bits) packed RGBA of
/// those bits with alpha opaque. Returns the image's buffer and bytes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_blocks(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    m: &TinyCompress,
    weights: &[wgpu::Buffer],
    (ranges, bitplanes): ([(f32, f32); 3], u32),
    (lw, lh): (usize, usize),
    (width, height, rgba): (usize, usize, Option<u32>),
    src: &wgpu::Buffer,
    alloc: Alloc<'_>,
) -> Result<(wgpu::Buffer, u64)> {
    use crate::kernels::tinycompress_dec::{DecInput, DecOutput, TinyCompressDec};
    let margin = container::margin(m.rate() as u8);
    let (mut w, mut h) = (lw, lh);
    let mut input = src.clone();
    for (i, wb) in weights.iter().enumerate() {
        let last = i + 1 == weights.len();
        let output = match (last, rgba) {
            (false, _) => DecOutput::Planes,
            (true, None) => DecOutput::Image { width, height, margin },
            (true, Some(bits)) => DecOutput::Rgba { width, height, margin, bits },
        };
        let reads = if i == 0 { DecInput::Codes { ranges, bitplanes } } else { DecInput::Planes };
        let op = TinyCompressDec { w, h, input: reads, output };
        let out = alloc("tinycompress decoder output", op.out().bytes())?;
        op.encode(gpu, enc, &input, wb, &out)?;
        if last {
            return Ok((out, op.out().bytes()));
        }
        input = out;
        (w, h) = (w * 2, h * 2);
    }
    Err(Error::invalid("tinycompress", "no decoding blocks"))
}

/// Codes, channel ranges and the latent size (lw, lh).
type Coded = (Vec<u8>, Vec<(f32, f32)>, usize, usize);

/// The latent codes of an RGB image, their channel ranges and the latent
/// size: the layer path and [`quantise`] on the CPU, or on the GPU the
/// fused blocks from the packed pixels and the quantisation there, only the
/// codes coming back (weights uploaded once into `up`).
fn codes(gpu: Option<&Gpu>, m: &TinyCompress, up: &OnceLock<Uploaded>, img: &Image, bitplanes: u32) -> Result<Coded> {
    check_rgb(img)?;
    let Some(gpu) = gpu else {
        let lat = m.enc.forward(&padded_planes(img, m)?, None)?;
        let (codes, ranges) = quantise(&lat.data, 3, bitplanes);
        return Ok((codes, ranges, lat.shape.w, lat.shape.h));
    };
    let weights = up.get_or_init(|| upload_blocks(gpu, &m.enc, crate::kernels::tinycompress_enc::FLAT_LEN));
    let src = gpu.upload_bytes(&img.samples.le_bytes())?;
    let (pw, ph) = padded_size(img.width as usize, img.height as usize, m);
    let (lw, lh) = (pw / m.factor(), ph / m.factor());
    let out_bytes = crate::kernels::TinyCompressQuant { plane: lw * lh, bitplanes }.out_len() as u64;
    let bytes = crate::gpu::run_recorded(gpu, "gpuimg.tinycompress.encode", out_bytes, |enc| {
        record_encode(gpu, enc, m, weights, img.layout(), bitplanes, &src)
    });
    gpu.recycle_buffer(src);
    let (codes, ranges) = split_codes(&bytes?)?;
    Ok((codes, ranges, lw, lh))
}

/// Encodes an 8- or 16-bit RGB image into a `.tcz` with `bitplanes` bit planes.
///
/// ```
/// use gpuimg::codec::{compress, decompress, Tcz};
/// use gpuimg::{image_io::Image, models::tinycompress::TinyCompress, Backend, Samples};
/// let codec = TinyCompress::bundled(4)?;
/// let px: Vec<u8> = (0..45 * 33).flat_map(|i| [(i % 45 * 5) as u8, (i / 45 * 7) as u8, 120]).collect();
/// let img = Image::new(45, 33, 3, Samples::U8(px))?;
/// let tcz = compress(&Backend::Cpu, &codec, &img, 6)?;
/// let bytes = tcz.to_bytes(); // the `.tcz` file
/// let back = decompress(&Backend::Cpu, &codec, &Tcz::parse(&bytes)?)?;
/// assert_eq!((back.width, back.height, back.channels), (45, 33, 3));
/// assert!(bytes.len() < 45 * 33 * 3 / 4);
/// # Ok::<(), gpuimg::Error>(())
/// ```
pub fn compress(backend: &Backend, m: &TinyCompress, img: &Image, bitplanes: u32) -> Result<Tcz> {
    if !(1..=8).contains(&bitplanes) {
        return Err(Error::invalid("compress", format!("{bitplanes} bit planes (valid: 1-8)")));
    }
    let (codes, ranges, lw, lh) = codes(gpu_of(backend), m, &OnceLock::new(), img, bitplanes)?;
    Ok(coded((m.rate(), m.id()), bitplanes, (img.width, img.height), &ranges, &codes, (lw, lh)))
}

/// The `.tcz` of an image of `size` whose latent codes (planar, 3 x lh x
/// lw, `bitplanes` bits within `ranges`) the codec of (rate, id) made: the
/// codes arithmetic-coded into the payload.
pub(crate) fn coded(
    (rate, id): (usize, u32),
    bitplanes: u32,
    (width, height): (u32, u32),
    ranges: &[(f32, f32)],
    codes: &[u8],
    (lw, lh): (usize, usize),
) -> Tcz {
    Tcz {
        version: container::VERSION,
        rate: rate as u8,
        bitplanes: bitplanes as u8,
        width,
        height,
        codec: id,
        ranges: [ranges[0], ranges[1], ranges[2]],
        payload: entropy::encode_latents(codes, 3, lw, lh, bitplanes),
    }
}

/// Decodes a `.tcz` into an 8-bit RGB image (the codec must have the file's rate).
pub fn decompress(backend: &Backend, m: &TinyCompress, t: &Tcz) -> Result<Image> {
    if m.rate() != t.rate as usize {
        return Err(Error::invalid(
            "decompress",
            format!("the file is rate {}, these weights rate {}", t.rate, m.rate()),
        ));
    }
    let id = m.id();
    if id != t.codec {
        return Err(other_weights(t, &[id]));
    }
    decompress_on(gpu_of(backend), m, &OnceLock::new(), t)
}

fn other_weights(t: &Tcz, ids: &[u32]) -> Error {
    let ids: Vec<String> = ids.iter().map(|i| format!("{i:08x}")).collect();
    Error::invalid(
        "weights",
        format!(
            "encoded with other TinyCompress-{} weights (codec id {:08x}; these weights: {}): decode with the weights that encoded it (--weights)",
            t.rate,
            t.codec,
            ids.join(", ")
        ),
    )
}

/// Decodes `t` with `m`, whose rate and id the caller has matched to the file's.
fn decompress_on(gpu: Option<&Gpu>, m: &TinyCompress, up: &OnceLock<Uploaded>, t: &Tcz) -> Result<Image> {
    let (lw, lh) = t.latent_size();
    let codes = entropy::decode_payload(t.version, &t.payload, 3, lw, lh, t.bitplanes as u32)?;
    let (w, h) = (t.width as usize, t.height as usize);
    if let Some(gpu) = gpu {
        // The codes up (a byte each), the fused blocks, the first
        // dequantising, the last writing the cropped 8-bit image.
        let weights = up.get_or_init(|| upload_blocks(gpu, &m.dec, crate::kernels::tinycompress_dec::FLAT_LEN));
        let src = gpu.upload_bytes(&codes)?;
        let q = (t.ranges, t.bitplanes as u32);
        let out = crate::gpu::run_recorded(gpu, "gpuimg.tinycompress.decode", (w * h * 3) as u64, |enc| {
            record_decode(gpu, enc, m, weights, q, (lw, lh), (w, h), &src)
        });
        gpu.recycle_buffer(src);
        return Image::new(t.width, t.height, 3, Samples::from_le_bytes(8, &out?, w * h * 3));
    }
    let lat = Tensor::from_vec(Shape::new(1, 3, lh, lw), dequantise(&codes, &t.ranges, t.bitplanes as u32))?;
    // The fused CPU blocks (the layer path where AVX2 is missing), the last
    // writing the cropped 8-bit image.
    use crate::kernels::tinycompress_dec::{dec_block_fast, dec_block_fast_image, FLAT_LEN};
    let flat = m.dec.flatten();
    let blocks: Vec<&[f32]> = flat.chunks(FLAT_LEN).collect();
    let Some((last, first)) = blocks.split_last() else {
        return Err(Error::invalid("tinycompress", "no decoding blocks"));
    };
    let mut y = lat;
    for block in first {
        y = dec_block_fast(block, &y)?;
    }
    let samples = dec_block_fast_image(last, &y, w, h, container::margin(t.rate))?;
    Image::new(t.width, t.height, 3, samples)
}

/// The layer path's decode of `lat` to the cropped 8-bit image (the
/// reference [`decompress_on`]'s fused CPU blocks are tested against).
#[doc(hidden)]
pub fn decode_layers(m: &TinyCompress, lat: &Tensor, t: &Tcz) -> Result<Image> {
    let (w, h) = (t.width as usize, t.height as usize);
    let y = m.dec.forward(lat, None)?;
    let samples = crate::kernels::tinycompress_dec::crop_packed(&y, w, h, container::margin(t.rate))?;
    Image::new(t.width, t.height, 3, samples)
}

/// The latent codes of a job as an image (3 channels of u8 codes) plus what
/// the container needs besides: travels between the engine's stages.
#[derive(Debug, Clone, Default)]
struct Side {
    ranges: Vec<(f32, f32)>,
    width: u32,
    height: u32,
}

fn codes_image(codes: &[u8], w: usize, h: usize) -> Result<Image> {
    let p = w * h;
    let inter: Vec<u8> = (0..p * 3).map(|i| codes[(i % 3) * p + i / 3]).collect();
    Image::new(w as u32, h as u32, 3, Samples::U8(inter))
}

fn planar_codes(img: &Image) -> Vec<u8> {
    let Samples::U8(s) = &img.samples else { return Vec::new() };
    let p = s.len() / 3;
    (0..p * 3).map(|i| s[(i % p) * 3 + i / p]).collect()
}

/// Largest `.tcz` file read: 32768 x 32768 at -4 with 8 planes is 805 MB
/// of raw codes, and the coder never expands much.
pub const MAX_TCZ_BYTES: u64 = 1 << 30;

/// Peak memory of compressing a `w` x `h` image, in bytes: the network's
/// activations at full and latent resolution (measured: peak RSS of
/// `gpuimg --device cpu compress` over image sizes, per pixel of the
/// image with its margin, rounded up).
pub fn compress_peak_bytes(w: u32, h: u32) -> u64 {
    (w as u64 + 8) * (h as u64 + 8) * COMPRESS_BYTES_PER_PIXEL
}

/// Peak memory of decompressing `t`, in bytes (measured like
/// [`compress_peak_bytes`]).
pub fn decompress_peak_bytes(t: &Tcz) -> u64 {
    (t.width as u64 + 8) * (t.height as u64 + 8) * DECOMPRESS_BYTES_PER_PIXEL
}

// dev-2c, 1000^2 -> 2000^2 images: compress 132 B/pixel, decompress 70 (any rate).
const COMPRESS_BYTES_PER_PIXEL: u64 = 140;
const DECOMPRESS_BYTES_PER_PIXEL: u64 = 80;

/// `compress` and `decompress` run an image in bands ([`bands`]) when the
/// whole-image way's working memory would be at least this many times
/// [`crate::stream::StreamConfig::band_bytes`] (1 GiB by default: from
/// about 2700 x 2700 to compress, 3600 x 3600 to decompress).
pub const BANDS_FROM: u64 = 4;

/// `gpuimg compress` as a streamed op: the transform on the CPU or GPU, the
/// arithmetic coding and the container on the save threads.
///
/// ```
/// use gpuimg::codec::{CompressOp, DecompressOp};
/// use gpuimg::models::tinycompress::TinyCompress;
/// use gpuimg::stream::{self, Job, Silent, StreamConfig};
/// use gpuimg::Backend;
/// let jobs = stream::doctest_jobs("compress_op", "tcz")?; // two PNGs and a broken file
/// let op = CompressOp::new(TinyCompress::bundled(16)?, 8)?;
/// let report = stream::run_batch(&Backend::Cpu, &op, &jobs, &StreamConfig::new(), &Silent);
/// assert_eq!((report.images, report.failed), (2, 1));
/// // And back ([`DecompressOp`]): the .tcz files to PNG.
/// let back: Vec<Job> = jobs[..2]
///     .iter()
///     .map(|j| Job { input: j.output.clone(), output: j.output.with_extension("png") })
///     .collect();
/// let op = DecompressOp::new(vec![TinyCompress::bundled(16)?]);
/// let report = stream::run_batch(&Backend::Cpu, &op, &back, &StreamConfig::new(), &Silent);
/// assert_eq!((report.images, report.failed), (2, 0));
/// assert_eq!(gpuimg::image_io::load(&back[1].output)?.width, 17);
/// # Ok::<(), gpuimg::Error>(())
/// ```
pub struct CompressOp {
    model: TinyCompress,
    id: u32,
    up: OnceLock<Uploaded>,
    bitplanes: u32,
    side: Mutex<Vec<Side>>,
}

impl CompressOp {
    /// The op for a codec and bit-plane count.
    pub fn new(model: TinyCompress, bitplanes: u32) -> Result<Self> {
        if !(1..=8).contains(&bitplanes) {
            return Err(Error::invalid("compress", format!("{bitplanes} bit planes (valid: 1-8)")));
        }
        Ok(CompressOp { id: model.id(), model, up: OnceLock::new(), bitplanes, side: Mutex::new(Vec::new()) })
    }
    fn run(&self, job: usize, gpu: Option<&Gpu>, img: &Image) -> Result<Image> {
        let (codes, ranges, lw, lh) = codes(gpu, &self.model, &self.up, img, self.bitplanes)?;
        crate::stream::set_job(
            &mut self.side.lock().expect("side poisoned"),
            job,
            Side { ranges, width: img.width, height: img.height },
        );
        codes_image(&codes, lw, lh)
    }
}

impl CompressOp {
    /// A large image in bands ([`bands::compress_rows`]).
    fn run_bands(&self, file: &crate::stream::FileJob<'_>, w: usize, h: usize) -> Result<()> {
        let limits = crate::image_io::DecodeLimits::default();
        let mut src =
            crate::rows::RowReader::open(file.input, limits, || crate::image_io::load_full(file.input, limits))?;
        crate::fsutil::check_memory(
            &format!("compressing {w}x{h} in bands"),
            bands::compress_bands_peak_bytes(&self.model, w, h, file.band_rows),
        )?;
        bands::compress_rows(
            gpu_of(file.backend),
            &self.model,
            &self.up,
            &mut src,
            self.bitplanes,
            file.band_rows,
            (file.output, file.replace),
        )
    }
}

impl StreamOp for CompressOp {
    fn check(&self, img: &Image) -> Result<()> {
        crate::fsutil::check_memory(
            &format!("compressing {}x{}", img.width, img.height),
            compress_peak_bytes(img.width, img.height),
        )
    }
    fn run_file(&self, file: &crate::stream::FileJob<'_>) -> Option<Result<()>> {
        let (w, h) = crate::rows::dimensions(file.input).ok()?;
        if compress_peak_bytes(w, h) < file.band_bytes.saturating_mul(BANDS_FROM) {
            return None;
        }
        Some(self.run_bands(file, w as usize, h as usize))
    }
    fn cpu(&self, job: usize, img: &Image) -> Result<Image> {
        self.run(job, None, img)
    }
    fn gpu(&self, job: usize, gpu: &Gpu, img: &Image) -> Result<Image> {
        self.run(job, Some(gpu), img)
    }
    fn save(&self, job: usize, out: &Image, _meta: &crate::image_io::Meta, path: &Path, replace: bool) -> Result<()> {
        let s = self.side.lock().expect("side poisoned").get(job).cloned().unwrap_or_default();
        let (lw, lh) = (out.width as usize, out.height as usize);
        if s.ranges.len() != 3 {
            return Err(Error::invalid("compress", format!("{}: no latent ranges for job {job}", path.display())));
        }
        let (rate, size) = (self.model.rate(), (s.width, s.height));
        let t = coded((rate, self.id), self.bitplanes, size, &s.ranges, &planar_codes(out), (lw, lh));
        crate::fsutil::write_atomic_with(path, &t.to_bytes(), replace)
    }
}

/// `gpuimg decompress` as a streamed op: parsing and arithmetic decoding on
/// the load threads, the transform on the CPU or GPU.
/// Example: [`CompressOp`]'s.
pub struct DecompressOp {
    models: Vec<(u32, TinyCompress, OnceLock<Uploaded>)>,
    side: Mutex<Vec<Option<Tcz>>>,
}

impl DecompressOp {
    /// The op with the codecs it may meet; each file is decoded by the one
    /// whose id it carries.
    pub fn new(models: Vec<TinyCompress>) -> Self {
        DecompressOp {
            models: models.into_iter().map(|m| (m.id(), m, OnceLock::new())).collect(),
            side: Mutex::new(Vec::new()),
        }
    }
    fn model(&self, t: &Tcz) -> Result<(&TinyCompress, &OnceLock<Uploaded>)> {
        let rate = t.rate as usize;
        if let Some((_, m, up)) = self.models.iter().find(|(id, m, _)| *id == t.codec && m.rate() == rate) {
            return Ok((m, up));
        }
        let ids: Vec<u32> = self.models.iter().filter(|(_, m, _)| m.rate() == rate).map(|(id, _, _)| *id).collect();
        if ids.is_empty() {
            return Err(Error::invalid("weights", format!("none for rate {}", t.rate)));
        }
        Err(other_weights(t, &ids))
    }
    fn run(&self, job: usize, gpu: Option<&Gpu>) -> Result<Image> {
        let t = self.side.lock().expect("side poisoned").get_mut(job).and_then(Option::take);
        let t = t.ok_or_else(|| Error::invalid("decompress", "file not loaded"))?;
        let (m, up) = self.model(&t)?;
        let r = decompress_on(gpu, m, up, &t);
        if let Err(Error::TooLarge { .. }) = r {
            // The engine retries on the CPU path: keep the file for it.
            crate::stream::set_job(&mut self.side.lock().expect("side poisoned"), job, Some(t));
        }
        r
    }
}

impl DecompressOp {
    /// Reads and parses a `.tcz`, checking its size against the image
    /// limits before anything is allocated from it, and that a codec here
    /// decodes it.
    fn read(&self, path: &Path) -> Result<Tcz> {
        let len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        if len > MAX_TCZ_BYTES {
            return Err(Error::invalid(
                "decompress",
                format!("{}: {len} bytes, larger than any .tcz of the largest image ({MAX_TCZ_BYTES})", path.display()),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path.to_path_buf(), e))?;
        let t = Tcz::parse(&bytes).map_err(|e| Error::invalid("decompress", format!("{}: {e}", path.display())))?;
        // The header's size is from outside: the same pixel limits as any
        // image, before anything is allocated.
        let named = |e: Error| Error::invalid("decompress", format!("{}: {e}", path.display()));
        crate::image_io::DecodeLimits::default()
            .check_output("the decoded image", t.width as u64, t.height as u64)
            .map_err(named)?;
        self.model(&t).map_err(named)?;
        Ok(t)
    }

    /// A large image in bands ([`bands::decompress_rows`]), written as it is decoded.
    fn run_bands(&self, file: &crate::stream::FileJob<'_>, format: image::ImageFormat) -> Result<()> {
        let t = self.read(file.input)?;
        let named = |e: Error| Error::invalid("decompress", format!("{}: {e}", file.input.display()));
        crate::fsutil::check_memory("decoding it in bands", bands::decompress_bands_peak_bytes(&t, file.band_rows))
            .map_err(named)?;
        let (m, up) = self.model(&t)?;
        let size = (t.width, t.height);
        let meta = crate::image_io::Meta::default();
        crate::rows::write_banded(file.output, file.replace, format, size, &meta, |sink| {
            bands::decompress_rows(gpu_of(file.backend), m, up, &t, file.band_rows, sink)
        })?;
        Ok(())
    }
}

impl StreamOp for DecompressOp {
    fn run_file(&self, file: &crate::stream::FileJob<'_>) -> Option<Result<()>> {
        let (rate, w, h) = bands::peek(file.input)?;
        container::factor(rate)?;
        let whole = (w as u64 + 8) * (h as u64 + 8) * DECOMPRESS_BYTES_PER_PIXEL;
        if whole < file.band_bytes.saturating_mul(BANDS_FROM) {
            return None;
        }
        let format = crate::image_io::format_of(file.output).ok()?;
        if !crate::rows::streams(format) {
            file.observer.notice(
                file.input,
                &format!("{format:?} output is encoded whole (only PNG and TIFF are written in bands): the {w}x{h} image is decoded whole"),
            );
            return None;
        }
        Some(self.run_bands(file, format))
    }
    fn load(&self, job: usize, path: &Path) -> Result<(Image, crate::image_io::Meta)> {
        let t = self.read(path)?;
        let named = |e: Error| Error::invalid("decompress", format!("{}: {e}", path.display()));
        crate::fsutil::check_memory("decoding it", decompress_peak_bytes(&t)).map_err(named)?;
        crate::stream::set_job(&mut self.side.lock().expect("side poisoned"), job, Some(t));
        // The engine carries an image between its stages; this one stands for
        // the latents (1x1: their values wait in `side` until the transform).
        Ok((Image::new(1, 1, 3, Samples::U8(vec![0; 3]))?, Default::default()))
    }
    fn cpu(&self, job: usize, _img: &Image) -> Result<Image> {
        self.run(job, None)
    }
    fn gpu(&self, job: usize, gpu: &Gpu, _img: &Image) -> Result<Image> {
        self.run(job, Some(gpu))
    }
}
