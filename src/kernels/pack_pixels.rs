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
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
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

/// AVX2 steps shared by the packed 8-bit RGB rows of the CPU paths
/// (enhance's packing, augment's colour-only passes): quantising eight
/// floats as [`quantise`] does, and moving between RGBRGB... bytes and
/// eight-lane channel vectors with byte shuffles (the masks are constants).
#[cfg(target_arch = "x86_64")]
pub(crate) mod rgb8 {
    use std::arch::x86_64::*;

    /// [`super::quantise`] with max 255 on eight lanes (clamp to 0..1, times
    /// 255, plus 0.5, a separate multiply and add, truncated: a NaN lands
    /// on 0 as there), packed to eight bytes in the low half.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn quantise8(v: __m256) -> __m128i {
        let v = _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(1.0));
        let i = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(v, _mm256_set1_ps(255.0)), _mm256_set1_ps(0.5)));
        let w16 = _mm_packus_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256::<1>(i));
        _mm_packus_epi16(w16, w16)
    }

    /// Eight bytes each of R, G and B (low halves) interleaved to 24 bytes
    /// of RGB pixels: the first 16 in `.0`, the last 8 in the low half of `.1`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn interleave(r8: __m128i, g8: __m128i, b8: __m128i) -> (__m128i, __m128i) {
        // `rg` holds the red bytes in 0..8 and the green in 8..16.
        let rg = _mm_unpacklo_epi64(r8, g8);
        let lo_rg = _mm_setr_epi8(0, 8, -1, 1, 9, -1, 2, 10, -1, 3, 11, -1, 4, 12, -1, 5);
        let lo_b = _mm_setr_epi8(-1, -1, 0, -1, -1, 1, -1, -1, 2, -1, -1, 3, -1, -1, 4, -1);
        let hi_rg = _mm_setr_epi8(13, -1, 6, 14, -1, 7, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1);
        let hi_b = _mm_setr_epi8(-1, 5, -1, -1, 6, -1, -1, 7, -1, -1, -1, -1, -1, -1, -1, -1);
        let lo = _mm_or_si128(_mm_shuffle_epi8(rg, lo_rg), _mm_shuffle_epi8(b8, lo_b));
        let hi = _mm_or_si128(_mm_shuffle_epi8(rg, hi_rg), _mm_shuffle_epi8(b8, hi_b));
        (lo, hi)
    }

    /// Eight RGB pixels at `p` (24 bytes; 28 must be readable) split into
    /// their channels as eight i32 lanes each.
    ///
    /// # Safety
    /// 28 bytes from `p` must be readable.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn deinterleave(p: *const u8) -> (__m256i, __m256i, __m256i) {
        // Pixels 0-3 in the first 12 bytes of `a`, 4-7 in those of `b`.
        let (a, b) = unsafe { (_mm_loadu_si128(p as *const __m128i), _mm_loadu_si128(p.add(12) as *const __m128i)) };
        let split = _mm_setr_epi8(0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11, -1, -1, -1, -1);
        let (a, b) = (_mm_shuffle_epi8(a, split), _mm_shuffle_epi8(b, split));
        // [R0-3, R4-7, G0-3, G4-7] and [B0-3, B4-7, ..].
        let (rg, bb) = (_mm_unpacklo_epi32(a, b), _mm_unpackhi_epi32(a, b));
        (_mm256_cvtepu8_epi32(rg), _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(rg)), _mm256_cvtepu8_epi32(bb))
    }
}

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
        gpu.dispatch(encoder, &DESC, bytemuck::bytes_of(&p), &[x.buf(DESC.name)?, dst], linear_groups(words, 256))
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
