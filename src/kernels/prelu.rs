//! PReLU with one slope per channel.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::contract::{
    bench_rng, constants, gpu_planes, planes, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance,
};
use super::{kernel_desc, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{linear_groups, Gpu, GpuTensor};
use crate::rng::SplitMix;
use crate::tensor::{Shape, Tensor};

/// Params uniform of `shaders/prelu.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
pub struct PreluParams {
    pub len: u32,
    pub channels: u32,
    pub plane: u32,
    pub _pad: u32,
}

/// Descriptor of the `prelu` kernel.
pub static DESC: KernelDesc =
    kernel_desc!("prelu", PreluParams, [Read, Read, ReadWrite], [256, 1, 1], ["linear_index"]);

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
        let mut y = x.clone();
        self.cpu_in_place(&mut y, slopes)?;
        Ok(y)
    }

    /// [`Prelu::cpu`] overwriting its input (inference chains that do not
    /// keep the pre-activation tensor: no copy).
    pub fn cpu_in_place(&self, x: &mut Tensor, slopes: &[f32]) -> Result<()> {
        Self::check(x.shape, slopes.len())?;
        let (plane, c) = (x.shape.plane().max(1), x.shape.c);
        x.data.par_chunks_mut(plane).enumerate().for_each(|(i, p)| {
            let a = slopes[i % c];
            p.iter_mut().for_each(|v| *v = if *v >= 0.0 { *v } else { a * *v });
        });
        Ok(())
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
        crate::gpu::check_buffer(DESC.name, "slopes", slopes, (s.c * 4) as u64)?;
        let p = PreluParams { len: s.len() as u32, channels: s.c as u32, plane: s.plane().max(1) as u32, _pad: 0 };
        gpu.dispatch(
            encoder,
            &DESC,
            bytemuck::bytes_of(&p),
            &[x.buf(DESC.name)?, slopes, y.buf(DESC.name)?],
            linear_groups(s.len(), 256),
        )
    }
}

impl Kernel for Prelu {
    fn desc(&self) -> &'static KernelDesc {
        &DESC
    }
    fn output(&self, inputs: &[&Data]) -> Result<Output> {
        let [x, a] = planes(DESC.name, inputs)?;
        Self::check(x.shape, a.data.len())?;
        Ok(Output::Planes(x.shape))
    }
    fn cpu(&self, inputs: &[&Data]) -> Result<Data> {
        let [x, a] = planes(DESC.name, inputs)?;
        Ok(Data::Planes(Prelu::cpu(self, x, &a.data)?))
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        let [x, a] = gpu_planes(DESC.name, inputs)?;
        Self::check(x.shape, a.shape.len())?;
        Prelu::encode(self, gpu, encoder, x, &a.buffer, out.planes(DESC.name, 0)?)
    }
}

/// The registry line of `prelu`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let x = rng.planes(Shape::new(2, 5, h, w), -2.0, 2.0);
    let a = rng.constants(5, -0.5, 0.5);
    // One multiply or a copy: bit-exact.
    vec![Case::new(format!("{w}x{h}"), Prelu, vec![x, a], Tolerance::EXACT)]
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let x = bench_rng().planes(Shape::new(1, 16, h, w), -1.0, 1.0);
    Ok(Case::new("16 channels", Prelu, vec![x, constants(vec![0.25; 16])], Tolerance::EXACT))
}
