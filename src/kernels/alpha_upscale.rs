//! The alpha channel of packed pixels upscaled by an integer factor with
//! MATLAB's bicubic `imresize` ([`crate::resample::upscale`]), written into
//! the alpha samples of an upscaled image whose colour is already there:
//! what super-resolution does with alpha (the fused TinyPSSR kernels leave
//! it zero), on the GPU without a trip through the host.

use bytemuck::{Pod, Zeroable};

use super::contract::{bench_rng, count, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance};
use super::pack_pixels::quantise;
use super::{kernel_desc, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{check_buffer, linear_groups, Gpu};
use crate::pixel::PixelLayout;
use crate::rng::SplitMix;
use crate::tensor::{Samples, Shape, Tensor};

/// Params uniform of `shaders/alpha_upscale.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
pub struct AlphaParams {
    pub w: u32,
    pub h: u32,
    pub channels: u32,
    pub bits: u32,
    pub f: u32,
    pub words: u32,
    pub _pad: [u32; 2],
}

/// Descriptor of the `alpha_upscale` kernel.
pub static DESC: KernelDesc =
    kernel_desc!("alpha_upscale", AlphaParams, [Read, ReadWrite], [256, 1, 1], ["linear_index"]);

/// The op: `layout` is the input (one image with alpha: 2 or 4 channels),
/// `factor` the integer scale of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlphaUpscale {
    /// Layout of the input samples (`n` = 1).
    pub layout: PixelLayout,
    /// Integer upscale factor, 1..=8.
    pub factor: usize,
}

impl AlphaUpscale {
    /// Layout of the upscaled image.
    pub fn out_layout(&self) -> PixelLayout {
        let l = self.layout;
        PixelLayout { height: l.height * self.factor, width: l.width * self.factor, ..l }
    }

    fn check(&self) -> Result<()> {
        let l = self.layout;
        l.check()?;
        if l.n != 1 || !(l.channels == 2 || l.channels == 4) {
            return Err(Error::invalid(
                "alpha_upscale",
                format!("one image with alpha (2 or 4 channels) expected, got {l:?}"),
            ));
        }
        if !(1..=8).contains(&self.factor) {
            return Err(Error::invalid("alpha_upscale", format!("factor {} is not 1..=8", self.factor)));
        }
        let o = self.out_layout();
        if o.samples() > u32::MAX as usize / 2 {
            return Err(Error::invalid("alpha_upscale", format!("{o:?} is too large for one dispatch")));
        }
        Ok(())
    }

    fn check_samples(&self, what: &str, s: &Samples, l: PixelLayout) -> Result<()> {
        if s.bits() != l.bits || s.len() != l.samples() {
            return Err(Error::invalid(
                "alpha_upscale",
                format!("{what}: {} samples of {} bits for layout {l:?}", s.len(), s.bits()),
            ));
        }
        Ok(())
    }

    /// Words of the upscaled image's packed samples.
    pub fn words(&self) -> usize {
        (self.out_layout().bytes() as usize).div_ceil(4)
    }

    /// CPU twin: `up` (the upscaled image, colour filled in) with its alpha
    /// replaced by `src`'s alpha upscaled by [`crate::resample::upscale`],
    /// clamped and rounded as [`super::PackPixels`] does.
    pub fn cpu(&self, src: &Samples, up: &Samples) -> Result<Samples> {
        self.check()?;
        let (l, o) = (self.layout, self.out_layout());
        self.check_samples("input", src, l)?;
        self.check_samples("upscaled image", up, o)?;
        let c = l.channels;
        let maxv = l.max_value();
        let alpha: Vec<f32> = match src {
            Samples::U8(s) => s[c - 1..].iter().step_by(c).map(|&v| v as f32 / maxv).collect(),
            Samples::U16(s) => s[c - 1..].iter().step_by(c).map(|&v| v as f32 / maxv).collect(),
        };
        let alpha = Tensor { shape: Shape::new(1, 1, l.height, l.width), data: alpha };
        let a = crate::resample::upscale(&alpha, self.factor);
        let mut out = up.clone();
        match &mut out {
            Samples::U8(s) => {
                s[c - 1..].iter_mut().step_by(c).zip(&a.data).for_each(|(o, &v)| *o = quantise(v, maxv) as u8)
            }
            Samples::U16(s) => {
                s[c - 1..].iter_mut().step_by(c).zip(&a.data).for_each(|(o, &v)| *o = quantise(v, maxv) as u16)
            }
        }
        Ok(out)
    }

    /// Records the alpha of `src` (packed input samples) upscaled into the
    /// alpha samples of `dst` (packed upscaled samples, at least
    /// `4 * words()` bytes), leaving its colour samples as they are.
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Result<()> {
        self.check()?;
        let l = self.layout;
        check_buffer(DESC.name, "input", src, l.bytes())?;
        check_buffer(DESC.name, "output", dst, (self.words() * 4) as u64)?;
        let p = AlphaParams {
            w: l.width as u32,
            h: l.height as u32,
            channels: l.channels as u32,
            bits: l.bits,
            f: self.factor as u32,
            words: self.words() as u32,
            _pad: [0; 2],
        };
        gpu.dispatch(encoder, &DESC, bytemuck::bytes_of(&p), &[src, dst], linear_groups(self.words(), 256))
    }
}

impl Kernel for AlphaUpscale {
    fn desc(&self) -> &'static KernelDesc {
        &DESC
    }
    /// Inputs: the packed input image and the packed upscaled image (its
    /// colour); output: the upscaled image with its alpha filled in.
    fn output(&self, inputs: &[&Data]) -> Result<Output> {
        count(DESC.name, inputs.len(), 2)?;
        self.check()?;
        let (src, up) = (inputs[0].packed(DESC.name, 0)?, inputs[1].packed(DESC.name, 1)?);
        self.check_samples("input", src, self.layout)?;
        self.check_samples("upscaled image", up, self.out_layout())?;
        Ok(Output::Packed { bits: self.layout.bits, len: self.out_layout().samples() })
    }
    fn cpu(&self, inputs: &[&Data]) -> Result<Data> {
        count(DESC.name, inputs.len(), 2)?;
        Ok(Data::Packed(AlphaUpscale::cpu(self, inputs[0].packed(DESC.name, 0)?, inputs[1].packed(DESC.name, 1)?)?))
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        count(DESC.name, inputs.len(), 2)?;
        // The colour comes from the second input; the kernel rewrites alpha in place.
        let (up, dst) = (inputs[1].buffer(), out.buffer());
        check_buffer(DESC.name, "output", dst, up.size())?;
        encoder.copy_buffer_to_buffer(up, 0, dst, 0, up.size());
        AlphaUpscale::encode(self, gpu, encoder, inputs[0].buffer(), dst)
    }
}

/// The registry line of `alpha_upscale`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    for channels in [2, 4] {
        for bits in [8, 16] {
            for factor in [2, 3, 4] {
                if w * h > 4096 && factor == 3 {
                    continue;
                }
                let layout = PixelLayout { n: 1, height: h, width: w, channels, bits };
                let op = AlphaUpscale { layout, factor };
                let (src, up) = (rng.samples(layout), rng.samples(op.out_layout()));
                // Bicubic sums in f32 in another order than the CPU's two
                // passes: a value within an ulp of a rounding tie may round
                // the other way.
                let tol = Tolerance { abs: 1.0, rel: 0.0 };
                cases.push(Case::new(
                    format!("{layout:?} x{factor}"),
                    op,
                    vec![Data::Packed(src), Data::Packed(up)],
                    tol,
                ));
            }
        }
    }
    cases
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let layout = PixelLayout { n: 1, height: h, width: w, channels: 4, bits: 8 };
    let op = AlphaUpscale { layout, factor: 2 };
    let mut rng = bench_rng();
    let (src, up) = (rng.samples(layout), rng.samples(op.out_layout()));
    Ok(Case::new("8-bit RGBA x2", op, vec![Data::Packed(src), Data::Packed(up)], Tolerance { abs: 1.0, rel: 0.0 }))
}
