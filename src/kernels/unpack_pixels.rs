//! Interleaved u8/u16 samples -> planar f32 in [0, 1].

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::contract::{bench_rng, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance};
use super::{kernel_desc, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{linear_groups, Gpu, GpuTensor};
use crate::rng::SplitMix;
use crate::tensor::{Samples, Tensor};

/// Params uniform of `shaders/unpack_pixels.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
pub struct UnpackParams {
    pub pixels: u32,
    pub channels: u32,
    pub bits: u32,
    pub n: u32,
}

/// Descriptor of the `unpack_pixels` kernel.
pub static DESC: KernelDesc =
    kernel_desc!("unpack_pixels", UnpackParams, [Read, ReadWrite], [256, 1, 1], ["linear_index"]);

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
        crate::gpu::check_buffer(DESC.name, "packed source", src, l.bytes())?;
        let p = UnpackParams { pixels: pixels as u32, channels: l.channels as u32, bits: l.bits, n: l.n as u32 };
        gpu.dispatch(
            encoder,
            &DESC,
            bytemuck::bytes_of(&p),
            &[src, y.buf(DESC.name)?],
            linear_groups(l.n * pixels, 256),
        )
    }
}

impl Kernel for UnpackPixels {
    fn desc(&self) -> &'static KernelDesc {
        &DESC
    }
    fn output(&self, inputs: &[&Data]) -> Result<Output> {
        super::contract::count(DESC.name, inputs.len(), 1)?;
        self.check(inputs[0].packed(DESC.name, 0)?)?;
        Ok(Output::Planes(self.0.shape()))
    }
    fn cpu(&self, inputs: &[&Data]) -> Result<Data> {
        super::contract::count(DESC.name, inputs.len(), 1)?;
        Ok(Data::Planes(UnpackPixels::cpu(self, inputs[0].packed(DESC.name, 0)?)?))
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        super::contract::count(DESC.name, inputs.len(), 1)?;
        UnpackPixels::encode(self, gpu, encoder, inputs[0].buffer(), out.planes(DESC.name, 0)?)
    }
}

/// The registry line of `unpack_pixels`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    for channels in 1..=4 {
        for bits in [8, 16] {
            let l = PixelLayout { n: 2, height: h, width: w, channels, bits };
            let s = Data::Packed(rng.samples(l));
            // One division of an integer: within 1e-7 of the correctly rounded value.
            cases.push(Case::new(format!("{l:?}"), UnpackPixels(l), vec![s], Tolerance { abs: 1e-7, rel: 0.0 }));
        }
    }
    cases
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let l = PixelLayout { n: 1, height: h, width: w, channels: 4, bits: 8 };
    let s = Data::Packed(bench_rng().samples(l));
    Ok(Case::new("8-bit RGBA", UnpackPixels(l), vec![s], Tolerance { abs: 1e-7, rel: 0.0 }))
}
