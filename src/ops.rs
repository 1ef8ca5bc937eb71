//! Image-level operations on a [`Backend`]: decode-side unpack, kernels, and
//! pack, chained so the GPU path moves only packed integer pixels across the
//! bus and runs in one submission.

use crate::backend::Backend;
use crate::error::Result;
use crate::image_io::Image;
use crate::kernels::unpack_pixels::PixelLayout;
use crate::kernels::{PackPixels, ResizeBilinear, UnpackPixels};
use crate::tensor::Samples;

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
            let src = gpu.upload_bytes(&img.samples.to_le_bytes())?;
            let x = gpu.alloc(inl.shape())?;
            let y = gpu.alloc(out_shape)?;
            let pack = PackPixels(outl);
            let packed_bytes = (pack.words() * 4) as u64;
            let dst = gpu.take_buffer(packed_bytes, crate::Gpu::TENSOR_USAGE);
            let r = gpu.run_and_read("gpuimg.resize_image", packed_bytes, |enc| {
                UnpackPixels(inl).encode(gpu, enc, &src, &x)?;
                resize.encode(gpu, enc, &x, &y)?;
                pack.encode(gpu, enc, &y, &dst)?;
                Ok(dst.clone())
            });
            gpu.recycle_buffer(src);
            gpu.recycle(x);
            gpu.recycle(y);
            gpu.recycle_buffer(dst);
            Samples::from_le_bytes(outl.bits, &r?, outl.samples())
        }
    };
    Image::new(outl.width as u32, outl.height as u32, outl.channels, samples)
}
