//! TinyCompress as a codec: latent quantisation (per-channel min-max to u8,
//! then bit-plane reduction), the adaptive arithmetic coder with its
//! neighbour-context model, the `.tcz` container, and `compress` /
//! `decompress` (blocking and as streamed ops) around the learned
//! transforms of [`crate::models::tinycompress`].

pub mod container;
pub mod entropy;

pub use container::Tcz;

/// Quantises planar latents (`channels` planes of `plane` values) to
/// `bitplanes`-bit codes: min-max normalised per channel to 0..=255, then the
/// low `8 - bitplanes` bits dropped (rounding). Returns the codes and each
/// channel's (minimum, maximum).
pub fn quantise(latents: &[f32], channels: usize, bitplanes: u32) -> (Vec<u8>, Vec<(f32, f32)>) {
    let plane = latents.len() / channels.max(1);
    let top = (1u32 << bitplanes) - 1;
    let mut codes = Vec::with_capacity(latents.len());
    let mut ranges = Vec::with_capacity(channels);
    for c in 0..channels {
        let v = &latents[c * plane..(c + 1) * plane];
        let (lo, hi) = v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 0.0) };
        let span = hi - lo;
        for &x in v {
            let u8v = if span > 0.0 { ((x - lo) / span * 255.0).round().clamp(0.0, 255.0) as u32 } else { 0 };
            // Keep the top `bitplanes` bits, rounded.
            let code = ((u8v * top + 127) / 255).min(top);
            codes.push(code as u8);
        }
        ranges.push((lo, hi));
    }
    (codes, ranges)
}

/// Inverts [`quantise`]: codes back to latent values.
pub fn dequantise(codes: &[u8], ranges: &[(f32, f32)], bitplanes: u32) -> Vec<f32> {
    let channels = ranges.len().max(1);
    let plane = codes.len() / channels;
    let top = ((1u32 << bitplanes) - 1) as f32;
    codes
        .iter()
        .enumerate()
        .map(|(i, &q)| {
            let (lo, hi) = ranges[(i / plane.max(1)).min(channels - 1)];
            lo + (hi - lo) * q as f32 / top
        })
        .collect()
}

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::image_io::Image;
use crate::kernels::unpack_pixels::PixelLayout;
use crate::kernels::{PackPixels, UnpackPixels};
use crate::models::tinycompress::TinyCompress;
use crate::stream::StreamOp;
use crate::tensor::{Samples, Shape, Tensor};

/// The image as (1, 3, H', W') float planes, extended by `model`'s margin
/// of edge-replicated pixels on every side ([`container::margin`]) and on
/// the right and bottom up to a multiple of its block factor.
fn padded_planes(img: &Image, model: &TinyCompress) -> Result<Tensor> {
    let (f, m) = (model.factor(), container::margin(model.rate() as u8));
    if img.channels != 3 {
        let what = match img.channels {
            1 => "grey",
            2 => "grey+alpha",
            _ => "RGBA",
        };
        return Err(Error::invalid(
            "compress",
            format!("{what} images are not supported by TinyCompress (RGB only): convert to RGB first"),
        ));
    }
    let x = UnpackPixels(img.layout()).cpu(&img.samples)?;
    let (h, w) = (img.height as usize, img.width as usize);
    let (ph, pw) = ((h + 2 * m).div_ceil(f) * f, (w + 2 * m).div_ceil(f) * f);
    let mut data = Vec::with_capacity(3 * ph * pw);
    for c in 0..3 {
        let plane = x.plane(0, c);
        for y in 0..ph {
            let sy = y.saturating_sub(m).min(h - 1);
            let row = &plane[sy * w..sy * w + w];
            data.extend(std::iter::repeat_n(row[0], m));
            data.extend_from_slice(row);
            data.extend(std::iter::repeat_n(row[w - 1], pw - w - m));
        }
    }
    Tensor::from_vec(Shape::new(1, 3, ph, pw), data)
}

/// Uploaded parameters of a network ([`crate::models::tinycompress::Net::upload`]).
type Uploaded = Vec<(wgpu::Buffer, wgpu::Buffer)>;

/// Runs `net` on the CPU or GPU; on the GPU with the parameters in `up`
/// (uploaded there once, the first time).
fn run_net(
    gpu: Option<&Gpu>,
    net: &crate::models::tinycompress::Net,
    up: &OnceLock<Uploaded>,
    x: &Tensor,
) -> Result<Tensor> {
    match gpu {
        None => net.forward(x, None),
        Some(gpu) => run_net_gpu(gpu, net, up.get_or_init(|| net.upload(gpu)), x),
    }
}

fn gpu_of(backend: &Backend) -> Option<&Gpu> {
    match backend {
        Backend::Cpu => None,
        Backend::Gpu(g) => Some(g),
    }
}

fn run_net_gpu(gpu: &Gpu, net: &crate::models::tinycompress::Net, up: &Uploaded, x: &Tensor) -> Result<Tensor> {
    let gx = gpu.upload(x)?;
    let mut scratch = Vec::new();
    let out = gpu.execute("gpuimg.tinycompress", |enc| net.encode(gpu, enc, up, &gx, &mut scratch));
    let r = out.and_then(|y| gpu.download(&y));
    gpu.recycle(gx);
    for t in scratch {
        gpu.recycle(t);
    }
    r
}

/// Encodes an 8- or 16-bit RGB image into a `.tcz` with `bitplanes` bit planes.
pub fn compress(backend: &Backend, m: &TinyCompress, img: &Image, bitplanes: u32) -> Result<Tcz> {
    if !(1..=8).contains(&bitplanes) {
        return Err(Error::invalid("compress", format!("{bitplanes} bit planes (valid: 1-8)")));
    }
    let x = padded_planes(img, m)?;
    let lat = run_net(gpu_of(backend), &m.enc, &OnceLock::new(), &x)?;
    let (lh, lw) = (lat.shape.h, lat.shape.w);
    let (codes, ranges) = quantise(&lat.data, 3, bitplanes);
    Ok(Tcz {
        rate: m.rate() as u8,
        bitplanes: bitplanes as u8,
        width: img.width,
        height: img.height,
        codec: m.id(),
        ranges: [ranges[0], ranges[1], ranges[2]],
        payload: entropy::encode_latents(&codes, 3, lw, lh, bitplanes),
    })
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
    let codes = entropy::decode_latents(&t.payload, 3, lw, lh, t.bitplanes as u32)?;
    let lat = Tensor::from_vec(Shape::new(1, 3, lh, lw), dequantise(&codes, &t.ranges, t.bitplanes as u32))?;
    let y = run_net(gpu, &m.dec, up, &lat)?;
    let (w, h, m) = (t.width as usize, t.height as usize, container::margin(t.rate));
    let cropped = crate::ops::crop_rows(&y, m, m + h);
    let pw = cropped.shape.w;
    let mut data = Vec::with_capacity(3 * w * h);
    for c in 0..3 {
        for row in cropped.plane(0, c).chunks_exact(pw) {
            data.extend_from_slice(&row[m..m + w]);
        }
    }
    let l = PixelLayout { n: 1, height: h, width: w, channels: 3, bits: 8 };
    let samples = PackPixels(l).cpu(&Tensor::from_vec(l.shape(), data)?)?;
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

/// `gpuimg compress` as a streamed op: the transform on the CPU or GPU, the
/// arithmetic coding and the container on the save threads.
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
        let x = padded_planes(img, &self.model)?;
        let lat = run_net(gpu, &self.model.enc, &self.up, &x)?;
        let (codes, ranges) = quantise(&lat.data, 3, self.bitplanes);
        crate::stream::set_job(
            &mut self.side.lock().expect("side poisoned"),
            job,
            Side { ranges, width: img.width, height: img.height },
        );
        codes_image(&codes, lat.shape.w, lat.shape.h)
    }
}

impl StreamOp for CompressOp {
    fn check(&self, img: &Image) -> Result<()> {
        crate::fsutil::check_memory(
            &format!("compressing {}x{}", img.width, img.height),
            compress_peak_bytes(img.width, img.height),
        )
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
        let t = Tcz {
            rate: self.model.rate() as u8,
            bitplanes: self.bitplanes as u8,
            width: s.width,
            height: s.height,
            codec: self.id,
            ranges: [s.ranges[0], s.ranges[1], s.ranges[2]],
            payload: entropy::encode_latents(&planar_codes(out), 3, lw, lh, self.bitplanes),
        };
        crate::fsutil::write_atomic_with(path, &t.to_bytes(), replace)
    }
}

/// `gpuimg decompress` as a streamed op: parsing and arithmetic decoding on
/// the load threads, the transform on the CPU or GPU.
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

impl StreamOp for DecompressOp {
    fn load(&self, job: usize, path: &Path) -> Result<(Image, crate::image_io::Meta)> {
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
        // image, and the memory the decode needs, before anything is allocated.
        let named = |e: Error| Error::invalid("decompress", format!("{}: {e}", path.display()));
        crate::image_io::DecodeLimits::default()
            .check_output("the decoded image", t.width as u64, t.height as u64)
            .map_err(named)?;
        crate::fsutil::check_memory("decoding it", decompress_peak_bytes(&t)).map_err(named)?;
        self.model(&t).map_err(|e| Error::invalid("decompress", format!("{}: {e}", path.display())))?;
        let (lw, lh) = t.latent_size();
        crate::stream::set_job(&mut self.side.lock().expect("side poisoned"), job, Some(t));
        // The engine carries an image between its stages; this one stands for
        // the latents (1x1: their values wait in `side` until the transform).
        let _ = (lw, lh);
        Ok((Image::new(1, 1, 3, Samples::U8(vec![0; 3]))?, Default::default()))
    }
    fn cpu(&self, job: usize, _img: &Image) -> Result<Image> {
        self.run(job, None)
    }
    fn gpu(&self, job: usize, gpu: &Gpu, _img: &Image) -> Result<Image> {
        self.run(job, Some(gpu))
    }
}
