//! Low-light enhancement with Zero-DCE / Zero-DCE++: the pipeline on both
//! backends, recorded into an encoder, in strips, and as a streamed op.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::backend::Backend;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::image_io::Image;
use crate::kernels::pack_pixels::quantise;
use crate::kernels::resize_bilinear::Axis;
use crate::kernels::unpack_pixels::PixelLayout;
use crate::kernels::zero_dce_enhance::CurveTaps;
use crate::kernels::zero_dce_net::{NetInput, ZeroDceNet};
use crate::kernels::{rows_per_task, PackPixels, ResizeBilinear, UnpackPixels, ZeroDceEnhance};
use crate::models::zero_dce::{GpuZeroDce, ZeroDce};
use crate::stream::StreamOp;
use crate::tensor::{Samples, Shape, Tensor};
use crate::tiling::Tile;

use super::*;

/// Low-light enhancement with Zero-DCE / Zero-DCE++: the network on the image
/// downscaled by `s` (bilinear), its maps sampled back at the image's own size
/// while the curve runs (one fused pass). Any size; grey images run as RGB
/// and are averaged back; alpha passes through; bit depth and layout are kept.
///
/// ```
/// use gpuimg::models::{zero_dce::{default_scale_factor, Arch}, ZeroDce};
/// use gpuimg::{image_io::Image, ops::enhance, Backend, Samples};
/// let model = ZeroDce::bundled(Arch::ZeroDcePlus)?;
/// // A dark 160x120 RGB image.
/// let px: Vec<u8> = (0..160 * 120 * 3).map(|i| (i % 37) as u8).collect();
/// let img = Image::new(160, 120, 3, Samples::U8(px))?;
/// let s = default_scale_factor(120, 160); // what `gpuimg enhance` uses: 1 here
/// let out = enhance(&Backend::Cpu, &model, &img, s, 8)?;
/// let mean = |i: &Image| match &i.samples { Samples::U8(v) => v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64, _ => 0.0 };
/// assert!(mean(&out) > mean(&img));
/// if let Some(gpu) = gpuimg::gpu::doctest_gpu() {
///     let on_gpu = enhance(&Backend::Gpu(gpu), &model, &img, s, 8)?;
///     assert!((mean(&on_gpu) - mean(&out)).abs() < 0.5);
/// }
/// # Ok::<(), gpuimg::Error>(())
/// ```
pub fn enhance(backend: &Backend, model: &ZeroDce, img: &Image, s: usize, iterations: usize) -> Result<Image> {
    let grey = img.channels <= 2;
    let rgb = if grey { Cow::Owned(grey_to_rgb(img)?) } else { Cow::Borrowed(img) };
    let out = match backend {
        Backend::Cpu => enhance_packed_cpu(model, &rgb, s, iterations)?,
        Backend::Gpu(gpu) => enhance_gpu(gpu, model, &rgb, s, iterations, gpu.tensor_cap())?,
    };
    if grey {
        rgb_to_grey(&out)
    } else {
        Ok(out)
    }
}

/// The CPU path of [`enhance`] on an RGB(A) image, fused per row: the
/// downscale reads the packed samples (only the two rows each output row's
/// taps touch), and each output row is unpacked, curved with the maps
/// sampled once per row, and packed, so the image never exists as f32
/// planes. The arithmetic is that of [`enhance_unfused_cpu`] (unpack,
/// `ZeroDce::enhance_cpu`, pack) in the same order: the same bytes.
pub fn enhance_packed_cpu(model: &ZeroDce, img: &Image, s: usize, iterations: usize) -> Result<Image> {
    if !(3..=4).contains(&img.channels) {
        return Err(crate::Error::invalid("enhance", format!("{} channels: RGB or RGBA expected", img.channels)));
    }
    let l = img.layout();
    let curve = model.curve(iterations)?;
    let small = match ZeroDce::downscale(l.height, l.width, s)? {
        Some(r) => downscale_packed(img, &r)?,
        None => UnpackPixels(l).cpu(&img.samples).map(|x| x.first_channels(3))?,
    };
    let maps = maps_cpu_bounded(model, &small)?;
    curve_band_cpu(&curve, img, 0, l.height, &maps)
}

/// Working memory of the network per pixel of its input, in bytes
/// (Zero-DCE++ on a 1333x1333 input peaks at about 1000 B per pixel: its
/// 32-channel activations, several alive at once for the skip connections).
const NET_BYTES_PER_PIXEL: u64 = 1024;

/// The network's working memory in [`maps_cpu_bounded`]'s bands (with its
/// halo rows): at most this, about [`crate::stream::BAND_WORK`] and a half.
const BAND_NET_WORK: u64 = crate::stream::BAND_WORK * 3 / 2;

/// [`ZeroDce::maps_cpu`] on `small` (1, 3, h, w: the downscaled image) in
/// bands of rows whose work fits [`crate::stream::BAND_WORK`], each grown
/// by the network's receptive radius (one row per 3x3 layer) and cropped
/// back: the same maps bit for bit, in bounded memory (at s = 12 a
/// 16000x16000 image gives a 1333x1333 input: 1.8 GB whole, 0.3 in bands).
pub fn maps_cpu_bounded(model: &ZeroDce, small: &Tensor) -> Result<Tensor> {
    let halo = crate::models::zero_dce::LAYERS;
    maps_cpu_in_bands(model, small, crate::stream::rows_for(small.shape.w as u64 * NET_BYTES_PER_PIXEL, halo))
}

/// [`maps_cpu_bounded`] in bands of `rows` rows (whole when the input has
/// few more than that, or more than one image).
pub fn maps_cpu_in_bands(model: &ZeroDce, small: &Tensor, rows: usize) -> Result<Tensor> {
    let (h, w) = (small.shape.h, small.shape.w);
    let halo = crate::models::zero_dce::LAYERS;
    let rows = rows.max(1);
    if small.shape.n != 1 || h <= rows + 2 * halo {
        return model.maps_cpu(small);
    }
    let c = small.shape.c;
    let mut out: Option<Tensor> = None;
    let mut a = 0;
    while a < h {
        let b = (a + rows).min(h);
        let (lo, hi) = (a.saturating_sub(halo), (b + halo).min(h));
        let mut band = Tensor::zeros(Shape::new(1, c, hi - lo, w));
        for ch in 0..c {
            band.data[ch * (hi - lo) * w..(ch + 1) * (hi - lo) * w]
                .copy_from_slice(&small.plane(0, ch)[lo * w..hi * w]);
        }
        let m = model.maps_cpu(&band)?;
        let mc = m.shape.c;
        let o = out.get_or_insert_with(|| Tensor::zeros(Shape::new(1, mc, h, w)));
        for ch in 0..mc {
            o.data[(ch * h + a) * w..(ch * h + b) * w].copy_from_slice(&m.plane(0, ch)[(a - lo) * w..(b - lo) * w]);
        }
        a = b;
    }
    Ok(out.expect("at least one band"))
}

/// The curve of the CPU path on `band`, rows `first..` of an RGB(A) image
/// `full_h` rows tall whose maps are `maps`: those rows of
/// [`enhance_packed_cpu`]'s output, bit for bit.
fn curve_band_cpu(curve: &ZeroDceEnhance, band: &Image, first: usize, full_h: usize, maps: &Tensor) -> Result<Image> {
    let l = band.layout();
    let taps = curve.taps(Shape::new(1, 3, full_h, l.width), maps.shape)?;
    let samples = match &band.samples {
        Samples::U8(src) => {
            Samples::U8(curve_rows(src, l, first, curve, maps, &taps, |v: u8| v as f32 / 255.0, |q| q as u8))
        }
        Samples::U16(src) => {
            Samples::U16(curve_rows(src, l, first, curve, maps, &taps, |v: u16| v as f32 / 65535.0, |q| q as u16))
        }
    };
    Image::new(band.width, band.height, band.channels, samples)
}

/// The unfused CPU path (unpack to f32 planes, `ZeroDce::enhance_cpu`,
/// pack): the reference [`enhance_packed_cpu`] is tested against.
pub fn enhance_unfused_cpu(model: &ZeroDce, img: &Image, s: usize, iterations: usize) -> Result<Image> {
    let l = img.layout();
    let x = UnpackPixels(l).cpu(&img.samples)?;
    let y = model.enhance_cpu(&x, s, iterations)?;
    Image::new(img.width, img.height, img.channels, PackPixels(l).cpu(&y)?)
}

/// The colour channels of packed `img` resized by `r` into f32 planes
/// (1, 3, h', w'): `UnpackPixels` then `ResizeBilinear::cpu`'s arithmetic,
/// reading the packed rows directly.
fn downscale_packed(img: &Image, r: &ResizeBilinear) -> Result<Tensor> {
    let full = Shape::new(1, 3, img.height as usize, img.width as usize);
    let mut y = Tensor::zeros(r.out_shape(full)?);
    let rows = 0..y.shape.h;
    downscale_rows(img, 0, full.h, r, &mut y, rows)?;
    Ok(y)
}

/// Rows `rows` (of each channel) of `y`, the downscale by `r` of an RGB(A)
/// image `full_h` rows tall, from `band`, which holds that image's rows
/// `first..` including every row those output rows read.
fn downscale_rows(
    band: &Image,
    first: usize,
    full_h: usize,
    r: &ResizeBilinear,
    y: &mut Tensor,
    rows: Range<usize>,
) -> Result<()> {
    let l = band.layout();
    let full = y.shape;
    let (ay, ax) = r.axes(Shape::new(1, 3, full_h, l.width))?;
    let cols: Vec<(usize, usize, f32, f32)> = (0..full.w).map(|j| ax.tap(j, r.align_corners)).collect();
    if full.is_empty() || rows.is_empty() {
        return Ok(());
    }
    let (c, irow, align) = (l.channels, l.width * l.channels, r.align_corners);
    let need = (ay.tap(rows.start, align).0, ay.tap(rows.end - 1, align).1);
    if need.0 < first || need.1 >= first + l.height {
        return Err(crate::Error::invalid("enhance", format!("band rows {first}.. lack input rows {need:?}")));
    }
    #[allow(clippy::too_many_arguments)]
    fn go<T: Copy + Sync>(
        src: &[T],
        y: &mut Tensor,
        (c, irow, align, first): (usize, usize, bool, usize),
        ay: &Axis,
        cols: &[(usize, usize, f32, f32)],
        rows: &Range<usize>,
        value: impl Fn(T) -> f32 + Sync,
    ) {
        let (h, w) = (y.shape.h, y.shape.w);
        y.data.par_chunks_mut(w).with_min_len(rows_per_task(w)).enumerate().for_each(|(row, dst)| {
            let (ch, i) = (row / h, row % h);
            if !rows.contains(&i) {
                return;
            }
            let (y0, y1, ly0, ly1) = ay.tap(i, align);
            let (y0, y1) = (y0 - first, y1 - first);
            let (r0, r1) = (&src[y0 * irow..(y0 + 1) * irow], &src[y1 * irow..(y1 + 1) * irow]);
            for (d, &(x0, x1, lx0, lx1)) in dst.iter_mut().zip(cols) {
                let top = lx0 * value(r0[x0 * c + ch]) + lx1 * value(r0[x1 * c + ch]);
                let bot = lx0 * value(r1[x0 * c + ch]) + lx1 * value(r1[x1 * c + ch]);
                *d = ly0 * top + ly1 * bot;
            }
        });
    }
    let geo = (c, irow, align, first);
    match &band.samples {
        Samples::U8(s) => {
            let lut: Vec<f32> = (0..256u32).map(|v| v as f32 / 255.0).collect();
            go(s, y, geo, &ay, &cols, &rows, |v: u8| lut[v as usize]);
        }
        Samples::U16(s) => go(s, y, geo, &ay, &cols, &rows, |v: u16| v as f32 / 65535.0),
    }
    Ok(())
}

/// Every row of packed RGB(A) `src` (layout `l`: 3 or 4 channels; rows
/// `first..` of the image `taps` are for) unpacked, its colour channels
/// curved, and packed again; alpha goes through the same unpack and pack.
#[allow(clippy::too_many_arguments)]
fn curve_rows<T: Copy + Send + Sync + Default + 'static>(
    src: &[T],
    l: PixelLayout,
    first: usize,
    curve: &ZeroDceEnhance,
    maps: &Tensor,
    taps: &CurveTaps,
    value: impl Fn(T) -> f32 + Sync,
    sample: impl Fn(u32) -> T + Sync,
) -> Vec<T> {
    let (c, w) = (l.channels, l.width);
    let maxv = l.max_value();
    let mut out = vec![T::default(); src.len()];
    if w == 0 || c == 0 {
        return out;
    }
    // Per row: unpack into one row per channel, curve the colour rows,
    // pack. The pixel loops zip the channel rows (no index checks, so they
    // vectorise) and are compiled for AVX2 too (the same bits: conversions,
    // one division, clamps; no FMA).
    #[inline(always)]
    fn unpack<T: Copy, const C: usize>(row: &[T], planes: &mut [f32], w: usize, value: &impl Fn(T) -> f32) {
        let mut rows = planes.chunks_exact_mut(w);
        let mut ch: [&mut [f32]; C] = std::array::from_fn(|_| rows.next().expect("C rows"));
        if C == 3 {
            let [r0, r1, r2, ..] = &mut ch[..] else { unreachable!() };
            for (((p, a), b), c) in row.chunks_exact(3).zip(r0.iter_mut()).zip(r1.iter_mut()).zip(r2.iter_mut()) {
                (*a, *b, *c) = (value(p[0]), value(p[1]), value(p[2]));
            }
        } else {
            let [r0, r1, r2, r3, ..] = &mut ch[..] else { unreachable!() };
            let quads = r0.iter_mut().zip(r1.iter_mut()).zip(r2.iter_mut().zip(r3.iter_mut()));
            for (p, ((a, b), (c, d))) in row.chunks_exact(4).zip(quads) {
                (*a, *b, *c, *d) = (value(p[0]), value(p[1]), value(p[2]), value(p[3]));
            }
        }
    }
    #[inline(always)]
    fn pack<T: Copy, const C: usize>(dst: &mut [T], planes: &[f32], w: usize, maxv: f32, sample: &impl Fn(u32) -> T) {
        let q = |v: f32| sample(quantise(v, maxv));
        let ch: Vec<&[f32]> = planes.chunks_exact(w).collect();
        if C == 3 {
            for (((d, &a), &b), &c) in dst.chunks_exact_mut(3).zip(ch[0]).zip(ch[1]).zip(ch[2]) {
                (d[0], d[1], d[2]) = (q(a), q(b), q(c));
            }
        } else {
            let quads = ch[0].iter().zip(ch[1]).zip(ch[2].iter().zip(ch[3]));
            for (d, ((&a, &b), (&c, &e))) in dst.chunks_exact_mut(4).zip(quads) {
                (d[0], d[1], d[2], d[3]) = (q(a), q(b), q(c), q(e));
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn unpack_avx2<T: Copy, const C: usize>(row: &[T], planes: &mut [f32], w: usize, value: &impl Fn(T) -> f32) {
        unpack::<T, C>(row, planes, w, value)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn pack_avx2<T: Copy, const C: usize>(
        dst: &mut [T],
        planes: &[f32],
        w: usize,
        maxv: f32,
        sample: &impl Fn(u32) -> T,
    ) {
        pack::<T, C>(dst, planes, w, maxv, sample)
    }
    fn unpack_any<T: Copy, const C: usize>(
        avx2: bool,
        row: &[T],
        planes: &mut [f32],
        w: usize,
        value: &impl Fn(T) -> f32,
    ) {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the chosen level is never above what the CPU supports.
            return unsafe { unpack_avx2::<T, C>(row, planes, w, value) };
        }
        let _ = avx2;
        unpack::<T, C>(row, planes, w, value)
    }
    fn pack_any<T: Copy + 'static, const C: usize>(
        avx2: bool,
        dst: &mut [T],
        planes: &[f32],
        w: usize,
        maxv: f32,
        sample: &impl Fn(u32) -> T,
    ) {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            if C == 3 && std::any::TypeId::of::<T>() == std::any::TypeId::of::<u8>() {
                // SAFETY: T is u8 (so maxv is 255 and `sample` the cast);
                // the level allows AVX2.
                let bytes = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u8, dst.len()) };
                return unsafe { pack_rgb8_avx2(bytes, planes, w) };
            }
            // SAFETY: as above.
            return unsafe { pack_avx2::<T, C>(dst, planes, w, maxv, sample) };
        }
        let _ = avx2;
        pack::<T, C>(dst, planes, w, maxv, sample)
    }
    let avx2 = crate::cpu::level() == crate::cpu::Level::Avx2Fma;
    // Bands of rows: the maps' rows each band reads are interpolated along
    // x once per band (not once per image row).
    const BAND: usize = 32;
    let h = l.height;
    let colour = curve.colour.min(c);
    out.par_chunks_mut(BAND * w * c).enumerate().for_each(|(k, band)| {
        let rows = first + k * BAND..first + (k * BAND + BAND).min(h);
        let mrows = curve.map_rows_for(taps, rows.clone());
        let hrows: Vec<Vec<f32>> = if taps.identity {
            Vec::new()
        } else {
            (0..colour).map(|ch| curve.map_rows(maps, taps, (0, ch), mrows.clone())).collect()
        };
        let (mut planes, mut r) = (vec![0f32; w * c], vec![0f32; w]);
        for (i, dst) in rows.zip(band.chunks_exact_mut(w * c)) {
            let row = &src[(i - first) * w * c..(i - first + 1) * w * c];
            match c {
                3 => unpack_any::<T, 3>(avx2, row, &mut planes, w, &value),
                _ => unpack_any::<T, 4>(avx2, row, &mut planes, w, &value),
            }
            for ch in 0..colour {
                let v = &mut planes[ch * w..(ch + 1) * w];
                if taps.identity {
                    curve.curve_row_identity(maps, (0, ch, i), v);
                } else {
                    curve.curve_row_from(taps, &hrows[ch], mrows.clone(), i, v, &mut r);
                }
            }
            match c {
                3 => pack_any::<T, 3>(avx2, dst, &planes, w, maxv, &sample),
                _ => pack_any::<T, 4>(avx2, dst, &planes, w, maxv, &sample),
            }
        }
    });
    out
}

/// `pack` for 8-bit RGB in AVX2: 8 pixels at a time, each channel
/// quantised as `quantise` does (clamp to 0..1, times 255, plus 0.5, a
/// separate multiply and add, truncated: a NaN lands on 0 as there), packed
/// to bytes and interleaved with two byte shuffles. The same bytes as the
/// scalar loop, which finishes the row (tests/cpu_levels.rs and the
/// enhance tests compare the levels byte for byte).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn pack_rgb8_avx2(dst: &mut [u8], planes: &[f32], w: usize) {
    use crate::kernels::pack_pixels::rgb8;
    use std::arch::x86_64::*;
    assert!(dst.len() >= 3 * w && planes.len() >= 3 * w);
    let (r, g, b) = (&planes[..w], &planes[w..2 * w], &planes[2 * w..3 * w]);
    let n8 = w / 8 * 8;
    // SAFETY (loads, stores): x + 8 <= w, so 8 floats per plane and 24
    // bytes at 3x are inside the asserted lengths.
    unsafe {
        for x in (0..n8).step_by(8) {
            let q = |p: &[f32]| rgb8::quantise8(_mm256_loadu_ps(p.as_ptr().add(x)));
            let (lo, hi) = rgb8::interleave(q(r), q(g), q(b));
            let d = dst.as_mut_ptr().add(3 * x);
            _mm_storeu_si128(d as *mut __m128i, lo);
            _mm_storel_epi64(d.add(16) as *mut __m128i, hi);
        }
    }
    for x in n8..w {
        for (c, plane) in [r, g, b].iter().enumerate() {
            dst[3 * x + c] = quantise(plane[x], 255.0) as u8;
        }
    }
}

/// Whether [`enhance_gpu`] runs an image of layout `l` in one submission
/// (otherwise in strips) when one tensor may take `max_bytes`.
pub fn enhance_fits(l: PixelLayout, max_bytes: usize) -> bool {
    l.shape().bytes() as usize <= max_bytes
}

/// Records the one-submission enhancement of an RGB(A) image of layout `l`
/// whose packed samples are in `src`: the network from the packed pixels
/// (downscaled by `s` as it reads them; `zero_dce_net`, one dispatch for a
/// small network) into the maps, then the fused upsample-and-curve pass
/// from packed pixels to packed pixels: two dispatches for Zero-DCE++ at
/// its default scale factor, and no full-resolution f32 planes.
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
    let input = NetInput::Packed { layout: l, down: ZeroDce::downscale(l.height, l.width, s)? };
    let maps = gpu.alloc(ZeroDceNet::new(model.arch.spec(), input)?.maps_shape()?)?;
    let out = gpu.take_buffer(l.bytes().next_multiple_of(4), crate::Gpu::TENSOR_USAGE);
    let mut scratch = Vec::new();
    let r = gm
        .encode(gpu, enc, input, src, &maps, &mut scratch)
        .and_then(|()| curve.encode_packed(gpu, enc, l, src, &maps, &out));
    scratch.push(maps.buffer);
    Recorded { out, out_bytes: l.bytes(), layout: l, scratch }.or_recycle(gpu, r)
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
        let x = UnpackPixels(l).cpu(&img.samples)?;
        let rgb = x.first_channels(3);
        drop(x);
        let small_host = match &down {
            Some(r) => r.cpu(&rgb)?,
            None => rgb,
        };
        let maps = gpu_maps(gpu, model, &gm, &small_host)?;
        let r = curve_band_gpu(gpu, &curve, img, 0, h, &maps, max_bytes);
        gpu.recycle(maps);
        r?
    };
    Image::new(img.width, img.height, c, Samples::from_le_bytes(l.bits, &out, l.samples()))
}

/// The network's maps for `small` (the image downscaled, host planes), on the GPU.
fn gpu_maps(gpu: &Gpu, model: &ZeroDce, gm: &GpuZeroDce, small: &Tensor) -> Result<crate::GpuTensor> {
    let up = gpu.upload(small)?;
    let maps = gpu.alloc(Shape::new(1, model.arch.maps(), small.shape.h, small.shape.w))?;
    let input = NetInput::Planes { h: small.shape.h, w: small.shape.w };
    let mut scratch = vec![up.buffer.clone()];
    let r = gpu.execute("gpuimg.enhance.maps", |enc| gm.encode(gpu, enc, input, &up.buffer, &maps, &mut scratch));
    for b in scratch {
        gpu.recycle_buffer(b);
    }
    match r {
        Ok(_) => Ok(maps),
        Err(e) => {
            gpu.recycle(maps);
            Err(e)
        }
    }
}

/// The fused upsample-and-curve pass on the GPU for `band`, rows `first..`
/// of an RGB(A) image `full_h` rows tall whose maps are `maps`, in strips
/// whose f32 tensors take at most `max_bytes`: the band's packed output.
fn curve_band_gpu(
    gpu: &Gpu,
    curve: &ZeroDceEnhance,
    band: &Image,
    first: usize,
    full_h: usize,
    maps: &crate::GpuTensor,
    max_bytes: usize,
) -> Result<Vec<u8>> {
    let l = band.layout();
    let (h, w, c) = (l.height, l.width, l.channels);
    let row_bytes = w * c * (l.bits / 8) as usize;
    let bytes = band.samples.le_bytes();
    let rows = (max_bytes / (c * w * 4).max(1)).max(1);
    let mut out = vec![0u8; row_bytes * h];
    let mut y0 = 0;
    while y0 < h {
        let y1 = (y0 + rows).min(h);
        let sl = PixelLayout { height: y1 - y0, ..l };
        let r =
            pixel_chain(gpu, "gpuimg.enhance.strip", sl, &bytes[y0 * row_bytes..y1 * row_bytes], sl, |enc, x, y| {
                curve.encode_rows(gpu, enc, x, maps, y, first + y0, full_h)
            });
        out[y0 * row_bytes..y1 * row_bytes].copy_from_slice(&r?);
        y0 = y1;
    }
    Ok(out)
}

/// Enhancement in bands ([`crate::stream::Banded`]). At s = 1 each band
/// runs whole with the network's halo. Above, two passes: the first reads
/// every band once to build the downscaled image (each of its rows from
/// the two input rows under it), the network runs once on that, and the
/// second pass curves each band with the maps sampled at its rows: the
/// whole image's output, bit for bit on the CPU, without ever holding it.
struct EnhanceBands<'a> {
    op: &'a EnhanceOp,
    full_h: usize,
    rows: usize,
    down: ResizeBilinear,
    small: Tensor,
    maps: Option<Tensor>,
    gpu_maps: Option<crate::GpuTensor>,
}

impl crate::stream::Banded for EnhanceBands<'_> {
    fn halo(&self) -> usize {
        0
    }
    fn scale(&self) -> usize {
        1
    }
    fn rows(&self) -> usize {
        self.rows
    }
    fn looks(&self) -> bool {
        true
    }
    fn check(&self, band: &Image) -> Result<()> {
        self.op.check(band)
    }
    fn look_halo(&self) -> usize {
        // A bilinear tap reads the row under it and the next.
        1
    }
    fn look(&mut self, _backend: &Backend, band: &Image, first: usize, core: Range<usize>) -> Result<()> {
        let full = Shape::new(1, 3, self.full_h, band.width as usize);
        if self.small.shape.is_empty() {
            // What the bands hold beyond their own work: the downscaled copy
            // (3 planes) and the maps, with the network's bounded work.
            let shape = self.down.out_shape(full)?;
            let planes = (3 + self.op.model.arch.maps()) as u64;
            let px = shape.h as u64 * shape.w as u64;
            let need = px * planes * 4 + BAND_NET_WORK.min(px * NET_BYTES_PER_PIXEL);
            crate::fsutil::check_memory(
                &format!(
                    "enhancing {}x{} in bands (its {}x{} downscaled copy and maps)",
                    full.w, full.h, shape.w, shape.h
                ),
                need,
            )?;
            self.small = Tensor::zeros(shape);
        }
        let (ay, _) = self.down.axes(full)?;
        let align = self.down.align_corners;
        // The downscaled rows whose upper tap is in this band's core.
        let mine: Vec<usize> = (0..self.small.shape.h).filter(|&i| core.contains(&ay.tap(i, align).0)).collect();
        if let (Some(&a), Some(&b)) = (mine.first(), mine.last()) {
            downscale_rows(band, first, self.full_h, &self.down, &mut self.small, a..b + 1)?;
        }
        Ok(())
    }
    fn looked(&mut self, backend: &Backend) -> Result<()> {
        match backend {
            Backend::Cpu => self.maps = Some(maps_cpu_bounded(&self.op.model, &self.small)?),
            Backend::Gpu(gpu) => {
                let gm = self.op.uploaded.get_or_init(|| self.op.model.upload(gpu));
                self.gpu_maps = Some(gpu_maps(gpu, &self.op.model, gm, &self.small)?);
            }
        }
        self.small = Tensor::zeros(Shape::new(1, 1, 1, 1));
        Ok(())
    }
    fn run(
        &self,
        _job: usize,
        backend: &Backend,
        band: &Image,
        first: usize,
        _out: Range<usize>,
    ) -> Result<(Image, usize)> {
        let curve = self.op.model.curve(self.op.iterations)?;
        let missing = || crate::Error::invalid("enhance", "bands run before the first pass");
        match backend {
            Backend::Cpu => {
                Ok((curve_band_cpu(&curve, band, first, self.full_h, self.maps.as_ref().ok_or_else(missing)?)?, first))
            }
            Backend::Gpu(gpu) => {
                let maps = self.gpu_maps.as_ref().ok_or_else(missing)?;
                let l = band.layout();
                let out = curve_band_gpu(gpu, &curve, band, first, self.full_h, maps, gpu.tensor_cap())?;
                let y = Image::new(
                    band.width,
                    band.height,
                    band.channels,
                    Samples::from_le_bytes(l.bits, &out, l.samples()),
                )?;
                Ok((y, first))
            }
        }
    }
}

/// Peak memory of Zero-DCE(++) enhancement of a `w` x `h` image, in bytes
/// (measured like [`sr_peak_bytes`]).
pub fn enhance_peak_bytes(w: u32, h: u32) -> u64 {
    w as u64 * h as u64 * ENHANCE_BYTES_PER_PIXEL
}
// dev-2c, 1000^2 -> 2000^2 images: 50 B/pixel.
pub(super) const ENHANCE_BYTES_PER_PIXEL: u64 = 56;

/// [`enhance`] as a streamed op: grey images become RGB on the load threads
/// and grey again on the save threads. The network's weights are uploaded
/// once, to the first GPU the op runs on: use one op per GPU.
///
/// ```
/// use gpuimg::models::{zero_dce::Arch, ZeroDce};
/// use gpuimg::{ops::EnhanceOp, stream, Backend};
/// let jobs = stream::doctest_jobs("enhance_op", "png")?; // two PNGs and a broken file
/// let op = EnhanceOp::new(ZeroDce::bundled(Arch::ZeroDcePlus)?, None, 8)?;
/// let report = stream::run_batch(&Backend::Cpu, &op, &jobs, &stream::StreamConfig::new(), &stream::Silent);
/// assert_eq!((report.images, report.failed), (2, 1));
/// assert_eq!(gpuimg::image_io::load(&jobs[0].output)?.width, 24);
/// # Ok::<(), gpuimg::Error>(())
/// ```
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

    /// The CPU path's tiles for `img`, or None to run it whole. At s = 1
    /// the network sees each pixel's 7-layer neighbourhood only (a receptive
    /// radius of [`ENHANCE_S1_HALO`]), so tiles grown by that halo give the
    /// whole image's output bit for bit; an image wider or taller than
    /// [`ENHANCE_S1_TILE`] runs in tiles of at most that size. Above s = 1
    /// a tile's maps come from the downscaled copy of the whole image: no
    /// tiles (the engine's bands build that copy in a first pass instead).
    pub fn cpu_tiles(&self, img: &Image) -> Result<Option<Vec<Tile>>> {
        let (w, h) = (img.width as usize, img.height as usize);
        if self.s(img) != 1 || (w <= ENHANCE_S1_TILE && h <= ENHANCE_S1_TILE) {
            return Ok(None);
        }
        crate::tiling::grid(w, h, ENHANCE_S1_TILE, ENHANCE_S1_TILE).map(Some)
    }
}

/// Input pixels around a tile that enhancement at s = 1 depends on: one
/// per 3x3 convolution layer of DCE-Net.
pub const ENHANCE_S1_HALO: usize = crate::models::zero_dce::LAYERS;
/// The largest tile side of the CPU path's enhancement at s = 1.
pub const ENHANCE_S1_TILE: usize = 384;

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
        let s = self.s(img);
        match self.cpu_tiles(img)? {
            Some(t) => crate::tiling::run_tiled(img, &t, ENHANCE_S1_HALO, 1, |tile| {
                enhance(&Backend::Cpu, &self.model, tile, s, self.iterations)
            }),
            None => enhance(&Backend::Cpu, &self.model, img, s, self.iterations),
        }
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
    ) -> Result<Option<Recorded>> {
        let l = img.layout();
        if !enhance_fits(l, gpu.tensor_cap()) {
            return Ok(None);
        }
        let gm = self.uploaded.get_or_init(|| self.model.upload(gpu));
        Ok(Some(record_enhance(gpu, enc, &self.model, gm, l, src, self.s(img), self.iterations)?))
    }
    fn finish(&self, channels: usize, _input: &Image, out: Image) -> Result<Image> {
        if channels <= 2 {
            rgb_to_grey(&out)
        } else {
            Ok(out)
        }
    }
    /// At s = 1, bands with the network's halo; above, the two passes of
    /// `EnhanceBands` (the first builds the downscaled image, the second
    /// curves each band).
    fn bands(&self, width: u32, height: u32) -> Option<Box<dyn crate::stream::Banded + '_>> {
        let (w, h) = (width as usize, height as usize);
        let s = self.scale_factor.unwrap_or_else(|| crate::models::zero_dce::default_scale_factor(h, w));
        let halo = ENHANCE_S1_HALO;
        let rows = crate::stream::rows_for(w as u64 * ENHANCE_BYTES_PER_PIXEL, halo);
        if s == 1 {
            return Some(Box::new(crate::stream::Local { op: self, halo, scale: 1, rows }));
        }
        let down = ZeroDce::downscale(h, w, s).ok()??;
        // Allocated by the first pass, after its memory is checked.
        let small = Tensor::zeros(Shape::new(1, 3, 0, 0));
        Some(Box::new(EnhanceBands { op: self, full_h: h, rows, down, small, maps: None, gpu_maps: None }))
    }
    /// At s = 1 only (see [`EnhanceOp::cpu_tiles`]): `parts` near-square
    /// tiles with the network's halo, or the CPU path's own tiles where
    /// those are more.
    fn split(&self, img: &Image, parts: usize) -> Result<Option<crate::tiling::Split>> {
        if self.s(img) != 1 {
            return Ok(None);
        }
        let own = self.cpu_tiles(img)?.unwrap_or_default();
        let tiles = crate::tiling::for_ranks(own, img.width as usize, img.height as usize, parts)?;
        Ok(Some(crate::tiling::Split { tiles, halo: ENHANCE_S1_HALO, scale: 1 }))
    }
}
