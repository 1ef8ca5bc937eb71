//! Image-level operations on a [`Backend`]: decode-side unpack, kernels, and
//! pack, chained so the GPU path moves only packed integer pixels across the
//! bus and runs in one submission.

use std::sync::OnceLock;

use crate::backend::Backend;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::gpu::GpuTensor;
use crate::image_io::Image;
use crate::kernels::pack_pixels::quantise;
use crate::kernels::unpack_pixels::PixelLayout;
use crate::kernels::{PackPixels, ResizeBilinear, UnpackPixels};
use crate::models::tinypssr::{TinyPssr, HALO};
use crate::models::zero_dce::{GpuZeroDce, ZeroDce};
use crate::stream::StreamOp;
use crate::tensor::{Samples, Shape, Tensor};

/// Resizes an image bilinearly (every channel, alpha included), keeping its
/// bit depth and channel layout.
pub fn resize_image(backend: &Backend, img: &Image, resize: &ResizeBilinear) -> Result<Image> {
    let inl = img.layout();
    let outl = resize_layout(inl, resize)?;
    let samples = match backend {
        Backend::Cpu => {
            let x = UnpackPixels(inl).cpu(&img.samples)?;
            let y = resize.cpu(&x)?;
            PackPixels(outl).cpu(&y)?
        }
        Backend::Gpu(gpu) => return resize_gpu(gpu, img, resize),
    };
    Image::new(outl.width as u32, outl.height as u32, outl.channels, samples)
}

/// [`resize_image`] on the GPU: in one submission, or in strips of rows
/// when the image or the result is larger than one tensor may be.
pub fn resize_gpu(gpu: &Gpu, img: &Image, resize: &ResizeBilinear) -> Result<Image> {
    resize_gpu_capped(gpu, img, resize, gpu.tensor_cap())
}

/// [`resize_gpu`] with tensors of at most `cap` bytes: larger images run in
/// strips of output rows, each with the input rows its taps read, and the
/// result equals the unsplit resize (tests force strips with a small cap).
pub fn resize_gpu_capped(gpu: &Gpu, img: &Image, resize: &ResizeBilinear, cap: usize) -> Result<Image> {
    let (inl, outl) = (img.layout(), resize_layout(img.layout(), resize)?);
    if inl.shape().bytes() > cap as u64 || outl.shape().bytes() > cap as u64 {
        return resize_gpu_strips(gpu, img, resize, cap);
    }
    let src = gpu.upload_bytes(&img.samples.le_bytes())?;
    let r = run_recorded(gpu, "gpuimg.resize_image", outl.bytes(), |enc| record_resize(gpu, enc, resize, inl, &src));
    gpu.recycle_buffer(src);
    Image::new(
        outl.width as u32,
        outl.height as u32,
        outl.channels,
        Samples::from_le_bytes(outl.bits, &r?, outl.samples()),
    )
}

fn resize_gpu_strips(gpu: &Gpu, img: &Image, resize: &ResizeBilinear, cap: usize) -> Result<Image> {
    let (inl, outl) = (img.layout(), resize_layout(img.layout(), resize)?);
    let full = inl.shape();
    let packed = img.samples.le_bytes();
    let sample_bytes = inl.bits as usize / 8;
    let (in_row, out_row) = (inl.width * inl.channels * sample_bytes, outl.width * outl.channels * sample_bytes);
    // f32 bytes per row of the unpacked input and output tensors.
    let (in_f32, out_f32) = (inl.width * inl.channels * 4, outl.width * outl.channels * 4);
    if in_f32 * 2 > cap || out_f32 > cap {
        return Err(crate::Error::TooLarge {
            what: "one row of the resize".into(),
            needed: (in_f32 * 2) as u64,
            limit: cap as u64,
        });
    }
    let mut out = crate::fsutil::try_vec("the resized image", outl.height * out_row, 0u8)?;
    let mut a = 0;
    while a < outl.height {
        // As many output rows as fit, fewer while their input rows do not.
        let mut rows = (cap / out_f32).clamp(1, outl.height - a);
        let (first, last) = loop {
            let (f, l) = resize.strip_input_rows(full, a, a + rows)?;
            if (l - f + 1) * in_f32 <= cap || rows == 1 {
                break (f, l);
            }
            rows = rows.div_ceil(2);
        };
        let b = a + rows;
        let sin = PixelLayout { height: last - first + 1, ..inl };
        let sout = PixelLayout { height: rows, ..outl };
        let r = pixel_chain(
            gpu,
            "gpuimg.resize_strip",
            sin,
            &packed[first * in_row..(last + 1) * in_row],
            sout,
            |enc, x, y| resize.encode_strip(gpu, enc, full, x, y, first, a),
        )?;
        out[a * out_row..b * out_row].copy_from_slice(&r[..rows * out_row]);
        a = b;
    }
    Image::new(
        outl.width as u32,
        outl.height as u32,
        outl.channels,
        Samples::from_le_bytes(outl.bits, &out, outl.samples()),
    )
}

/// The layout a resize makes of `inl`.
pub fn resize_layout(inl: PixelLayout, resize: &ResizeBilinear) -> Result<PixelLayout> {
    let out_shape = resize.out_shape(inl.shape())?;
    Ok(PixelLayout { height: out_shape.h, width: out_shape.w, ..inl })
}

/// Records [`resize_image`] for packed samples of layout `inl` in `src`.
pub fn record_resize(
    gpu: &crate::Gpu,
    enc: &mut wgpu::CommandEncoder,
    resize: &ResizeBilinear,
    inl: PixelLayout,
    src: &wgpu::Buffer,
) -> Result<Recorded> {
    let outl = resize_layout(inl, resize)?;
    record_pixel_chain(gpu, enc, inl, src, outl, |enc, x, y| resize.encode(gpu, enc, x, y))
}

pub use crate::gpu::{run_recorded, Recorded};

/// Records, for packed samples of layout `inl` in `src`: unpack to planar
/// f32 `x`, `record` from `x` into `y` (planar f32 of layout `outl`), pack `y`.
pub fn record_pixel_chain(
    gpu: &crate::Gpu,
    enc: &mut wgpu::CommandEncoder,
    inl: PixelLayout,
    src: &wgpu::Buffer,
    outl: PixelLayout,
    record: impl FnOnce(&mut wgpu::CommandEncoder, &GpuTensor, &GpuTensor) -> Result<()>,
) -> Result<Recorded> {
    let x = gpu.alloc(inl.shape())?;
    let y = gpu.alloc(outl.shape())?;
    let pack = PackPixels(outl);
    let dst = gpu.take_buffer((pack.words() * 4) as u64, crate::Gpu::TENSOR_USAGE);
    UnpackPixels(inl).encode(gpu, enc, src, &x)?;
    record(enc, &x, &y)?;
    pack.encode(gpu, enc, &y, &dst)?;
    Ok(Recorded { out: dst, out_bytes: outl.bytes(), scratch: vec![x.buffer, y.buffer] })
}

/// [`record_pixel_chain`] in one submission on packed `bytes`, read back.
pub fn pixel_chain(
    gpu: &crate::Gpu,
    op: &str,
    inl: PixelLayout,
    bytes: &[u8],
    outl: PixelLayout,
    record: impl FnOnce(&mut wgpu::CommandEncoder, &GpuTensor, &GpuTensor) -> Result<()>,
) -> Result<Vec<u8>> {
    let src = gpu.upload_bytes(bytes)?;
    let r = run_recorded(gpu, op, outl.bytes(), |enc| record_pixel_chain(gpu, enc, inl, &src, outl, record));
    gpu.recycle_buffer(src);
    r
}

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
    let colour = if l.channels == 2 || l.channels == 4 { l.channels - 1 } else { l.channels };
    let out_row = l.width * f * l.channels * (l.bits / 8) as usize;
    let halo = (0..model.stages.len()).map(|i| HALO.div_ceil(1 << i)).sum::<usize>();
    // Largest buffer per input row: the f32 planes between stages or the packed output.
    let per_row = (colour * 4 * 2 * l.width * 4).max(out_row * f);
    ((gpu.tensor_cap() / per_row.max(1)).saturating_sub(2 * halo).max(8), halo)
}

/// The fused kernel's weights on the GPU, one buffer per x2 stage.
pub fn sr_weights(gpu: &crate::Gpu, model: &TinyPssr) -> Vec<wgpu::Buffer> {
    model.stages.iter().map(|s| gpu.constant("gpuimg.tinypssr_fused.weights", &s.flat())).collect()
}

/// Records the fused super-resolution of `rows` rows of packed samples of
/// layout `l` (only height differs) in `src`: one dispatch per x2 stage,
/// packed output. Alpha comes out zero; [`sr_alpha`] fills it in.
pub fn record_sr(
    gpu: &crate::Gpu,
    enc: &mut wgpu::CommandEncoder,
    weights: &[wgpu::Buffer],
    l: PixelLayout,
    rows: usize,
    src: &wgpu::Buffer,
) -> Result<Recorded> {
    use crate::kernels::tinypssr_fused::{FusedParams, TinyPssrFused};
    let colour = if l.channels == 2 || l.channels == 4 { l.channels - 1 } else { l.channels };
    let mut bufs = Vec::new();
    let (mut w, mut h) = (l.width as u32, rows as u32);
    let mut ops = Vec::new();
    for i in 0..weights.len() {
        let last = i + 1 == weights.len();
        let p = FusedParams {
            w,
            h,
            channels: l.channels as u32,
            colour: colour as u32,
            bits: l.bits,
            in_mode: u32::from(i > 0),
            out_mode: u32::from(!last),
            _pad: 0,
        };
        let op = TinyPssrFused(p);
        gpu.check_size("tinypssr output", op.out_bytes())?;
        bufs.push(gpu.take_buffer(op.out_bytes(), crate::Gpu::TENSOR_USAGE));
        ops.push(op);
        w *= 2;
        h *= 2;
    }
    let out = bufs.pop().ok_or_else(|| crate::Error::invalid("tinypssr", "no stages"))?;
    let out_bytes = ops.last().map(|o| o.out_bytes()).unwrap_or(0);
    enc.clear_buffer(&out, 0, None);
    for (i, op) in ops.iter().enumerate() {
        let input = if i == 0 { src } else { &bufs[i - 1] };
        op.encode(gpu, enc, input, &weights[i], bufs.get(i).unwrap_or(&out))?;
    }
    Ok(Recorded { out, out_bytes, scratch: bufs })
}

/// [`super_resolve`] on the GPU with the fused kernel: packed pixels in,
/// one dispatch per x2 stage (f32 planes between stages), packed pixels out,
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
            run_recorded(gpu, "gpuimg.tinypssr_fused", out_bytes, |enc| record_sr(gpu, enc, &weights, l, b - a, &src));
        gpu.recycle_buffer(src);
        let strip = r?;
        let skip = (y0 - a) * f * out_row;
        let len = (y1 - y0) * f * out_row;
        out[y0 * f * out_row..][..len].copy_from_slice(&strip[skip..skip + len]);
        y0 = y1;
    }
    let outl = PixelLayout { height: l.height * f, width: l.width * f, ..l };
    let up = Image::new(
        outl.width as u32,
        outl.height as u32,
        outl.channels,
        Samples::from_le_bytes(outl.bits, &out, outl.samples()),
    )?;
    sr_alpha(img, up, f)
}

/// Fills the alpha channel of `up` (the fused kernel's output for `img`)
/// with `img`'s alpha upscaled bicubically by `f`; images without alpha pass.
pub fn sr_alpha(img: &Image, mut up: Image, f: usize) -> Result<Image> {
    if !img.has_alpha() {
        return Ok(up);
    }
    let l = img.layout();
    let colour = l.channels - 1;
    let x = UnpackPixels(l).cpu(&img.samples)?;
    let p = l.height * l.width;
    let alpha = Tensor { shape: Shape::new(1, 1, l.height, l.width), data: x.data[colour * p..].to_vec() };
    let a = crate::resample::upscale(&alpha, f);
    let maxv = up.layout().max_value();
    let c = l.channels;
    match &mut up.samples {
        Samples::U8(s) => a.data.iter().enumerate().for_each(|(k, &v)| s[k * c + c - 1] = quantise(v, maxv) as u8),
        Samples::U16(s) => a.data.iter().enumerate().for_each(|(k, &v)| s[k * c + c - 1] = quantise(v, maxv) as u16),
    }
    Ok(up)
}

/// Grey (+alpha) samples as RGB (+alpha): the grey value in R, G and B.
pub fn grey_to_rgb(img: &Image) -> Result<Image> {
    fn expand<T: Copy>(s: &[T], c: usize) -> Vec<T> {
        s.chunks_exact(c).flat_map(|p| if c == 2 { vec![p[0], p[0], p[0], p[1]] } else { vec![p[0]; 3] }).collect()
    }
    let c = img.channels;
    let samples = match &img.samples {
        Samples::U8(s) => Samples::U8(expand(s, c)),
        Samples::U16(s) => Samples::U16(expand(s, c)),
    };
    Image::new(img.width, img.height, c + 2, samples)
}

/// RGB (+alpha) samples back to grey (+alpha): the rounded mean of R, G and B.
pub fn rgb_to_grey(img: &Image) -> Result<Image> {
    fn reduce<T: Copy + Into<u32> + TryFrom<u32>>(s: &[T], c: usize) -> Vec<T> {
        let m = |p: &[T]| T::try_from((p[0].into() + p[1].into() + p[2].into() + 1) / 3).ok().expect("mean fits");
        s.chunks_exact(c).flat_map(|p| if c == 4 { vec![m(p), p[3]] } else { vec![m(p)] }).collect()
    }
    let c = img.channels;
    let samples = match &img.samples {
        Samples::U8(s) => Samples::U8(reduce(s, c)),
        Samples::U16(s) => Samples::U16(reduce(s, c)),
    };
    Image::new(img.width, img.height, c - 2, samples)
}

/// Low-light enhancement with Zero-DCE / Zero-DCE++: the network on the image
/// downscaled by `s` (bilinear), its maps sampled back at the image's own size
/// while the curve runs (one fused pass). Any size; grey images run as RGB
/// and are averaged back; alpha passes through; bit depth and layout are kept.
pub fn enhance(backend: &Backend, model: &ZeroDce, img: &Image, s: usize, iterations: usize) -> Result<Image> {
    let grey = img.channels <= 2;
    let rgb = if grey { grey_to_rgb(img)? } else { img.clone() };
    let out = match backend {
        Backend::Cpu => {
            let l = rgb.layout();
            let x = UnpackPixels(l).cpu(&rgb.samples)?;
            let y = model.enhance_cpu(&x, s, iterations)?;
            Image::new(rgb.width, rgb.height, rgb.channels, PackPixels(l).cpu(&y)?)?
        }
        Backend::Gpu(gpu) => enhance_gpu(gpu, model, &rgb, s, iterations, gpu.tensor_cap())?,
    };
    if grey {
        rgb_to_grey(&out)
    } else {
        Ok(out)
    }
}

/// Whether [`enhance_gpu`] runs an image of layout `l` in one submission
/// (otherwise in strips) when one tensor may take `max_bytes`.
pub fn enhance_fits(l: PixelLayout, max_bytes: usize) -> bool {
    l.shape().bytes() as usize <= max_bytes
}

/// Records the one-submission enhancement of an RGB(A) image of layout `l`
/// whose packed samples are in `src`: unpack, downscale by `s`, network
/// (weights `gm`), fused upsample-and-curve, pack.
#[allow(clippy::too_many_arguments)]
pub fn record_enhance(
    gpu: &crate::Gpu,
    enc: &mut wgpu::CommandEncoder,
    model: &ZeroDce,
    gm: &GpuZeroDce,
    l: PixelLayout,
    src: &wgpu::Buffer,
    s: usize,
    iterations: usize,
) -> Result<Recorded> {
    let curve = model.curve(iterations)?;
    let down = ZeroDce::downscale(l.height, l.width, s)?;
    let rgb_shape = Shape::new(1, 3, l.height, l.width);
    let small_shape = match &down {
        Some(r) => r.out_shape(rgb_shape)?,
        None => rgb_shape,
    };
    let maps = gpu.alloc(Shape::new(1, model.arch.maps(), small_shape.h, small_shape.w))?;
    let small = match &down {
        Some(_) => Some(gpu.alloc(small_shape)?),
        None => None,
    };
    let mut scratch = Vec::new();
    let mut rec = record_pixel_chain(gpu, enc, l, src, l, |enc, x, y| {
        let rgb = GpuTensor { buffer: x.buffer.clone(), shape: rgb_shape };
        let net_in = match (&down, &small) {
            (Some(r), Some(t)) => {
                r.encode(gpu, enc, &rgb, t)?;
                t.clone()
            }
            _ => rgb,
        };
        gm.encode(gpu, enc, &net_in, &maps, &mut scratch)?;
        curve.encode(gpu, enc, x, &maps, y)
    })?;
    rec.scratch.extend(scratch.into_iter().chain(small).chain([maps]).map(|t| t.buffer));
    Ok(rec)
}

/// [`enhance`] on the GPU for an RGB(A) image, with `max_bytes` bounding one
/// full-resolution f32 tensor. When the image fits, everything runs in one
/// submission ([`record_enhance`]). Otherwise the downscale runs on the CPU,
/// the maps are computed once, and the fused pass runs over strips of rows.
pub fn enhance_gpu(
    gpu: &crate::Gpu,
    model: &ZeroDce,
    img: &Image,
    s: usize,
    iterations: usize,
    max_bytes: usize,
) -> Result<Image> {
    let l = img.layout();
    let (h, w, c) = (l.height, l.width, l.channels);
    let curve = model.curve(iterations)?;
    let down = ZeroDce::downscale(h, w, s)?;
    let gm = model.upload(gpu);
    let bytes = img.samples.le_bytes();
    let out = if enhance_fits(l, max_bytes) {
        let src = gpu.upload_bytes(&bytes)?;
        let r = run_recorded(gpu, "gpuimg.enhance", l.bytes(), |enc| {
            record_enhance(gpu, enc, model, &gm, l, &src, s, iterations)
        });
        gpu.recycle_buffer(src);
        r?
    } else {
        // Too large for one tensor: maps from a CPU downscale, then strips.
        let row_bytes = w * c * (l.bits / 8) as usize;
        let x = UnpackPixels(l).cpu(&img.samples)?;
        let rgb = crate::models::zero_dce::first_channels(&x, 3);
        drop(x);
        let small_host = match &down {
            Some(r) => r.cpu(&rgb)?,
            None => rgb,
        };
        let small = gpu.upload(&small_host)?;
        let maps = gpu.alloc(Shape::new(1, model.arch.maps(), small.shape.h, small.shape.w))?;
        let mut scratch = vec![small.clone()];
        let result = (|| -> Result<Vec<u8>> {
            gpu.execute("gpuimg.enhance.maps", |enc| gm.encode(gpu, enc, &small, &maps, &mut scratch))?;
            let rows = (max_bytes / (c * w * 4).max(1)).max(1);
            let mut out = vec![0u8; row_bytes * h];
            let mut y0 = 0;
            while y0 < h {
                let y1 = (y0 + rows).min(h);
                let sl = PixelLayout { height: y1 - y0, ..l };
                let r = pixel_chain(
                    gpu,
                    "gpuimg.enhance.strip",
                    sl,
                    &bytes[y0 * row_bytes..y1 * row_bytes],
                    sl,
                    |enc, x, y| curve.encode_rows(gpu, enc, x, &maps, y, y0, h),
                );
                out[y0 * row_bytes..y1 * row_bytes].copy_from_slice(&r?);
                y0 = y1;
            }
            Ok(out)
        })();
        gpu.recycle(maps);
        for t in scratch {
            gpu.recycle(t);
        }
        result?
    };
    Image::new(img.width, img.height, c, Samples::from_le_bytes(l.bits, &out, l.samples()))
}

/// [`resize_image`] as a streamed op.
#[derive(Debug, Clone)]
pub struct ResizeOp(pub ResizeBilinear);

/// Peak memory of resizing an image of layout `inl` to `outl` on the CPU
/// path, in bytes: the input as f32 planes, the output as f32 planes, the
/// packed output and its encoded copy.
pub fn resize_peak_bytes(inl: PixelLayout, outl: PixelLayout) -> u64 {
    let b = outl.bits as u64 / 8;
    inl.samples() as u64 * 4 + outl.samples() as u64 * (4 + 2 * b)
}

/// Peak memory of TinyPSSR on an image of `w` x `h` (`scale` x), in bytes,
/// per output pixel (measured: peak RSS of `gpuimg --device cpu sr` over
/// image sizes, rounded up).
pub fn sr_peak_bytes(w: u32, h: u32, scale: usize) -> u64 {
    w as u64 * h as u64 * (scale * scale) as u64 * SR_BYTES_PER_OUTPUT_PIXEL
}
// dev-2c, 1000^2 -> 2000^2 inputs: x2 21 B per output pixel, x4 16.
const SR_BYTES_PER_OUTPUT_PIXEL: u64 = 24;

/// Peak memory of Zero-DCE(++) enhancement of a `w` x `h` image, in bytes
/// (measured like [`sr_peak_bytes`]).
pub fn enhance_peak_bytes(w: u32, h: u32) -> u64 {
    w as u64 * h as u64 * ENHANCE_BYTES_PER_PIXEL
}
// dev-2c, 1000^2 -> 2000^2 images: 50 B/pixel.
const ENHANCE_BYTES_PER_PIXEL: u64 = 56;

impl StreamOp for ResizeOp {
    fn check(&self, img: &Image) -> Result<()> {
        let outl = resize_layout(img.layout(), &self.0)?;
        crate::image_io::DecodeLimits::default().check_output(
            "the resized image",
            outl.width as u64,
            outl.height as u64,
        )?;
        crate::fsutil::check_memory(
            &format!("resizing to {}x{}", outl.width, outl.height),
            resize_peak_bytes(img.layout(), outl),
        )
    }
    fn cpu(&self, _job: usize, img: &Image) -> Result<Image> {
        resize_image(&Backend::Cpu, img, &self.0)
    }
    fn gpu(&self, _job: usize, gpu: &Gpu, img: &Image) -> Result<Image> {
        resize_gpu(gpu, img, &self.0)
    }
    fn record(
        &self,
        job: usize,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        img: &Image,
        src: &wgpu::Buffer,
    ) -> Result<Option<(Recorded, PixelLayout)>> {
        let (inl, outl) = (img.layout(), resize_layout(img.layout(), &self.0)?);
        if inl.shape().bytes().max(outl.shape().bytes()) > gpu.tensor_cap() as u64 {
            return Ok(None); // the blocking path runs it in strips
        }
        self.record_group(&[job], gpu, enc, &[img], src)
    }
    fn groups(&self) -> bool {
        true
    }
    fn record_group(
        &self,
        _jobs: &[usize],
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        imgs: &[&Image],
        src: &wgpu::Buffer,
    ) -> Result<Option<(Recorded, PixelLayout)>> {
        // One unpack, one resize and one pack over an (N, C, H, W) batch.
        let l = PixelLayout { n: imgs.len(), ..imgs[0].layout() };
        Ok(Some((record_resize(gpu, enc, &self.0, l, src)?, resize_layout(l, &self.0)?)))
    }
}

/// [`super_resolve`] as a streamed op. The fused kernel's weights are
/// uploaded once, to the first GPU the op runs on: use one op per GPU.
#[derive(Debug)]
pub struct SuperResolveOp {
    model: TinyPssr,
    weights: OnceLock<Vec<wgpu::Buffer>>,
}

impl SuperResolveOp {
    /// The op for a model.
    pub fn new(model: TinyPssr) -> Self {
        SuperResolveOp { model, weights: OnceLock::new() }
    }
}

impl StreamOp for SuperResolveOp {
    fn check(&self, img: &Image) -> Result<()> {
        let f = self.model.scale() as u64;
        let (w, h) = (img.width as u64 * f, img.height as u64 * f);
        crate::image_io::DecodeLimits::default().check_output("the upscaled image", w, h)?;
        crate::fsutil::check_memory(
            &format!("upscaling to {w}x{h}"),
            sr_peak_bytes(img.width, img.height, self.model.scale()),
        )
    }
    fn cpu(&self, _job: usize, img: &Image) -> Result<Image> {
        super_resolve_planar(&Backend::Cpu, &self.model, img)
    }
    fn gpu(&self, _job: usize, gpu: &Gpu, img: &Image) -> Result<Image> {
        super_resolve_fused(gpu, &self.model, img)
    }
    fn record(
        &self,
        _job: usize,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        img: &Image,
        src: &wgpu::Buffer,
    ) -> Result<Option<(Recorded, PixelLayout)>> {
        let l = img.layout();
        if sr_strip_rows(gpu, &self.model, l).0 < l.height {
            return Ok(None);
        }
        let f = self.model.scale();
        let weights = self.weights.get_or_init(|| sr_weights(gpu, &self.model));
        let outl = PixelLayout { height: l.height * f, width: l.width * f, ..l };
        Ok(Some((record_sr(gpu, enc, weights, l, l.height, src)?, outl)))
    }
    fn finish(&self, _channels: usize, input: &Image, out: Image) -> Result<Image> {
        sr_alpha(input, out, self.model.scale())
    }
}

/// [`enhance`] as a streamed op: grey images become RGB on the load threads
/// and grey again on the save threads. The network's weights are uploaded
/// once, to the first GPU the op runs on: use one op per GPU.
#[derive(Debug)]
pub struct EnhanceOp {
    model: ZeroDce,
    /// Downscale factor of the network's input (`None`: per image, [`crate::models::zero_dce::default_scale_factor`]).
    pub scale_factor: Option<usize>,
    /// Curve iterations.
    pub iterations: usize,
    uploaded: OnceLock<GpuZeroDce>,
}

impl EnhanceOp {
    /// The op for a model; checks that it can run `iterations` iterations.
    pub fn new(model: ZeroDce, scale_factor: Option<usize>, iterations: usize) -> Result<Self> {
        model.curve(iterations)?;
        Ok(EnhanceOp { model, scale_factor, iterations, uploaded: OnceLock::new() })
    }
    fn s(&self, img: &Image) -> usize {
        self.scale_factor
            .unwrap_or_else(|| crate::models::zero_dce::default_scale_factor(img.height as usize, img.width as usize))
    }
}

impl StreamOp for EnhanceOp {
    fn check(&self, img: &Image) -> Result<()> {
        crate::fsutil::check_memory(
            &format!("enhancing {}x{}", img.width, img.height),
            enhance_peak_bytes(img.width, img.height),
        )
    }
    fn prepare(&self, img: Image) -> Result<Image> {
        if img.channels <= 2 {
            grey_to_rgb(&img)
        } else {
            Ok(img)
        }
    }
    fn cpu(&self, _job: usize, img: &Image) -> Result<Image> {
        enhance(&Backend::Cpu, &self.model, img, self.s(img), self.iterations)
    }
    fn gpu(&self, _job: usize, gpu: &Gpu, img: &Image) -> Result<Image> {
        enhance_gpu(gpu, &self.model, img, self.s(img), self.iterations, gpu.tensor_cap())
    }
    fn record(
        &self,
        _job: usize,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        img: &Image,
        src: &wgpu::Buffer,
    ) -> Result<Option<(Recorded, PixelLayout)>> {
        let l = img.layout();
        if !enhance_fits(l, gpu.tensor_cap()) {
            return Ok(None);
        }
        let gm = self.uploaded.get_or_init(|| self.model.upload(gpu));
        Ok(Some((record_enhance(gpu, enc, &self.model, gm, l, src, self.s(img), self.iterations)?, l)))
    }
    fn finish(&self, channels: usize, _input: &Image, out: Image) -> Result<Image> {
        if channels <= 2 {
            rgb_to_grey(&out)
        } else {
            Ok(out)
        }
    }
}
