//! Interleaved u8/u16 samples -> planar f32 in [0, 1].

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::{kernel_desc, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{linear_groups, Gpu, GpuTensor};
use crate::tensor::{Samples, Tensor};

/// Params uniform of `shaders/unpack_pixels.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct UnpackParams {
    pub pixels: u32,
    pub channels: u32,
    pub bits: u32,
    pub n: u32,
}

/// Descriptor of the `unpack_pixels` kernel.
pub static DESC: KernelDesc = kernel_desc!("unpack_pixels", UnpackParams, [Read, ReadWrite], [256, 1, 1]);

pub use crate::pixel::PixelLayout;

/// The unpack op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackPixels(pub PixelLayout);

impl UnpackPixels {
    fn check(&self, samples: &Samples) -> Result<()> {
        let l = self.0;
        l.check()?;
        if samples.bits() != l.bits || samples.len() != l.samples() {
            return Err(Error::invalid(
                "unpack_pixels",
                format!("{} samples of {} bits for layout {l:?}", samples.len(), samples.bits()),
            ));
        }
        Ok(())
    }

    /// CPU implementation, rayon over planes.
    pub fn cpu(&self, samples: &Samples) -> Result<Tensor> {
        self.check(samples)?;
        let l = self.0;
        let (c, pix) = (l.channels, l.height * l.width);
        let mut y = Tensor::zeros(l.shape());
        if pix == 0 {
            return Ok(y);
        }
        let maxv = l.max_value();
        y.data.par_chunks_mut(pix).enumerate().for_each(|(bc, plane)| {
            let (b, ch) = (bc / c, bc % c);
            let base = b * pix * c + ch;
            match samples {
                Samples::U8(s) => plane.iter_mut().enumerate().for_each(|(k, v)| *v = s[base + k * c] as f32 / maxv),
                Samples::U16(s) => plane.iter_mut().enumerate().for_each(|(k, v)| *v = s[base + k * c] as f32 / maxv),
            }
        });
        Ok(y)
    }

    /// Records the unpack of packed samples (`src`, as uploaded by
    /// [`Gpu::upload_bytes`] from [`Samples::to_le_bytes`]) into `y`.
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        y: &GpuTensor,
    ) -> Result<()> {
        let l = self.0;
        l.check()?;
        y.expect_shape("unpack_pixels", l.shape())?;
        let pixels = l.height * l.width;
        let p = UnpackParams { pixels: pixels as u32, channels: l.channels as u32, bits: l.bits, n: l.n as u32 };
        gpu.dispatch(encoder, &DESC, bytemuck::bytes_of(&p), &[src, &y.buffer], linear_groups(l.n * pixels, 256))
    }

    /// Runs end to end on the GPU: upload the packed bytes, unpack, read back.
    pub fn gpu(&self, gpu: &Gpu, samples: &Samples) -> Result<Tensor> {
        self.check(samples)?;
        let shape = self.0.shape();
        let src = gpu.upload_bytes(&samples.le_bytes())?;
        let y = gpu.alloc(shape)?;
        let r = gpu.run_and_read("gpuimg.unpack_pixels", shape.bytes(), |enc| {
            self.encode(gpu, enc, &src, &y)?;
            Ok(y.buffer.clone())
        });
        gpu.recycle_buffer(src);
        gpu.recycle(y);
        Tensor::from_vec(shape, bytemuck::pod_collect_to_vec(&r?))
    }
}
