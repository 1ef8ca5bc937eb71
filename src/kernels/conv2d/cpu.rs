//! The CPU twin of `conv2d`: a register-tiled direct convolution.
//!
//! Work is split into bands of output rows of one image (rayon tasks). For
//! each channel group a task copies the input rows its band reads into a
//! zero-padded scratch (reused between tasks; so no tap needs a bounds test
//! and the rows stay in cache), then computes the band in tiles of `T`
//! output channels x `PX` columns held in registers: per input channel and
//! tap, `PX / 8` loads of inputs and `T` broadcast weights feed `T * PX`
//! multiply-adds. The old loop, one output channel at a time, loaded an
//! input per multiply-add and spent as long again on per-tap border runs.
//! AVX2 tiles are 4 channels x 16 columns (8 accumulators: 12, 4 x 24, was
//! slower on dev-2c both before FMA, when it spilled, and with it) or 1 x
//! 32 where a group has one output channel (depthwise); the portable build's
//! are 4 x 8 and 1 x 16 (SSE's 4-lane registers). Columns go in chunks of
//! 256 so the input a chunk reads stays in L2 while every output-channel
//! block passes over it.
//!
//! Every output sums as the reference does: the bias, then input channel,
//! kernel row, kernel column. The portable build multiplies then adds (Rust
//! does not contract them); the AVX2 build (picked once by
//! [`crate::cpu::level`]) uses FMA, one rounding per tap, so the two agree
//! to float accuracy rather than bit for bit (`tests/cpu_levels.rs`). Taps
//! in the zero padding add a signed zero, which changes nothing but the sign
//! of an exactly-zero sum.
//!
//! An optional activation is applied to each chunk of a row once its tiles
//! are stored, and the input may be several tensors read as one concatenated
//! along channels, so the Zero-DCE networks run without concatenation copies
//! or an activation pass.

use rayon::prelude::*;

use super::Conv2d;
use crate::kernels::ActivationKind;
use crate::tensor::{Shape, Tensor};

/// f32 lanes of the widest vector the tiles are shaped for (AVX).
const LANES: usize = 8;
/// Columns per pass over the output-channel blocks.
const CHUNK: usize = 256;

/// Weights repacked for the tiles: per group, per block of `t` output
/// channels, `[c][u][v][t]` (zeros past the group's last channel), and the
/// biases `[t]` per block.
struct Packed {
    t: usize,
    blocks: usize,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl Packed {
    fn new(conv: &Conv2d, weight: &[f32], bias: &[f32]) -> Packed {
        let (cin_g, cout_g, kk) = (conv.cin / conv.groups, conv.cout / conv.groups, conv.k * conv.k);
        // Blocks of 4 output channels, except where a group has one (depthwise).
        let t = if cout_g == 1 { 1 } else { 4 };
        let blocks = cout_g.div_ceil(t);
        let per_block = cin_g * kk * t;
        let mut weights = vec![0.0; conv.groups * blocks * per_block];
        let mut b = vec![0.0; conv.groups * blocks * t];
        for g in 0..conv.groups {
            for ob in 0..blocks {
                let blk = g * blocks + ob;
                for lane in 0..t {
                    let oc = ob * t + lane;
                    if oc >= cout_g {
                        continue;
                    }
                    let o = g * cout_g + oc;
                    b[blk * t + lane] = bias[o];
                    for c in 0..cin_g {
                        for tap in 0..kk {
                            weights[blk * per_block + (c * kk + tap) * t + lane] = weight[(o * cin_g + c) * kk + tap];
                        }
                    }
                }
            }
        }
        Packed { t, blocks, weights, bias: b }
    }
}

/// Geometry of one task's padded input scratch.
#[derive(Clone, Copy)]
struct Scratch {
    /// Row stride: the output width rounded up to the lanes, plus k - 1.
    row: usize,
    /// Plane stride.
    plane: usize,
}

/// What every task of one convolution shares.
#[derive(Clone, Copy)]
struct Job<'a> {
    conv: &'a Conv2d,
    inputs: &'a [&'a Tensor],
    packed: &'a Packed,
    act: Option<ActivationKind>,
    out: Shape,
    ptr: OutPtr,
}

/// A pointer to the output that tasks write disjoint parts of.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: every task writes only the rows of its own band (see `run`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// The convolution of `inputs` (read as one tensor concatenated along
/// channels; already checked against `conv` by the caller) into a tensor of
/// shape `out`, with `act` applied to every output.
pub(super) fn run(
    conv: &Conv2d,
    inputs: &[&Tensor],
    weight: &[f32],
    bias: &[f32],
    act: Option<ActivationKind>,
    out: Shape,
) -> Tensor {
    if out.is_empty() {
        return Tensor::zeros(out);
    }
    // The output is not zeroed first: every value of it is stored by a
    // tile (main tiles, the spill tiles for row ends, padding channels into
    // the junk row) before anything reads it, and at these sizes glibc
    // hands back heap memory that calloc would have to clear (a twentieth
    // of Zero-DCE++'s time). Its length is set once the tasks are done.
    let mut data: Vec<f32> = Vec::with_capacity(out.len());
    if cfg!(debug_assertions) {
        // Test builds: a value no tile stored reads as NaN, and every
        // comparison with the reference fails.
        data.resize(out.len(), f32::NAN);
        // SAFETY: shorter, and f32 needs no drop.
        unsafe { data.set_len(0) };
    }
    let packed = Packed::new(conv, weight, bias);
    let h = out.h;
    // Bands of rows: about four tasks per thread, at most 16 rows each.
    let threads = rayon::current_num_threads().max(1);
    let band = (out.n * h).div_ceil(4 * threads).clamp(1, 16).min(h);
    let bands_per_image = h.div_ceil(band);
    let avx2 = crate::cpu::level() == crate::cpu::Level::Avx2Fma;
    let _ = avx2; // read on x86-64 only
    let job = Job { conv, inputs, packed: &packed, act, out, ptr: OutPtr(data.as_mut_ptr()) };
    (0..out.n * bands_per_image).into_par_iter().for_each(|task| {
        let (b, i0) = (task / bands_per_image, (task % bands_per_image) * band);
        let i1 = (i0 + band).min(h);
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the chosen level is never above what the CPU supports.
            return unsafe { band_avx2(job, b, i0, i1) };
        }
        band_rows(job, b, i0, i1)
    });
    // SAFETY: the capacity is out.len() and the bands above stored every
    // value (all rows of every image, all columns, all output channels).
    unsafe { data.set_len(out.len()) };
    Tensor { shape: out, data }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn band_avx2(job: Job, b: usize, i0: usize, i1: usize) {
    band_rows(job, b, i0, i1)
}

/// Output rows `i0..i1` of image `b`, every output channel.
#[inline(always)]
fn band_rows(job: Job, b: usize, i0: usize, i1: usize) {
    let Job { conv, inputs, out, .. } = job;
    let (h, w, k) = (out.h, out.w, conv.k);
    let pad = (k - 1) / 2;
    let w8 = w.div_ceil(LANES) * LANES;
    let rows = i1 - i0 + k - 1;
    let s = Scratch { row: w8 + k - 1, plane: rows * (w8 + k - 1) };
    let cin_g = conv.cin / conv.groups;
    // Input channel c of the concatenated inputs.
    let channel = |c: usize| {
        let mut c = c;
        for x in inputs {
            if c < x.shape.c {
                return x.plane(b, c);
            }
            c -= x.shape.c;
        }
        unreachable!("channels were checked against cin")
    };
    let mut xp = SCRATCH.with(|s| s.take());
    xp.resize(cin_g * s.plane, 0.0);
    for g in 0..conv.groups {
        // The group's padded input: scratch row r is input row i0 + r - pad,
        // column q is input column q - pad; zero outside the image. Every
        // value is written (the buffer is reused between tasks).
        for c in 0..cin_g {
            let src = channel(g * cin_g + c);
            let dst = &mut xp[c * s.plane..(c + 1) * s.plane];
            for (r, row) in dst.chunks_exact_mut(s.row).enumerate() {
                match (i0 + r).checked_sub(pad).filter(|&ii| ii < h) {
                    Some(ii) => {
                        row[..pad].fill(0.0);
                        row[pad..pad + w].copy_from_slice(&src[ii * w..(ii + 1) * w]);
                        row[pad + w..].fill(0.0);
                    }
                    None => row.fill(0.0),
                }
            }
        }
        group_rows(job, (b, g), i0, i1, &xp, s);
    }
    SCRATCH.with(|s| s.replace(xp));
}

thread_local! {
    /// Each worker's padded-input scratch, kept between tasks and calls.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Output rows `i0..i1` of image `b`, the output channels of group `g`,
/// from the group's padded input `xp`.
#[inline(always)]
fn group_rows(job: Job, (b, g): (usize, usize), i0: usize, i1: usize, xp: &[f32], s: Scratch) {
    let Job { conv, packed, act, out, ptr, .. } = job;
    let (h, w, k) = (out.h, out.w, conv.k);
    let w8 = w.div_ceil(LANES) * LANES;
    let (cin_g, cout_g) = (conv.cin / conv.groups, conv.cout / conv.groups);
    let t = packed.t;
    let avx2 = crate::cpu::level() == crate::cpu::Level::Avx2Fma;
    let _ = avx2; // read on x86-64 only
    let per_block = cin_g * k * k * t;
    // Tiles that end past the row store into the spill and their valid
    // part is copied out; output channels past the group's last (padding
    // of the last block) store into the junk row.
    let mut spill = [0f32; 4 * 8];
    let mut junk = vec![0f32; CHUNK + 32];
    for i in i0..i1 {
        let r = i - i0;
        for j_chunk in (0..w8).step_by(CHUNK) {
            let j_end = (j_chunk + CHUNK).min(w8);
            {
                for ob in 0..packed.blocks {
                    let blk = g * packed.blocks + ob;
                    let wts = &packed.weights[blk * per_block..(blk + 1) * per_block];
                    let bias = &packed.bias[blk * t..(blk + 1) * t];
                    let base = r * s.row;
                    // Offset of output (b, o, i, 0) per lane of the block.
                    let row_at = |lane: usize| {
                        let oc = ob * t + lane;
                        (oc < cout_g).then(|| ((b * conv.cout + g * cout_g + oc) * h + i) * w)
                    };
                    // The tiles that end inside the row, stored in place.
                    let px = tile_width(avx2, t);
                    let n = (j_end - j_chunk).min(w.saturating_sub(j_chunk)) / px;
                    if n > 0 {
                        let mut dst = [std::ptr::null_mut(); 4];
                        for (lane, d) in dst.iter_mut().enumerate().take(t) {
                            *d = match row_at(lane) {
                                // SAFETY: row i of plane (b, o) belongs to
                                // this task's band alone; the span ends by w.
                                Some(at) => unsafe { ptr.0.add(at + j_chunk) },
                                None => junk.as_mut_ptr(),
                            };
                        }
                        let a = TileArgs { xp, off: base + j_chunk, s, cin_g, k, wts, bias };
                        match (t, px) {
                            (4, 16) => span::<4, 16, 2>(avx2, a, n, dst),
                            (4, _) => span::<4, 8, 1>(avx2, a, n, dst),
                            (_, 32) => span::<1, 32, 4>(avx2, a, n, dst),
                            _ => span::<1, 16, 2>(avx2, a, n, dst),
                        }
                    }
                    // The rest of the chunk in tiles of 8 through the spill.
                    let mut j = j_chunk + n * px;
                    while j < j_end {
                        let cols = 8.min(w.saturating_sub(j));
                        let mut dst = [std::ptr::null_mut(); 4];
                        for (lane, d) in dst.iter_mut().enumerate().take(t) {
                            *d = spill[lane * 8..].as_mut_ptr();
                        }
                        let a = TileArgs { xp, off: base + j, s, cin_g, k, wts, bias };
                        match t {
                            4 => span::<4, 8, 1>(avx2, a, 1, dst),
                            _ => span::<1, 8, 1>(avx2, a, 1, dst),
                        }
                        for lane in 0..t {
                            let Some(at) = row_at(lane) else { continue };
                            // SAFETY: as above; j + cols <= w.
                            let out = unsafe { std::slice::from_raw_parts_mut(ptr.0.add(at + j), cols) };
                            out.copy_from_slice(&spill[lane * 8..lane * 8 + cols]);
                        }
                        j += 8;
                    }
                    if let Some(f) = act {
                        let cols = j_end.min(w).saturating_sub(j_chunk);
                        for lane in 0..t {
                            let Some(at) = row_at(lane) else { continue };
                            // SAFETY: as above.
                            let out = unsafe { std::slice::from_raw_parts_mut(ptr.0.add(at + j_chunk), cols) };
                            f.apply_all(out);
                        }
                    }
                }
            }
        }
    }
}

/// Columns of the main tiles of `t` output channels: vectors enough to
/// hide the add latency within 16 registers (AVX: 8 lanes; the portable
/// build: SSE's 4).
fn tile_width(avx2: bool, t: usize) -> usize {
    match (avx2, t) {
        (true, 4) => 16,
        (false, 4) => 8,
        (true, _) => 32,
        (false, _) => 16,
    }
}

/// What a tile reads: the padded input from offset `off` (the tile's first
/// column in its row, channel 0 of the group), and its block's packed
/// weights and biases.
#[derive(Clone, Copy)]
struct TileArgs<'a> {
    xp: &'a [f32],
    off: usize,
    s: Scratch,
    cin_g: usize,
    k: usize,
    wts: &'a [f32],
    bias: &'a [f32],
}

/// `n` tiles side by side of `T` output channels x `PX` (= `NV` vectors)
/// columns from `a.off`, output channel `t` stored from `dst[t]` (`n * PX`
/// values each), with the AVX2 build where chosen.
#[inline(always)]
fn span<const T: usize, const PX: usize, const NV: usize>(avx2: bool, a: TileArgs, n: usize, dst: [*mut f32; 4]) {
    // Everything the tiles read is in bounds (checked once, not per load).
    let last = a.off + (a.cin_g - 1) * a.s.plane + (a.k - 1) * a.s.row + a.k - 1 + n * PX;
    assert!(n > 0 && last <= a.xp.len() && a.wts.len() >= a.cin_g * a.k * a.k * T && a.bias.len() >= T);
    assert!(PX == NV * LANES && T <= 4);
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: the level is never above what the CPU supports, the reads
        // were checked above and the caller gives n * PX writable values per dst.
        return unsafe { span_avx2::<T, NV>(a, n, dst) };
    }
    let _ = avx2;
    for q in 0..n {
        let a = TileArgs { off: a.off + q * PX, ..a };
        // SAFETY: as above.
        unsafe { tile::<T, PX>(a, dst.map(|d| d.wrapping_add(q * PX))) }
    }
}

/// [`span`]'s AVX2 build.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn span_avx2<const T: usize, const NV: usize>(a: TileArgs, n: usize, dst: [*mut f32; 4]) {
    for q in 0..n {
        let a = TileArgs { off: a.off + q * NV * LANES, ..a };
        tile_avx2::<T, NV>(a, dst.map(|d| d.wrapping_add(q * NV * LANES)));
    }
}

/// [`tile`] in AVX intrinsics: the accumulators are `T * NV` registers (at
/// most 12), the inputs `NV` and the broadcast weight one. Fused
/// multiply-add (one rounding), so the same summation order as the portable
/// loop but not its bits: the two agree to float accuracy
/// (`tests/cpu_levels.rs`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::needless_range_loop)]
unsafe fn tile_avx2<const T: usize, const NV: usize>(a: TileArgs, dst: [*mut f32; 4]) {
    use std::arch::x86_64::*;
    // Index loops over the constant T and NV: fully unrolled, every
    // accumulator stays in a register (with iterator adaptors LLVM kept the
    // array on the stack and stored each accumulator after its multiply-add).
    let mut acc = [[_mm256_setzero_ps(); NV]; T];
    for t in 0..T {
        for n in 0..NV {
            acc[t][n] = _mm256_set1_ps(a.bias[t]);
        }
    }
    let x = a.xp.as_ptr();
    let mut w = a.wts.as_ptr();
    for c in 0..a.cin_g {
        for u in 0..a.k {
            // SAFETY (all pointer arithmetic): within the bounds tile_any checked.
            let xr = x.add(a.off + c * a.s.plane + u * a.s.row);
            for v in 0..a.k {
                let mut xv = [_mm256_setzero_ps(); NV];
                for n in 0..NV {
                    xv[n] = _mm256_loadu_ps(xr.add(v + n * LANES));
                }
                for t in 0..T {
                    let wb = _mm256_broadcast_ss(&*w.add(t));
                    for n in 0..NV {
                        acc[t][n] = _mm256_fmadd_ps(wb, xv[n], acc[t][n]);
                    }
                }
                w = w.add(T);
            }
        }
    }
    for t in 0..T {
        for n in 0..NV {
            _mm256_storeu_ps(dst[t].add(n * LANES), acc[t][n]);
        }
    }
}

/// One tile, portable: `T` output channels x `PX` columns.
///
/// # Safety
/// Each `dst[t]` takes `PX` values.
#[inline(always)]
unsafe fn tile<const T: usize, const PX: usize>(a: TileArgs, dst: [*mut f32; 4]) {
    let TileArgs { xp, off, s, cin_g, k, wts, bias } = a;
    let mut acc = [[0f32; PX]; T];
    for (a, &bv) in acc.iter_mut().zip(bias) {
        *a = [bv; PX];
    }
    let mut ws = wts.chunks_exact(T);
    for c in 0..cin_g {
        for u in 0..k {
            let r0 = off + c * s.plane + u * s.row;
            let xr = &xp[r0..r0 + PX + k - 1];
            for v in 0..k {
                let xs: &[f32; PX] = xr[v..v + PX].try_into().expect("tile width");
                let wv = ws.next().expect("packed weights");
                for (a, &wt) in acc.iter_mut().zip(wv) {
                    for (a, &x) in a.iter_mut().zip(xs) {
                        *a += wt * x;
                    }
                }
            }
        }
    }
    for (d, a) in dst.iter().zip(&acc) {
        std::ptr::copy_nonoverlapping(a.as_ptr(), *d, PX);
    }
}
