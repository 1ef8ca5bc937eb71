//! Image-level operations on a [`Backend`]: decode-side unpack, kernels, and
//! pack, chained so the GPU path moves only packed integer pixels across the
//! bus and runs in one submission.

use crate::backend::Backend;
use crate::error::Result;
use crate::gpu::GpuTensor;
use crate::image_io::Image;
use crate::kernels::pack_pixels::quantise;
use crate::kernels::unpack_pixels::PixelLayout;
use crate::kernels::{PackPixels, ResizeBilinear, UnpackPixels};
use crate::models::tinypssr::{TinyPssr, HALO};
use crate::models::zero_dce::ZeroDce;
use crate::tensor::{Samples, Shape, Tensor};

/// Resizes an image bilinearly (every channel, alpha included), keeping its
/// bit depth and channel layout.
pub fn resize_image(backend: &Backend, img: &Image, resize: &ResizeBilinear) -> Result<Image> {
    let inl = img.layout();
    let out_shape = resize.out_shape(inl.shape())?;
    let outl = PixelLayout { height: out_shape.h, width: out_shape.w, ..inl };
    let samples = match backend {
        Backend::Cpu => {
            let x = UnpackPixels(inl).cpu(&img.samples)?;
            let y = resize.cpu(&x)?;
            PackPixels(outl).cpu(&y)?
        }
        Backend::Gpu(gpu) => {
            let bytes = pixel_chain(gpu, "gpuimg.resize_image", inl, &img.samples.to_le_bytes(), outl, |enc, x, y| {
                resize.encode(gpu, enc, x, y)
            })?;
            Samples::from_le_bytes(outl.bits, &bytes, outl.samples())
        }
    };
    Image::new(outl.width as u32, outl.height as u32, outl.channels, samples)
}

/// On the GPU in one submission: packed `bytes` of layout `inl` up, unpacked
/// to planar f32 `x`, `record` from `x` into `y` (planar f32 of layout `outl`),
/// `y` packed and read back. Every buffer goes back to the pool.
pub fn pixel_chain(
    gpu: &crate::Gpu,
    op: &str,
    inl: PixelLayout,
    bytes: &[u8],
    outl: PixelLayout,
    record: impl FnOnce(&mut wgpu::CommandEncoder, &GpuTensor, &GpuTensor) -> Result<()>,
) -> Result<Vec<u8>> {
    let src = gpu.upload_bytes(bytes)?;
    let x = gpu.alloc(inl.shape())?;
    let y = gpu.alloc(outl.shape())?;
    let pack = PackPixels(outl);
    let dst = gpu.take_buffer((pack.words() * 4) as u64, crate::Gpu::TENSOR_USAGE);
    let r = gpu.run_and_read(op, outl.bytes(), |enc| {
        UnpackPixels(inl).encode(gpu, enc, &src, &x)?;
        record(enc, &x, &y)?;
        pack.encode(gpu, enc, &y, &dst)?;
        Ok(dst.clone())
    });
    gpu.recycle_buffer(src);
    gpu.recycle(x);
    gpu.recycle(y);
    gpu.recycle_buffer(dst);
    r
}

/// Runs TinyPSSR on (N, 1, H, W) planes: the fast fused CPU path, or the GPU
/// layer path in horizontal strips whose halo covers the receptive field (so
/// the result equals the untiled network while memory stays bounded).
pub fn run_tinypssr(backend: &Backend, model: &TinyPssr, x: &Tensor) -> Result<Tensor> {
    let limit = match backend {
        // The fast CPU path works in strips of its own.
        Backend::Cpu => return Ok(model.forward_fast(x)),
        Backend::Gpu(g) => {
            let l = g.device().limits();
            (l.max_storage_buffer_binding_size.min(l.max_buffer_size) / 2).min(256 << 20) as usize
        }
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
        Backend::Cpu => super_resolve_layers(backend, model, img),
    }
}

/// [`super_resolve`] through the layer-by-layer path (the reference).
pub fn super_resolve_layers(backend: &Backend, model: &TinyPssr, img: &Image) -> Result<Image> {
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

/// [`super_resolve`] on the GPU with the fused kernel: packed pixels in,
/// one dispatch per x2 stage (f32 planes between stages), packed pixels out,
/// in strips of rows whose halo covers the receptive field.
pub fn super_resolve_fused(gpu: &crate::Gpu, model: &TinyPssr, img: &Image) -> Result<Image> {
    use crate::kernels::tinypssr_fused::{flat_weights, FusedParams, TinyPssrFused};
    let l = img.layout();
    let f = model.scale();
    let colour = if img.has_alpha() { l.channels - 1 } else { l.channels };
    let bps = (l.bits / 8) as usize;
    let in_row = l.width * l.channels * bps;
    let out_row = l.width * f * l.channels * bps;
    let halo = (0..model.stages.len()).map(|i| HALO.div_ceil(1 << i)).sum::<usize>();
    // Largest buffer per input row: the f32 planes between stages or the packed output.
    let limits = gpu.device().limits();
    let cap = (limits.max_storage_buffer_binding_size.min(limits.max_buffer_size) / 2).min(256 << 20) as usize;
    let per_row = (colour * 4 * 2 * l.width * 4).max(out_row * f);
    let rows = (cap / per_row.max(1)).saturating_sub(2 * halo).max(8);
    let weights: Vec<wgpu::Buffer> =
        model.stages.iter().map(|s| gpu.constant("gpuimg.tinypssr_fused.weights", &flat_weights(s))).collect();
    let bytes = img.samples.to_le_bytes();
    let mut out = vec![0u8; out_row * l.height * f];
    let mut y0 = 0;
    while y0 < l.height {
        let y1 = (y0 + rows).min(l.height);
        let (a, b) = (y0.saturating_sub(halo), (y1 + halo).min(l.height));
        let src = gpu.upload_bytes(&bytes[a * in_row..b * in_row])?;
        let mut bufs = Vec::new();
        let (mut w, mut h) = (l.width as u32, (b - a) as u32);
        let mut ops = Vec::new();
        for i in 0..model.stages.len() {
            let last = i + 1 == model.stages.len();
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
        let out_bytes = ops.last().expect("one stage at least").out_bytes();
        let r = gpu.run_and_read("gpuimg.tinypssr_fused", out_bytes, |enc| {
            let last = bufs.last().expect("one stage at least").clone();
            enc.clear_buffer(&last, 0, None);
            for (i, op) in ops.iter().enumerate() {
                let input = if i == 0 { &src } else { &bufs[i - 1] };
                op.encode(gpu, enc, input, &weights[i], &bufs[i])?;
            }
            Ok(last)
        });
        gpu.recycle_buffer(src);
        for b in bufs {
            gpu.recycle_buffer(b);
        }
        let strip = r?;
        let skip = (y0 - a) * f * out_row;
        let len = (y1 - y0) * f * out_row;
        out[y0 * f * out_row..][..len].copy_from_slice(&strip[skip..skip + len]);
        y0 = y1;
    }
    let outl = PixelLayout { height: l.height * f, width: l.width * f, ..l };
    let mut samples = Samples::from_le_bytes(outl.bits, &out, outl.samples());
    if img.has_alpha() {
        let x = UnpackPixels(l).cpu(&img.samples)?;
        let p = l.height * l.width;
        let alpha = Tensor { shape: Shape::new(1, 1, l.height, l.width), data: x.data[colour * p..].to_vec() };
        let up = crate::resample::upscale(&alpha, f);
        let maxv = outl.max_value();
        let c = l.channels;
        match &mut samples {
            Samples::U8(s) => up.data.iter().enumerate().for_each(|(k, &v)| s[k * c + c - 1] = quantise(v, maxv) as u8),
            Samples::U16(s) => {
                up.data.iter().enumerate().for_each(|(k, &v)| s[k * c + c - 1] = quantise(v, maxv) as u16)
            }
        }
    }
    Image::new(outl.width as u32, outl.height as u32, outl.channels, samples)
}

/// Grey (+alpha) samples as RGB (+alpha): the grey value in R, G and B.
fn grey_to_rgb(img: &Image) -> Result<Image> {
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
fn rgb_to_grey(img: &Image) -> Result<Image> {
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
        Backend::Gpu(gpu) => {
            let l = gpu.device().limits();
            let cap = (l.max_storage_buffer_binding_size.min(l.max_buffer_size) / 2).min(256 << 20) as usize;
            enhance_gpu(gpu, model, &rgb, s, iterations, cap)?
        }
    };
    if grey {
        rgb_to_grey(&out)
    } else {
        Ok(out)
    }
}

/// [`enhance`] on the GPU for an RGB(A) image, with `max_bytes` bounding one
/// full-resolution f32 tensor. When the image fits, everything runs in one
/// submission: unpack, downscale, network, fused upsample-and-curve, pack.
/// Otherwise the downscale runs on the CPU, the maps are computed once, and
/// the fused pass runs over strips of rows.
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
    let rgb_shape = Shape::new(1, 3, h, w);
    let small_shape = match &down {
        Some(r) => r.out_shape(rgb_shape)?,
        None => rgb_shape,
    };
    let gm = model.upload(gpu);
    let maps = gpu.alloc(Shape::new(1, model.arch.maps(), small_shape.h, small_shape.w))?;
    let mut scratch = Vec::new();
    let bytes = img.samples.to_le_bytes();
    let row_bytes = w * c * (l.bits / 8) as usize;
    let result = (|| -> Result<Vec<u8>> {
        if l.shape().bytes() as usize <= max_bytes {
            let small = match &down {
                Some(_) => {
                    let t = gpu.alloc(small_shape)?;
                    scratch.push(t.clone());
                    Some(t)
                }
                None => None,
            };
            return pixel_chain(gpu, "gpuimg.enhance", l, &bytes, l, |enc, x, y| {
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
            });
        }
        // Too large for one tensor: maps from a CPU downscale, then strips.
        let x = UnpackPixels(l).cpu(&img.samples)?;
        let rgb = crate::models::zero_dce::first_channels(&x, 3);
        drop(x);
        let small_host = match &down {
            Some(r) => r.cpu(&rgb)?,
            None => rgb,
        };
        let small = gpu.upload(&small_host)?;
        scratch.push(small.clone());
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
    let out = result?;
    Image::new(img.width, img.height, c, Samples::from_le_bytes(l.bits, &out, l.samples()))
}
