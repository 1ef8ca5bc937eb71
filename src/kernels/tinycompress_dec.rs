//! One TinyCompress decoding block in one dispatch (see
//! `shaders/tinycompress_dec.wgsl`), to f32 planes or, for the codec's last
//! block, straight to the cropped 8-bit RGB image; and its CPU twin.
// Some state and helpers serve only the x86-64 AVX2 paths; elsewhere
// (aarch64, wasm32) the portable loops run and leave them unused.
#![cfg_attr(not(target_arch = "x86_64"), allow(unused_mut, unused_variables, dead_code))]

use bytemuck::{Pod, Zeroable};

use super::contract::{bench_rng, constants, count, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance};
use super::{kernel_desc, Activation, ActivationKind, Conv2d, KernelDesc, PackPixels, PixelShuffle, Prelu};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::pixel::PixelLayout;
use crate::rng::SplitMix;
use crate::tensor::{Samples, Shape, Tensor};

/// Params uniform of `shaders/tinycompress_dec.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq)]
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
pub struct DecParams {
    pub w: u32,
    pub h: u32,
    pub out_mode: u32,
    pub margin: u32,
    pub img_w: u32,
    pub img_h: u32,
    pub in_mode: u32,
    pub top: f32,
    /// lo0, hi0, lo1, hi1, lo2, hi2.
    pub ranges: [f32; 6],
    pub out_bits: u32,
    pub _pad: u32,
}

/// Descriptor of the `tinycompress_dec` kernel.
pub static DESC: KernelDesc = kernel_desc!("tinycompress_dec", DecParams, [Read, Read, ReadWrite], [64, 1, 1]);

/// Weights of one block in `models::tinycompress::Net::flatten`'s order.
pub const FLAT_LEN: usize = 1071;

/// What the block reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DecInput {
    /// f32 planes (1, 3, h, w).
    Planes,
    /// The codec's latent codes: planar u8 (3 x h x w), dequantised as
    /// they load ([`super::tinycompress_quant::dequantise`]).
    Codes {
        /// Each channel's (minimum, maximum).
        ranges: [(f32, f32); 3],
        /// Bit planes of the codes, 1-8.
        bitplanes: u32,
    },
}

/// What the block writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecOutput {
    /// f32 planes (1, 3, 2h, 2w).
    Planes,
    /// The `width` x `height` image starting `margin` pixels in, as packed
    /// 8-bit RGB (the codec's crop and quantisation).
    Image {
        /// Image width.
        width: usize,
        /// Image height.
        height: usize,
        /// Pixels cropped before the image on each axis.
        margin: usize,
    },
    /// The image as [`DecOutput::Image`] crops it, as packed RGBA of
    /// `bits` (8 or 16) bits a sample, alpha opaque: a texture's texels
    /// ([`crate::embed::Codec`]).
    Rgba {
        /// Image width.
        width: usize,
        /// Image height.
        height: usize,
        /// Pixels cropped before the image on each axis.
        margin: usize,
        /// Bits per sample, 8 or 16.
        bits: u32,
    },
}

impl DecOutput {
    /// The crop of an image output: (width, height, margin).
    fn crop(&self) -> Option<(usize, usize, usize)> {
        match *self {
            DecOutput::Planes => None,
            DecOutput::Image { width, height, margin } | DecOutput::Rgba { width, height, margin, .. } => {
                Some((width, height, margin))
            }
        }
    }
}

/// One decoding block on latents of `w` x `h`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TinyCompressDec {
    /// Input width.
    pub w: usize,
    /// Input height.
    pub h: usize,
    /// What it reads.
    pub input: DecInput,
    /// What it writes.
    pub output: DecOutput,
}

/// The block's layers on the CPU: `x` (1, 3, h, w) to (1, 3, 2h, 2w),
/// weights in `Net::flatten`'s order (the model's layer path).
pub fn dec_block_cpu(flat: &[f32], x: &Tensor) -> Result<Tensor> {
    if flat.len() != FLAT_LEN {
        return Err(Error::invalid("tinycompress_dec", format!("{} weights, expected {FLAT_LEN}", flat.len())));
    }
    let mut take = super::contract::flat_cursor(flat);
    let c1 = Conv2d::new(3, 12, 3);
    let mut e = c1.cpu(x, take(c1.weight_len()), take(12))?;
    Prelu.cpu_in_place(&mut e, take(12))?;
    let s = PixelShuffle { r: 2 }.cpu(&e)?;
    let c2 = Conv2d::new(3, 9, 5);
    let mut f = c2.cpu(&s, take(c2.weight_len()), take(9))?;
    Prelu.cpu_in_place(&mut f, take(9))?;
    let c3 = Conv2d::new(9, 3, 1);
    let y = c3.cpu(&f, take(c3.weight_len()), take(3))?;
    Ok(Activation(ActivationKind::Sigmoid).cpu(&y))
}

/// The `width` x `height` image `margin` pixels into the decoded planes
/// `y` (1, 3, H, W), as packed 8-bit RGB: the codec's crop and quantisation.
pub fn crop_packed(y: &Tensor, width: usize, height: usize, margin: usize) -> Result<Samples> {
    crop_packed_at(y, (width, height), (margin, margin))
}

/// The `width` x `height` image at column `x0`, row `y0` of the decoded
/// planes `y` (1, 3, H, W), as packed 8-bit RGB ([`crop_packed`] with the
/// rows of a band placed apart from the columns).
pub fn crop_packed_at(y: &Tensor, (width, height): (usize, usize), (x0, y0): (usize, usize)) -> Result<Samples> {
    let (ph, pw) = (y.shape.h, y.shape.w);
    if y.shape.n != 1 || y.shape.c != 3 || x0 + width > pw || y0 + height > ph {
        return Err(Error::invalid(
            "tinycompress_dec",
            format!("cannot crop {width}x{height} at ({x0}, {y0}) from {}", y.shape),
        ));
    }
    let mut data = Vec::with_capacity(3 * width * height);
    for c in 0..3 {
        let plane = y.plane(0, c);
        for r in y0..y0 + height {
            data.extend_from_slice(&plane[r * pw + x0..r * pw + x0 + width]);
        }
    }
    let l = PixelLayout { n: 1, height, width, channels: 3, bits: 8 };
    PackPixels(l).cpu(&Tensor::from_vec(l.shape(), data)?)
}

/// The RGBA texels of [`DecOutput::Rgba`]: 8-bit, the RGB bytes `rgb`
/// with an opaque alpha; 16-bit, the planes `y` cropped and quantised to
/// 16 bits (PackPixels' rounding) with an opaque alpha.
fn rgb_to_rgba(y: &Tensor, rgb: &[u8], (width, height, margin): (usize, usize, usize), bits: u32) -> Result<Samples> {
    if bits == 8 {
        return Ok(Samples::U8(rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect()));
    }
    let pw = y.shape.w;
    let mut planes = Vec::with_capacity(4 * width * height);
    for c in 0..3 {
        let plane = y.plane(0, c);
        for r in margin..margin + height {
            planes.extend_from_slice(&plane[r * pw + margin..r * pw + margin + width]);
        }
    }
    planes.resize(4 * width * height, 1.0);
    let l = PixelLayout { n: 1, height, width, channels: 4, bits };
    PackPixels(l).cpu(&Tensor::from_vec(l.shape(), planes)?)
}

/// Latent rows per parallel task of [`dec_block_fast`].
const STRIP: usize = 8;

/// [`dec_block_cpu`] fused per strip of rows, the codec's CPU decoder:
/// layer 1 for the strip's latent rows (and one each side) straight into
/// the pixel-shuffled full-resolution rows, then layers 2-3 and the sigmoid
/// from there, eight pixels to a register, every task on its own rows; no
/// tensor per layer. On x86-64 with AVX2+FMA; elsewhere it is
/// [`dec_block_cpu`]. Every output sums as the layer path's AVX2 build does
/// (the bias, then input channel, kernel row, kernel column, with FMA); the
/// sigmoid's exponential is a vector polynomial (`simd::exp8`, 2
/// ulp) instead of libm's, so the two agree within a few ulp
/// (`tests/codec.rs` compares them).
pub fn dec_block_fast(flat: &[f32], x: &Tensor) -> Result<Tensor> {
    #[cfg(target_arch = "x86_64")]
    if fast_fits(flat, x) {
        let (h, w) = (x.shape.h, x.shape.w);
        let mut y = Tensor::zeros(Shape::new(1, 3, 2 * h, 2 * w));
        run_strips(flat, x, Out::Planes(y.data.as_mut_ptr()));
        return Ok(y);
    }
    dec_block_cpu(flat, x)
}

/// [`dec_block_fast`] as the codec's last block: the `width` x `height`
/// image `margin` pixels in, as packed 8-bit RGB, quantised as
/// [`PackPixels`] does as each strip finishes (no full-resolution planes,
/// no crop copy); the same bytes as the planes cropped and packed.
pub fn dec_block_fast_image(flat: &[f32], x: &Tensor, width: usize, height: usize, margin: usize) -> Result<Samples> {
    let op = TinyCompressDec {
        w: x.shape.w,
        h: x.shape.h,
        input: DecInput::Planes,
        output: DecOutput::Image { width, height, margin },
    };
    op.check()?;
    #[cfg(target_arch = "x86_64")]
    if fast_fits(flat, x) {
        let mut px = crate::fsutil::try_vec("the decoded image", width * height * 3, 0u8)?;
        run_strips(flat, x, Out::Image { px: px.as_mut_ptr(), width, height, margin });
        return Ok(Samples::U8(px));
    }
    match op.cpu(flat, x)? {
        Data::Packed(s) => Ok(s),
        Data::Planes(_) => Err(Error::invalid("tinycompress_dec", "image mode gave planes")),
    }
}

#[cfg(target_arch = "x86_64")]
fn fast_fits(flat: &[f32], x: &Tensor) -> bool {
    crate::cpu::level() == crate::cpu::Level::Avx2Fma
        && flat.len() == FLAT_LEN
        && x.shape.n == 1
        && x.shape.c == 3
        && x.shape.h > 0
        && x.shape.w > 0
}

#[cfg(target_arch = "x86_64")]
fn run_strips(flat: &[f32], x: &Tensor, out: Out) {
    use rayon::prelude::*;
    let (h, w) = (x.shape.h, x.shape.w);
    (0..h.div_ceil(STRIP)).into_par_iter().for_each(|i| {
        let ly0 = i * STRIP;
        // SAFETY: fast_fits checked AVX2+FMA; each task writes output rows
        // 2 ly0 .. 2 ly1 (of each plane, or of the image), which no other task writes.
        unsafe { dec_strip_avx2(flat, &x.data, h, w, ly0, (ly0 + STRIP).min(h), out) };
    });
}

/// Where a strip writes: f32 planes (3 x 2h x 2w), or the cropped packed image.
#[derive(Clone, Copy)]
enum Out {
    Planes(*mut f32),
    Image { px: *mut u8, width: usize, height: usize, margin: usize },
}
// SAFETY: tasks write disjoint rows through it (see run_strips).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// One strip of [`dec_block_fast`]: latent rows `ly0..ly1` of `x` (3 x h x
/// w) to output rows `2 ly0 .. 2 ly1` of the three planes at `out`, or
/// those of them inside the image, quantised.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::needless_range_loop)]
unsafe fn dec_strip_avx2(flat: &[f32], x: &[f32], h: usize, w: usize, ly0: usize, ly1: usize, out: Out) {
    use std::arch::x86_64::*;
    const L: usize = 8;
    const W1: usize = 0; // 12 x 3 x 3 x 3
    const B1: usize = 324;
    const A1: usize = 336;
    const W2: usize = 348; // 9 x 3 x 5 x 5
    const B2: usize = 1023;
    const A2: usize = 1032;
    const W3: usize = 1041; // 3 x 9
    const B3: usize = 1068;
    use super::simd::{prelu8, sigmoid8};
    let wb = w.div_ceil(L) * L;
    let s = ly1 - ly0;
    // The latents, rows ly0 - 2 .. ly1 + 2 (layer 1's halo around the rows
    // the 5x5 convolution needs), one zero column before, zero outside.
    let (lr, lw) = (s + 4, wb + 2 + L);
    let mut lat = vec![0.0f32; 3 * lr * lw];
    for c in 0..3 {
        for r in 0..lr {
            let y = ly0 as isize - 2 + r as isize;
            if y >= 0 && (y as usize) < h {
                let src = &x[(c * h + y as usize) * w..][..w];
                lat[(c * lr + r) * lw + 1..][..w].copy_from_slice(src);
            }
        }
    }
    // The shuffled full-resolution rows 2 ly0 - 2 .. 2 ly1 + 2, two zero
    // columns before; layer 1's latent row ly0 - 1 + k lands on rows 2k, 2k + 1.
    let (sr, sw) = (2 * s + 4, 2 * wb + 4 + L);
    let mut sh = vec![0.0f32; 3 * sr * sw];
    for k in 0..s + 2 {
        let ly = ly0 as isize - 1 + k as isize;
        if ly < 0 || ly as usize >= h {
            continue; // zero: the 5x5 convolution's padding
        }
        for x0 in (0..wb).step_by(L) {
            let mut a = [_mm256_setzero_ps(); 12];
            for o in 0..12 {
                a[o] = _mm256_set1_ps(flat[B1 + o]);
            }
            for c in 0..3 {
                for u in 0..3 {
                    // Latent row ly + u - 1 is lat row k + u; column x0 + v - 1 is lat column x0 + v.
                    let row = lat.as_ptr().add((c * lr + k + u) * lw + x0);
                    for v in 0..3 {
                        let xs = _mm256_loadu_ps(row.add(v));
                        for o in 0..12 {
                            a[o] = _mm256_fmadd_ps(_mm256_set1_ps(flat[W1 + ((o * 3 + c) * 3 + u) * 3 + v]), xs, a[o]);
                        }
                    }
                }
            }
            // Lanes past the image are the 5x5 convolution's zero padding.
            let keep = if x0 + L <= w {
                _mm256_castsi256_ps(_mm256_set1_epi32(-1))
            } else {
                let lanes: [i32; L] = std::array::from_fn(|l| if x0 + l < w { -1 } else { 0 });
                _mm256_castsi256_ps(_mm256_loadu_si256(lanes.as_ptr() as *const __m256i))
            };
            for c in 0..3 {
                for dy in 0..2 {
                    let o = c * 4 + dy * 2;
                    let e = _mm256_and_ps(prelu8(a[o], flat[A1 + o]), keep);
                    let f = _mm256_and_ps(prelu8(a[o + 1], flat[A1 + o + 1]), keep);
                    let lo = _mm256_unpacklo_ps(e, f);
                    let hi = _mm256_unpackhi_ps(e, f);
                    let dst = sh.as_mut_ptr().add((c * sr + 2 * k + dy) * sw + 2 + 2 * x0);
                    _mm256_storeu_ps(dst, _mm256_permute2f128_ps::<0x20>(lo, hi));
                    _mm256_storeu_ps(dst.add(L), _mm256_permute2f128_ps::<0x31>(lo, hi));
                }
            }
        }
    }
    // Layers 2-3 and the sigmoid for output rows 2 ly0 .. 2 ly1.
    let (oh, ow) = (2 * h, 2 * w);
    // The columns and rows written: all, or the image's.
    let (cols, rows) = match out {
        Out::Planes(_) => (0..ow, 0..oh),
        Out::Image { width, height, margin, .. } => (margin..margin + width, margin..margin + height),
    };
    for r in 0..2 * s {
        let oy = 2 * ly0 + r;
        if !rows.contains(&oy) {
            continue;
        }
        for x0 in (cols.start / L * L..cols.end).step_by(L) {
            let mut f = [_mm256_setzero_ps(); 9];
            for o in 0..9 {
                f[o] = _mm256_set1_ps(flat[B2 + o]);
            }
            for c in 0..3 {
                for u in 0..5 {
                    // Output row oy + u - 2 is sh row r + u; column x0 + v - 2 is sh column x0 + v.
                    let row = sh.as_ptr().add((c * sr + r + u) * sw + x0);
                    for v in 0..5 {
                        let xs = _mm256_loadu_ps(row.add(v));
                        for o in 0..9 {
                            f[o] = _mm256_fmadd_ps(_mm256_set1_ps(flat[W2 + ((o * 3 + c) * 5 + u) * 5 + v]), xs, f[o]);
                        }
                    }
                }
            }
            for o in 0..9 {
                f[o] = prelu8(f[o], flat[A2 + o]);
            }
            let n = L.min(ow - x0);
            let mut v = [_mm256_setzero_ps(); 3];
            for k in 0..3 {
                let mut q = _mm256_set1_ps(flat[B3 + k]);
                for o in 0..9 {
                    q = _mm256_fmadd_ps(_mm256_set1_ps(flat[W3 + k * 9 + o]), f[o], q);
                }
                v[k] = sigmoid8(q);
            }
            match out {
                Out::Planes(p) => {
                    for k in 0..3 {
                        let dst = p.add((k * oh + oy) * ow + x0);
                        if n == L {
                            _mm256_storeu_ps(dst, v[k]);
                        } else {
                            let mut t = [0.0f32; L];
                            _mm256_storeu_ps(t.as_mut_ptr(), v[k]);
                            std::ptr::copy_nonoverlapping(t.as_ptr(), dst, n);
                        }
                    }
                }
                Out::Image { px, width, margin, .. } => {
                    // PackPixels' rounding and RGB interleave (its AVX2 helpers),
                    // then the pixels of the block inside the image's columns.
                    use super::pack_pixels::rgb8::{interleave, quantise8};
                    let (lo, hi) = interleave(quantise8(v[0]), quantise8(v[1]), quantise8(v[2]));
                    let mut t = [0u8; 32];
                    _mm_storeu_si128(t.as_mut_ptr() as *mut __m128i, lo);
                    _mm_storeu_si128(t.as_mut_ptr().add(16) as *mut __m128i, hi);
                    let (a, b) = (x0.max(cols.start), (x0 + n).min(cols.end));
                    let dst = px.add(((oy - margin) * width + a - margin) * 3);
                    std::ptr::copy_nonoverlapping(t.as_ptr().add((a - x0) * 3), dst, (b - a) * 3);
                }
            }
        }
    }
}

impl TinyCompressDec {
    fn check(&self) -> Result<()> {
        if self.w == 0 || self.h == 0 {
            return Err(Error::invalid("tinycompress_dec", "empty input"));
        }
        if let DecInput::Codes { bitplanes, .. } = self.input {
            if !(1..=8).contains(&bitplanes) {
                return Err(Error::invalid("tinycompress_dec", format!("{bitplanes} bit planes (valid: 1-8)")));
            }
        }
        if let Some((width, height, margin)) = self.output.crop() {
            if width == 0 || height == 0 || width + margin > 2 * self.w || height + margin > 2 * self.h {
                return Err(Error::invalid("tinycompress_dec", format!("{self:?}: the image does not fit")));
            }
        }
        if let DecOutput::Rgba { bits, .. } = self.output {
            if bits != 8 && bits != 16 {
                return Err(Error::invalid("tinycompress_dec", format!("{bits}-bit RGBA output (8 or 16)")));
            }
        }
        Ok(())
    }

    /// What the block writes.
    pub fn out(&self) -> Output {
        match self.output {
            DecOutput::Planes => Output::Planes(Shape::new(1, 3, 2 * self.h, 2 * self.w)),
            DecOutput::Image { width, height, .. } => Output::Packed { bits: 8, len: width * height * 3 },
            DecOutput::Rgba { width, height, bits, .. } => Output::Packed { bits, len: width * height * 4 },
        }
    }

    /// Bytes of input it reads: planes, or codes padded to a word.
    pub fn in_bytes(&self) -> u64 {
        let n = 3 * self.w as u64 * self.h as u64;
        match self.input {
            DecInput::Planes => 4 * n,
            DecInput::Codes { .. } => n.next_multiple_of(4),
        }
    }

    /// Records the block from the planes or codes in `src` to `dst` (cleared here first in image mode).
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        weights: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Result<()> {
        self.check()?;
        if dst.size() < self.out().bytes() || weights.size() < (FLAT_LEN * 4) as u64 || src.size() < self.in_bytes() {
            return Err(Error::invalid("tinycompress_dec", "input, output or weight buffer too small"));
        }
        let mut p = DecParams { w: self.w as u32, h: self.h as u32, out_mode: 1, in_mode: 1, ..Zeroable::zeroed() };
        if let DecInput::Codes { ranges, bitplanes } = self.input {
            p.in_mode = 0;
            p.top = ((1u32 << bitplanes) - 1) as f32;
            p.ranges = [ranges[0].0, ranges[0].1, ranges[1].0, ranges[1].1, ranges[2].0, ranges[2].1];
        }
        if let Some((width, height, margin)) = self.output.crop() {
            (p.out_mode, p.margin, p.img_w, p.img_h) = (0, margin as u32, width as u32, height as u32);
            if let DecOutput::Rgba { bits, .. } = self.output {
                (p.out_mode, p.out_bits) = (2, bits);
            }
            crate::gpu::clear_buffer(DESC.name, encoder, dst, 0, None)?;
        }
        let groups = [self.w.div_ceil(8) as u32, self.h.div_ceil(8) as u32, 1];
        gpu.dispatch(encoder, &DESC, bytemuck::bytes_of(&p), &[src, weights, dst], groups)
    }

    /// The block's input as planes: the planes given, or the codes dequantised.
    pub fn input_planes(&self, input: &Data) -> Result<Tensor> {
        let shape = Shape::new(1, 3, self.h, self.w);
        match (self.input, input) {
            (DecInput::Planes, Data::Planes(t)) => Ok(t.clone()),
            (DecInput::Codes { ranges, bitplanes }, Data::Packed(Samples::U8(q))) if q.len() == shape.len() => {
                Tensor::from_vec(shape, super::tinycompress_quant::dequantise(q, &ranges, bitplanes))
            }
            _ => Err(Error::invalid("tinycompress_dec", format!("input {:?} does not fit {self:?}", input.output()))),
        }
    }

    /// The CPU twin on input planes: [`dec_block_cpu`], then in image mode
    /// the crop and 8-bit quantisation.
    pub fn cpu(&self, flat: &[f32], x: &Tensor) -> Result<Data> {
        self.check()?;
        if x.shape != Shape::new(1, 3, self.h, self.w) {
            return Err(Error::invalid(
                "tinycompress_dec",
                format!("input {}, expected 1x3x{}x{}", x.shape, self.h, self.w),
            ));
        }
        let y = dec_block_cpu(flat, x)?;
        match self.output {
            DecOutput::Planes => Ok(Data::Planes(y)),
            DecOutput::Image { width, height, margin } => Ok(Data::Packed(crop_packed(&y, width, height, margin)?)),
            DecOutput::Rgba { width, height, margin, bits } => {
                let Samples::U8(rgb) = crop_packed(&y, width, height, margin)? else {
                    return Err(Error::invalid("tinycompress_dec", "crop_packed gave other than 8 bits"));
                };
                Ok(Data::Packed(rgb_to_rgba(&y, &rgb, (width, height, margin), bits)?))
            }
        }
    }
}

impl Kernel for TinyCompressDec {
    fn desc(&self) -> &'static KernelDesc {
        &DESC
    }
    fn output(&self, inputs: &[&Data]) -> Result<Output> {
        count(DESC.name, inputs.len(), 2)?;
        self.check()?;
        Ok(self.out())
    }
    fn cpu(&self, inputs: &[&Data]) -> Result<Data> {
        count(DESC.name, inputs.len(), 2)?;
        let x = self.input_planes(inputs[0])?;
        TinyCompressDec::cpu(self, &inputs[1].planes(DESC.name, 1)?.data, &x)
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        count(DESC.name, inputs.len(), 2)?;
        TinyCompressDec::encode(self, gpu, encoder, inputs[0].buffer(), inputs[1].buffer(), out.buffer())
    }
}

/// The registry line of `tinycompress_dec`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let (lw, lh) = (w.div_ceil(2), h.div_ceil(2));
    let mut cases = Vec::new();
    let op = TinyCompressDec { w: lw, h: lh, input: DecInput::Planes, output: DecOutput::Planes };
    let x = rng.planes(Shape::new(1, 3, lh, lw), -1.0, 2.0);
    let tol = Tolerance { abs: 1e-5, rel: 1e-4 };
    cases.push(Case::new(format!("planes {lw}x{lh}"), op, vec![x, rng.constants(FLAT_LEN, -0.3, 0.3)], tol));
    // The codec's last block: crop a margin of 2 (where it fits), 8-bit RGB.
    let margin = if 2 * lw >= w + 2 && 2 * lh >= h + 2 { 2 } else { 0 };
    let (iw, ih) = (2 * lw - margin, 2 * lh - margin);
    let op = TinyCompressDec {
        w: lw,
        h: lh,
        input: DecInput::Planes,
        output: DecOutput::Image { width: iw, height: ih, margin },
    };
    let x = rng.planes(Shape::new(1, 3, lh, lw), -1.0, 2.0);
    let what = format!("image {iw}x{ih} margin {margin}");
    cases.push(Case::new(what, op, vec![x, rng.constants(FLAT_LEN, -0.3, 0.3)], Tolerance { abs: 1.0, rel: 0.0 }));
    // The same block writing a texture's RGBA texels, 8- and 16-bit.
    for bits in [8, 16] {
        let op = TinyCompressDec {
            w: lw,
            h: lh,
            input: DecInput::Planes,
            output: DecOutput::Rgba { width: iw, height: ih, margin, bits },
        };
        let x = rng.planes(Shape::new(1, 3, lh, lw), -1.0, 2.0);
        let what = format!("{bits}-bit RGBA {iw}x{ih} margin {margin}");
        cases.push(Case::new(what, op, vec![x, rng.constants(FLAT_LEN, -0.3, 0.3)], Tolerance { abs: 1.0, rel: 0.0 }));
    }
    // The codec's only block (-4): from 6- and 8-bit codes to the image.
    for bitplanes in [8, 6] {
        let ranges = [(-0.4, 1.3), (0.1, 0.2), (-2.0, -1.0)];
        let op = TinyCompressDec { w: lw, h: lh, input: DecInput::Codes { ranges, bitplanes }, output: op.output };
        let top = 1usize << bitplanes;
        let q = Samples::U8((0..3 * lw * lh).map(|_| rng.below(top) as u8).collect());
        let what = format!("{bitplanes}-bit codes to image {iw}x{ih}");
        let tol = Tolerance { abs: 1.0, rel: 0.0 };
        cases.push(Case::new(what, op, vec![Data::Packed(q), rng.constants(FLAT_LEN, -0.3, 0.3)], tol));
    }
    // Codes to planes (the first of several blocks).
    let op = TinyCompressDec {
        w: lw,
        h: lh,
        input: DecInput::Codes { ranges: [(0.0, 1.0), (-1.0, 1.0), (0.5, 3.0)], bitplanes: 8 },
        output: DecOutput::Planes,
    };
    let q = Samples::U8((0..3 * lw * lh).map(|_| rng.below(256) as u8).collect());
    cases.push(Case::new(
        format!("codes to planes {lw}x{lh}"),
        op,
        vec![Data::Packed(q), rng.constants(FLAT_LEN, -0.3, 0.3)],
        tol,
    ));
    cases
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let mut rng = bench_rng();
    let (lw, lh) = ((w + 4).div_ceil(2), (h + 4).div_ceil(2));
    let ranges = [(0.0, 1.0), (-0.5, 1.5), (0.2, 0.9)];
    let op = TinyCompressDec {
        w: lw,
        h: lh,
        input: DecInput::Codes { ranges, bitplanes: 8 },
        output: DecOutput::Image { width: w, height: h, margin: 2 },
    };
    let q = Samples::U8((0..3 * lw * lh).map(|_| rng.below(256) as u8).collect());
    let weights = constants(rng.values(FLAT_LEN, -0.3, 0.3));
    Ok(Case::new(
        "decoding block from 8-bit codes to 8-bit RGB",
        op,
        vec![Data::Packed(q), weights],
        Tolerance { abs: 1.0, rel: 0.0 },
    ))
}
