//! Rows of 32-bit words copied between row strides and converted on the way
//! ([`TexelMode`]: as they are, red and blue swapped, half floats to and from
//! 16-bit unorm): how the model objects of [`crate::embed`] move pixels
//! between a texture copy's buffer (rows padded to 256 bytes; BGRA, RGBA or
//! half-float RGBA) and the tightly packed RGBA the kernels read and write.

use bytemuck::{Pod, Zeroable};

use super::contract::{bench_rng, count, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance};
use super::{kernel_desc, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{check_buffer, linear_groups, Gpu};
use crate::pixel::PixelLayout;
use crate::rng::SplitMix;
use crate::tensor::Samples;

/// Params uniform of `shaders/texel_rows.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
pub struct TexelParams {
    pub width: u32,
    pub rows: u32,
    pub src_stride: u32,
    pub dst_stride: u32,
    pub src_offset: u32,
    pub dst_offset: u32,
    pub mode: u32,
    pub _pad: u32,
}

/// Descriptor of the `texel_rows` kernel.
pub static DESC: KernelDesc = kernel_desc!("texel_rows", TexelParams, [Read, ReadWrite], [256, 1, 1], ["linear_index"]);

/// What happens to each word on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TexelMode {
    /// Copied as it is.
    Copy,
    /// Bytes 0 and 2 exchanged: 8-bit BGRA <-> RGBA.
    SwapRb,
    /// Two half floats to two 16-bit unorm samples, clamped to [0, 1] and
    /// rounded (`Rgba16Float` texels in).
    HalfToUnorm16,
    /// Two 16-bit unorm samples to two half floats (`Rgba16Float` texels out).
    Unorm16ToHalf,
}

impl TexelMode {
    fn code(self) -> u32 {
        match self {
            TexelMode::Copy => 0,
            TexelMode::SwapRb => 1,
            TexelMode::HalfToUnorm16 => 2,
            TexelMode::Unorm16ToHalf => 3,
        }
    }

    /// The CPU twin of one word.
    pub fn convert(self, t: u32) -> u32 {
        let halves = |t: u32| [t & 0xffff, t >> 16];
        match self {
            TexelMode::Copy => t,
            TexelMode::SwapRb => (t & 0xff00_ff00) | ((t & 0xff) << 16) | ((t >> 16) & 0xff),
            TexelMode::HalfToUnorm16 => {
                let [a, b] = halves(t).map(|h| super::pack_pixels::quantise(f16_to_f32(h as u16), 65535.0));
                a | (b << 16)
            }
            TexelMode::Unorm16ToHalf => {
                let [a, b] = halves(t).map(|u| f32_to_f16(u as f32 / 65535.0) as u32);
                a | (b << 16)
            }
        }
    }
}

/// An IEEE half float (as bits) widened to f32, exactly.
pub fn f16_to_f32(h: u16) -> f32 {
    let (sign, exp, man) = ((h >> 15) as u32, ((h >> 10) & 0x1f) as u32, (h & 0x3ff) as u32);
    let bits = match (exp, man) {
        (0, 0) => sign << 31,
        // Subnormal: man * 2^-24.
        (0, m) => return if sign == 1 { -(m as f32) } else { m as f32 } * (1.0 / 16_777_216.0),
        (31, m) => (sign << 31) | 0x7f80_0000 | (m << 13),
        (e, m) => (sign << 31) | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// An f32 rounded to the nearest IEEE half float (ties to even), as bits.
pub fn f32_to_f16(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 31 {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        // Subnormal half: shift the mantissa (with its implicit bit) into place.
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rest = m & ((1 << shift) - 1);
        let mid = 1 << (shift - 1);
        let round = rest > mid || (rest == mid && half & 1 == 1);
        return sign | (half + round as u32) as u16;
    }
    let half = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    let round = rest > 0x1000 || (rest == 0x1000 && half & 1 == 1);
    // A carry out of the mantissa lands in the exponent, as it should.
    sign | (half + round as u32) as u16
}

/// The op: `rows` rows of `width` words from `src_offset` (in words) with
/// `src_stride` words per row to `dst_offset` with `dst_stride`, each word
/// converted by `mode` (an 8-bit RGBA texel is one word, a half-float or
/// 16-bit one two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TexelRows {
    /// Texels per row copied.
    pub width: usize,
    /// Rows copied.
    pub rows: usize,
    /// Texels from one source row to the next (at least `width`).
    pub src_stride: usize,
    /// Texels from one destination row to the next (at least `width`).
    pub dst_stride: usize,
    /// First source texel.
    pub src_offset: usize,
    /// First destination texel.
    pub dst_offset: usize,
    /// What happens to each word.
    pub mode: TexelMode,
}

impl TexelRows {
    /// Texels the source must hold.
    pub fn src_len(&self) -> usize {
        if self.rows == 0 {
            0
        } else {
            self.src_offset + (self.rows - 1) * self.src_stride + self.width
        }
    }

    /// Texels the destination must hold.
    pub fn dst_len(&self) -> usize {
        if self.rows == 0 {
            0
        } else {
            self.dst_offset + (self.rows - 1) * self.dst_stride + self.width
        }
    }

    fn check(&self) -> Result<()> {
        if self.src_stride < self.width || self.dst_stride < self.width {
            return Err(Error::invalid("texel_rows", format!("a stride is below the width in {self:?}")));
        }
        if self.src_len().max(self.dst_len()) > u32::MAX as usize || self.width * self.rows > u32::MAX as usize {
            return Err(Error::invalid("texel_rows", format!("{self:?} is too large for one dispatch")));
        }
        Ok(())
    }

    /// CPU twin on u32 words (little-endian: byte 0 is red in RGBA):
    /// `dst` with the rows written.
    pub fn cpu(&self, src: &[u32], dst: &mut [u32]) -> Result<()> {
        self.check()?;
        if src.len() < self.src_len() || dst.len() < self.dst_len() {
            return Err(Error::invalid(
                "texel_rows",
                format!(
                    "{} source and {} destination texels, {self:?} needs {} and {}",
                    src.len(),
                    dst.len(),
                    self.src_len(),
                    self.dst_len()
                ),
            ));
        }
        for y in 0..self.rows {
            let s = &src[self.src_offset + y * self.src_stride..][..self.width];
            let d = &mut dst[self.dst_offset + y * self.dst_stride..][..self.width];
            match self.mode {
                TexelMode::Copy => d.copy_from_slice(s),
                mode => d.iter_mut().zip(s).for_each(|(d, &t)| *d = mode.convert(t)),
            }
        }
        Ok(())
    }

    /// Records the copy from `src` to `dst` (words).
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Result<()> {
        self.check()?;
        check_buffer(DESC.name, "source", src, self.src_len() as u64 * 4)?;
        check_buffer(DESC.name, "destination", dst, self.dst_len() as u64 * 4)?;
        let p = TexelParams {
            width: self.width as u32,
            rows: self.rows as u32,
            src_stride: self.src_stride as u32,
            dst_stride: self.dst_stride as u32,
            src_offset: self.src_offset as u32,
            dst_offset: self.dst_offset as u32,
            mode: self.mode.code(),
            _pad: 0,
        };
        gpu.dispatch(encoder, &DESC, bytemuck::bytes_of(&p), &[src, dst], linear_groups(self.width * self.rows, 256))
    }
}

fn words(s: &Samples) -> Vec<u32> {
    bytemuck::pod_collect_to_vec::<u8, u32>(&s.le_bytes())
}

impl TexelRows {
    /// Bits of the samples the trait face uses for this mode's words: 8
    /// (four per word) for the byte modes, 16 (two per word: half-float
    /// bits or unorm) for the half-float ones.
    fn bits(&self) -> u32 {
        match self.mode {
            TexelMode::Copy | TexelMode::SwapRb => 8,
            TexelMode::HalfToUnorm16 | TexelMode::Unorm16ToHalf => 16,
        }
    }
}

impl Kernel for TexelRows {
    fn desc(&self) -> &'static KernelDesc {
        &DESC
    }
    /// Input: the source words as packed samples (8-bit for the byte modes,
    /// 16-bit for the half-float ones);
    /// output: `dst_len()` words, zero where no row was written.
    fn output(&self, inputs: &[&Data]) -> Result<Output> {
        count(DESC.name, inputs.len(), 1)?;
        self.check()?;
        let s = inputs[0].packed(DESC.name, 0)?;
        let per = 32 / self.bits() as usize;
        if s.bits() != self.bits() || s.len() < self.src_len() * per {
            return Err(Error::invalid(
                DESC.name,
                format!(
                    "{} samples of {} bits: needs {} words of {}-bit samples",
                    s.len(),
                    s.bits(),
                    self.src_len(),
                    self.bits()
                ),
            ));
        }
        Ok(Output::Packed { bits: self.bits(), len: self.dst_len() * per })
    }
    fn cpu(&self, inputs: &[&Data]) -> Result<Data> {
        let out = Kernel::output(self, inputs)?;
        let mut dst = vec![0u32; self.dst_len()];
        TexelRows::cpu(self, &words(inputs[0].packed(DESC.name, 0)?), &mut dst)?;
        out.read(bytemuck::cast_slice(&dst))
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        count(DESC.name, inputs.len(), 1)?;
        crate::gpu::clear_buffer(DESC.name, encoder, out.buffer(), 0, None)?;
        TexelRows::encode(self, gpu, encoder, inputs[0].buffer(), out.buffer())
    }
}

/// The registry line of `texel_rows`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

/// `n` words of random samples for `mode`: any bytes, or half floats from
/// -0.1 to 1.1 (clamping exercised), or any 16-bit unorm.
fn words_for(rng: &mut SplitMix, mode: TexelMode, n: usize) -> Data {
    let n = n.max(1);
    match mode {
        TexelMode::Copy | TexelMode::SwapRb => {
            Data::Packed(rng.samples(PixelLayout { n: 1, height: 1, width: n, channels: 4, bits: 8 }))
        }
        TexelMode::HalfToUnorm16 => {
            Data::Packed(Samples::U16((0..2 * n).map(|_| f32_to_f16(rng.uniform(-0.1, 1.1))).collect()))
        }
        TexelMode::Unorm16ToHalf => {
            Data::Packed(rng.samples(PixelLayout { n: 1, height: 1, width: n, channels: 2, bits: 16 }))
        }
    }
}

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    // Padded rows to tight ones and back (a texture copy's 256-byte rows),
    // in every mode, and a window of rows at an offset.
    let padded = w.next_multiple_of(64);
    for mode in [TexelMode::Copy, TexelMode::SwapRb, TexelMode::HalfToUnorm16, TexelMode::Unorm16ToHalf] {
        // Half floats out: the shader rounds to half as the CPU does (ties
        // to even, in integer bit work), but WGSL lets `u / 65535` be off by
        // an ulp or two in f32, which can move the half by one unit in the
        // last place (one level of its bits read as u16). The rest is exact.
        let tol = if mode == TexelMode::Unorm16ToHalf { Tolerance { abs: 1.0, rel: 0.0 } } else { Tolerance::EXACT };
        let unpad =
            TexelRows { width: w, rows: h, src_stride: padded, dst_stride: w, src_offset: 0, dst_offset: 0, mode };
        let x = words_for(rng, mode, unpad.src_len());
        cases.push(Case::new(format!("unpad {w}x{h} {mode:?}"), unpad, vec![x], tol));
        let rows = h.div_ceil(2);
        let window = TexelRows {
            width: w,
            rows,
            src_stride: w,
            dst_stride: padded,
            src_offset: (h - rows) * w,
            dst_offset: 0,
            mode,
        };
        let x = words_for(rng, mode, window.src_len());
        cases.push(Case::new(format!("window {w}x{rows} {mode:?}"), window, vec![x], tol));
    }
    cases
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let mode = TexelMode::SwapRb;
    let op = TexelRows {
        width: w,
        rows: h,
        src_stride: w.next_multiple_of(64),
        dst_stride: w,
        src_offset: 0,
        dst_offset: 0,
        mode,
    };
    let x = words_for(&mut bench_rng(), mode, op.src_len());
    Ok(Case::new("unpad + swap", op, vec![x], Tolerance::EXACT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_round_trip_and_round_to_nearest_even() {
        // Every finite half widens and narrows back to itself.
        for h in 0..=u16::MAX {
            let v = f16_to_f32(h);
            if v.is_finite() {
                assert_eq!(f32_to_f16(v), h, "{h:#06x} -> {v}");
            }
        }
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(1e6), 0x7c00);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        // 1 + 2^-11 is halfway between 1 and the next half up: ties to even (1).
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(TexelMode::HalfToUnorm16.convert(0x3c00_0000 | 0xbc00), 0xffff_0000);
        assert_eq!(TexelMode::Unorm16ToHalf.convert(0x0000_ffff), 0x3c00);
    }
}
