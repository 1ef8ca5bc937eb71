//! Resizing packed images (bilinear) on either backend, in strips where an
//! image is larger than one binding, recorded or streamed.

use crate::backend::Backend;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::image_io::Image;
use crate::kernels::unpack_pixels::PixelLayout;
use crate::kernels::{PackPixels, ResizeBilinear, UnpackPixels};
use crate::stream::StreamOp;
use crate::tensor::Samples;

use super::*;

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

pub(super) fn resize_gpu_strips(gpu: &Gpu, img: &Image, resize: &ResizeBilinear, cap: usize) -> Result<Image> {
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
    ) -> Result<Option<Recorded>> {
        // One unpack, one resize and one pack over an (N, C, H, W) batch.
        let l = PixelLayout { n: imgs.len(), ..imgs[0].layout() };
        let outl = resize_layout(l, &self.0)?;
        if l.shape().bytes().max(outl.shape().bytes()) > gpu.tensor_cap() as u64 {
            // Alone, the blocking path runs it in strips; a group is recorded image by image.
            return Ok(None);
        }
        Ok(Some(record_resize(gpu, enc, &self.0, l, src)?))
    }
}
