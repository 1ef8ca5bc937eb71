//! The codec's latent quantisation on the GPU (see
//! `shaders/tinycompress_quant.wgsl`): the latents and the channel-range
//! keys the last encoding block gathers, to the ranges and the codes as
//! bytes, so only the codes cross the bus. The arithmetic is the codec's
//! ([`crate::codec::quantise`] calls [`range_keys`] and [`codes_in`]).

use bytemuck::{Pod, Zeroable};

use super::contract::{bench_rng, count, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance};
use super::{kernel_desc, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{linear_groups, Gpu};
use crate::rng::SplitMix;
use crate::tensor::{Samples, Shape, Tensor};

/// Params uniform of `shaders/tinycompress_quant.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
pub struct QuantParams {
    pub plane: u32,
    pub top: u32,
    pub words: u32,
    pub _pad: u32,
}

/// Descriptor of the `tinycompress_quant` kernel.
pub static DESC: KernelDesc =
    kernel_desc!("tinycompress_quant", QuantParams, [Read, ReadWrite], [256, 1, 1], ["linear_index"]);

/// Bytes of ranges before the codes in the output: six f32.
pub const RANGE_BYTES: usize = 24;

/// The order key of a float: unsigned order of keys is the order of the
/// floats (negative values complemented, positive ones with the sign bit
/// set), so an atomic maximum over keys finds the largest value.
pub fn key(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The float whose [`key`] is `k`.
pub fn unkey(k: u32) -> f32 {
    f32::from_bits(if k & 0x8000_0000 != 0 { k & 0x7fff_ffff } else { !k })
}

/// One channel's keys: the largest [`key`] of `v`, and the largest
/// complement of a key (the smallest value's, complemented), so both
/// extremes come from one maximum each, as the kernel's atomics find them.
pub fn channel_keys(v: &[f32]) -> (u32, u32) {
    v.iter().fold((0, 0), |(hi, not_lo), &x| (hi.max(key(x)), not_lo.max(!key(x))))
}

/// The six keys the last encoding block leaves after the latents (3 planes):
/// the largest key of each channel, then the complement of the smallest.
pub fn range_keys(latents: &[f32]) -> [u32; 6] {
    let plane = latents.len() / 3;
    let mut k = [0u32; 6];
    for c in 0..3 {
        (k[c], k[3 + c]) = channel_keys(&latents[c * plane..(c + 1) * plane]);
    }
    k
}

/// The (minimum, maximum) that [`channel_keys`] stand for; (0, 0) unless
/// both are finite (no values, or a NaN or infinity among them).
pub fn range_from(hi: u32, not_lo: u32) -> (f32, f32) {
    let (lo, hi) = (unkey(!not_lo), unkey(hi));
    if lo.is_finite() && hi.is_finite() {
        (lo, hi)
    } else {
        (0.0, 0.0)
    }
}

/// Channel `c`'s (minimum, maximum) from the six keys ([`range_from`]).
pub fn range_of(keys: &[u32; 6], c: usize) -> (f32, f32) {
    range_from(keys[c], keys[3 + c])
}

/// Planar latents (3 channels) to `bitplanes`-bit codes within `ranges`:
/// min-max normalised to 0..=255 and rounded, then the top `bitplanes` bits
/// kept, rounded.
pub fn codes_in(latents: &[f32], ranges: &[(f32, f32)], bitplanes: u32) -> Vec<u8> {
    let channels = ranges.len().max(1);
    let plane = latents.len() / channels;
    let top = (1u32 << bitplanes) - 1;
    let mut codes = Vec::with_capacity(latents.len());
    for (c, &(lo, hi)) in ranges.iter().enumerate() {
        let span = hi - lo;
        codes.extend(latents[c * plane..(c + 1) * plane].iter().map(|&x| {
            let u8v = if span > 0.0 { ((x - lo) / span * 255.0 + 0.5).floor().clamp(0.0, 255.0) as u32 } else { 0 };
            ((u8v * top + 127) / 255).min(top) as u8
        }));
    }
    codes
}

/// Codes back to latent values: lo + (hi - lo) q / (2^bitplanes - 1) per
/// channel (`codec::dequantise`; `tinycompress_dec`'s code input loads so).
pub fn dequantise(codes: &[u8], ranges: &[(f32, f32)], bitplanes: u32) -> Vec<f32> {
    let channels = ranges.len().max(1);
    let plane = codes.len() / channels;
    let top = ((1u32 << bitplanes) - 1) as f32;
    codes
        .iter()
        .enumerate()
        .map(|(i, &q)| {
            let (lo, hi) = ranges[(i / plane.max(1)).min(channels - 1)];
            lo + (hi - lo) * q as f32 / top
        })
        .collect()
}

/// The quantisation of `plane` latents per channel to `bitplanes`-bit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TinyCompressQuant {
    /// Latents per channel.
    pub plane: usize,
    /// Bit planes kept, 1-8.
    pub bitplanes: u32,
}

impl TinyCompressQuant {
    fn check(&self) -> Result<()> {
        if self.plane == 0 || !(1..=8).contains(&self.bitplanes) || 3 * self.plane + 6 > u32::MAX as usize / 4 {
            return Err(Error::invalid("tinycompress_quant", format!("{self:?}")));
        }
        Ok(())
    }

    /// Bytes it writes: [`RANGE_BYTES`] of ranges, then the codes.
    pub fn out_len(&self) -> usize {
        RANGE_BYTES + 3 * self.plane
    }

    /// What it writes: [`TinyCompressQuant::out_len`] bytes.
    pub fn out(&self) -> Output {
        Output::Packed { bits: 8, len: self.out_len() }
    }

    /// Bytes of input it reads: the latents and the six keys.
    pub fn in_bytes(&self) -> u64 {
        (3 * self.plane as u64 + 6) * 4
    }

    /// Records it from the latents and keys in `src` to `dst`.
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Result<()> {
        self.check()?;
        let words = self.out().bytes() / 4;
        if src.size() < self.in_bytes() || dst.size() < words * 4 {
            return Err(Error::invalid("tinycompress_quant", "input or output buffer too small"));
        }
        let p = QuantParams { plane: self.plane as u32, top: (1 << self.bitplanes) - 1, words: words as u32, _pad: 0 };
        gpu.dispatch(encoder, &DESC, bytemuck::bytes_of(&p), &[src, dst], linear_groups(words as usize, 256))
    }

    /// The CPU twin on the latents followed by the keys (as f32 bit patterns).
    pub fn cpu(&self, x: &[f32]) -> Result<Data> {
        self.check()?;
        if x.len() != 3 * self.plane + 6 {
            return Err(Error::invalid(
                "tinycompress_quant",
                format!("{} values, expected {} latents and 6 keys", x.len(), 3 * self.plane),
            ));
        }
        let (lat, tail) = x.split_at(3 * self.plane);
        let keys: [u32; 6] = std::array::from_fn(|i| tail[i].to_bits());
        let ranges: Vec<(f32, f32)> = (0..3).map(|c| range_of(&keys, c)).collect();
        let mut out = Vec::with_capacity(RANGE_BYTES + lat.len());
        for &(lo, hi) in &ranges {
            out.extend_from_slice(&lo.to_le_bytes());
            out.extend_from_slice(&hi.to_le_bytes());
        }
        out.extend(codes_in(lat, &ranges, self.bitplanes));
        Ok(Data::Packed(Samples::U8(out)))
    }
}

/// The latents followed by their keys, as the kernel reads them.
pub fn with_keys(latents: &[f32]) -> Tensor {
    let mut data = latents.to_vec();
    data.extend(range_keys(latents).map(f32::from_bits));
    Tensor { shape: Shape::new(1, 1, 1, data.len()), data }
}

impl Kernel for TinyCompressQuant {
    fn desc(&self) -> &'static KernelDesc {
        &DESC
    }
    fn output(&self, inputs: &[&Data]) -> Result<Output> {
        count(DESC.name, inputs.len(), 1)?;
        self.check()?;
        Ok(self.out())
    }
    fn cpu(&self, inputs: &[&Data]) -> Result<Data> {
        count(DESC.name, inputs.len(), 1)?;
        TinyCompressQuant::cpu(self, &inputs[0].planes(DESC.name, 0)?.data)
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        count(DESC.name, inputs.len(), 1)?;
        TinyCompressQuant::encode(self, gpu, encoder, inputs[0].buffer(), out.buffer())
    }
}

/// The registry line of `tinycompress_quant`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let plane = w * h;
    let mut cases = Vec::new();
    // The division may round differently on a GPU: a code may move by one
    // where the normalised value is at a rounding boundary. The ranges are
    // exact (the same keys decoded).
    let tol = Tolerance { abs: 1.0, rel: 0.0 };
    for bitplanes in [8, 5, 1] {
        let lat = rng.values(3 * plane, -1.5, 2.5);
        let op = TinyCompressQuant { plane, bitplanes };
        cases.push(Case::new(format!("{w}x{h} {bitplanes} planes"), op, vec![Data::Planes(with_keys(&lat))], tol));
    }
    // A constant channel (no span: codes 0) beside two others.
    let mut lat = rng.values(3 * plane, 0.0, 1.0);
    lat[plane..2 * plane].fill(0.25);
    let op = TinyCompressQuant { plane, bitplanes: 8 };
    cases.push(Case::new(format!("{w}x{h} constant channel"), op, vec![Data::Planes(with_keys(&lat))], tol));
    cases
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let mut rng = bench_rng();
    // The latents of a TinyCompress-4 image of this size.
    let plane = w.div_ceil(2) * h.div_ceil(2);
    let lat = rng.values(3 * plane, -1.0, 2.0);
    let op = TinyCompressQuant { plane, bitplanes: 8 };
    Ok(Case::new(
        "8-bit codes of -4 latents",
        op,
        vec![Data::Planes(with_keys(&lat))],
        Tolerance { abs: 1.0, rel: 0.0 },
    ))
}
