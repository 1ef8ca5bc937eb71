//! One TinyPSSR x2 stage in one dispatch (see `shaders/tinypssr_fused.wgsl`),
//! and its CPU twin [`stage_cpu`].

// Index loops over fixed-size register blocks are the point of the CPU twin: they
// mirror the shader and let the compiler keep every accumulator in a vector register.
#![allow(clippy::needless_range_loop)]

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::contract::{bench_rng, count, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance};
use super::{kernel_desc, KernelDesc, PackPixels, UnpackPixels};
use crate::error::{Error, Result};
use crate::gpu::{grid_groups, Gpu};
use crate::pixel::PixelLayout;
use crate::rng::SplitMix;
use crate::tensor::{Shape, Tensor};

/// Params uniform of `shaders/tinypssr_fused.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
pub struct FusedParams {
    /// Input width.
    pub w: u32,
    /// Input height.
    pub h: u32,
    /// Samples per pixel of the packed input and output (1-4).
    pub channels: u32,
    /// Channels run through the network (the first `colour`).
    pub colour: u32,
    /// 8 or 16 (packed modes).
    pub bits: u32,
    /// 0 packed samples, 1 f32 planes.
    pub in_mode: u32,
    /// 0 packed samples (into a zeroed buffer), 1 f32 planes.
    pub out_mode: u32,
    /// Padding.
    pub _pad: u32,
}

/// Descriptor of the `tinypssr_fused` kernel.
pub static DESC: KernelDesc = kernel_desc!("tinypssr_fused", FusedParams, [Read, Read, ReadWrite], [8, 8, 1]);

/// Number of weights of one stage in the shader's flat layout.
pub const FLAT_LEN: usize = 1356;

/// The fused stage op.
#[derive(Debug, Clone, Copy)]
pub struct TinyPssrFused(pub FusedParams);

impl TinyPssrFused {
    /// Bytes the output needs.
    pub fn out_bytes(&self) -> u64 {
        let p = self.0;
        let pixels = (p.w * 2) as u64 * (p.h * 2) as u64;
        if p.out_mode == 1 {
            pixels * p.colour as u64 * 4
        } else {
            (pixels * p.channels as u64 * p.bits as u64 / 8).next_multiple_of(4)
        }
    }

    /// Records one stage: `src` (packed or planes) to `dst` (which must be
    /// zeroed first in packed output mode), with `weights` from `models::tinypssr::Stage::flat` (the
    /// shader's order, [`FLAT_LEN`] values).
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        weights: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Result<()> {
        self.check_params()?;
        let p = self.0;
        if dst.size() < self.out_bytes() || weights.size() < (FLAT_LEN * 4) as u64 {
            return Err(Error::invalid("tinypssr_fused", "output or weight buffer too small".to_string()));
        }
        gpu.dispatch(
            encoder,
            &DESC,
            bytemuck::bytes_of(&p),
            &[src, weights, dst],
            grid_groups(p.w as usize, p.h as usize, 1),
        )
    }
}

/// Output rows (in stage-input pixels) per parallel task.
const STRIP: usize = 16;
/// Pixels per register block.
const L: usize = 8;

/// One stage's weights, laid out for the inner loops.
struct Packed {
    w1: [[f32; 25]; 16],
    b1: [f32; 16],
    a1: [f32; 16],
    w2: [[f32; 16]; 4],
    b2: [f32; 4],
    a2: [f32; 4],
    w3: [[[f32; 25]; 4]; 8],
    b3: [f32; 8],
    a3: [f32; 8],
    w4: [[f32; 8]; 4],
    b4: [f32; 4],
}

impl Packed {
    /// From the weights in the shader's flat order (see `models::tinypssr::Stage::flat`).
    fn new(flat: &[f32]) -> Packed {
        let mut it = flat.iter().copied();
        let mut take = |dst: &mut [f32]| dst.iter_mut().for_each(|d| *d = it.next().expect("FLAT_LEN weights"));
        let mut p = Packed {
            w1: [[0.0; 25]; 16],
            b1: [0.0; 16],
            a1: [0.0; 16],
            w2: [[0.0; 16]; 4],
            b2: [0.0; 4],
            a2: [0.0; 4],
            w3: [[[0.0; 25]; 4]; 8],
            b3: [0.0; 8],
            a3: [0.0; 8],
            w4: [[0.0; 8]; 4],
            b4: [0.0; 4],
        };
        p.w1.iter_mut().for_each(|o| take(o));
        take(&mut p.b1);
        take(&mut p.a1);
        p.w2.iter_mut().for_each(|k| take(k));
        take(&mut p.b2);
        take(&mut p.a2);
        p.w3.iter_mut().flatten().for_each(|k| take(k));
        take(&mut p.b3);
        take(&mut p.a3);
        p.w4.iter_mut().for_each(|q| take(q));
        take(&mut p.b4);
        p
    }
}

#[inline(always)]
fn prelu(v: f32, a: f32) -> f32 {
    if v >= 0.0 {
        v
    } else {
        a * v
    }
}

/// `acc + w * x`: fused (one rounding, `vfmadd`) in the AVX2+FMA build,
/// multiply then add in the portable one (where `mul_add` would be a libm
/// call). The two builds differ in the last bits (see `tests/cpu_levels.rs`).
#[inline(always)]
fn mac<const FMA: bool>(acc: f32, w: f32, x: f32) -> f32 {
    if FMA {
        w.mul_add(x, acc)
    } else {
        acc + w * x
    }
}

/// A strip's buffers: the input rows y0 - 4 .. y1 + 4 with 4 zero columns
/// each side (zero outside the image), `pw` wide, and room for layer 2's
/// output, rows y0 - 2 .. y1 + 2 of 4 channels with 2 zero columns each
/// side, `mw` wide; `wb` is the width rounded up to whole blocks.
struct StripBufs {
    wb: usize,
    inp: Vec<f32>,
    pw: usize,
    mid: Vec<f32>,
    rmid: usize,
    mw: usize,
}

impl StripBufs {
    #[inline(always)]
    fn new(src: &[f32], h: usize, w: usize, y0: usize, y1: usize) -> StripBufs {
        let wb = w.div_ceil(L) * L;
        let pw = wb + 8;
        let rin = y1 - y0 + 8;
        let mut inp = vec![0.0f32; rin * pw];
        for r in 0..rin {
            let y = y0 as isize - 4 + r as isize;
            if y >= 0 && (y as usize) < h {
                inp[r * pw + 4..r * pw + 4 + w].copy_from_slice(&src[y as usize * w..(y as usize + 1) * w]);
            }
        }
        let (rmid, mw) = (y1 - y0 + 4, wb + 4);
        StripBufs { wb, inp, pw, mid: vec![0.0f32; 4 * rmid * mw], rmid, mw }
    }
}

/// One strip: input rows `y0..y1` of a plane (`src`, h x w) to output rows
/// `2*y0..2*y1` (`dst`, the strip's part of the 2h x 2w plane).
#[inline(always)]
fn strip<const FMA: bool>(p: &Packed, src: &[f32], h: usize, w: usize, y0: usize, y1: usize, dst: &mut [f32]) {
    let StripBufs { wb, inp, pw, mut mid, rmid, mw } = StripBufs::new(src, h, w, y0, y1);
    for r in 0..rmid {
        let y = y0 as isize - 2 + r as isize;
        if y < 0 || y as usize >= h {
            continue; // stays zero: layer 3's padding
        }
        for x0 in (0..wb).step_by(L) {
            let mut m = [[0.0f32; L]; 4];
            for k in 0..4 {
                m[k] = [p.b2[k]; L];
            }
            // Layer 1 in two halves of 8 output channels, so the
            // accumulators (8 x L) and the input block fit the 16 vector
            // registers; layer 2 takes each half as it is done (the same
            // order over the 16 channels).
            for half in 0..2 {
                let mut a = [[0.0f32; L]; 8];
                for o in 0..8 {
                    a[o] = [p.b1[half * 8 + o]; L];
                }
                for u in 0..5 {
                    let row = &inp[(r + u) * pw + x0 + 2..];
                    for v in 0..5 {
                        let xs: [f32; L] = row[v..v + L].try_into().expect("block");
                        for o in 0..8 {
                            let wv = p.w1[half * 8 + o][u * 5 + v];
                            for l in 0..L {
                                a[o][l] = mac::<FMA>(a[o][l], wv, xs[l]);
                            }
                        }
                    }
                }
                for o in 0..8 {
                    for l in 0..L {
                        let v = prelu(a[o][l], p.a1[half * 8 + o]);
                        for k in 0..4 {
                            m[k][l] = mac::<FMA>(m[k][l], p.w2[k][half * 8 + o], v);
                        }
                    }
                }
            }
            for k in 0..4 {
                let dst = &mut mid[(k * rmid + r) * mw + 2 + x0..][..L];
                for l in 0..L {
                    // Columns past the image are layer 3's zero padding.
                    dst[l] = if x0 + l < w { prelu(m[k][l], p.a2[k]) } else { 0.0 };
                }
            }
        }
    }
    // Layers 3-4 and the shuffle.
    let ow = 2 * w;
    for r in 0..y1 - y0 {
        for x0 in (0..wb).step_by(L) {
            let mut z = [[0.0f32; L]; 8];
            for o in 0..8 {
                z[o] = [p.b3[o]; L];
            }
            for k in 0..4 {
                for u in 0..5 {
                    let row = &mid[(k * rmid + r + u) * mw + x0..];
                    for v in 0..5 {
                        let xs: [f32; L] = row[v..v + L].try_into().expect("block");
                        for o in 0..8 {
                            let wv = p.w3[o][k][u * 5 + v];
                            for l in 0..L {
                                z[o][l] = mac::<FMA>(z[o][l], wv, xs[l]);
                            }
                        }
                    }
                }
            }
            let mut q = [[0.0f32; L]; 4];
            for i in 0..4 {
                q[i] = [p.b4[i]; L];
            }
            for o in 0..8 {
                for l in 0..L {
                    let v = prelu(z[o][l], p.a3[o]);
                    for i in 0..4 {
                        q[i][l] = mac::<FMA>(q[i][l], p.w4[i][o], v);
                    }
                }
            }
            for l in 0..L.min(w.saturating_sub(x0)) {
                let x = x0 + l;
                for i in 0..4 {
                    dst[(2 * r + i / 2) * ow + 2 * x + i % 2] = q[i][l];
                }
            }
        }
    }
}

/// The AVX2+FMA build of [`strip`] in intrinsics: the same buffers, the
/// same summation order and one rounding per multiply-add (as `strip::<true>`),
/// but every accumulator an explicit `__m256` (eight pixels) held in a
/// register. LLVM kept `strip`'s accumulator arrays in memory and ran the
/// multiply-adds one lane at a time (`vfmadd231ss` between a load and a
/// store), about a sixth of what the FMA units give.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn strip_avx2(p: &Packed, src: &[f32], h: usize, w: usize, y0: usize, y1: usize, dst: &mut [f32]) {
    use super::simd::prelu8;
    use std::arch::x86_64::*;
    let StripBufs { wb, inp, pw, mut mid, rmid, mw } = StripBufs::new(src, h, w, y0, y1);
    // SAFETY: every load reads `L` floats inside `inp` or `mid` (rows are
    // padded to whole blocks plus the halo), every store writes inside
    // `mid` or through the bounds-checked slices below.
    unsafe {
        for r in 0..rmid {
            let y = y0 as isize - 2 + r as isize;
            if y < 0 || y as usize >= h {
                continue;
            }
            for x0 in (0..wb).step_by(L) {
                let mut m = [_mm256_setzero_ps(); 4];
                for k in 0..4 {
                    m[k] = _mm256_set1_ps(p.b2[k]);
                }
                for half in 0..2 {
                    let mut a = [_mm256_setzero_ps(); 8];
                    for o in 0..8 {
                        a[o] = _mm256_set1_ps(p.b1[half * 8 + o]);
                    }
                    for u in 0..5 {
                        let row = inp.as_ptr().add((r + u) * pw + x0 + 2);
                        for v in 0..5 {
                            let xs = _mm256_loadu_ps(row.add(v));
                            for o in 0..8 {
                                a[o] = _mm256_fmadd_ps(_mm256_set1_ps(p.w1[half * 8 + o][u * 5 + v]), xs, a[o]);
                            }
                        }
                    }
                    for o in 0..8 {
                        let v = prelu8(a[o], p.a1[half * 8 + o]);
                        for k in 0..4 {
                            m[k] = _mm256_fmadd_ps(_mm256_set1_ps(p.w2[k][half * 8 + o]), v, m[k]);
                        }
                    }
                }
                for k in 0..4 {
                    let out = &mut mid[(k * rmid + r) * mw + 2 + x0..][..L];
                    let v = prelu8(m[k], p.a2[k]);
                    if x0 + L <= w {
                        _mm256_storeu_ps(out.as_mut_ptr(), v);
                    } else {
                        let mut t = [0.0f32; L];
                        _mm256_storeu_ps(t.as_mut_ptr(), v);
                        for l in 0..L {
                            // Columns past the image are layer 3's zero padding.
                            out[l] = if x0 + l < w { t[l] } else { 0.0 };
                        }
                    }
                }
            }
        }
        let ow = 2 * w;
        for r in 0..y1 - y0 {
            for x0 in (0..wb).step_by(L) {
                let mut z = [_mm256_setzero_ps(); 8];
                for o in 0..8 {
                    z[o] = _mm256_set1_ps(p.b3[o]);
                }
                for k in 0..4 {
                    for u in 0..5 {
                        let row = mid.as_ptr().add((k * rmid + r + u) * mw + x0);
                        for v in 0..5 {
                            let xs = _mm256_loadu_ps(row.add(v));
                            for o in 0..8 {
                                z[o] = _mm256_fmadd_ps(_mm256_set1_ps(p.w3[o][k][u * 5 + v]), xs, z[o]);
                            }
                        }
                    }
                }
                let mut q = [_mm256_setzero_ps(); 4];
                for i in 0..4 {
                    q[i] = _mm256_set1_ps(p.b4[i]);
                }
                for o in 0..8 {
                    let v = prelu8(z[o], p.a3[o]);
                    for i in 0..4 {
                        q[i] = _mm256_fmadd_ps(_mm256_set1_ps(p.w4[i][o]), v, q[i]);
                    }
                }
                // The shuffle: output row 2r + i / 2 takes q[i] (even i) and
                // q[i + 1] interleaved, pixels 2x and 2x + 1.
                for dy in 0..2 {
                    let (e, o) = (q[2 * dy], q[2 * dy + 1]);
                    let lo = _mm256_unpacklo_ps(e, o);
                    let hi = _mm256_unpackhi_ps(e, o);
                    let first = _mm256_permute2f128_ps::<0x20>(lo, hi);
                    let second = _mm256_permute2f128_ps::<0x31>(lo, hi);
                    let at = (2 * r + dy) * ow + 2 * x0;
                    if x0 + L <= w {
                        let out = &mut dst[at..at + 2 * L];
                        _mm256_storeu_ps(out.as_mut_ptr(), first);
                        _mm256_storeu_ps(out.as_mut_ptr().add(L), second);
                    } else {
                        let mut t = [0.0f32; 2 * L];
                        _mm256_storeu_ps(t.as_mut_ptr(), first);
                        _mm256_storeu_ps(t.as_mut_ptr().add(L), second);
                        let n = 2 * (w - x0);
                        dst[at..at + n].copy_from_slice(&t[..n]);
                    }
                }
            }
        }
    }
}

fn run_strip(p: &Packed, src: &[f32], h: usize, w: usize, y0: usize, y1: usize, dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::level() == crate::cpu::Level::Avx2Fma {
        // SAFETY: the chosen level is never above what the CPU supports.
        return unsafe { strip_avx2(p, src, h, w, y0, y1, dst) };
    }
    strip::<false>(p, src, h, w, y0, y1, dst)
}

/// One x2 stage on (N, 1, H, W) planes with `weights` in the shader's flat
/// order: the CPU twin of the kernel, fused per strip of rows on all cores.
/// Layers 1-2 run over the strip plus a 2-row halo into a small 4-channel
/// buffer (zero outside the image: layer 3's padding); layers 3-4 and the
/// pixel shuffle run from there. Pixels go in blocks of 8 with every
/// channel's accumulator in registers, so the compiler vectorises across
/// pixels; on x86-64 an AVX2+FMA build of the hot loop is chosen at run
/// time (`crate::cpu`). `TinyPssr::forward_cpu` (layer by layer) is the
/// reference it is tested against.
pub fn stage_cpu(weights: &[f32], x: &Tensor) -> Result<Tensor> {
    if weights.len() != FLAT_LEN {
        return Err(Error::invalid("tinypssr_fused", format!("{} weights, expected {FLAT_LEN}", weights.len())));
    }
    if x.shape.c != 1 {
        return Err(Error::invalid("tinypssr_fused", format!("input {} must be single-channel planes", x.shape)));
    }
    let p = Packed::new(weights);
    let sh = x.shape;
    let (h, w) = (sh.h, sh.w);
    let mut y = Tensor::zeros(Shape::new(sh.n, 1, 2 * h, 2 * w));
    if h == 0 || w == 0 {
        return Ok(y);
    }
    // Planes, then strips of output rows: each task owns its rows.
    y.data.par_chunks_mut(4 * h * w).enumerate().for_each(|(n, plane)| {
        let src = &x.data[n * h * w..(n + 1) * h * w];
        plane.par_chunks_mut(2 * STRIP * 2 * w).enumerate().for_each(|(i, dst)| {
            let y0 = i * STRIP;
            run_strip(&p, src, h, w, y0, (y0 + STRIP).min(h), dst);
        });
    });
    Ok(y)
}

impl TinyPssrFused {
    fn check_params(&self) -> Result<()> {
        let p = self.0;
        let ok = (1..=4).contains(&p.channels)
            && (1..=p.channels).contains(&p.colour)
            && (p.bits == 8 || p.bits == 16)
            && p.in_mode <= 1
            && p.out_mode <= 1;
        if !ok {
            return Err(Error::invalid("tinypssr_fused", format!("bad params {p:?}")));
        }
        Ok(())
    }

    fn layout(&self, scale: usize) -> PixelLayout {
        let p = self.0;
        PixelLayout {
            n: 1,
            height: p.h as usize * scale,
            width: p.w as usize * scale,
            channels: p.channels as usize,
            bits: p.bits,
        }
    }

    /// The colour planes, (colour, 1, h, w).
    fn planes_shape(&self, scale: usize) -> Shape {
        let p = self.0;
        Shape::new(p.colour as usize, 1, p.h as usize * scale, p.w as usize * scale)
    }
}

impl Kernel for TinyPssrFused {
    fn desc(&self) -> &'static KernelDesc {
        &DESC
    }
    fn output(&self, inputs: &[&Data]) -> Result<Output> {
        self.check_params()?;
        count(DESC.name, inputs.len(), 2)?;
        let weights = inputs[1].planes(DESC.name, 1)?;
        if weights.data.len() != FLAT_LEN {
            return Err(Error::invalid(
                "tinypssr_fused",
                format!("{} weights, expected {FLAT_LEN}", weights.data.len()),
            ));
        }
        let input_ok = match inputs[0] {
            Data::Planes(t) => self.0.in_mode == 1 && t.shape == self.planes_shape(1),
            Data::Packed(s) => self.0.in_mode == 0 && s.bits() == self.0.bits && s.len() == self.layout(1).samples(),
        };
        if !input_ok {
            return Err(Error::invalid(
                "tinypssr_fused",
                format!("input {:?} does not fit {:?}", inputs[0].output(), self.0),
            ));
        }
        Ok(if self.0.out_mode == 1 {
            Output::Planes(self.planes_shape(2))
        } else {
            Output::Packed { bits: self.0.bits, len: self.layout(2).samples() }
        })
    }
    /// Unpacks (in packed mode), runs [`stage_cpu`] on each colour plane and
    /// packs (in packed mode, the channels past `colour` left zero as the shader leaves them).
    fn cpu(&self, inputs: &[&Data]) -> Result<Data> {
        self.output(inputs)?;
        let weights = &inputs[1].planes(DESC.name, 1)?.data;
        let x = match inputs[0] {
            Data::Planes(t) => t.clone(),
            Data::Packed(s) => {
                let all = UnpackPixels(self.layout(1)).cpu(s)?;
                let n = self.planes_shape(1).len();
                Tensor::from_vec(self.planes_shape(1), all.data[..n].to_vec())?
            }
        };
        let y = stage_cpu(weights, &x)?;
        if self.0.out_mode == 1 {
            return Ok(Data::Planes(y));
        }
        let l = self.layout(2);
        let mut all = y.data;
        all.resize(l.samples(), 0.0);
        Ok(Data::Packed(PackPixels(l).cpu(&Tensor::from_vec(l.shape(), all)?)?))
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        count(DESC.name, inputs.len(), 2)?;
        if self.0.out_mode == 0 {
            crate::gpu::clear_buffer(DESC.name, encoder, out.buffer(), 0, None)?;
        }
        TinyPssrFused::encode(self, gpu, encoder, inputs[0].buffer(), inputs[1].buffer(), out.buffer())
    }
}

/// The registry line of `tinypssr_fused`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

fn params(w: usize, h: usize, channels: u32, bits: u32, planes: bool) -> FusedParams {
    let mode = planes as u32;
    FusedParams {
        w: w as u32,
        h: h as u32,
        channels,
        colour: channels.min(3),
        bits,
        in_mode: mode,
        out_mode: mode,
        _pad: 0,
    }
}

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    // f32 planes in and out: sums of 400 products in another order.
    let op = TinyPssrFused(params(w, h, 3, 8, true));
    let x = rng.planes(op.planes_shape(1), 0.0, 1.0);
    let weights = rng.constants(FLAT_LEN, -0.2, 0.2);
    cases.push(Case::new(format!("planes {w}x{h}"), op, vec![x, weights], Tolerance { abs: 1e-4, rel: 1e-4 }));
    // Packed pixels in and out (alpha left zero): one level after rounding.
    for (channels, bits) in [(3, 8), (4, 16), (1, 8)] {
        let op = TinyPssrFused(params(w, h, channels, bits, false));
        let x = Data::Packed(rng.samples(op.layout(1)));
        let weights = rng.constants(FLAT_LEN, -0.2, 0.2);
        let what = format!("packed {channels}x{bits}-bit {w}x{h}");
        cases.push(Case::new(what, op, vec![x, weights], Tolerance { abs: 1.0, rel: 0.0 }));
    }
    cases
}

fn bench(w: usize, h: usize) -> Result<Case> {
    // One x2 stage, 8-bit RGB in and out.
    let op = TinyPssrFused(params(w, h, 3, 8, false));
    let mut rng = bench_rng();
    let x = Data::Packed(rng.samples(op.layout(1)));
    let weights = rng.constants(FLAT_LEN, -0.2, 0.2);
    Ok(Case::new("x2 stage, 8-bit RGB", op, vec![x, weights], Tolerance { abs: 1.0, rel: 0.0 }))
}
