//! Image-level operations on a [`crate::Backend`]: decode-side unpack, kernels, and
//! pack, chained so the GPU path moves only packed integer pixels across the
//! bus and runs in one submission.
//!
//! One file per pipeline: `resize`, `sr` (TinyPSSR), `enhance` (Zero-DCE);
//! here the pieces they share (the unpack-kernel-pack chain, grey/RGB).

use crate::error::Result;
use crate::gpu::GpuTensor;
use crate::image_io::Image;
use crate::kernels::unpack_pixels::PixelLayout;
use crate::kernels::{PackPixels, UnpackPixels};
use crate::tensor::Samples;

mod enhance;
mod resize;
mod sr;

pub use enhance::*;
pub use resize::*;
pub use sr::*;

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
    Ok(Recorded { out: dst, out_bytes: outl.bytes(), layout: outl, scratch: vec![x.buffer, y.buffer] })
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
