//! Model objects for a host application's own textures and command encoder.
//!
//! A [`SuperResolver`] is built once for an input size and texture format:
//! it compiles its pipelines, uploads the weights and allocates every
//! intermediate buffer in [`SuperResolver::new`]. Then, per frame,
//! [`SuperResolver::encode`] records the upscale of the caller's texture into
//! the caller's (larger) texture inside the caller's encoder: it never
//! submits, polls or waits, and checks both textures first, returning an
//! [`Error`] where wgpu would raise an uncaptured error (which its default
//! handler turns into a panic in the host).
//!
//! How the pixels move: the source rows are copied to a buffer
//! (`copy_texture_to_buffer`, raw texel bytes, rows padded to 256 bytes),
//! `texel_rows` packs them tightly, the fused TinyPSSR kernel upscales the
//! colour, `alpha_upscale` upscales alpha (bicubic, as the CLI does),
//! `texel_rows` pads the rows again and `copy_buffer_to_texture` writes the
//! destination. Raw bytes are what the CLI processes too: an sRGB texture's
//! encoded values, as a PNG stores them, so the result matches `gpuimg sr`
//! on the same pixels within one level. TinyPSSR treats each colour channel
//! alike, so BGRA textures need no swizzle ([`Enhancer`]'s network mixes
//! them: `texel_rows` swaps red and blue there). `Rgba16Float` texels are
//! clamped to [0, 1] and converted to 16-bit samples on the way in, and
//! back to half floats on the way out. Images taller than one binding
//! allows run in strips of rows with the network's halo, all recorded into
//! the same encoder.
//!
//! Both objects also make every dispatch's bind group and params uniform in
//! `new` (a [`DispatchCache`]), so a frame allocates nothing.
//!
//! ```
//! use std::sync::Arc;
//! use gpuimg::embed::{SrOptions, SuperResolver};
//! use gpuimg::{wgpu, Gpu, models::TinyPssr};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // The doctest runs on whatever adapter there is (CI: lavapipe, required there).
//! # let Some(gpu) = gpuimg::gpu::doctest_gpu() else { return Ok(()) };
//! # let (device, queue) = (gpu.device().clone(), gpu.queue().clone());
//! # let texture = |w: u32, h: u32| device.create_texture(&wgpu::TextureDescriptor {
//! #     label: None, size: wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
//! #     mip_level_count: 1, sample_count: 1, dimension: wgpu::TextureDimension::D2,
//! #     format: wgpu::TextureFormat::Rgba8UnormSrgb,
//! #     usage: wgpu::TextureUsages::COPY_SRC | wgpu::TextureUsages::COPY_DST, view_formats: &[] });
//! # let (frame, big) = (texture(64, 48), texture(128, 96));
//! // The host's device and its textures: `frame` (64x48) and `big` (128x96).
//! let gpu = Arc::new(Gpu::from_existing(device.clone(), queue.clone()));
//! let model = TinyPssr::bundled(2)?;
//! let opts = SrOptions::new(frame.width(), frame.height(), frame.format());
//! let sr = SuperResolver::new(gpu, &model, opts)?; // once
//! // per frame:
//! let mut encoder = device.create_command_encoder(&Default::default());
//! // ... your passes render into `frame` ...
//! sr.encode(&mut encoder, &frame, &big)?;
//! // ... your passes read `big` ...
//! queue.submit([encoder.finish()]);
//! # device.poll(wgpu::PollType::wait_indefinitely())?;
//! # Ok(()) }
//! ```

pub(crate) mod augment;
mod codec;

pub use codec::{Codec, CodecOptions, EncodedRead};

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{DispatchCache, Gpu, GpuTensor};
use crate::kernels::texel_rows::TexelMode;
use crate::kernels::zero_dce_net::NetInput;
use crate::kernels::{TexelRows, ZeroDceEnhance, ZeroDceNet};
use crate::models::tinypssr::TinyPssr;
use crate::models::zero_dce::ZeroDce;
use crate::ops::{record_sr_into, sr_strip_rows, sr_weights};
use crate::pixel::PixelLayout;

/// The texture formats the model objects read and write: 8-bit RGBA or
/// BGRA, linear or sRGB (bytes are taken as they are stored), and
/// half-float RGBA (values clamped to [0, 1] and run as 16-bit samples).
pub const TEXTURE_FORMATS: [wgpu::TextureFormat; 5] = [
    wgpu::TextureFormat::Rgba8Unorm,
    wgpu::TextureFormat::Rgba8UnormSrgb,
    wgpu::TextureFormat::Bgra8Unorm,
    wgpu::TextureFormat::Bgra8UnormSrgb,
    wgpu::TextureFormat::Rgba16Float,
];

/// How a format's texels become the packed RGBA samples the kernels take.
#[derive(Debug, Clone, Copy)]
struct Texels {
    /// Bytes per texel (4 or 8) and bits per sample of the packed pixels.
    bytes: u32,
    bits: u32,
    /// The conversion on the way in and on the way out.
    read: TexelMode,
    write: TexelMode,
}

impl Texels {
    /// `op`'s texel handling for `format`; `swizzle`: whether BGRA must
    /// become RGBA (not for networks that treat the channels alike).
    fn of(op: &'static str, format: wgpu::TextureFormat, swizzle: bool) -> Result<Texels> {
        use wgpu::TextureFormat as F;
        let byte_mode = if swizzle { TexelMode::SwapRb } else { TexelMode::Copy };
        Ok(match format {
            F::Rgba8Unorm | F::Rgba8UnormSrgb => {
                Texels { bytes: 4, bits: 8, read: TexelMode::Copy, write: TexelMode::Copy }
            }
            F::Bgra8Unorm | F::Bgra8UnormSrgb => Texels { bytes: 4, bits: 8, read: byte_mode, write: byte_mode },
            F::Rgba16Float => {
                Texels { bytes: 8, bits: 16, read: TexelMode::HalfToUnorm16, write: TexelMode::Unorm16ToHalf }
            }
            f => return Err(Error::invalid(op, format!("texture format {f:?}: one of {TEXTURE_FORMATS:?} is needed"))),
        })
    }

    /// Words per texel.
    fn words(&self) -> usize {
        self.bytes as usize / 4
    }

    /// Bytes per row of `width` texels in a texture copy's buffer.
    fn padded_row(&self, width: u32) -> u32 {
        (width * self.bytes).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT)
    }

    /// The packed layout of `height` x `width` texels.
    fn layout(&self, width: usize, height: usize) -> PixelLayout {
        PixelLayout { n: 1, height, width, channels: 4, bits: self.bits }
    }

    /// `texel_rows` converting `rows` rows of `width` texels between two
    /// strides (words) with `mode`, from row `src_row` of the source to
    /// the start of the destination.
    fn rows(
        &self,
        width: u32,
        rows: u32,
        src_stride: usize,
        dst_stride: usize,
        src_row: usize,
        mode: TexelMode,
    ) -> TexelRows {
        TexelRows {
            width: width as usize * self.words(),
            rows: rows as usize,
            src_stride,
            dst_stride,
            src_offset: src_row * src_stride,
            dst_offset: 0,
            mode,
        }
    }

    /// Records rows `r.y..r.y + r.count` of `src` (`r.width` texels wide)
    /// as tightly packed samples from the start of `tight`: the texture
    /// copy into `padded` (256-byte rows), then `texel_rows` converting
    /// them. Without a texture (`src` None) the kernel only: the model
    /// objects' warm-up, which makes the bind groups before the first frame.
    fn read_rows(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        src: Option<&wgpu::Texture>,
        r: TexRows,
        padded: &wgpu::Buffer,
        tight: &wgpu::Buffer,
    ) -> Result<()> {
        let pad = self.padded_row(r.width);
        if let Some(t) = src {
            copy_rows_out(enc, t, r.y, padded, pad, r.width, r.count);
        }
        let ww = r.width as usize * self.words();
        self.rows(r.width, r.count, pad as usize / 4, ww, 0, self.read).encode(gpu, enc, padded, tight)
    }

    /// Records the tightly packed rows of `tight` from row `r.skip` on into
    /// rows `r.y..r.y + r.count` of `dst`: `texel_rows` padding and
    /// converting them into `padded`, then the copy into the texture (left
    /// out without one, as in [`Texels::read_rows`]).
    fn write_rows(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        tight: &wgpu::Buffer,
        padded: &wgpu::Buffer,
        dst: Option<&wgpu::Texture>,
        r: TexRows,
    ) -> Result<()> {
        let pad = self.padded_row(r.width);
        let ww = r.width as usize * self.words();
        self.rows(r.width, r.count, ww, pad as usize / 4, r.skip, self.write).encode(gpu, enc, tight, padded)?;
        if let Some(t) = dst {
            copy_rows_in(enc, padded, pad, t, r.y, r.width, r.count);
        }
        Ok(())
    }
}

/// Rows of a texture a [`Texels`] copy moves: `count` rows of `width`
/// texels from row `y`, and (writing) from row `skip` of the tight buffer.
#[derive(Debug, Clone, Copy)]
struct TexRows {
    width: u32,
    y: u32,
    count: u32,
    skip: usize,
}

impl TexRows {
    /// The whole of a `width` x `height` texture.
    fn all(width: u32, height: u32) -> TexRows {
        TexRows { width, y: 0, count: height, skip: 0 }
    }
}

/// What a [`SuperResolver`] is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrOptions {
    /// Width of the source texture.
    pub width: u32,
    /// Height of the source texture.
    pub height: u32,
    /// Format of both textures (one of [`TEXTURE_FORMATS`]).
    pub format: wgpu::TextureFormat,
    /// At most this many source rows per strip (`None`: as many as the
    /// device's largest storage binding allows). Smaller strips use less
    /// GPU memory, at a little recomputed halo each.
    pub max_strip_rows: Option<u32>,
}

impl SrOptions {
    /// Options for a `width` x `height` source of `format`, strips chosen
    /// from the device limits.
    pub fn new(width: u32, height: u32, format: wgpu::TextureFormat) -> SrOptions {
        SrOptions { width, height, format, max_strip_rows: None }
    }
}

/// TinyPSSR super-resolution from a host's texture to a host's texture,
/// recorded into the host's encoder. See the [module docs](self).
#[derive(Debug)]
pub struct SuperResolver {
    gpu: Arc<Gpu>,
    model: TinyPssr,
    opts: SrOptions,
    texels: Texels,
    weights: wgpu::Buffer,
    /// Source rows per strip (without halo) and the halo.
    rows: usize,
    halo: usize,
    /// Source rows as copied from the texture (256-byte rows), tightly packed,
    /// the upscaled strip tightly packed, and padded again for the copy out.
    in_padded: wgpu::Buffer,
    in_tight: wgpu::Buffer,
    out_tight: wgpu::Buffer,
    out_padded: wgpu::Buffer,
    /// The bind groups of every dispatch a frame records, made once.
    cache: Arc<DispatchCache>,
}

impl SuperResolver {
    /// Builds the resolver: checks the options against the device, compiles
    /// the pipelines, uploads the weights and allocates the strip buffers
    /// (nothing of this happens per frame).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a format outside [`TEXTURE_FORMATS`],
    /// an empty size, a model other than x2 or x4, or an output larger than
    /// the device's largest 2D texture; [`Error::TooLarge`] when even one
    /// strip's buffers exceed the device's limits.
    pub fn new(gpu: Arc<Gpu>, model: &TinyPssr, opts: SrOptions) -> Result<SuperResolver> {
        let bad = |why: String| Err(Error::invalid("SuperResolver", why));
        // TinyPSSR runs each colour channel alike: BGRA needs no swizzle.
        let texels = Texels::of("SuperResolver", opts.format, false)?;
        let f = model.scale();
        if f != 2 && f != 4 {
            return bad(format!("scale {f}: the fused kernels do x2 and x4"));
        }
        if opts.width == 0 || opts.height == 0 || opts.max_strip_rows == Some(0) {
            return bad(format!("empty size or strip in {opts:?}"));
        }
        let max = gpu.device().limits().max_texture_dimension_2d;
        let (ow, oh) = (opts.width as u64 * f as u64, opts.height as u64 * f as u64);
        if ow > max as u64 || oh > max as u64 {
            return bad(format!("a {ow}x{oh} output is over this device's largest 2D texture ({max} a side)"));
        }
        let (w, h) = (opts.width as usize, opts.height as usize);
        let l = texels.layout(w, h);
        let (auto, halo) = sr_strip_rows(&gpu, model, l);
        let rows = opts.max_strip_rows.map_or(auto, |r| (r as usize).min(auto)).min(h);
        let in_rows = (rows + 2 * halo).min(h) as u64;
        let buffer = |label: &str, bytes: u64, extra: wgpu::BufferUsages| storage_buffer(&gpu, label, bytes, extra);
        let in_padded = buffer(
            "gpuimg.sr.in_padded",
            texels.padded_row(opts.width) as u64 * in_rows,
            wgpu::BufferUsages::COPY_DST,
        )?;
        let tb = texels.bytes as u64;
        let in_tight = buffer("gpuimg.sr.in_tight", w as u64 * tb * in_rows, wgpu::BufferUsages::empty())?;
        let out_tight = buffer("gpuimg.sr.out_tight", ow * tb * in_rows * f as u64, wgpu::BufferUsages::COPY_DST)?;
        let out_padded = buffer(
            "gpuimg.sr.out_padded",
            texels.padded_row(ow as u32) as u64 * (rows * f) as u64,
            wgpu::BufferUsages::COPY_SRC,
        )?;
        model.prepare(&gpu);
        gpu.prepare(&[&crate::kernels::texel_rows::DESC]);
        let weights = sr_weights(&gpu, model);
        let sr = SuperResolver {
            gpu,
            model: model.clone(),
            opts,
            texels,
            weights,
            rows,
            halo,
            in_padded,
            in_tight,
            out_tight,
            out_padded,
            cache: Arc::default(),
        };
        let mut warm = sr.gpu.device().create_command_encoder(&Default::default());
        sr.record(&mut warm, None)?;
        Ok(sr)
    }

    /// The options it was built for.
    pub fn options(&self) -> SrOptions {
        self.opts
    }

    /// The upscale factor (the model's).
    pub fn scale(&self) -> u32 {
        self.model.scale() as u32
    }

    /// Source rows per strip (each recorded with the network's halo).
    pub fn strip_rows(&self) -> usize {
        self.rows
    }

    /// Records the upscale of `src` (the size and format it was built for,
    /// `COPY_SRC` usage, mip level 0 and array layer 0 are read) into `dst`
    /// (`scale()` times the size, the same format, `COPY_DST`) in `encoder`.
    /// Alpha is upscaled bicubically. Nothing is submitted.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the texture when its size, format,
    /// dimension, sample count or usage does not fit; nothing is recorded then.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder, src: &wgpu::Texture, dst: &wgpu::Texture) -> Result<()> {
        let f = self.model.scale() as u32;
        let (w, h) = (self.opts.width, self.opts.height);
        check_texture("SuperResolver", "source", src, w, h, self.opts.format, wgpu::TextureUsages::COPY_SRC)?;
        check_texture(
            "SuperResolver",
            "destination",
            dst,
            w * f,
            h * f,
            self.opts.format,
            wgpu::TextureUsages::COPY_DST,
        )?;
        self.record(encoder, Some((src, dst)))
    }

    /// Records every strip into `encoder`; without textures (`io` None) the
    /// kernels only, which [`SuperResolver::new`] does once into an encoder
    /// it drops, so that the bind groups exist before the first frame.
    fn record(&self, encoder: &mut wgpu::CommandEncoder, io: Option<(&wgpu::Texture, &wgpu::Texture)>) -> Result<()> {
        self.cache.active(|| {
            let f = self.model.scale() as u32;
            let (w, h) = (self.opts.width, self.opts.height);
            let t = self.texels;
            let l = t.layout(w as usize, h as usize);
            let (hu, fu) = (h as usize, f as usize);
            let mut y0 = 0;
            while y0 < hu {
                let y1 = (y0 + self.rows).min(hu);
                let (a, b) = (y0.saturating_sub(self.halo), (y1 + self.halo).min(hu));
                let n = b - a;
                let input = TexRows { width: w, y: a as u32, count: n as u32, skip: 0 };
                t.read_rows(&self.gpu, encoder, io.map(|p| p.0), input, &self.in_padded, &self.in_tight)?;
                record_sr_into(&self.gpu, encoder, &self.model, &self.weights, l, n, &self.in_tight, &self.out_tight)?;
                // The strip's own rows, without the halo.
                let kept =
                    TexRows { width: w * f, y: (y0 * fu) as u32, count: ((y1 - y0) * fu) as u32, skip: (y0 - a) * fu };
                t.write_rows(&self.gpu, encoder, &self.out_tight, &self.out_padded, io.map(|p| p.1), kept)?;
                y0 = y1;
            }
            Ok(())
        })
    }
}

/// An error naming `what` unless `t` is a single-sampled 2D texture of
/// `w` x `h` (mip 0) in `format` with `usage`.
fn check_texture(
    op: &'static str,
    what: &str,
    t: &wgpu::Texture,
    w: u32,
    h: u32,
    format: wgpu::TextureFormat,
    usage: wgpu::TextureUsages,
) -> Result<()> {
    let bad = |why: String| Err(Error::invalid(op, format!("the {what} texture {why}")));
    if t.dimension() != wgpu::TextureDimension::D2 || t.sample_count() != 1 {
        return bad(format!(
            "is {:?} with {} samples: a single-sampled 2D texture is needed",
            t.dimension(),
            t.sample_count()
        ));
    }
    if (t.width(), t.height()) != (w, h) {
        return bad(format!("is {}x{}, expected {w}x{h}", t.width(), t.height()));
    }
    if t.format() != format {
        return bad(format!("is {:?}, expected {format:?}", t.format()));
    }
    if !t.usage().contains(usage) {
        return bad(format!("lacks {usage:?} usage (it has {:?})", t.usage()));
    }
    Ok(())
}

/// What an [`Enhancer`] is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhanceOptions {
    /// Width of the textures.
    pub width: u32,
    /// Height of the textures.
    pub height: u32,
    /// Format of both textures (one of [`TEXTURE_FORMATS`]).
    pub format: wgpu::TextureFormat,
    /// The network runs on the image downscaled by this factor (`None`:
    /// [`crate::models::zero_dce::default_scale_factor`], as the CLI does).
    pub scale_factor: Option<usize>,
    /// Curve iterations, 1 to 16 (Zero-DCE's dense network needs 8).
    pub iterations: usize,
}

impl EnhanceOptions {
    /// Options for `width` x `height` textures of `format` with the CLI's
    /// defaults (scale factor from the size, 8 iterations).
    pub fn new(width: u32, height: u32, format: wgpu::TextureFormat) -> EnhanceOptions {
        EnhanceOptions { width, height, format, scale_factor: None, iterations: 8 }
    }

    /// The scale factor used: the one given, or the CLI's default for the size.
    pub fn scale_factor(&self) -> usize {
        self.scale_factor
            .unwrap_or_else(|| crate::models::zero_dce::default_scale_factor(self.height as usize, self.width as usize))
    }
}

/// Zero-DCE / Zero-DCE++ low-light enhancement from a host's texture to a
/// host's texture of the same size, recorded into the host's encoder: the
/// network on the frame downscaled as it reads it (one dispatch for
/// Zero-DCE++), then the curve with its maps sampled back at full size (one
/// dispatch), alpha passed through; BGRA textures are swizzled to RGBA on
/// the way in and back on the way out. The whole frame is one binding, so
/// its packed pixels must fit the device's largest storage binding (128 MiB
/// on many adapters: 33 megapixels); [`Enhancer::new`] says so otherwise.
///
/// ```
/// use gpuimg::embed::{EnhanceOptions, Enhancer};
/// use gpuimg::models::{zero_dce::Arch, ZeroDce};
/// use gpuimg::wgpu;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let Some(gpu) = gpuimg::gpu::doctest_gpu() else { return Ok(()) };
/// # let (device, queue) = (gpu.device().clone(), gpu.queue().clone());
/// # let texture = |w: u32, h: u32| device.create_texture(&wgpu::TextureDescriptor {
/// #     label: None, size: wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
/// #     mip_level_count: 1, sample_count: 1, dimension: wgpu::TextureDimension::D2,
/// #     format: wgpu::TextureFormat::Bgra8Unorm,
/// #     usage: wgpu::TextureUsages::COPY_SRC | wgpu::TextureUsages::COPY_DST, view_formats: &[] });
/// # let (frame, bright) = (texture(320, 180), texture(320, 180));
/// // `gpu` wraps the host's device; `frame` and `bright` are its 320x180 Bgra8Unorm textures.
/// let model = ZeroDce::bundled(Arch::ZeroDcePlus)?;
/// let enhancer = Enhancer::new(gpu.clone(), &model, EnhanceOptions::new(320, 180, frame.format()))?;
/// let mut encoder = device.create_command_encoder(&Default::default());
/// enhancer.encode(&mut encoder, &frame, &bright)?;
/// // The same texture in and out is refused, before anything is recorded.
/// assert!(enhancer.encode(&mut encoder, &frame, &frame).is_err());
/// queue.submit([encoder.finish()]);
/// # device.poll(wgpu::PollType::wait_indefinitely())?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Enhancer {
    gpu: Arc<Gpu>,
    opts: EnhanceOptions,
    net: ZeroDceNet,
    curve: ZeroDceEnhance,
    weights: wgpu::Buffer,
    feat: wgpu::Buffer,
    maps: GpuTensor,
    in_padded: wgpu::Buffer,
    in_tight: wgpu::Buffer,
    out_tight: wgpu::Buffer,
    out_padded: wgpu::Buffer,
    texels: Texels,
    cache: Arc<DispatchCache>,
}

impl Enhancer {
    /// Builds the enhancer: checks the options against the device, compiles
    /// the pipelines, uploads the weights and allocates the maps, the
    /// network's scratch and the pixel buffers.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a format outside [`TEXTURE_FORMATS`],
    /// an empty size, a scale factor of 0 or one that leaves no pixel, or
    /// iterations the model cannot run; [`Error::TooLarge`] when a buffer
    /// exceeds the device's limits.
    pub fn new(gpu: Arc<Gpu>, model: &ZeroDce, opts: EnhanceOptions) -> Result<Enhancer> {
        let bad = |why: String| Err(Error::invalid("Enhancer", why));
        // The network mixes the channels: BGRA is swizzled to RGBA and back.
        let texels = Texels::of("Enhancer", opts.format, true)?;
        if opts.width == 0 || opts.height == 0 || opts.scale_factor == Some(0) {
            return bad(format!("empty size or scale factor in {opts:?}"));
        }
        let (w, h) = (opts.width as usize, opts.height as usize);
        let l = texels.layout(w, h);
        let curve = model.curve(opts.iterations)?;
        let input = NetInput::Packed { layout: l, down: ZeroDce::downscale(h, w, opts.scale_factor())? };
        let net = ZeroDceNet::new(model.arch.spec(), input)?;
        let buffer = |label: &str, bytes: u64, extra: wgpu::BufferUsages| storage_buffer(&gpu, label, bytes, extra);
        let none = wgpu::BufferUsages::empty();
        let maps_shape = net.maps_shape()?;
        let maps = GpuTensor { buffer: buffer("gpuimg.enhance.maps", maps_shape.bytes(), none)?, shape: maps_shape };
        let feat = buffer("gpuimg.enhance.features", net.feat_bytes()?, none)?;
        let pad = texels.padded_row(opts.width) as u64;
        let tight = (w * h) as u64 * texels.bytes as u64;
        let in_padded = buffer("gpuimg.enhance.in_padded", pad * h as u64, wgpu::BufferUsages::COPY_DST)?;
        let in_tight = buffer("gpuimg.enhance.in_tight", tight, none)?;
        let out_tight = buffer("gpuimg.enhance.out_tight", tight, wgpu::BufferUsages::COPY_DST)?;
        let out_padded = buffer("gpuimg.enhance.out_padded", pad * h as u64, wgpu::BufferUsages::COPY_SRC)?;
        model.prepare(&gpu);
        gpu.prepare(&[&crate::kernels::texel_rows::DESC]);
        let weights = gpu.constant("gpuimg.enhance.weights", &model.flat());
        let cache = Arc::default();
        let e = Enhancer {
            gpu,
            opts,
            net,
            curve,
            weights,
            feat,
            maps,
            in_padded,
            in_tight,
            out_tight,
            out_padded,
            texels,
            cache,
        };
        let mut warm = e.gpu.device().create_command_encoder(&Default::default());
        e.record(&mut warm, None)?;
        Ok(e)
    }

    /// The options it was built for.
    pub fn options(&self) -> EnhanceOptions {
        self.opts
    }

    /// Records the enhancement of `src` (the size and format it was built
    /// for, `COPY_SRC`; mip 0, layer 0) into `dst` (the same size and
    /// format, `COPY_DST`; may not be `src`) in `encoder`. Nothing is submitted.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the texture when its size, format,
    /// dimension, sample count or usage does not fit; nothing is recorded then.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder, src: &wgpu::Texture, dst: &wgpu::Texture) -> Result<()> {
        let (w, h, format) = (self.opts.width, self.opts.height, self.opts.format);
        check_texture("Enhancer", "source", src, w, h, format, wgpu::TextureUsages::COPY_SRC)?;
        check_texture("Enhancer", "destination", dst, w, h, format, wgpu::TextureUsages::COPY_DST)?;
        if src == dst {
            return Err(Error::invalid("Enhancer", "the destination texture is the source texture"));
        }
        self.record(encoder, Some((src, dst)))
    }

    /// Records the frame; the kernels only without textures (as
    /// [`SuperResolver`]'s: `new` warms the bind groups so).
    fn record(&self, encoder: &mut wgpu::CommandEncoder, io: Option<(&wgpu::Texture, &wgpu::Texture)>) -> Result<()> {
        self.cache.active(|| {
            let (w, h) = (self.opts.width, self.opts.height);
            let t = self.texels;
            let (all, l) = (TexRows::all(w, h), t.layout(w as usize, h as usize));
            t.read_rows(&self.gpu, encoder, io.map(|p| p.0), all, &self.in_padded, &self.in_tight)?;
            self.net.encode(&self.gpu, encoder, &self.in_tight, &self.weights, &self.feat, &self.maps.buffer)?;
            self.curve.encode_packed(&self.gpu, encoder, l, &self.in_tight, &self.maps, &self.out_tight)?;
            t.write_rows(&self.gpu, encoder, &self.out_tight, &self.out_padded, io.map(|p| p.1), all)
        })
    }
}

/// A model object's own storage buffer (not pooled) of `bytes` (at least 4:
/// a binding may not be empty) with `extra` usages, once checked against
/// the device's limits.
fn storage_buffer(gpu: &Gpu, label: &str, bytes: u64, extra: wgpu::BufferUsages) -> Result<wgpu::Buffer> {
    gpu.check_size(label, bytes)?;
    Ok(gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(4),
        usage: wgpu::BufferUsages::STORAGE | extra,
        mapped_at_creation: false,
    }))
}

/// Records the copy of rows `y..y + rows` of `t` to the start of `buf` with
/// `row` bytes per row.
fn copy_rows_out(
    enc: &mut wgpu::CommandEncoder,
    t: &wgpu::Texture,
    y: u32,
    buf: &wgpu::Buffer,
    row: u32,
    w: u32,
    rows: u32,
) {
    enc.copy_texture_to_buffer(
        wgpu::TexelCopyTextureInfo {
            texture: t,
            mip_level: 0,
            origin: wgpu::Origin3d { x: 0, y, z: 0 },
            aspect: wgpu::TextureAspect::All,
        },
        wgpu::TexelCopyBufferInfo {
            buffer: buf,
            layout: wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(row), rows_per_image: Some(rows) },
        },
        wgpu::Extent3d { width: w, height: rows, depth_or_array_layers: 1 },
    );
}

/// Records the copy of `rows` rows of `row` bytes from the start of `buf`
/// to rows `y..` of `t`.
fn copy_rows_in(
    enc: &mut wgpu::CommandEncoder,
    buf: &wgpu::Buffer,
    row: u32,
    t: &wgpu::Texture,
    y: u32,
    w: u32,
    rows: u32,
) {
    enc.copy_buffer_to_texture(
        wgpu::TexelCopyBufferInfo {
            buffer: buf,
            layout: wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(row), rows_per_image: Some(rows) },
        },
        wgpu::TexelCopyTextureInfo {
            texture: t,
            mip_level: 0,
            origin: wgpu::Origin3d { x: 0, y, z: 0 },
            aspect: wgpu::TextureAspect::All,
        },
        wgpu::Extent3d { width: w, height: rows, depth_or_array_layers: 1 },
    );
}
