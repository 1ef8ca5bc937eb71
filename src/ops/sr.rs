//! Super-resolution with TinyPSSR: the fused product path on both backends,
//! the layer path kept as the test oracle, strips, alpha, the streamed op.

use std::sync::OnceLock;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::fsutil::memory_budget;
use crate::gpu::Gpu;
use crate::image_io::Image;
use crate::kernels::unpack_pixels::PixelLayout;
use crate::kernels::{PackPixels, UnpackPixels};
use crate::models::tinypssr::{TinyPssr, HALO};
use crate::stream::StreamOp;
use crate::tensor::{Samples, Shape, Tensor};
use crate::tiling::{Tile, TileMode};

use super::*;

/// Runs TinyPSSR on (N, 1, H, W) planes: the fast fused CPU path, or the GPU
/// layer path in horizontal strips whose halo covers the receptive field (so
/// the result equals the untiled network while memory stays bounded).
pub fn run_tinypssr(backend: &Backend, model: &TinyPssr, x: &Tensor) -> Result<Tensor> {
    let limit = match backend {
        // The fast CPU path works in strips of its own.
        Backend::Cpu => return model.forward_fast(x),
        Backend::Gpu(g) => g.tensor_cap(),
    };
    run_tinypssr_tiled(backend, model, x, limit)
}

/// The layer-by-layer path in strips, with an explicit bound on the bytes of
/// one intermediate (on the CPU backend: the plain reference layers).
pub fn run_tinypssr_tiled(backend: &Backend, model: &TinyPssr, x: &Tensor, max_bytes: usize) -> Result<Tensor> {
    let s = x.shape;
    let f = model.scale();
    // Halo in input pixels: HALO for the first stage, HALO/2 for the second, ...
    let halo = (0..model.stages.len()).map(|i| HALO.div_ceil(1 << i)).sum::<usize>();
    // The widest intermediate is 16 channels at the last stage's input scale.
    let row_bytes = s.n * 16 * s.w * 4 * (f / 2) * (f / 2);
    let rows = (max_bytes / row_bytes.max(1)).saturating_sub(2 * halo).max(8);
    let gpu_model = match backend {
        Backend::Gpu(g) => Some(model.upload(g)),
        Backend::Cpu => None,
    };
    let mut out = Tensor::zeros(Shape::new(s.n, 1, s.h * f, s.w * f));
    let mut y0 = 0;
    while y0 < s.h {
        let y1 = (y0 + rows).min(s.h);
        let (a, b) = (y0.saturating_sub(halo), (y1 + halo).min(s.h));
        let strip = crop_rows(x, a, b);
        let up = match (backend, &gpu_model) {
            (Backend::Gpu(gpu), Some(g)) => {
                let out = g.out_shape(strip.shape);
                let mut scratch = Vec::new();
                let r = gpu.run_tensors("gpuimg.tinypssr", &[&strip], out, |enc, ins, y| {
                    g.encode(gpu, enc, &ins[0], y, &mut scratch)
                });
                for t in scratch {
                    gpu.recycle(t);
                }
                r?
            }
            _ => model.forward_cpu(&strip)?,
        };
        let (ow, skip) = (s.w * f, (y0 - a) * f);
        for n in 0..s.n {
            let src = &up.data[n * up.shape.plane() + skip * ow..][..(y1 - y0) * f * ow];
            out.data[n * out.shape.plane() + y0 * f * ow..][..src.len()].copy_from_slice(src);
        }
        y0 = y1;
    }
    Ok(out)
}

/// Rows `a..b` of every plane.
pub fn crop_rows(x: &Tensor, a: usize, b: usize) -> Tensor {
    let s = x.shape;
    let mut data = Vec::with_capacity(s.n * s.c * (b - a) * s.w);
    for p in 0..s.n * s.c {
        data.extend_from_slice(&x.data[p * s.plane() + a * s.w..p * s.plane() + b * s.w]);
    }
    Tensor { shape: Shape::new(s.n, s.c, b - a, s.w), data }
}

/// Super-resolves an image: colour channels through the model as one batch,
/// alpha upscaled bicubically, bit depth and channel layout kept. On the GPU
/// the fused kernel runs on packed pixels; on the CPU the layer path.
///
/// ```
/// use gpuimg::{image_io::Image, models::TinyPssr, ops::super_resolve, Backend, Samples};
/// let model = TinyPssr::bundled(2)?;
/// // A 31x17 RGBA image: a gradient, half transparent.
/// let px: Vec<u8> = (0..31 * 17).flat_map(|i| [(i % 31 * 8) as u8, (i / 31 * 15) as u8, 90, 128]).collect();
/// let img = Image::new(31, 17, 4, Samples::U8(px))?;
/// let cpu = super_resolve(&Backend::Cpu, &model, &img)?;
/// assert_eq!((cpu.width, cpu.height, cpu.channels), (62, 34, 4));
/// if let Some(gpu) = gpuimg::gpu::doctest_gpu() {
///     let gpu = super_resolve(&Backend::Gpu(gpu), &model, &img)?;
///     // Same arithmetic in another order: one level at most.
///     let (Samples::U8(a), Samples::U8(b)) = (&gpu.samples, &cpu.samples) else { unreachable!() };
///     assert!(a.iter().zip(b).all(|(x, y)| x.abs_diff(*y) <= 1));
/// }
/// # Ok::<(), gpuimg::Error>(())
/// ```
pub fn super_resolve(backend: &Backend, model: &TinyPssr, img: &Image) -> Result<Image> {
    match backend {
        Backend::Gpu(gpu) => super_resolve_fused(gpu, model, img),
        Backend::Cpu => super_resolve_planar(backend, model, img),
    }
}

/// [`super_resolve`] through planar f32 tensors: on the CPU the fast fused
/// network (the product's CPU path), on the GPU the layer-by-layer path (a
/// test oracle for the fused kernel, which is what `gpuimg sr` runs there).
pub fn super_resolve_planar(backend: &Backend, model: &TinyPssr, img: &Image) -> Result<Image> {
    let l = img.layout();
    let f = model.scale();
    let x = UnpackPixels(l).cpu(&img.samples)?;
    let colour = if img.has_alpha() { l.channels - 1 } else { l.channels };
    let p = l.height * l.width;
    let planes = Tensor { shape: Shape::new(colour, 1, l.height, l.width), data: x.data[..colour * p].to_vec() };
    let up = run_tinypssr(backend, model, &planes)?;
    let mut data = up.data;
    if img.has_alpha() {
        let alpha = Tensor { shape: Shape::new(1, 1, l.height, l.width), data: x.data[colour * p..].to_vec() };
        data.extend(crate::resample::upscale(&alpha, f).data);
    }
    let outl = PixelLayout { height: l.height * f, width: l.width * f, ..l };
    let y = Tensor::from_vec(outl.shape(), data)?;

    let samples = PackPixels(outl).cpu(&y)?;
    Image::new(outl.width as u32, outl.height as u32, outl.channels, samples)
}

/// Input rows of one strip of the fused GPU super-resolution of an image of
/// layout `l` (the image runs in one pass when this is at least its height),
/// and the halo rows each strip takes on both sides.
pub fn sr_strip_rows(gpu: &crate::Gpu, model: &TinyPssr, l: PixelLayout) -> (usize, usize) {
    let f = model.scale();
    let out_row = l.width * f * l.channels * (l.bits / 8) as usize;
    let halo = (0..model.stages.len()).map(|i| HALO.div_ceil(1 << i)).sum::<usize>();
    // Largest buffer per input row: the packed output (nothing else is in global memory).
    let per_row = out_row * f;
    ((gpu.tensor_cap() / per_row.max(1)).saturating_sub(2 * halo).max(8), halo)
}

/// The fused kernels' weights on the GPU: x2, one stage's; x4, both
/// stages' back to back for `tinypssr_x4_fused`.
pub fn sr_weights(gpu: &crate::Gpu, model: &TinyPssr) -> wgpu::Buffer {
    let flat: Vec<f32> = model.stages.iter().flat_map(|s| s.flat()).collect();
    gpu.constant("gpuimg.tinypssr.weights", &flat)
}

/// Records the fused super-resolution of `rows` rows of packed samples of
/// layout `l` (only height differs) in `src` by `model`'s scale with
/// `weights` from [`sr_weights`]: one dispatch, packed pixels in and out
/// (`tinypssr_fused` for x2, `tinypssr_x4_fused` for x4, whose stage-1 result
/// never leaves workgroup memory), then, for images with alpha,
/// `alpha_upscale` fills the alpha samples the fused kernels leave zero.
pub fn record_sr(
    gpu: &crate::Gpu,
    enc: &mut wgpu::CommandEncoder,
    model: &TinyPssr,
    weights: &wgpu::Buffer,
    l: PixelLayout,
    rows: usize,
    src: &wgpu::Buffer,
) -> Result<Recorded> {
    let f = model.scale();
    let layout = PixelLayout { height: rows * f, width: l.width * f, ..l };
    let bytes = layout.bytes().next_multiple_of(4);
    gpu.check_size("tinypssr output", bytes)?;
    let out = gpu.take_buffer(bytes, crate::Gpu::TENSOR_USAGE);
    let r = record_sr_into(gpu, enc, model, weights, l, rows, src, &out);
    Recorded { out, out_bytes: layout.bytes(), layout, scratch: Vec::new() }.or_recycle(gpu, r)
}

/// [`record_sr`] into a caller's buffer `out` (at least the upscaled rows'
/// packed bytes, rounded up to 4; `STORAGE | COPY_DST`).
#[allow(clippy::too_many_arguments)]
pub fn record_sr_into(
    gpu: &crate::Gpu,
    enc: &mut wgpu::CommandEncoder,
    model: &TinyPssr,
    weights: &wgpu::Buffer,
    l: PixelLayout,
    rows: usize,
    src: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<()> {
    use crate::kernels::tinypssr_fused::{FusedParams, TinyPssrFused};
    use crate::kernels::tinypssr_x4_fused::TinyPssrX4;
    use crate::kernels::AlphaUpscale;
    let has_alpha = l.channels == 2 || l.channels == 4;
    let colour = if has_alpha { l.channels - 1 } else { l.channels };
    let input = PixelLayout { height: rows, ..l };
    let f = model.scale();
    match f {
        2 => {
            let p = FusedParams {
                w: l.width as u32,
                h: rows as u32,
                channels: l.channels as u32,
                colour: colour as u32,
                bits: l.bits,
                in_mode: 0,
                out_mode: 0,
                _pad: 0,
            };
            crate::gpu::clear_buffer("tinypssr_fused", enc, out, 0, None)?;
            TinyPssrFused(p).encode(gpu, enc, src, weights, out)?
        }
        4 => TinyPssrX4 { layout: input, colour }.encode(gpu, enc, src, weights, out)?,
        _ => return Err(crate::Error::invalid("tinypssr", format!("scale {f}: the fused kernels do x2 and x4"))),
    }
    if has_alpha {
        AlphaUpscale { layout: input, factor: f }.encode(gpu, enc, src, out)?;
    }
    Ok(())
}

/// [`super_resolve`] on the GPU with the fused kernels: packed pixels in,
/// one dispatch ([`record_sr`]), packed pixels out,
/// in strips of rows whose halo covers the receptive field.
pub fn super_resolve_fused(gpu: &crate::Gpu, model: &TinyPssr, img: &Image) -> Result<Image> {
    super_resolve_fused_strips(gpu, model, img, sr_strip_rows(gpu, model, img.layout()).0)
}

/// [`super_resolve_fused`] in strips of `rows` input rows (each with its
/// halo): the result is the same for any `rows` (tests force many strips).
pub fn super_resolve_fused_strips(gpu: &crate::Gpu, model: &TinyPssr, img: &Image, rows: usize) -> Result<Image> {
    let l = img.layout();
    let f = model.scale();
    let bps = (l.bits / 8) as usize;
    let in_row = l.width * l.channels * bps;
    let out_row = l.width * f * l.channels * bps;
    let (rows, halo) = (rows.max(1), sr_strip_rows(gpu, model, l).1);
    let weights = sr_weights(gpu, model);
    let bytes = img.samples.le_bytes();
    let mut out = vec![0u8; out_row * l.height * f];
    let mut y0 = 0;
    while y0 < l.height {
        let y1 = (y0 + rows).min(l.height);
        let (a, b) = (y0.saturating_sub(halo), (y1 + halo).min(l.height));
        let src = gpu.upload_bytes(&bytes[a * in_row..b * in_row])?;
        let out_bytes = (out_row * f * (b - a)) as u64;
        let r =
            run_recorded(gpu, "gpuimg.tinypssr", out_bytes, |enc| record_sr(gpu, enc, model, &weights, l, b - a, &src));
        gpu.recycle_buffer(src);
        let strip = r?;
        let skip = (y0 - a) * f * out_row;
        let len = (y1 - y0) * f * out_row;
        out[y0 * f * out_row..][..len].copy_from_slice(&strip[skip..skip + len]);
        y0 = y1;
    }
    let outl = PixelLayout { height: l.height * f, width: l.width * f, ..l };
    Image::new(
        outl.width as u32,
        outl.height as u32,
        outl.channels,
        Samples::from_le_bytes(outl.bits, &out, outl.samples()),
    )
}

/// Peak memory of TinyPSSR on an image of `w` x `h` (`scale` x), in bytes,
/// per output pixel (measured: peak RSS of `gpuimg --device cpu sr` over
/// image sizes, rounded up).
pub fn sr_peak_bytes(w: u32, h: u32, scale: usize) -> u64 {
    w as u64 * h as u64 * (scale * scale) as u64 * SR_BYTES_PER_OUTPUT_PIXEL
}
// dev-2c, 1000^2 -> 2000^2 inputs: x2 21 B per output pixel, x4 16.
pub(super) const SR_BYTES_PER_OUTPUT_PIXEL: u64 = 24;

/// The most working memory (beyond the input and the merged output) the
/// CPU path's `--tile auto` gives one piece of an image: 512 MiB, a 2.8
/// megapixel input at x2 or 0.7 at x4 (larger images go in tiles).
pub const SR_CPU_WORK_CAP: u64 = 512 << 20;

/// [`super_resolve`] as a streamed op. The fused kernel's weights are
/// uploaded once, to the first GPU the op runs on: use one op per GPU.
///
/// Images run in seed-001 tiles (`gpuimg::tiling`) with a halo of the
/// model's receptive radius when [`TileMode`] asks for it: `--tile WxH`, or
/// by default when the whole image's work would not fit the memory budget
/// (then the fewest near-square tiles that do). Tiled output equals the
/// untiled one (bit for bit on the CPU path). On the GPU a tile that runs
/// out of GPU memory is retried as four smaller ones.
///
/// ```
/// use gpuimg::{models::TinyPssr, ops::SuperResolveOp, stream, Backend};
/// let jobs = stream::doctest_jobs("sr_op", "png")?; // two PNGs and a broken file
/// let op = SuperResolveOp::new(TinyPssr::bundled(4)?);
/// let report = stream::run_batch(&Backend::Cpu, &op, &jobs, &stream::StreamConfig::new(), &stream::Silent);
/// assert_eq!((report.images, report.failed), (2, 1));
/// let out = gpuimg::image_io::load(&jobs[1].output)?;
/// assert_eq!((out.width, out.height), (68, 36));
/// # Ok::<(), gpuimg::Error>(())
/// ```
#[derive(Debug)]
pub struct SuperResolveOp {
    model: TinyPssr,
    weights: OnceLock<wgpu::Buffer>,
    tile: TileMode,
}

impl SuperResolveOp {
    /// The op for a model (tiling: [`TileMode::Auto`]).
    pub fn new(model: TinyPssr) -> Self {
        SuperResolveOp { model, weights: OnceLock::new(), tile: TileMode::Auto }
    }

    /// The same op, tiling images as `mode` says.
    pub fn with_tiles(mut self, mode: TileMode) -> Self {
        self.tile = mode;
        self
    }

    /// The tiles this op splits `img` into, or None to run it whole; and
    /// the memory the run needs.
    pub fn tiles(&self, img: &Image) -> Result<(Option<Vec<Tile>>, u64)> {
        self.tiles_within(img, u64::MAX)
    }

    /// [`SuperResolveOp::tiles`] for the CPU path: in `auto`, also tiles
    /// whose work (beyond the input and the merged output) exceeds
    /// [`SR_CPU_WORK_CAP`], whatever memory is free: the tiles cost no
    /// time there (the same time in BENCHMARKS "Tiling") and keep the
    /// process small (8000x6000 x2: 4.1 GB whole, about 1 GB in tiles).
    pub fn cpu_tiles(&self, img: &Image) -> Result<(Option<Vec<Tile>>, u64)> {
        self.tiles_within(img, SR_CPU_WORK_CAP)
    }

    fn tiles_within(&self, img: &Image, cap: u64) -> Result<(Option<Vec<Tile>>, u64)> {
        let f = self.model.scale();
        let (w, h) = (img.width as usize, img.height as usize);
        let peak = |w: usize, h: usize| sr_peak_bytes(w as u32, h as u32, f);
        // A tiled run holds the input, the merged output, and one tile's work.
        let fixed = img.samples.len() as u64 * (img.samples.bits() / 8) as u64 * (1 + (f * f) as u64);
        let halo = self.model.receptive_radius();
        let budget = memory_budget().min(fixed.saturating_add(cap));
        let t = crate::tiling::plan(self.tile, w, h, halo, budget, fixed, peak)?;
        let need = match &t {
            None => peak(w, h),
            Some(t) => fixed + crate::tiling::largest(t, halo, w, h, peak),
        };
        Ok((t, need))
    }

    fn tiled(&self, img: &Image, tiles: &[Tile], op: &dyn Fn(&Image) -> Result<Image>) -> Result<Image> {
        crate::tiling::run_tiled(img, tiles, self.model.receptive_radius(), self.model.scale(), op)
    }

    /// The fused GPU path on `img`; out of GPU memory, the same as four
    /// tiles (recursively, down to 64-pixel tiles).
    fn gpu_retrying(&self, gpu: &Gpu, img: &Image) -> Result<Image> {
        match super_resolve_fused(gpu, &self.model, img) {
            Err(Error::GpuOutOfMemory { .. }) if img.width >= 128 && img.height >= 128 => {
                let t = crate::tiling::tiles(
                    crate::tiling::Scheme::NearSquare,
                    img.width as usize,
                    img.height as usize,
                    4,
                )?;
                self.tiled(img, &t, &|tile| self.gpu_retrying(gpu, tile))
            }
            r => r,
        }
    }
}

impl StreamOp for SuperResolveOp {
    fn check(&self, img: &Image) -> Result<()> {
        let f = self.model.scale() as u64;
        let (w, h) = (img.width as u64 * f, img.height as u64 * f);
        crate::image_io::DecodeLimits::default().check_output("the upscaled image", w, h)?;
        let (t, need) = self.tiles(img)?;
        let how = t.map(|t| format!(" in {} tiles", t.len())).unwrap_or_default();
        crate::fsutil::check_memory(&format!("upscaling to {w}x{h}{how}"), need)
    }
    fn cpu(&self, _job: usize, img: &Image) -> Result<Image> {
        match self.cpu_tiles(img)?.0 {
            Some(t) => self.tiled(img, &t, &|tile| super_resolve_planar(&Backend::Cpu, &self.model, tile)),
            None => super_resolve_planar(&Backend::Cpu, &self.model, img),
        }
    }
    fn gpu(&self, _job: usize, gpu: &Gpu, img: &Image) -> Result<Image> {
        match self.tiles(img)?.0 {
            Some(t) => self.tiled(img, &t, &|tile| self.gpu_retrying(gpu, tile)),
            None => self.gpu_retrying(gpu, img),
        }
    }
    fn record(
        &self,
        _job: usize,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        img: &Image,
        src: &wgpu::Buffer,
    ) -> Result<Option<Recorded>> {
        let l = img.layout();
        if sr_strip_rows(gpu, &self.model, l).0 < l.height || self.tiles(img)?.0.is_some() {
            return Ok(None);
        }
        let weights = self.weights.get_or_init(|| sr_weights(gpu, &self.model));
        Ok(Some(record_sr(gpu, enc, &self.model, weights, l, l.height, src)?))
    }
    /// Bands with the model's receptive halo, each run like a whole image
    /// (so tiled further where its work needs): not with `--tile off`.
    fn bands(&self, width: u32, _height: u32) -> Option<Box<dyn crate::stream::Banded + '_>> {
        if self.tile == TileMode::Off {
            return None;
        }
        let (f, halo) = (self.model.scale(), self.model.receptive_radius());
        let rows = crate::stream::rows_for(sr_peak_bytes(width, 1, f), halo);
        Some(Box::new(crate::stream::Local { op: self, halo, scale: f, rows }))
    }
    /// The tiles this op would take for the image's memory, or, when those
    /// are fewer than `parts`, `parts` seed-001 near-square tiles.
    fn split(&self, img: &Image, parts: usize) -> Result<Option<crate::tiling::Split>> {
        let own = self.cpu_tiles(img)?.0.unwrap_or_default();
        let tiles = crate::tiling::for_ranks(own, img.width as usize, img.height as usize, parts)?;
        Ok(Some(crate::tiling::Split { tiles, halo: self.model.receptive_radius(), scale: self.model.scale() }))
    }
}
