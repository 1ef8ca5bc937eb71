//! Low-light enhancement with Zero-DCE / Zero-DCE++: the pipeline on both
//! backends, recorded into an encoder, in strips, and as a streamed op.

use std::sync::OnceLock;

use crate::backend::Backend;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::gpu::GpuTensor;
use crate::image_io::Image;
use crate::kernels::unpack_pixels::PixelLayout;
use crate::kernels::{PackPixels, UnpackPixels};
use crate::models::zero_dce::{GpuZeroDce, ZeroDce};
use crate::stream::StreamOp;
use crate::tensor::{Samples, Shape};

use super::*;

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
}
