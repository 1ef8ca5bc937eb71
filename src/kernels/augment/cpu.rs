//! The CPU twin of the `augment` kernel: the per-pixel path that mirrors
//! the shader, the separable two-pass path taken when no stage rotates, and
//! the packed-sample path.
// Some state and helpers serve only the x86-64 AVX2 paths; elsewhere
// (aarch64, wasm32) the portable loops run and leave them unused.
#![cfg_attr(not(target_arch = "x86_64"), allow(unused_mut, unused_variables, dead_code))]

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor};

use super::*;

impl AugmentPass {
    /// Runs the pass on the CPU.
    pub fn cpu(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = Tensor::zeros(self.out_shape(x.shape));
        self.cpu_into(x, &mut y.data)?;
        Ok(y)
    }

    /// Runs the pass on the CPU into `y` (C planes of out_h x out_w).
    pub fn cpu_into(&self, x: &Tensor, y: &mut [f32]) -> Result<()> {
        self.check(x.shape)?;
        let s = x.shape;
        let (ow, oh, nc) = (self.out_w, self.out_h, s.c);
        if y.len() != nc * ow * oh {
            return Err(Error::invalid("augment", format!("output holds {} values, need {}", y.len(), nc * ow * oh)));
        }
        let prog = self.program();
        let pr = self.params(s, 0);
        if self.cpu_separable(x, y, &pr, &prog) {
            return Ok(());
        }
        let plane = ow * oh;
        // Rows in parallel; each task writes its row of every plane.
        let mut rows: Vec<Vec<f32>> = vec![Vec::new(); oh];
        rows.par_iter_mut().enumerate().for_each(|(gy, row)| {
            row.resize(nc * ow, 0.0);
            for gx in 0..ow {
                let v = pixel(self, &pr, &prog, &x.data, gx as u32, gy as u32);
                for c in 0..nc {
                    row[c * ow + gx] = v[c];
                }
            }
        });
        for (gy, row) in rows.iter().enumerate() {
            for c in 0..nc {
                y[c * plane + gy * ow..c * plane + gy * ow + ow].copy_from_slice(&row[c * ow..c * ow + ow]);
            }
        }
        Ok(())
    }

    /// The CPU fast path for passes whose maps are all axis-aligned (flips,
    /// crops, pads, resizes, rot180, no rotation): each output column and row
    /// follows the stages on its own, the filter runs as two 1-D passes over
    /// precomputed taps, then colour per pixel. Same arithmetic as the
    /// per-pixel path up to float reassociation. False if not applicable.
    fn cpu_separable(&self, x: &Tensor, y: &mut [f32], pr: &AugmentParams, prog: &[f32]) -> bool {
        if !self.is_axis_aligned() {
            return false;
        }
        let s = x.shape;
        let (ow, oh, nc, iw, ih) = (self.out_w, self.out_h, s.c, s.w, s.h);
        let xs: Vec<Axis> = (0..ow).map(|o| self.land_axis(o, 0)).collect();
        let ys: Vec<Axis> = (0..oh).map(|o| self.land_axis(o, 1)).collect();
        let xt: Vec<Option<(Vec<usize>, Vec<f32>)>> =
            xs.iter().map(|p| p.ok().map(|p| taps(pr.filter, p, self.fx, iw))).collect();
        let yt: Vec<Option<(Vec<usize>, Vec<f32>)>> =
            ys.iter().map(|p| p.ok().map(|p| taps(pr.filter, p, self.fy, ih))).collect();
        // Horizontal pass over the input rows some output row reads.
        let mut needed = vec![usize::MAX; ih];
        let mut rows = 0;
        for (idx, _) in yt.iter().flatten() {
            for &r in idx {
                if needed[r] == usize::MAX {
                    needed[r] = rows;
                    rows += 1;
                }
            }
        }
        let mut hbuf = vec![0.0f32; nc * rows * ow];
        let order: Vec<usize> = {
            let mut o = vec![0; rows];
            for (r, &k) in needed.iter().enumerate() {
                if k != usize::MAX {
                    o[k] = r;
                }
            }
            o
        };
        hbuf.par_chunks_mut(ow).enumerate().for_each(|(k, out)| {
            let (c, r) = (k / rows, order[k % rows]);
            let src = &x.data[(c * ih + r) * iw..(c * ih + r + 1) * iw];
            for (o, t) in out.iter_mut().zip(&xt) {
                if let Some((idx, w)) = t {
                    *o = idx.iter().zip(w).map(|(&i, &wv)| wv * src[i]).sum();
                }
            }
        });
        let plane = ow * oh;
        let mut outs: Vec<Vec<f32>> = vec![Vec::new(); oh];
        outs.par_iter_mut().enumerate().for_each(|(gy, row)| {
            row.resize(nc * ow, 0.0);
            for gx in 0..ow {
                let (mut v, fill_order) = match fill_stage(xs[gx], ys[gy]) {
                    Some(k) => fill_of(prog, k, nc),
                    None => {
                        let (idx, w) = yt[gy].as_ref().expect("row inside");
                        let mut v = [0.0f32; 4];
                        for (c, vc) in v.iter_mut().enumerate().take(nc) {
                            *vc = idx.iter().zip(w).map(|(&r, &wv)| wv * hbuf[(c * rows + needed[r]) * ow + gx]).sum();
                        }
                        (v, -1.0)
                    }
                };
                colour(pr, prog, &mut v, fill_order, gy as u32 * pr.out_w + gx as u32);
                for c in 0..nc {
                    row[c * ow + gx] = v[c];
                }
            }
        });
        for (gy, row) in outs.iter().enumerate() {
            for c in 0..nc {
                y[c * plane + gy * ow..c * plane + gy * ow + ow].copy_from_slice(&row[c * ow..c * ow + ow]);
            }
        }
        true
    }
}

#[inline(always)]
fn kernel_weight(filter: u32, t: f32) -> f32 {
    let a = t.abs();
    if filter == 1 {
        return (1.0 - a).max(0.0);
    }
    if a < 1.0 {
        (1.5 * a - 2.5) * a * a + 1.0
    } else if a < 2.0 {
        ((-0.5 * a + 2.5) * a - 4.0) * a + 2.0
    } else {
        0.0
    }
}

fn sample(p: &AugmentParams, x: &[f32], c: u32, px: f32, py: f32) -> f32 {
    let (w, h) = (p.in_w as i32, p.in_h as i32);
    let base = (c * p.in_w * p.in_h) as usize;
    if p.filter == 0 {
        let i = (px.floor() as i32).clamp(0, w - 1);
        let j = (py.floor() as i32).clamp(0, h - 1);
        return x[base + j as usize * p.in_w as usize + i as usize];
    }
    let radius = if p.filter == 1 { 1.0 } else { 2.0 };
    let (ux, uy) = (px - 0.5, py - 0.5);
    let x0 = (ux - radius * p.fx).ceil() as i32;
    let x1 = ((ux + radius * p.fx).floor() as i32).min(x0 + MAX_TAPS - 1);
    let y0 = (uy - radius * p.fy).ceil() as i32;
    let y1 = ((uy + radius * p.fy).floor() as i32).min(y0 + MAX_TAPS - 1);
    let mut sx = 0.0f32;
    for i in x0..=x1 {
        sx += kernel_weight(p.filter, (i as f32 - ux) / p.fx);
    }
    let (mut acc, mut sy) = (0.0f32, 0.0f32);
    for j in y0..=y1 {
        let wy = kernel_weight(p.filter, (j as f32 - uy) / p.fy);
        if wy == 0.0 {
            continue;
        }
        sy += wy;
        let row = base + j.clamp(0, h - 1) as usize * p.in_w as usize;
        let mut r = 0.0f32;
        for i in x0..=x1 {
            let wx = kernel_weight(p.filter, (i as f32 - ux) / p.fx);
            r += wx * x[row + i.clamp(0, w - 1) as usize];
        }
        acc += wy * r;
    }
    acc / (sx * sy)
}

/// One output pixel, exactly as the shader computes it.
fn pixel(pass: &AugmentPass, p: &AugmentParams, prog: &[f32], x: &[f32], gx: u32, gy: u32) -> [f32; 4] {
    let nc = p.channels.min(4) as usize;
    let (mut v, fill_order) = match pass.land(gx as usize, gy as usize) {
        Err(k) => fill_of(prog, k, nc),
        Ok((px, py)) => {
            let mut v = [0.0f32; 4];
            for (c, vc) in v.iter_mut().enumerate().take(nc) {
                *vc = sample(p, x, c as u32, px, py);
            }
            (v, -1.0)
        }
    };
    colour(p, prog, &mut v, fill_order, gy * p.out_w + gx);
    v
}

/// The fill colour of geometric stage `k` (first `nc` channels) and its order.
fn fill_of(prog: &[f32], k: usize, nc: usize) -> ([f32; 4], f32) {
    let o = k * 16;
    let mut v = [0.0f32; 4];
    v[..nc].copy_from_slice(&prog[o + 9..o + 9 + nc]);
    (v, prog[o + 13])
}

/// The taps of one axis at input position `p` (pixel centres at i + 0.5)
/// with footprint `f`: input indices (clamped to 0..n) and normalised
/// weights, as the shader's `sample` uses them.
fn taps(filter: u32, p: f32, f: f32, n: usize) -> (Vec<usize>, Vec<f32>) {
    let mut t = Taps::new();
    t.fill(filter, p, f, n);
    (t.idx[..t.n].iter().map(|&i| i as usize).collect(), t.w[..t.n].to_vec())
}

/// The taps of one axis in place, without allocating: what [`taps`] returns,
/// for the per-pixel paths (a rotation needs new taps at every pixel). Made
/// once per row of output and refilled per pixel.
struct Taps {
    n: usize,
    idx: [u32; MAX_TAPS as usize],
    w: [f32; MAX_TAPS as usize],
}

impl Taps {
    fn new() -> Taps {
        Taps { n: 0, idx: [0; MAX_TAPS as usize], w: [0.0; MAX_TAPS as usize] }
    }

    /// The same indices and weights as [`taps`], with the same float steps
    /// (weights summed in order, each divided by the sum).
    #[inline(always)]
    fn fill(&mut self, filter: u32, p: f32, f: f32, n: usize) {
        if filter == 0 {
            self.n = 1;
            self.idx[0] = (p.floor() as i64).clamp(0, n as i64 - 1) as u32;
            self.w[0] = 1.0;
            return;
        }
        let radius = if filter == 1 { 1.0 } else { 2.0 };
        let u = p - 0.5;
        let i0 = ceil_i32(u - radius * f);
        let i1 = floor_i32(u + radius * f).min(i0 + MAX_TAPS - 1);
        let count = (i1 - i0 + 1).max(0) as usize;
        let mut sum = 0.0f32;
        for k in 0..count {
            let i = i0 + k as i32;
            let w = kernel_weight(filter, (i as f32 - u) / f);
            sum += w;
            self.w[k] = w;
            self.idx[k] = i.clamp(0, n as i32 - 1) as u32;
        }
        for w in &mut self.w[..count] {
            *w /= sum;
        }
        self.n = count;
    }
}

/// `x.ceil() as i32` for every f32 (saturating, NaN to 0) without the libm
/// call the x86-64 baseline makes for `ceil` (no SSE4.1 rounding there):
/// a rotation takes two per axis per pixel.
#[inline]
fn ceil_i32(x: f32) -> i32 {
    let i = x as i32;
    if (i as f32) < x {
        i.saturating_add(1)
    } else {
        i
    }
}

/// `x.floor() as i32` likewise.
#[inline]
fn floor_i32(x: f32) -> i32 {
    let i = x as i32;
    if x < i as f32 {
        i.saturating_sub(1)
    } else {
        i
    }
}

/// For an axis-aligned pass: the stage whose fill a pixel gets from its
/// column's and row's landings (the one met first, last stage first), if any.
fn fill_stage(x: Axis, y: Axis) -> Option<usize> {
    match (x, y) {
        (Err(a), Err(b)) => Some(a.max(b)),
        (Err(a), _) | (_, Err(a)) => Some(a),
        _ => None,
    }
}

/// The colour stages and the output mode on one pixel's values.
#[inline]
fn colour(p: &AugmentParams, prog: &[f32], v: &mut [f32; 4], fill_order: f32, pixel: u32) {
    let nc = p.channels.min(4) as usize;
    if nc >= 3 {
        for j in 0..p.n_col as usize {
            let o = COL + j * 16;
            if prog[o + 1] <= fill_order {
                continue;
            }
            match prog[o] as u32 {
                0 => {
                    let (r, g, b) = (v[0], v[1], v[2]);
                    v[0] = prog[o + 2] * r + prog[o + 3] * g + prog[o + 4] * b + prog[o + 5];
                    v[1] = prog[o + 6] * r + prog[o + 7] * g + prog[o + 8] * b + prog[o + 9];
                    v[2] = prog[o + 10] * r + prog[o + 11] * g + prog[o + 12] * b + prog[o + 13];
                }
                1 => {
                    for vc in v.iter_mut().take(3) {
                        *vc = vc.max(0.0).powf(prog[o + 14]);
                    }
                }
                _ => add_noise(v, prog[o + 14], p.seed, pixel),
            }
        }
    }
    for (c, vc) in v.iter_mut().enumerate().take(nc) {
        if p.out_mode >= 1 {
            *vc = vc.clamp(0.0, 1.0);
        }
        if p.out_mode == 2 && c < 3 {
            *vc = (*vc - prog[NORM + c]) / prog[NORM + 3 + c];
        }
    }
}

/// The noise stage: `sigma` times the shader's standard normal on the
/// colour channels. Never inlined: `ln` and `cos` are intrinsics LLVM may
/// speculate, and inlined into [`colour`] it hoisted the three draws out of
/// the stage loop, paying for them on every pixel of passes without noise
/// (a fifth of the seed-004 chain's time).
#[inline(never)]
fn add_noise(v: &mut [f32; 4], sigma: f32, seed: u32, pixel: u32) {
    for (c, vc) in v.iter_mut().enumerate().take(3) {
        *vc += sigma * normal(seed, pixel, c as u32, 0);
    }
}

/// Values the separable path's 1-D filter along x reads: packed samples,
/// or the f32 sums of the pass along y when that runs first.
pub trait Lane: Copy + Send + Sync {
    /// The value as a float (exact for u8 and u16).
    fn lane(self) -> f32;
}

impl Lane for u8 {
    #[inline(always)]
    fn lane(self) -> f32 {
        self as f32
    }
}

impl Lane for u16 {
    #[inline(always)]
    fn lane(self) -> f32 {
        self as f32
    }
}

impl Lane for f32 {
    #[inline(always)]
    fn lane(self) -> f32 {
        self
    }
}

/// Packed sample types the CPU packed path reads and writes.
pub trait PackedSample: Lane {
    /// A quantised value back to a sample.
    fn from_u32(v: u32) -> Self;
    /// The sample as an index.
    fn idx(self) -> usize;
}

impl PackedSample for u8 {
    fn from_u32(v: u32) -> Self {
        v as u8
    }
    fn idx(self) -> usize {
        self as usize
    }
}

impl PackedSample for u16 {
    fn from_u32(v: u32) -> Self {
        v as u16
    }
    fn idx(self) -> usize {
        self as usize
    }
}

/// Where an output pixel's point lands: an input position, or the fill of stage k.
type Landing = std::result::Result<(f32, f32), usize>;
/// The same for one coordinate of an axis-aligned pass.
type Axis = std::result::Result<f32, usize>;

impl AugmentPass {
    /// Follows the geometric stages from output pixel (gx, gy), as the shader does.
    #[inline]
    fn land(&self, gx: usize, gy: usize) -> Landing {
        let (mut px, mut py) = (gx as f32 + 0.5, gy as f32 + 0.5);
        for (k, g) in self.geo.iter().enumerate().rev() {
            let m = &g.map;
            (px, py) = (m[0] * px + m[1] * py + m[2], m[3] * px + m[4] * py + m[5]);
            let (out_x, out_y) = (px < 0.0 || px >= g.w, py < 0.0 || py >= g.h);
            if g.border != Border::Inside && (out_x || out_y) {
                match g.border {
                    Border::Constant(_) => return Err(k),
                    Border::Edge => {
                        px = if out_x { px.clamp(0.5, g.w - 0.5) } else { px };
                        py = if out_y { py.clamp(0.5, g.h - 0.5) } else { py };
                    }
                    _ => {
                        px = if out_x { reflect_index(px - 0.5, g.w) + 0.5 } else { px };
                        py = if out_y { reflect_index(py - 0.5, g.h) + 0.5 } else { py };
                    }
                }
            }
        }
        Ok((px, py))
    }

    /// For axis-aligned passes: where output column (`axis` 0) or row (1)
    /// `o` lands on that axis alone, or the stage whose fill it hits.
    fn land_axis(&self, o: usize, axis: usize) -> Axis {
        let mut p = o as f32 + 0.5;
        for (k, g) in self.geo.iter().enumerate().rev() {
            let (a, c, size) = if axis == 0 { (g.map[0], g.map[2], g.w) } else { (g.map[4], g.map[5], g.h) };
            p = a * p + c;
            if g.border != Border::Inside && (p < 0.0 || p >= size) {
                match g.border {
                    Border::Constant(_) => return Err(k),
                    Border::Edge => p = p.clamp(0.5, size - 0.5),
                    _ => p = reflect_index(p - 0.5, size) + 0.5,
                }
            }
        }
        Ok(p)
    }

    /// True when no stage mixes the axes (no rotation but by 180 degrees):
    /// each output column and row then follows the stages on its own.
    fn is_axis_aligned(&self) -> bool {
        self.geo.iter().all(|g| g.map[1] == 0.0 && g.map[3] == 0.0)
    }

    /// True when every stage maps pixel centres onto pixel centres (flips,
    /// quarter turns, crops, pads): sampling is then a plain gather.
    fn is_gather(&self) -> bool {
        self.geo.iter().all(|g| {
            let m = &g.map;
            let unit = |a: f32, b: f32| (a.abs() == 1.0 && b == 0.0) || (a == 0.0 && b.abs() == 1.0);
            unit(m[0], m[1]) && unit(m[3], m[4]) && m[2].fract() == 0.0 && m[5].fract() == 0.0
        })
    }

    /// The pass straight on packed interleaved samples (`nc` channels, `w` x
    /// `h`, maximum value `maxv`), to packed samples of the same kind: no
    /// planar float image in between. Gathers for pixel moves, two 1-D
    /// filter passes for axis-aligned resampling, per-pixel taps otherwise.
    /// Same arithmetic as [`AugmentPass::cpu`] followed by packing (up to
    /// float reassociation). `None` for normalising passes.
    pub fn cpu_packed<T: PackedSample>(
        &self,
        src: &[T],
        w: usize,
        h: usize,
        nc: usize,
        maxv: f32,
    ) -> Option<Result<Vec<T>>> {
        if matches!(self.out_mode, OutMode::Normalize { .. }) {
            return None;
        }
        if let Err(e) = self.check(Shape::new(1, nc, h, w)) {
            return Some(Err(e));
        }
        if src.len() != w * h * nc {
            return Some(Err(Error::invalid("augment", format!("{} samples for {w}x{h}x{nc}", src.len()))));
        }
        let prog = self.program();
        let pr = self.params(Shape::new(1, nc, h, w), 0);
        let (ow, oh) = (self.out_w, self.out_h);
        let mut out: Vec<T> = vec![T::from_u32(0); ow * oh * nc];
        let plain = self.colour.is_empty() && self.out_mode == OutMode::Clamp;
        // s / maxv for every sample value: the same floats as unpacking divides to.
        let unit: Vec<f32> = (0..=maxv as u32).map(|v| v as f32 / maxv).collect();
        // Every colour stage affine (jitter; no gamma or noise), clamped
        // output, colour channels: the stages' matrices, read once.
        let affine: Option<Vec<[f32; 12]>> = (0..self.colour.len())
            .map(|j| {
                let o = COL + j * 16;
                matches!(self.colour[j].0, ColourOp::Affine { .. })
                    .then(|| prog[o + 2..o + 14].try_into().expect("12 values"))
            })
            .collect();
        let affine_finish = affine.as_ref().filter(|_| nc >= 3 && self.out_mode == OutMode::Clamp);
        let finish = |v: &mut [f32; 4], fill_order: f32, pixel: u32, dst: &mut [T]| {
            match affine_finish {
                // A sampled pixel (not a fill, which skips the stages before
                // its own) goes through every stage: `colour`'s float steps
                // without reading the program per pixel. Its clamp is the
                // first step of `quantise`, so it is left to that.
                Some(stages) if fill_order < 0.0 => {
                    let mut rgb = (v[0], v[1], v[2]);
                    for m in stages {
                        rgb = apply_affine(m, rgb);
                    }
                    (v[0], v[1], v[2]) = rgb;
                }
                _ => colour(&pr, &prog, v, fill_order, pixel),
            }
            for c in 0..nc {
                dst[c] = T::from_u32(crate::kernels::pack_pixels::quantise(v[c], maxv));
            }
        };
        // 8-bit samples whose colour stages each act on one channel alone
        // (brightness, contrast, gamma; no saturation, hue, grey or noise):
        // a pixel moved unresampled takes its output from a table per
        // channel, filled by running the same stages on every value, so the
        // same bytes as the per-pixel path at a table lookup per sample.
        let per_channel = self.colour.iter().all(|(op, _)| match op {
            ColourOp::Affine { m, .. } => [1, 2, 3, 5, 6, 7].iter().all(|&k| m[k] == 0.0),
            ColourOp::Gamma(_) => true,
            ColourOp::Noise(_) => false,
        });
        let lut: Option<Vec<T>> = (self.is_gather() && !plain && per_channel && maxv == 255.0).then(|| {
            let mut lut = vec![T::from_u32(0); 256 * nc];
            for s in 0..256usize {
                let mut v = [unit[s]; 4];
                colour(&pr, &prog, &mut v, -1.0, 0);
                for c in 0..nc {
                    lut[c * 256 + s] = T::from_u32(crate::kernels::pack_pixels::quantise(v[c], maxv));
                }
            }
            lut
        });
        if let (Some(lut), true) = (&lut, self.geo.is_empty() && (ow, oh) == (w, h)) {
            // Colour alone: every sample through its channel's table.
            // A loop per channel count (the tables fixed-size arrays, so
            // no bounds checks), rows in tasks of at least 64 Ki samples.
            fn lut_row<T: PackedSample, const C: usize>(d: &mut [T], s: &[T], lut: &[T]) {
                let t: [&[T; 256]; C] = std::array::from_fn(|c| lut[c * 256..c * 256 + 256].try_into().expect("256"));
                for (dp, sp) in d.chunks_exact_mut(C).zip(s.chunks_exact(C)) {
                    for c in 0..C {
                        // 8-bit values: the mask changes nothing and lets the
                        // compiler drop the bounds check.
                        dp[c] = t[c][sp[c].idx() & 255];
                    }
                }
            }
            let rows = (65536 / (ow * nc).max(1)).max(1);
            out.par_chunks_mut(ow * nc).zip(src.par_chunks(w * nc)).with_min_len(rows).for_each(|(d, s)| match nc {
                1 => lut_row::<T, 1>(d, s, lut),
                2 => lut_row::<T, 2>(d, s, lut),
                3 => lut_row::<T, 3>(d, s, lut),
                _ => lut_row::<T, 4>(d, s, lut),
            });
            return Some(Ok(out));
        }
        // Colour alone with every stage affine (jitter: brightness,
        // contrast, saturation, hue, grey): the stages' matrices read once,
        // then a loop per row specialised on the channel count, with the
        // same float steps per pixel as `colour` and packing.
        if let (Some(stages), true) = (affine_finish, self.geo.is_empty() && (ow, oh) == (w, h)) {
            let avx2 = crate::cpu::level() == crate::cpu::Level::Avx2Fma;
            out.par_chunks_mut(ow * nc).zip(src.par_chunks(w * nc)).for_each(|(d, s)| match nc {
                3 => affine_row::<T, 3>(avx2, d, s, stages, &unit, maxv),
                _ => affine_row::<T, 4>(avx2, d, s, stages, &unit, maxv),
            });
            return Some(Ok(out));
        }
        if self.is_gather() {
            out.par_chunks_mut(ow * nc).enumerate().for_each(|(gy, row)| {
                for gx in 0..ow {
                    let dst = &mut row[gx * nc..gx * nc + nc];
                    match self.land(gx, gy) {
                        Ok((px, py)) => {
                            let i = (px.floor() as usize).min(w - 1);
                            let j = (py.floor() as usize).min(h - 1);
                            let s = &src[(j * w + i) * nc..(j * w + i) * nc + nc];
                            if plain {
                                dst.copy_from_slice(s);
                            } else if let Some(lut) = &lut {
                                for (c, (d, v)) in dst.iter_mut().zip(s).enumerate() {
                                    *d = lut[c * 256 + v.idx()];
                                }
                            } else {
                                let mut v = [0.0f32; 4];
                                for c in 0..nc {
                                    v[c] = unit[s[c].idx()];
                                }
                                finish(&mut v, -1.0, (gy * ow + gx) as u32, dst);
                            }
                        }
                        Err(k) => {
                            let (mut v, order) = fill_of(&prog, k, nc);
                            finish(&mut v, order, (gy * ow + gx) as u32, dst);
                        }
                    }
                }
            });
            return Some(Ok(out));
        }
        if self.is_axis_aligned() {
            // Per axis: the landing of every output column / row (the other
            // coordinate does not matter) and its taps, flattened.
            let xs: Vec<Axis> = (0..ow).map(|o| self.land_axis(o, 0)).collect();
            let ys: Vec<Axis> = (0..oh).map(|o| self.land_axis(o, 1)).collect();
            let xt = AxisTaps::new(&xs, pr.filter, self.fx, w);
            let yt = AxisTaps::new(&ys, pr.filter, self.fy, h);
            let avx2 = crate::cpu::level() == crate::cpu::Level::Avx2Fma;
            let sep = Separable {
                src,
                w,
                ow,
                xt: &xt,
                yt: &yt,
                xs: &xs,
                ys: &ys,
                x_fill: xs.iter().any(|a| a.is_err()),
                // Columns whose every tap can load four samples (a 3-channel
                // pixel's fourth lane is the next pixel's first sample).
                x_wide: (0..ow).map(|o| xt.get(o).0.iter().all(|&i| i as usize * nc + 4 <= w * nc)).collect(),
                y_first: y_first(&xt, &yt, &ys, w, h, ow),
                prog: &prog,
                maxv,
                plain,
                finish: &finish,
            };
            // Bands of SEP_ROWS output rows, each filtering the input rows
            // it reads along x into its own buffer (which stays in cache),
            // then along y: both passes specialised on the channel count
            // and built for AVX2 where the level allows.
            out.par_chunks_mut(ow * nc * SEP_ROWS).enumerate().for_each_init(
                SepScratch::default,
                |sc, (band, rows)| {
                    let gy0 = band * SEP_ROWS;
                    match nc {
                        1 => sep.run::<1>(avx2, gy0, rows, sc),
                        2 => sep.run::<2>(avx2, gy0, rows, sc),
                        3 => sep.run::<3>(avx2, gy0, rows, sc),
                        _ => sep.run::<4>(avx2, gy0, rows, sc),
                    }
                },
            );
            return Some(Ok(out));
        }
        // Rotations: per-pixel taps on the packed input, a row at a time
        // through a function specialised on the channel count (and built
        // for AVX2 where the level allows).
        let avx2 = crate::cpu::level() == crate::cpu::Level::Avx2Fma;
        let ctx = RotateRow {
            pass: self,
            src,
            w,
            h,
            ow,
            filter: pr.filter,
            maxv,
            prog: &prog,
            affine: affine_finish.map(|a| a.as_slice()),
            finish: &finish,
        };
        // Tiles of ROT_ROWS x ROT_COLS output pixels: a rotated row reads a
        // slanted line across hundreds of input rows, a tile a compact patch
        // that stays in cache (row by row, the 3000x2000 chain read each
        // input line from memory again for every output row).
        out.par_chunks_mut(ow * nc * ROT_ROWS).enumerate().for_each(|(band, rows)| {
            for gx0 in (0..ow).step_by(ROT_COLS) {
                let gx1 = (gx0 + ROT_COLS).min(ow);
                for (k, row) in rows.chunks_exact_mut(ow * nc).enumerate() {
                    let (gy, dst) = (band * ROT_ROWS + k, &mut row[gx0 * nc..gx1 * nc]);
                    match nc {
                        1 => ctx.run::<1>(avx2, gy, gx0, dst),
                        2 => ctx.run::<2>(avx2, gy, gx0, dst),
                        3 => ctx.run::<3>(avx2, gy, gx0, dst),
                        _ => ctx.run::<4>(avx2, gy, gx0, dst),
                    }
                }
            }
        });
        Some(Ok(out))
    }
}

/// One row of a colour-only pass whose stages are all affine (`stages`:
/// each stage's `[m0, m1, m2, t0, m3, m4, m5, t1, m6, m7, m8, t2]` from the
/// program): unpack through `unit`, the stages in order with `colour`'s
/// expressions, alpha untouched, quantise. Built for AVX2 where allowed.
fn affine_row<T: PackedSample, const C: usize>(
    avx2: bool,
    dst: &mut [T],
    src: &[T],
    stages: &[[f32; 12]],
    unit: &[f32],
    maxv: f32,
) {
    #[inline(always)]
    fn row<T: PackedSample, const C: usize>(dst: &mut [T], src: &[T], stages: &[[f32; 12]], unit: &[f32], maxv: f32) {
        let q = |v: f32| T::from_u32(crate::kernels::pack_pixels::quantise(v, maxv));
        for (d, s) in dst.chunks_exact_mut(C).zip(src.chunks_exact(C)) {
            let mut rgb = (unit[s[0].idx()], unit[s[1].idx()], unit[s[2].idx()]);
            // One stage (the planner composes adjacent affine ops) with
            // its matrix in registers; more in turn.
            if let [m] = stages {
                rgb = apply_affine(m, rgb);
            } else {
                for m in stages {
                    rgb = apply_affine(m, rgb);
                }
            }
            let (r, g, b) = rgb;
            d[0] = q(r);
            d[1] = q(g);
            d[2] = q(b);
            if C == 4 {
                d[3] = q(unit[s[3].idx()]);
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn row_avx2<T: PackedSample, const C: usize>(
        dst: &mut [T],
        src: &[T],
        stages: &[[f32; 12]],
        unit: &[f32],
        maxv: f32,
    ) {
        let mut done = 0;
        if std::mem::size_of::<T>() == 1 && C == 3 && maxv == 255.0 {
            // SAFETY: T is u8 (one byte), so the rows reinterpret as bytes.
            let bytes = unsafe { std::slice::from_raw_parts(src.as_ptr() as *const u8, src.len()) };
            let d = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u8, dst.len()) };
            done = rgb8_lanes(d, bytes, stages);
        }
        row::<T, C>(&mut dst[done * C..], &src[done * C..], stages, unit, maxv)
    }
    /// [`row`] on 8-bit RGB, eight pixels at a time with each channel in
    /// the lanes of an AVX register: unpacked (v / 255, as `unit`), the
    /// stages' multiplies and adds in `apply`'s order, quantised and
    /// interleaved back (the same bytes). Returns how many pixels it wrote
    /// (a prefix; `row` finishes the rest).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn rgb8_lanes(dst: &mut [u8], src: &[u8], stages: &[[f32; 12]]) -> usize {
        use crate::kernels::pack_pixels::rgb8;
        use std::arch::x86_64::*;
        let n = src.len().min(dst.len()) / 3;
        let m = _mm256_set1_ps(255.0);
        let mut x = 0;
        // 28 bytes are read at 3x (pixels x..x + 8 and four more bytes).
        while x + 8 <= n && 3 * x + 28 <= src.len() {
            // SAFETY: 28 bytes from 3x are inside `src` (the loop's bound),
            // and 24 bytes from 3x inside `dst` (x + 8 <= n).
            unsafe {
                let (r, g, b) = rgb8::deinterleave(src.as_ptr().add(3 * x));
                let unit = |v: __m256i| _mm256_div_ps(_mm256_cvtepi32_ps(v), m);
                affine8_rgb8(stages, (unit(r), unit(g), unit(b)), dst.as_mut_ptr().add(3 * x));
            }
            x += 8;
        }
        x
    }
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: the chosen level is never above what the CPU supports.
        return unsafe { row_avx2::<T, C>(dst, src, stages, unit, maxv) };
    }
    let _ = avx2;
    row::<T, C>(dst, src, stages, unit, maxv)
}

/// One affine colour stage (`m`: `[m0, m1, m2, t0, m3, .., t2]` from the
/// program) on a pixel, with `colour`'s float steps.
#[inline(always)]
fn apply_affine(m: &[f32; 12], (r, g, b): (f32, f32, f32)) -> (f32, f32, f32) {
    (
        m[0] * r + m[1] * g + m[2] * b + m[3],
        m[4] * r + m[5] * g + m[6] * b + m[7],
        m[8] * r + m[9] * g + m[10] * b + m[11],
    )
}

/// Which order the separable packed path sums in: along y first when that
/// costs less. The pass along the rows reads contiguous samples (eight
/// lanes to an instruction), the pass along x gathers each output pixel's
/// taps (a pixel to a lane group), so per output pixel and tap the first
/// costs about a third of the second. Along x first filters every input
/// row read at the output width; along y first filters every output row
/// at the input width. Both sum the same products, in a different order
/// (up to float reassociation: within a level of each other and of the
/// per-pixel path, tests/augment.rs).
fn y_first(xt: &AxisTaps, yt: &AxisTaps, ys: &[Axis], w: usize, h: usize, ow: usize) -> bool {
    let mut read = vec![false; h];
    let mut oh_in = 0usize;
    for (gy, y) in ys.iter().enumerate() {
        if y.is_ok() {
            oh_in += 1;
            yt.get(gy).0.iter().for_each(|&r| read[r as usize] = true);
        }
    }
    let rows = read.iter().filter(|&&r| r).count();
    let (kx, ky) = (xt.k as f64, yt.k as f64);
    let (x_cost, y_cost) = (1.0, 0.3);
    let x_first = rows as f64 * ow as f64 * kx * x_cost + oh_in as f64 * ow as f64 * ky * y_cost;
    let y_first = oh_in as f64 * w as f64 * ky * y_cost + oh_in as f64 * ow as f64 * kx * x_cost;
    y_first < x_first
}

/// Output rows per band of the axis-aligned packed path.
const SEP_ROWS: usize = 16;

/// One axis's taps for every output index, flattened and padded to the
/// same count `k` for all: output `o` reads input indices
/// `idx[o * k..(o + 1) * k]` with weights `w[..]`, the indices and weights
/// of [`taps`] followed by zero weights on the last index (on index 0 where
/// the output lands on a fill). A sum starts at +0 and adds finite
/// products, so it is never -0, and adding +0 leaves it as it is: the
/// padding changes no float.
struct AxisTaps {
    k: usize,
    idx: Vec<u32>,
    w: Vec<f32>,
}

impl AxisTaps {
    fn new(land: &[Axis], filter: u32, f: f32, n: usize) -> AxisTaps {
        let mut t = Taps::new();
        let mut k = 1;
        for p in land.iter().flatten() {
            t.fill(filter, *p, f, n);
            k = k.max(t.n);
        }
        let (mut idx, mut w) = (Vec::with_capacity(land.len() * k), Vec::with_capacity(land.len() * k));
        for p in land {
            t.n = 0;
            if let Ok(p) = p {
                t.fill(filter, *p, f, n);
            }
            idx.extend_from_slice(&t.idx[..t.n]);
            w.extend_from_slice(&t.w[..t.n]);
            let last = if t.n > 0 { t.idx[t.n - 1] } else { 0 };
            idx.resize(idx.len() + k - t.n, last);
            w.resize(w.len() + k - t.n, 0.0);
        }
        AxisTaps { k, idx, w }
    }

    #[inline(always)]
    fn get(&self, o: usize) -> (&[u32], &[f32]) {
        (&self.idx[o * self.k..(o + 1) * self.k], &self.w[o * self.k..(o + 1) * self.k])
    }
}

/// A band's buffers, kept per worker: the input rows filtered along x
/// (f32, / maxv, interleaved), which input row went to which of them, and
/// one output row's sums.
#[derive(Default)]
struct SepScratch {
    rows: Vec<f32>,
    /// One output row's sums along y, when that pass runs first.
    vrow: Vec<f32>,
    slot: Vec<u32>,
    acc: Vec<f32>,
}

/// The axis-aligned packed path's two 1-D passes.
struct Separable<'a, T, F> {
    src: &'a [T],
    w: usize,
    ow: usize,
    xt: &'a AxisTaps,
    yt: &'a AxisTaps,
    xs: &'a [Axis],
    ys: &'a [Axis],
    /// Some output column lands on a fill.
    x_fill: bool,
    /// Per output column: four samples can be loaded at each of its taps.
    x_wide: Vec<bool>,
    /// Sum along y first (from the packed samples), then along x.
    y_first: bool,
    prog: &'a [f32],
    maxv: f32,
    /// No colour stage and clamped output: the sums are quantised as they are.
    plain: bool,
    finish: &'a F,
}

impl<T: PackedSample, F: Fn(&mut [f32; 4], f32, u32, &mut [T]) + Sync> Separable<'_, T, F> {
    /// Output rows `gy0..` into `out` (whole rows of C samples per pixel).
    fn run<const C: usize>(&self, avx2: bool, gy0: usize, out: &mut [T], sc: &mut SepScratch) {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the chosen level is never above what the CPU supports.
            return unsafe { self.run_avx2::<C>(gy0, out, sc) };
        }
        let _ = avx2;
        self.band::<C, false>(gy0, out, sc)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn run_avx2<const C: usize>(&self, gy0: usize, out: &mut [T], sc: &mut SepScratch) {
        self.band::<C, true>(gy0, out, sc)
    }

    /// Filters the input rows the band reads along x, then each output row
    /// along y (the taps of every sum in order, as the per-pixel path sums:
    /// the same floats), then colour and packing.
    #[inline(always)]
    fn band<const C: usize, const AVX2: bool>(&self, gy0: usize, out: &mut [T], sc: &mut SepScratch) {
        let (ow, n) = (self.ow, self.ow * C);
        let gys = gy0..gy0 + out.len() / n;
        // Along x first: the input rows read, each given a row of the buffer.
        let (mut lo, mut hi) = (usize::MAX, 0usize);
        let inside = |gy: &usize| self.ys[*gy].is_ok();
        for gy in gys.clone().filter(inside).filter(|_| !self.y_first) {
            for &r in self.yt.get(gy).0 {
                lo = lo.min(r as usize);
                hi = hi.max(r as usize);
            }
        }
        let mut count = 0usize;
        if lo <= hi {
            sc.slot.clear();
            sc.slot.resize(hi - lo + 1, u32::MAX);
            for gy in gys.clone().filter(inside) {
                for &r in self.yt.get(gy).0 {
                    let s = &mut sc.slot[r as usize - lo];
                    if *s == u32::MAX {
                        *s = count as u32;
                        count += 1;
                    }
                }
            }
            sc.rows.resize(count * n, 0.0);
            for (k, &s) in sc.slot.iter().enumerate() {
                if s != u32::MAX {
                    let r = lo + k;
                    let dst = &mut sc.rows[s as usize * n..(s as usize + 1) * n];
                    let src = &self.src[r * self.w * C..(r + 1) * self.w * C];
                    self.row::<C, AVX2, T>(dst, src);
                }
            }
        }
        sc.acc.resize(n, 0.0);
        for (gy, row) in gys.zip(out.chunks_exact_mut(n)) {
            let (idx, wts) = self.yt.get(gy);
            if self.ys[gy].is_err() {
                for (gx, dst) in row.chunks_exact_mut(C).enumerate() {
                    let k = fill_stage(self.xs[gx], self.ys[gy]).expect("a fill row");
                    let (mut v, order) = fill_of(self.prog, k, C);
                    (self.finish)(&mut v, order, (gy * ow + gx) as u32, dst);
                }
                continue;
            }
            let acc = &mut sc.acc[..n];
            if self.y_first {
                // The input rows' samples summed along y (contiguous, so
                // eight lanes at a time), then that row filtered along x.
                // Blocks of 32 values, whose sums stay in registers across
                // the taps.
                let wc = self.w * C;
                sc.vrow.resize(wc, 0.0);
                let v = &mut sc.vrow[..wc];
                for (b, vb) in v.chunks_mut(32).enumerate() {
                    let x0 = b * 32;
                    if vb.len() == 32 {
                        let mut a = [0.0f32; 32];
                        for (&r, &wv) in idx.iter().zip(wts) {
                            let at = r as usize * wc + x0;
                            let s: &[T; 32] = self.src[at..at + 32].try_into().expect("32 samples");
                            for j in 0..32 {
                                a[j] += wv * s[j].lane();
                            }
                        }
                        vb.copy_from_slice(&a);
                    } else {
                        vb.fill(0.0);
                        let m = vb.len();
                        for (&r, &wv) in idx.iter().zip(wts) {
                            let at = r as usize * wc + x0;
                            for (a, &x) in vb.iter_mut().zip(&self.src[at..at + m]) {
                                *a += wv * x.lane();
                            }
                        }
                    }
                }
                self.row::<C, AVX2, f32>(acc, v);
            } else {
                acc.fill(0.0);
                for (&r, &wv) in idx.iter().zip(wts) {
                    let s = sc.slot[r as usize - lo] as usize;
                    for (a, &v) in acc.iter_mut().zip(&sc.rows[s * n..(s + 1) * n]) {
                        *a += wv * v;
                    }
                }
            }
            if self.plain {
                quantise_row::<T, AVX2>(row, acc, self.maxv);
            }
            if !self.plain || self.x_fill {
                for (gx, (dst, a)) in row.chunks_exact_mut(C).zip(acc.chunks_exact(C)).enumerate() {
                    let (mut v, order) = match fill_stage(self.xs[gx], self.ys[gy]) {
                        Some(k) => fill_of(self.prog, k, C),
                        None if self.plain => continue,
                        None => {
                            let mut v = [0.0f32; 4];
                            v[..C].copy_from_slice(a);
                            (v, -1.0)
                        }
                    };
                    (self.finish)(&mut v, order, (gy * ow + gx) as u32, dst);
                }
            }
        }
    }

    /// One input row `s` filtered along x into `dst` (C values per output
    /// column, / maxv).
    #[inline(always)]
    fn row<const C: usize, const AVX2: bool, S: Lane>(&self, dst: &mut [f32], s: &[S]) {
        #[cfg(target_arch = "x86_64")]
        if AVX2 && C >= 3 {
            // SAFETY: AVX2 is only true inside `run_avx2`.
            return unsafe { self.row_lanes::<C, S>(dst, s) };
        }
        for (o, d) in dst.chunks_exact_mut(C).enumerate() {
            let (idx, wts) = self.xt.get(o);
            let mut acc = [0.0f32; C];
            for (&i, &wv) in idx.iter().zip(wts) {
                let px: &[S; C] = s[i as usize * C..i as usize * C + C].try_into().expect("C samples");
                for c in 0..C {
                    acc[c] += wv * px[c].lane();
                }
            }
            for c in 0..C {
                d[c] = acc[c] / self.maxv;
            }
        }
    }

    /// [`Self::row`] for 3 or 4 channels with a pixel's channels in the
    /// lanes of an SSE register, two pixels to an AVX register and two
    /// registers at a time (four independent sums hide the add's latency):
    /// per tap a load, widening, multiply and add per pixel, multiply then
    /// add as the scalar loop, each pixel's taps in order (the same floats).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn row_lanes<const C: usize, S: Lane>(&self, dst: &mut [f32], s: &[S]) {
        use std::arch::x86_64::*;
        let bytes = std::mem::size_of::<S>();
        // SAFETY (both loads): four values from `at` are inside `s` (the
        // callers check); S is u8, u16 or f32.
        let load1 = |at: usize| -> __m128i {
            unsafe {
                let p = s.as_ptr().add(at);
                match bytes {
                    1 => _mm_cvtsi32_si128((p as *const i32).read_unaligned()),
                    2 => _mm_loadl_epi64(p as *const __m128i),
                    _ => _mm_loadu_si128(p as *const __m128i),
                }
            }
        };
        let load2 = |a: usize, b: usize| -> __m256 {
            let (va, vb) = (load1(a), load1(b));
            match bytes {
                1 => _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpacklo_epi32(va, vb))),
                2 => _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm_unpacklo_epi64(va, vb))),
                _ => _mm256_set_m128(_mm_castsi128_ps(vb), _mm_castsi128_ps(va)),
            }
        };
        let len = dst.len();
        let n = len / C;
        let k = self.xt.k;
        let (vmax, vmax2) = (_mm_set1_ps(self.maxv), _mm256_set1_ps(self.maxv));
        // Stores a pixel's lanes at `at` (a fourth lane of a 3-channel
        // pixel lands on the next pixel's first value, written after it).
        let store = |dst: &mut [f32], at: usize, r: __m128| {
            if at + 4 <= len {
                // SAFETY: four floats from `at` are inside `dst`.
                unsafe { _mm_storeu_ps(dst.as_mut_ptr().add(at), r) };
            } else {
                let mut t = [0.0f32; 4];
                // SAFETY: four floats.
                unsafe { _mm_storeu_ps(t.as_mut_ptr(), r) };
                dst[at..at + C].copy_from_slice(&t[..C]);
            }
        };
        let mut o = 0;
        while o < n {
            if o + 4 <= n && self.x_wide[o..o + 4].iter().all(|&f| f) {
                let (i4, w4) = (&self.xt.idx[o * k..(o + 4) * k], &self.xt.w[o * k..(o + 4) * k]);
                let (mut a, mut b) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for j in 0..k {
                    let wa = _mm256_set_m128(_mm_set1_ps(w4[k + j]), _mm_set1_ps(w4[j]));
                    let wb = _mm256_set_m128(_mm_set1_ps(w4[3 * k + j]), _mm_set1_ps(w4[2 * k + j]));
                    let pa = load2(i4[j] as usize * C, i4[k + j] as usize * C);
                    let pb = load2(i4[2 * k + j] as usize * C, i4[3 * k + j] as usize * C);
                    a = _mm256_add_ps(a, _mm256_mul_ps(wa, pa));
                    b = _mm256_add_ps(b, _mm256_mul_ps(wb, pb));
                }
                let (a, b) = (_mm256_div_ps(a, vmax2), _mm256_div_ps(b, vmax2));
                store(dst, o * C, _mm256_castps256_ps128(a));
                store(dst, (o + 1) * C, _mm256_extractf128_ps::<1>(a));
                store(dst, (o + 2) * C, _mm256_castps256_ps128(b));
                store(dst, (o + 3) * C, _mm256_extractf128_ps::<1>(b));
                o += 4;
                continue;
            }
            let (idx, wts) = self.xt.get(o);
            let mut acc = _mm_setzero_ps();
            for (&i, &wv) in idx.iter().zip(wts) {
                acc = _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(wv), load4::<S, C>(s, i as usize * C)));
            }
            store(dst, o * C, _mm_div_ps(acc, vmax));
            o += 1;
        }
    }
}

/// Four values of `s` from `at` as floats (u8 and u16 widened exactly, f32
/// as they are): one load where four are inside `s`, else the first C
/// values and zeros. A 3-channel pixel's fourth lane is the next sample,
/// which its callers drop.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn load4<S: Lane, const C: usize>(s: &[S], at: usize) -> std::arch::x86_64::__m128 {
    use std::arch::x86_64::*;
    if at + 4 <= s.len() {
        // SAFETY: four values from `at` are inside `s`; S is u8, u16 or f32.
        unsafe {
            let p = s.as_ptr().add(at);
            match std::mem::size_of::<S>() {
                1 => _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_cvtsi32_si128((p as *const i32).read_unaligned()))),
                2 => _mm_cvtepi32_ps(_mm_cvtepu16_epi32(_mm_loadl_epi64(p as *const __m128i))),
                _ => _mm_loadu_ps(p as *const f32),
            }
        }
    } else {
        let t: [f32; 4] = std::array::from_fn(|c| if c < C { s[at + c].lane() } else { 0.0 });
        // SAFETY: four floats.
        unsafe { _mm_loadu_ps(t.as_ptr()) }
    }
}

/// `quantise` on every value of `src` into `dst`: for 8-bit samples in the
/// AVX2 build eight at a time with the same steps (clamp, scale, add a half,
/// truncate), the same bytes.
#[inline(always)]
fn quantise_row<T: PackedSample, const AVX2: bool>(dst: &mut [T], src: &[f32], maxv: f32) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if AVX2 && std::mem::size_of::<T>() == 1 && maxv == 255.0 {
        use std::arch::x86_64::*;
        let n8 = dst.len().min(src.len()) / 8 * 8;
        // SAFETY: AVX2 is only true inside functions built for it; T is u8
        // (one byte); x + 8 <= n8 keeps every load and store in bounds.
        unsafe {
            let d = dst.as_mut_ptr() as *mut u8;
            for x in (0..n8).step_by(8) {
                let b8 = crate::kernels::pack_pixels::rgb8::quantise8(_mm256_loadu_ps(src.as_ptr().add(x)));
                _mm_storel_epi64(d.add(x) as *mut __m128i, b8);
            }
        }
        done = n8;
    }
    for (d, &v) in dst[done..].iter_mut().zip(&src[done..]) {
        *d = T::from_u32(crate::kernels::pack_pixels::quantise(v, maxv));
    }
}

/// Output rows and columns of a tile of the rotating packed path.
const ROT_ROWS: usize = 16;
const ROT_COLS: usize = 64;

/// One output row of a rotating pass on packed samples: the landing of
/// each pixel, its taps on both axes (refilled in place, no allocation),
/// the weighted sum per channel (per input row along x, then along y, as
/// the shader sums), then colour and packing.
struct RotateRow<'a, T, F> {
    pass: &'a AugmentPass,
    src: &'a [T],
    w: usize,
    h: usize,
    ow: usize,
    filter: u32,
    maxv: f32,
    prog: &'a [f32],
    /// `finish`'s stages when every colour stage is affine (and the output
    /// clamped): what [`Self::group8`] applies to eight pixels at once.
    affine: Option<&'a [[f32; 12]]>,
    finish: &'a F,
}

impl<T: PackedSample, F: Fn(&mut [f32; 4], f32, u32, &mut [T]) + Sync> RotateRow<'_, T, F> {
    /// Output pixels `gx0..` of row `gy` into `row` (C samples each).
    fn run<const C: usize>(&self, avx2: bool, gy: usize, gx0: usize, row: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the chosen level is never above what the CPU supports.
            return unsafe { self.row_avx2::<C>(gy, gx0, row) };
        }
        let _ = avx2;
        self.row::<C, false>(gy, gx0, row)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn row_avx2<const C: usize>(&self, gy: usize, gx0: usize, row: &mut [T]) {
        self.row::<C, true>(gy, gx0, row)
    }

    /// The weighted sum of one pixel's taps (C channels, not yet / maxv),
    /// in the shader's order: each input row's taps summed along x, then the
    /// rows weighted along y (independent row sums, so no single chain of
    /// adds through every tap).
    #[inline(always)]
    fn tap_sum<const C: usize, const AVX2: bool>(&self, tx: &Taps, ty: &Taps) -> [f32; 4] {
        #[cfg(target_arch = "x86_64")]
        if AVX2 && C >= 3 {
            // SAFETY: AVX2 is only true inside `row_avx2`.
            return unsafe { self.taps_lanes::<C>(tx, ty) };
        }
        let (xi, xw) = (&tx.idx[..tx.n], &tx.w[..tx.n]);
        let mut v = [0.0f32; 4];
        for (&r, &wy) in ty.idx[..ty.n].iter().zip(&ty.w[..ty.n]) {
            let s = &self.src[r as usize * self.w * C..(r as usize + 1) * self.w * C];
            let mut rs = [0.0f32; 4];
            for (&i, &wx) in xi.iter().zip(xw) {
                let px: &[T; C] = s[i as usize * C..i as usize * C + C].try_into().expect("C samples");
                for c in 0..C {
                    rs[c] += wx * px[c].lane();
                }
            }
            for c in 0..C {
                v[c] += wy * rs[c];
            }
        }
        v
    }

    /// [`Self::tap_sum`] with a pixel's channels in the lanes of an SSE register: per tap a
    /// load, widening, multiply and add, the same order as the scalar loop
    /// (the same floats). 3 or 4 channels.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn taps_lanes<const C: usize>(&self, tx: &Taps, ty: &Taps) -> [f32; 4] {
        use std::arch::x86_64::*;
        let wc = self.w * C;
        let mut v = _mm_setzero_ps();
        for (&r, &wy) in ty.idx[..ty.n].iter().zip(&ty.w[..ty.n]) {
            let row = r as usize * wc;
            let mut rs = _mm_setzero_ps();
            for (&i, &wx) in tx.idx[..tx.n].iter().zip(&tx.w[..tx.n]) {
                let px = load4::<T, C>(self.src, row + i as usize * C);
                rs = _mm_add_ps(rs, _mm_mul_ps(_mm_set1_ps(wx), px));
            }
            v = _mm_add_ps(v, _mm_mul_ps(_mm_set1_ps(wy), rs));
        }
        let mut out = [0.0f32; 4];
        // SAFETY: four floats.
        unsafe { _mm_storeu_ps(out.as_mut_ptr(), v) };
        if C == 3 {
            out[3] = 0.0;
        }
        out
    }

    #[inline(always)]
    fn row<const C: usize, const AVX2: bool>(&self, gy: usize, gx0: usize, row: &mut [T]) {
        let (mut tx, mut ty) = (Taps::new(), Taps::new());
        let n = row.len() / C;
        let mut done = 0;
        // 8-bit RGB(A) with a filter: eight output pixels at a time, one to
        // a lane (`group8`); a group it declines, pixel by pixel.
        #[cfg(target_arch = "x86_64")]
        if AVX2 && C >= 3 && std::mem::size_of::<T>() == 1 && self.filter != 0 && self.src.len() < i32::MAX as usize {
            let mut sc = G8Scratch::new();
            while done + 8 <= n {
                let dst = &mut row[done * C..(done + 8) * C];
                // SAFETY: AVX2 is only true inside `row_avx2`; T is u8 (one
                // byte) and the input's byte offsets fit in i32.
                if !unsafe { self.group8::<C>(gy, gx0 + done, dst, &mut sc) } {
                    for (k, d) in dst.chunks_exact_mut(C).enumerate() {
                        self.pixel::<C, AVX2>(gy, gx0 + done + k, d, &mut tx, &mut ty);
                    }
                }
                done += 8;
            }
        }
        for (k, dst) in row[done * C..].chunks_exact_mut(C).enumerate() {
            self.pixel::<C, AVX2>(gy, gx0 + done + k, dst, &mut tx, &mut ty);
        }
    }

    /// One output pixel: its landing, taps, weighted sum, colour, packing.
    #[inline(always)]
    fn pixel<const C: usize, const AVX2: bool>(
        &self,
        gy: usize,
        gx: usize,
        dst: &mut [T],
        tx: &mut Taps,
        ty: &mut Taps,
    ) {
        let pass = self.pass;
        let (mut v, order) = match pass.land(gx, gy) {
            Err(k) => fill_of(self.prog, k, C),
            Ok((px, py)) => {
                tx.fill(self.filter, px, pass.fx, self.w);
                ty.fill(self.filter, py, pass.fy, self.h);
                let mut v = self.tap_sum::<C, AVX2>(tx, ty);
                for vc in v.iter_mut().take(C) {
                    *vc /= self.maxv;
                }
                (v, -1.0)
            }
        };
        (self.finish)(&mut v, order, (gy * self.ow + gx) as u32, dst);
    }

    /// Output pixels `gx..gx + 8` of row `gy` (8-bit, C = 3 or 4, filter 1
    /// or 2), one to an AVX lane: each lane's taps and weights with
    /// [`Taps::fill`]'s float steps (its own tap count; the group runs to
    /// the largest, the extra taps weighted +0, which changes no sum that
    /// starts at +0), its samples gathered (four bytes at a pixel's
    /// offset), summed per input row along x and then along y in the
    /// scalar order, divided by `maxv`: the same floats as [`Self::pixel`].
    /// Colour and packing per pixel. False, with nothing written, for a
    /// group it does not take: a lane on a fill, a landing far outside
    /// (or NaN), more than `G8_TAPS` taps, or (3 channels) a tap that could
    /// be the image's last pixel, whose four-byte read would pass the end.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn group8<const C: usize>(&self, gy: usize, gx: usize, dst: &mut [T], sc: &mut G8Scratch) -> bool {
        use std::arch::x86_64::*;
        let (w, h, pass) = (self.w, self.h, self.pass);
        let radius = if self.filter == 1 { 1.0f32 } else { 2.0 };
        let (rfx, rfy) = (radius * pass.fx, radius * pass.fy);
        let Some((px, py)) = land8(pass, gx, gy) else { return false };
        for k in 0..8 {
            let (x, y) = (px[k], py[k]);
            if !(x.abs() < 1e7 && y.abs() < 1e7) || (C == 3 && x + rfx + 2.0 >= w as f32 && y + rfy + 2.0 >= h as f32) {
                return false;
            }
        }
        let z = _mm256_setzero_ps();
        let G8Scratch { wx, wy, ix, iy } = sc;
        let Some((nx, x_inside)) = taps8(self.filter, &px, pass.fx, w, wx, ix) else { return false };
        let Some((ny, _)) = taps8(self.filter, &py, pass.fy, h, wy, iy) else { return false };
        let cc = _mm256_set1_epi32(C as i32);
        for i in &mut ix[..nx] {
            *i = _mm256_mullo_epi32(*i, cc);
        }
        let wc = _mm256_set1_epi32((w * C) as i32);
        let base = self.src.as_ptr() as *const i32;
        let m = _mm256_set1_epi32(0xff);
        let mut v = [z; 4];
        // Each lane's x taps in one run of pixels: per input row, 16 bytes
        // loaded per lane for every four taps and transposed to a register
        // per tap (what a gather would give, for a few shuffles).
        let (step, chunks) = (if C == 3 { 12 } else { 16 }, nx.div_ceil(4));
        let mut first = [0i32; 8];
        // SAFETY: eight ints.
        unsafe { _mm256_storeu_si256(first.as_mut_ptr() as *mut __m256i, ix[0]) };
        let last_row = (0..ny).map(|k| {
            let mut r = [0i32; 8];
            // SAFETY: eight ints.
            unsafe { _mm256_storeu_si256(r.as_mut_ptr() as *mut __m256i, iy[k]) };
            r.into_iter().max().unwrap_or(0)
        });
        let span = step * (chunks - 1) + 16;
        let runs = x_inside
            && nx > 0
            && last_row.max().unwrap_or(0) as usize * w * C + *first.iter().max().unwrap_or(&0) as usize + span
                <= self.src.len();
        if runs {
            let bytes = self.src.as_ptr() as *const u8;
            let pick = _mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1);
            for ky in 0..ny {
                let mut rows = [0i32; 8];
                // SAFETY: eight ints.
                unsafe { _mm256_storeu_si256(rows.as_mut_ptr() as *mut __m256i, iy[ky]) };
                let at: [usize; 8] = std::array::from_fn(|l| rows[l] as usize * w * C + first[l] as usize);
                let mut rs = [z; 4];
                for ch in 0..chunks {
                    // SAFETY: `runs` checked that `span` bytes from every
                    // lane's first tap on its last row are inside `src`.
                    let x: [__m128i; 8] = std::array::from_fn(|l| {
                        let q = unsafe { _mm_loadu_si128(bytes.add(at[l] + ch * step) as *const __m128i) };
                        if C == 3 {
                            _mm_shuffle_epi8(q, pick)
                        } else {
                            q
                        }
                    });
                    let pair = |lo: __m128i, hi: __m128i| _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi);
                    let (a, b, c, d) = (pair(x[0], x[4]), pair(x[1], x[5]), pair(x[2], x[6]), pair(x[3], x[7]));
                    let (t0, t1) = (_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
                    let (t2, t3) = (_mm256_unpacklo_epi32(c, d), _mm256_unpackhi_epi32(c, d));
                    let taps = [
                        _mm256_unpacklo_epi64(t0, t2),
                        _mm256_unpackhi_epi64(t0, t2),
                        _mm256_unpacklo_epi64(t1, t3),
                        _mm256_unpackhi_epi64(t1, t3),
                    ];
                    for (j, &g) in taps.iter().enumerate().take(nx - ch * 4) {
                        let lanes = [
                            _mm256_and_si256(g, m),
                            _mm256_and_si256(_mm256_srli_epi32::<8>(g), m),
                            _mm256_and_si256(_mm256_srli_epi32::<16>(g), m),
                            _mm256_srli_epi32::<24>(g),
                        ];
                        let wk = wx[ch * 4 + j];
                        for c in 0..C {
                            rs[c] = _mm256_add_ps(rs[c], _mm256_mul_ps(wk, _mm256_cvtepi32_ps(lanes[c])));
                        }
                    }
                }
                for c in 0..C {
                    v[c] = _mm256_add_ps(v[c], _mm256_mul_ps(wy[ky], rs[c]));
                }
            }
        }
        for ky in (0..ny).filter(|_| !runs) {
            let row = _mm256_mullo_epi32(iy[ky], wc);
            let mut rs = [z; 4];
            for kx in 0..nx {
                // SAFETY: every offset is a pixel of the input (indices
                // clamped to the image) and, with 3 channels, not its last
                // (checked above), so four bytes from it are inside `src`.
                let g = unsafe { _mm256_i32gather_epi32::<1>(base, _mm256_add_epi32(row, ix[kx])) };
                let lanes = [
                    _mm256_and_si256(g, m),
                    _mm256_and_si256(_mm256_srli_epi32::<8>(g), m),
                    _mm256_and_si256(_mm256_srli_epi32::<16>(g), m),
                    _mm256_srli_epi32::<24>(g),
                ];
                for c in 0..C {
                    rs[c] = _mm256_add_ps(rs[c], _mm256_mul_ps(wx[kx], _mm256_cvtepi32_ps(lanes[c])));
                }
            }
            for c in 0..C {
                v[c] = _mm256_add_ps(v[c], _mm256_mul_ps(wy[ky], rs[c]));
            }
        }
        let maxv = _mm256_set1_ps(self.maxv);
        if let (Some(stages), 3, 255.0) = (self.affine, C, self.maxv) {
            // `finish` on eight pixels (the same bytes).
            let rgb = (_mm256_div_ps(v[0], maxv), _mm256_div_ps(v[1], maxv), _mm256_div_ps(v[2], maxv));
            assert_eq!(dst.len(), 24);
            // SAFETY: T is u8 and `dst` holds 24 of them.
            unsafe { affine8_rgb8(stages, rgb, dst.as_mut_ptr() as *mut u8) };
            return true;
        }
        let mut out = [[0.0f32; 8]; 4];
        for c in 0..C {
            // SAFETY: eight floats.
            unsafe { _mm256_storeu_ps(out[c].as_mut_ptr(), _mm256_div_ps(v[c], maxv)) };
        }
        for (k, d) in dst.chunks_exact_mut(C).enumerate() {
            let mut p = [out[0][k], out[1][k], out[2][k], if C == 4 { out[3][k] } else { 0.0 }];
            (self.finish)(&mut p, -1.0, (gy * self.ow + gx + k) as u32, d);
        }
        true
    }
}

/// Affine colour stages (`apply_affine`'s multiplies and adds, in order)
/// on eight RGB pixels, a channel to a register in [0, 1], then quantised
/// to bytes (`pack_pixels::quantise`) and interleaved into 24 bytes at `d`.
///
/// # Safety
/// 24 bytes from `d` must be writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn affine8_rgb8(
    stages: &[[f32; 12]],
    (mut r, mut g, mut b): (std::arch::x86_64::__m256, std::arch::x86_64::__m256, std::arch::x86_64::__m256),
    d: *mut u8,
) {
    use crate::kernels::pack_pixels::rgb8;
    use std::arch::x86_64::*;
    for st in stages {
        let s = |k: usize| _mm256_set1_ps(st[k]);
        let row = |k: usize| {
            let t = _mm256_add_ps(_mm256_mul_ps(s(k), r), _mm256_mul_ps(s(k + 1), g));
            _mm256_add_ps(_mm256_add_ps(t, _mm256_mul_ps(s(k + 2), b)), s(k + 3))
        };
        (r, g, b) = (row(0), row(4), row(8));
    }
    let (lo, hi) = rgb8::interleave(rgb8::quantise8(r), rgb8::quantise8(g), rgb8::quantise8(b));
    // SAFETY: the caller's 24 bytes.
    unsafe {
        _mm_storeu_si128(d as *mut __m128i, lo);
        _mm_storel_epi64(d.add(16) as *mut __m128i, hi);
    }
}

/// [`AugmentPass::land`] for output pixels `gx..gx + 8` of row `gy`, one to
/// a lane, with the same float steps; None when a lane lands on a constant
/// fill or a reflected edge (left to the per-pixel path).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn land8(pass: &AugmentPass, gx: usize, gy: usize) -> Option<([f32; 8], [f32; 8])> {
    use std::arch::x86_64::*;
    let s = _mm256_set1_ps;
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mut px = _mm256_add_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_set1_epi32(gx as i32), lane)), s(0.5));
    let mut py = s(gy as f32 + 0.5);
    for g in pass.geo.iter().rev() {
        let m = &g.map;
        (px, py) = (
            _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(s(m[0]), px), _mm256_mul_ps(s(m[1]), py)), s(m[2])),
            _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(s(m[3]), px), _mm256_mul_ps(s(m[4]), py)), s(m[5])),
        );
        if g.border == Border::Inside {
            continue;
        }
        let zero = _mm256_setzero_ps();
        let out_x = _mm256_or_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(px, zero), _mm256_cmp_ps::<_CMP_GE_OQ>(px, s(g.w)));
        let out_y = _mm256_or_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(py, zero), _mm256_cmp_ps::<_CMP_GE_OQ>(py, s(g.h)));
        if _mm256_movemask_ps(_mm256_or_ps(out_x, out_y)) == 0 {
            continue;
        }
        match g.border {
            Border::Edge => {
                let cx = _mm256_min_ps(_mm256_max_ps(px, s(0.5)), s(g.w - 0.5));
                let cy = _mm256_min_ps(_mm256_max_ps(py, s(0.5)), s(g.h - 0.5));
                px = _mm256_blendv_ps(px, cx, out_x);
                py = _mm256_blendv_ps(py, cy, out_y);
            }
            _ => return None,
        }
    }
    let (mut x, mut y) = ([0.0f32; 8], [0.0f32; 8]);
    // SAFETY: eight floats each.
    unsafe {
        _mm256_storeu_ps(x.as_mut_ptr(), px);
        _mm256_storeu_ps(y.as_mut_ptr(), py);
    }
    Some((x, y))
}

/// [`RotateRow::group8`]'s taps (weights and indices, a register per tap),
/// made once per row of a tile rather than zeroed per group.
#[cfg(target_arch = "x86_64")]
struct G8Scratch {
    wx: [std::arch::x86_64::__m256; G8_TAPS],
    wy: [std::arch::x86_64::__m256; G8_TAPS],
    ix: [std::arch::x86_64::__m256i; G8_TAPS],
    iy: [std::arch::x86_64::__m256i; G8_TAPS],
}

#[cfg(target_arch = "x86_64")]
impl G8Scratch {
    fn new() -> G8Scratch {
        // SAFETY: all-zero bits are valid floats and integers.
        unsafe { std::mem::zeroed() }
    }
}

/// The most taps per axis [`RotateRow::group8`] takes (a 4x downscale with
/// the bicubic filter has 16 or 17).
#[cfg(target_arch = "x86_64")]
const G8_TAPS: usize = 20;

/// [`Taps::fill`] for eight positions at once, one to a lane, with the same
/// float steps per lane: weights in `w`, clamped indices in `idx`, the
/// largest tap count returned (a lane's taps past its own count weigh +0)
/// with whether every lane's live taps lie inside `0..n` unclamped (so
/// they are consecutive from its first index); None above `G8_TAPS`.
/// Filter 1 or 2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn taps8(
    filter: u32,
    p: &[f32; 8],
    f: f32,
    n: usize,
    w: &mut [std::arch::x86_64::__m256; G8_TAPS],
    idx: &mut [std::arch::x86_64::__m256i; G8_TAPS],
) -> Option<(usize, bool)> {
    use std::arch::x86_64::*;
    let radius = if filter == 1 { 1.0f32 } else { 2.0 };
    let rf = _mm256_set1_ps(radius * f);
    // SAFETY: eight floats.
    let u = _mm256_sub_ps(unsafe { _mm256_loadu_ps(p.as_ptr()) }, _mm256_set1_ps(0.5));
    // |u| < 1e7 (checked by the caller): ceil and floor then truncate exactly.
    let i0 = _mm256_cvttps_epi32(_mm256_ceil_ps(_mm256_sub_ps(u, rf)));
    let i1 = _mm256_cvttps_epi32(_mm256_floor_ps(_mm256_add_ps(u, rf)));
    let i1 = _mm256_min_epi32(i1, _mm256_add_epi32(i0, _mm256_set1_epi32(MAX_TAPS - 1)));
    let count =
        _mm256_max_epi32(_mm256_add_epi32(_mm256_sub_epi32(i1, i0), _mm256_set1_epi32(1)), _mm256_setzero_si256());
    let mut counts = [0i32; 8];
    // SAFETY: eight ints.
    unsafe { _mm256_storeu_si256(counts.as_mut_ptr() as *mut __m256i, count) };
    let most = counts.iter().copied().max().unwrap_or(0) as usize;
    if most > G8_TAPS {
        return None;
    }
    let (mut first, mut lastl) = ([0i32; 8], [0i32; 8]);
    // SAFETY: eight ints each.
    unsafe {
        _mm256_storeu_si256(first.as_mut_ptr() as *mut __m256i, i0);
        _mm256_storeu_si256(lastl.as_mut_ptr() as *mut __m256i, _mm256_add_epi32(i0, count));
    }
    // Every lane's live taps inside the image: its indices run on from its first.
    let inside = first.iter().zip(&lastl).all(|(&a, &b)| a >= 0 && b <= n as i32);
    let (fv, last) = (_mm256_set1_ps(f), _mm256_set1_epi32(n as i32 - 1));
    // Dividing by a power of two is multiplying by its exact reciprocal
    // (the same float): the 2x and 4x downscales and no scaling at all.
    let exact = (f.is_normal() && f.to_bits() & 0x7f_ffff == 0).then(|| _mm256_set1_ps(1.0 / f));
    let mut sum = _mm256_setzero_ps();
    for k in 0..most {
        let i = _mm256_add_epi32(i0, _mm256_set1_epi32(k as i32));
        let d = _mm256_sub_ps(_mm256_cvtepi32_ps(i), u);
        let t = match exact {
            Some(r) => _mm256_mul_ps(d, r),
            None => _mm256_div_ps(d, fv),
        };
        let live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(count, _mm256_set1_epi32(k as i32)));
        let wk = _mm256_and_ps(kernel_weight8(filter, t), live);
        sum = _mm256_add_ps(sum, wk);
        w[k] = wk;
        idx[k] = _mm256_min_epi32(_mm256_max_epi32(i, _mm256_setzero_si256()), last);
    }
    for wk in &mut w[..most] {
        *wk = _mm256_div_ps(*wk, sum);
    }
    Some((most, inside))
}

/// [`kernel_weight`] on eight values, the same float steps.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn kernel_weight8(filter: u32, t: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let s = _mm256_set1_ps;
    let a = _mm256_andnot_ps(s(-0.0), t);
    if filter == 1 {
        return _mm256_max_ps(_mm256_sub_ps(s(1.0), a), _mm256_setzero_ps());
    }
    let near =
        _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(s(1.5), a), s(2.5)), a), a), s(1.0));
    let far = _mm256_add_ps(
        _mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(_mm256_add_ps(_mm256_mul_ps(s(-0.5), a), s(2.5)), a), s(4.0)), a),
        s(2.0),
    );
    let lt1 = _mm256_cmp_ps::<_CMP_LT_OQ>(a, s(1.0));
    let lt2 = _mm256_cmp_ps::<_CMP_LT_OQ>(a, s(2.0));
    _mm256_blendv_ps(_mm256_and_ps(far, lt2), near, lt1)
}

#[cfg(test)]
mod tests {
    use super::{ceil_i32, floor_i32};

    #[test]
    fn integer_floor_and_ceil_match_std() {
        let mut xs = vec![
            0.0f32,
            -0.0,
            0.5,
            -0.5,
            1.0,
            -1.0,
            2.5,
            -2.5,
            1e-30,
            -1e-30,
            8388607.5,
            -8388607.5,
            2147483520.0,
            -2147483648.0,
            1e10,
            -1e10,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MAX,
            f32::MIN,
        ];
        let mut s = 0x9e37_79b9u32;
        for _ in 0..100_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            xs.push(f32::from_bits(s));
            xs.push((s as f32 / u32::MAX as f32 - 0.5) * 20000.0);
        }
        for x in xs {
            assert_eq!(ceil_i32(x), x.ceil() as i32, "ceil {x:?}");
            assert_eq!(floor_i32(x), x.floor() as i32, "floor {x:?}");
        }
    }
}
