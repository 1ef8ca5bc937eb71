//! Both stages of TinyPSSR x4 in one dispatch, the stage-1 result kept in
//! workgroup memory (see `shaders/tinypssr_x4_fused.wgsl`): packed pixels in,
//! packed pixels out, no f32 planes in global memory. CPU twin: the
//! `tinypssr_fused` kernel's [`stage_cpu`] twice.

use bytemuck::{Pod, Zeroable};

use super::contract::{bench_rng, count, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance};
use super::tinypssr_fused::{stage_cpu, FLAT_LEN};
use super::{kernel_desc, KernelDesc, PackPixels, UnpackPixels};
use crate::error::{Error, Result};
use crate::gpu::{grid_groups, Gpu};
use crate::pixel::PixelLayout;
use crate::rng::SplitMix;
use crate::tensor::{Shape, Tensor};

/// Params uniform of `shaders/tinypssr_x4_fused.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
pub struct X4Params {
    pub w: u32,
    pub h: u32,
    pub channels: u32,
    pub colour: u32,
    pub bits: u32,
    pub _pad: [u32; 3],
}

/// Descriptor of the `tinypssr_x4_fused` kernel.
pub static DESC: KernelDesc = kernel_desc!("tinypssr_x4_fused", X4Params, [Read, Read, ReadWrite], [8, 8, 1]);

/// The x4 op on packed samples of `layout` (one image): the first `colour`
/// channels through the network, the others left zero (the caller fills alpha).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TinyPssrX4 {
    /// The input's layout.
    pub layout: PixelLayout,
    /// Channels run through the network.
    pub colour: usize,
}

impl TinyPssrX4 {
    fn check(&self) -> Result<()> {
        let l = self.layout;
        if l.n != 1
            || !(1..=4).contains(&l.channels)
            || !(1..=l.channels).contains(&self.colour)
            || !(l.bits == 8 || l.bits == 16)
        {
            return Err(Error::invalid("tinypssr_x4_fused", format!("bad layout {l:?} / colour {}", self.colour)));
        }
        Ok(())
    }

    /// The output's layout.
    pub fn out_layout(&self) -> PixelLayout {
        PixelLayout { height: self.layout.height * 4, width: self.layout.width * 4, ..self.layout }
    }

    /// Records the op: `src` (packed) to `dst` (cleared here first), with
    /// `weights` both stages' flat weights back to back (2 x [`FLAT_LEN`]).
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        weights: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Result<()> {
        self.check()?;
        let out = self.out_layout().bytes().next_multiple_of(4);
        if dst.size() < out || weights.size() < (2 * FLAT_LEN * 4) as u64 {
            return Err(Error::invalid("tinypssr_x4_fused", "output or weight buffer too small"));
        }
        let l = self.layout;
        let p = X4Params {
            w: l.width as u32,
            h: l.height as u32,
            channels: l.channels as u32,
            colour: self.colour as u32,
            bits: l.bits,
            _pad: [0; 3],
        };
        crate::gpu::clear_buffer(DESC.name, encoder, dst, 0, None)?;
        gpu.dispatch(encoder, &DESC, bytemuck::bytes_of(&p), &[src, weights, dst], grid_groups(l.width, l.height, 1))
    }

    /// The CPU twin: unpack, [`stage_cpu`] twice per colour plane, pack (the
    /// other channels zero, as the shader leaves them).
    pub fn cpu(&self, samples: &crate::tensor::Samples, weights: &[f32]) -> Result<crate::tensor::Samples> {
        self.check()?;
        if weights.len() != 2 * FLAT_LEN {
            return Err(Error::invalid(
                "tinypssr_x4_fused",
                format!("{} weights, expected {}", weights.len(), 2 * FLAT_LEN),
            ));
        }
        let l = self.layout;
        let all = UnpackPixels(l).cpu(samples)?;
        let colour = Tensor::from_vec(
            Shape::new(self.colour, 1, l.height, l.width),
            all.data[..self.colour * l.height * l.width].to_vec(),
        )?;
        let y = stage_cpu(&weights[FLAT_LEN..], &stage_cpu(&weights[..FLAT_LEN], &colour)?)?;
        let o = self.out_layout();
        let mut data = y.data;
        data.resize(o.samples(), 0.0);
        PackPixels(o).cpu(&Tensor::from_vec(o.shape(), data)?)
    }
}

impl Kernel for TinyPssrX4 {
    fn desc(&self) -> &'static KernelDesc {
        &DESC
    }
    fn output(&self, inputs: &[&Data]) -> Result<Output> {
        count(DESC.name, inputs.len(), 2)?;
        self.check()?;
        Ok(Output::Packed { bits: self.layout.bits, len: self.out_layout().samples() })
    }
    fn cpu(&self, inputs: &[&Data]) -> Result<Data> {
        count(DESC.name, inputs.len(), 2)?;
        let s = inputs[0].packed(DESC.name, 0)?;
        Ok(Data::Packed(TinyPssrX4::cpu(self, s, &inputs[1].planes(DESC.name, 1)?.data)?))
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        count(DESC.name, inputs.len(), 2)?;
        TinyPssrX4::encode(self, gpu, encoder, inputs[0].buffer(), inputs[1].buffer(), out.buffer())
    }
}

/// The registry line of `tinypssr_x4_fused`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    // The software adapter runs a 256x256 x4 for minutes: cap the input.
    let (w, h) = (w.min(48), h.min(40));
    let mut cases = Vec::new();
    // One level after rounding (the channels past `colour` stay zero).
    for (channels, bits) in [(3, 8), (4, 16), (1, 8)] {
        let layout = PixelLayout { n: 1, height: h, width: w, channels, bits };
        let op = TinyPssrX4 { layout, colour: channels.min(3) };
        let x = Data::Packed(rng.samples(layout));
        let weights = rng.constants(2 * FLAT_LEN, -0.2, 0.2);
        let what = format!("packed {channels}x{bits}-bit {w}x{h}");
        cases.push(Case::new(what, op, vec![x, weights], Tolerance { abs: 1.0, rel: 0.0 }));
    }
    cases
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let layout = PixelLayout { n: 1, height: h, width: w, channels: 3, bits: 8 };
    let mut rng = bench_rng();
    let x = Data::Packed(rng.samples(layout));
    let weights = rng.constants(2 * FLAT_LEN, -0.2, 0.2);
    Ok(Case::new(
        "x4, both stages, 8-bit RGB",
        TinyPssrX4 { layout, colour: 3 },
        vec![x, weights],
        Tolerance { abs: 1.0, rel: 0.0 },
    ))
}
