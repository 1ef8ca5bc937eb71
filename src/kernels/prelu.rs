//! PReLU with one slope per channel.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::{kernel_desc, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{linear_groups, Gpu, GpuTensor};
use crate::tensor::{Shape, Tensor};

/// Params uniform of `shaders/prelu.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct PreluParams {
    pub len: u32,
    pub channels: u32,
    pub plane: u32,
    pub _pad: u32,
}

/// Descriptor of the `prelu` kernel.
pub static DESC: KernelDesc = kernel_desc!("prelu", PreluParams, [Read, Read, ReadWrite], [256, 1, 1]);

/// PReLU: `y = x >= 0 ? x : a[c] * x`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prelu;

impl Prelu {
    fn check(shape: Shape, slopes: usize) -> Result<()> {
        if slopes != shape.c {
            return Err(Error::invalid("prelu", format!("{slopes} slopes for {} channels", shape.c)));
        }
        Ok(())
    }

    /// CPU implementation, rayon over planes.
    pub fn cpu(&self, x: &Tensor, slopes: &[f32]) -> Result<Tensor> {
        Self::check(x.shape, slopes.len())?;
        let mut y = x.clone();
        let (plane, c) = (x.shape.plane().max(1), x.shape.c);
        y.data.par_chunks_mut(plane).enumerate().for_each(|(i, p)| {
            let a = slopes[i % c];
            p.iter_mut().for_each(|v| *v = if *v >= 0.0 { *v } else { a * *v });
        });
        Ok(y)
    }

    /// Records PReLU into `encoder`.
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        slopes: &wgpu::Buffer,
        y: &GpuTensor,
    ) -> Result<()> {
        y.expect_shape("prelu", x.shape)?;
        let s = x.shape;
        let p = PreluParams { len: s.len() as u32, channels: s.c as u32, plane: s.plane().max(1) as u32, _pad: 0 };
        gpu.dispatch(
            encoder,
            &DESC,
            bytemuck::bytes_of(&p),
            &[&x.buffer, slopes, &y.buffer],
            linear_groups(s.len(), 256),
        )
    }

    /// Runs end to end on the GPU.
    pub fn gpu(&self, gpu: &Gpu, x: &Tensor, slopes: &[f32]) -> Result<Tensor> {
        Self::check(x.shape, slopes.len())?;
        let a = gpu.constant("gpuimg.prelu.slopes", slopes);
        gpu.run_tensors("gpuimg.prelu", &[x], x.shape, |enc, ins, y| self.encode(gpu, enc, &ins[0], &a, y))
    }
}
