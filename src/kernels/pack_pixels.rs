//! Planar f32 -> interleaved u8/u16 samples, clamped to [0, 1] and rounded.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::unpack_pixels::PixelLayout;
use super::{kernel_desc, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{linear_groups, Gpu, GpuTensor};
use crate::tensor::{Samples, Tensor};

/// Params uniform of `shaders/pack_pixels.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct PackParams {
    pub pixels: u32,
    pub channels: u32,
    pub bits: u32,
    pub words: u32,
    pub n: u32,
    pub _pad: [u32; 3],
}

/// Descriptor of the `pack_pixels` kernel.
pub static DESC: KernelDesc = kernel_desc!("pack_pixels", PackParams, [Read, ReadWrite], [256, 1, 1]);

/// The pack op: the inverse of [`super::UnpackPixels`] up to rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackPixels(pub PixelLayout);

/// `floor(clamp(v, 0, 1) * max + 0.5)`, the rounding the shader uses.
#[inline]
pub fn quantise(v: f32, max: f32) -> u32 {
    // The operand is at least 0.5, so truncation is floor (and needs no libm call).
    (v.clamp(0.0, 1.0) * max + 0.5) as u32
}

impl PackPixels {
    fn check(&self, x: &Tensor) -> Result<()> {
        self.0.check()?;
        if x.shape != self.0.shape() {
            return Err(Error::invalid(
                "pack_pixels",
                format!("input is {}, layout needs {}", x.shape, self.0.shape()),
            ));
        }
        Ok(())
    }

    /// Number of u32 words the packed samples fill.
    pub fn words(&self) -> usize {
        (self.0.bytes() as usize).div_ceil(4)
    }

    /// CPU implementation, rayon over pixel rows.
    pub fn cpu(&self, x: &Tensor) -> Result<Samples> {
        self.check(x)?;
        let l = self.0;
        let (c, pix, maxv) = (l.channels, l.height * l.width, l.max_value());
        let row = l.width.max(1) * c;
        let value = |k: usize| {
            let p = k / c;
            x.data[((p / pix) * c + k % c) * pix + p % pix]
        };
        Ok(if l.bits == 8 {
            let mut s = vec![0u8; l.samples()];
            s.par_chunks_mut(row).enumerate().for_each(|(r, out)| {
                out.iter_mut().enumerate().for_each(|(i, o)| *o = quantise(value(r * row + i), maxv) as u8)
            });
            Samples::U8(s)
        } else {
            let mut s = vec![0u16; l.samples()];
            s.par_chunks_mut(row).enumerate().for_each(|(r, out)| {
                out.iter_mut().enumerate().for_each(|(i, o)| *o = quantise(value(r * row + i), maxv) as u16)
            });
            Samples::U16(s)
        })
    }

    /// Records the pack of `x` into `dst` (at least `4 * words()` bytes).
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        dst: &wgpu::Buffer,
    ) -> Result<()> {
        let l = self.0;
        l.check()?;
        if x.shape != l.shape() {
            return Err(Error::invalid("pack_pixels", format!("input is {}, layout needs {}", x.shape, l.shape())));
        }
        let words = self.words();
        if dst.size() < (words * 4) as u64 {
            return Err(Error::invalid(
                "pack_pixels",
                format!("destination holds {} bytes, needs {}", dst.size(), words * 4),
            ));
        }
        let p = PackParams {
            pixels: (l.height * l.width) as u32,
            channels: l.channels as u32,
            bits: l.bits,
            words: words as u32,
            n: l.n as u32,
            _pad: [0; 3],
        };
        gpu.dispatch(encoder, &DESC, bytemuck::bytes_of(&p), &[&x.buffer, dst], linear_groups(words, 256))
    }

    /// Runs end to end on the GPU.
    pub fn gpu(&self, gpu: &Gpu, x: &Tensor) -> Result<Samples> {
        self.check(x)?;
        let bytes = (self.words() * 4) as u64;
        gpu.check_size("packed pixels", bytes)?;
        let gx = gpu.upload(x)?;
        let dst = gpu.take_buffer(bytes, Gpu::TENSOR_USAGE);
        let r = gpu.run_and_read("gpuimg.pack_pixels", bytes, |enc| {
            self.encode(gpu, enc, &gx, &dst)?;
            Ok(dst.clone())
        });
        gpu.recycle(gx);
        gpu.recycle_buffer(dst);
        Ok(Samples::from_le_bytes(self.0.bits, &r?, self.0.samples()))
    }
}
