//! Planar f32 -> interleaved u8/u16 samples, clamped to [0, 1] and rounded.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::contract::{bench_rng, gpu_planes, planes, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance};
use super::unpack_pixels::PixelLayout;
use super::{kernel_desc, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{linear_groups, Gpu, GpuTensor};
use crate::rng::SplitMix;
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
pub static DESC: KernelDesc = kernel_desc!("pack_pixels", PackParams, [Read, ReadWrite], [256, 1, 1], ["linear_index"]);

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

    /// CPU implementation, rayon over pixel rows: each row interleaves the
    /// same row of every channel plane.
    pub fn cpu(&self, x: &Tensor) -> Result<Samples> {
        self.check(x)?;
        let l = self.0;
        Ok(if l.bits == 8 {
            Samples::U8(self.interleave(x, |v| v as u8))
        } else {
            Samples::U16(self.interleave(x, |v| v as u16))
        })
    }

    fn interleave<T: Copy + Default + Send>(&self, x: &Tensor, sample: impl Fn(u32) -> T + Sync) -> Vec<T> {
        let l = self.0;
        let (c, w, maxv) = (l.channels, l.width, l.max_value());
        let mut s = vec![T::default(); l.samples()];
        if w == 0 || l.height == 0 {
            return s;
        }
        s.par_chunks_mut(w * c).with_min_len(super::rows_per_task(w * c)).enumerate().for_each(|(r, out)| {
            let (b, y) = (r / l.height, r % l.height);
            for ch in 0..c {
                let plane = &x.data[((b * c + ch) * l.height + y) * w..][..w];
                for (o, &v) in out[ch..].iter_mut().step_by(c).zip(plane) {
                    *o = sample(quantise(v, maxv));
                }
            }
        });
        s
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
}

impl Kernel for PackPixels {
    fn desc(&self) -> &'static KernelDesc {
        &DESC
    }
    fn output(&self, inputs: &[&Data]) -> Result<Output> {
        let [x] = planes(DESC.name, inputs)?;
        self.check(x)?;
        Ok(Output::Packed { bits: self.0.bits, len: self.0.samples() })
    }
    fn cpu(&self, inputs: &[&Data]) -> Result<Data> {
        let [x] = planes(DESC.name, inputs)?;
        Ok(Data::Packed(PackPixels::cpu(self, x)?))
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        let [x] = gpu_planes(DESC.name, inputs)?;
        PackPixels::encode(self, gpu, encoder, x, out.buffer())
    }
}

/// The registry line of `pack_pixels`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    for channels in 1..=4 {
        for bits in [8, 16] {
            let l = PixelLayout { n: 2, height: h, width: w, channels, bits };
            // Past both ends of [0, 1] so clamping is exercised.
            let x = rng.planes(l.shape(), -0.1, 1.1);
            // Integer output: bit-exact. (A value within an ulp of a rounding
            // tie could round either way with FMA; random inputs essentially never land there.)
            cases.push(Case::new(format!("{l:?}"), PackPixels(l), vec![x], Tolerance::EXACT));
        }
    }
    cases
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let l = PixelLayout { n: 1, height: h, width: w, channels: 4, bits: 8 };
    let x = bench_rng().planes(l.shape(), 0.0, 1.0);
    Ok(Case::new("8-bit RGBA", PackPixels(l), vec![x], Tolerance::EXACT))
}
