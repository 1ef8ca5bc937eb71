//! The CPU twin of the `augment` kernel: the per-pixel path that mirrors
//! the shader, the separable two-pass path taken when no stage rotates, and
//! the packed-sample path.

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

/// Packed sample types the CPU packed path reads and writes.
pub trait PackedSample: Copy + Send + Sync {
    /// The sample as a float (not yet divided by the maximum).
    fn to_f32(self) -> f32;
    /// A quantised value back to a sample.
    fn from_u32(v: u32) -> Self;
    /// The sample as an index.
    fn idx(self) -> usize;
}

impl PackedSample for u8 {
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn from_u32(v: u32) -> Self {
        v as u8
    }
    fn idx(self) -> usize {
        self as usize
    }
}

impl PackedSample for u16 {
    fn to_f32(self) -> f32 {
        self as f32
    }
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
        let finish = |v: &mut [f32; 4], fill_order: f32, pixel: u32, dst: &mut [T]| {
            colour(&pr, &prog, v, fill_order, pixel);
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
            out.par_chunks_mut(ow * nc).zip(src.par_chunks(w * nc)).for_each(|(d, s)| {
                let tables: Vec<&[T]> = lut.chunks_exact(256).collect();
                for (dp, sp) in d.chunks_exact_mut(nc).zip(s.chunks_exact(nc)) {
                    for ((d, v), t) in dp.iter_mut().zip(sp).zip(&tables) {
                        // 8-bit values: the mask changes nothing and lets the
                        // compiler drop the bounds check.
                        *d = t[v.idx() & 255];
                    }
                }
            });
            return Some(Ok(out));
        }
        // Colour alone with every stage affine (jitter: brightness,
        // contrast, saturation, hue, grey): the stages' matrices read once,
        // then a loop per row specialised on the channel count, with the
        // same float steps per pixel as `colour` and packing.
        let affine: Option<Vec<[f32; 12]>> = (0..self.colour.len())
            .map(|j| {
                let o = COL + j * 16;
                matches!(self.colour[j].0, ColourOp::Affine { .. })
                    .then(|| prog[o + 2..o + 14].try_into().expect("12 values"))
            })
            .collect();
        if let (Some(stages), true) =
            (&affine, self.geo.is_empty() && (ow, oh) == (w, h) && nc >= 3 && self.out_mode == OutMode::Clamp)
        {
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
            // Per axis: the landing of every output column / row (the other coordinate does not matter).
            let xs: Vec<Axis> = (0..ow).map(|o| self.land_axis(o, 0)).collect();
            let ys: Vec<Axis> = (0..oh).map(|o| self.land_axis(o, 1)).collect();
            let xt: Vec<Option<(Vec<usize>, Vec<f32>)>> =
                xs.iter().map(|p| p.ok().map(|p| taps(pr.filter, p, self.fx, w))).collect();
            let yt: Vec<Option<(Vec<usize>, Vec<f32>)>> =
                ys.iter().map(|p| p.ok().map(|p| taps(pr.filter, p, self.fy, h))).collect();
            let mut slot = vec![usize::MAX; h];
            let mut rows = Vec::new();
            for (idx, _) in yt.iter().flatten() {
                for &r in idx {
                    if slot[r] == usize::MAX {
                        slot[r] = rows.len();
                        rows.push(r);
                    }
                }
            }
            // Horizontal pass: each needed input row filtered to the output width (f32, interleaved, / maxv).
            let mut hbuf = vec![0.0f32; rows.len() * ow * nc];
            // Both passes specialised on the channel count (the channels'
            // sums side by side, each over its taps in order: the same
            // floats as one channel at a time) and built for AVX2 where
            // the level allows.
            let avx2 = crate::cpu::level() == crate::cpu::Level::Avx2Fma;
            let sep = Separable { xt: &xt, xs: &xs, ys: &ys, yt: &yt, slot: &slot, prog: &prog, maxv, finish: &finish };
            hbuf.par_chunks_mut(ow * nc).zip(rows.par_iter()).for_each(|(dst, &r)| {
                let s = &src[r * w * nc..(r + 1) * w * nc];
                match nc {
                    1 => sep.run::<T, 1>(avx2, Sweep::Row(dst, s)),
                    2 => sep.run::<T, 2>(avx2, Sweep::Row(dst, s)),
                    3 => sep.run::<T, 3>(avx2, Sweep::Row(dst, s)),
                    _ => sep.run::<T, 4>(avx2, Sweep::Row(dst, s)),
                }
            });
            out.par_chunks_mut(ow * nc).enumerate().for_each(|(gy, row)| {
                let sweep = Sweep::Column(row, gy, &hbuf);
                match nc {
                    1 => sep.run::<T, 1>(avx2, sweep),
                    2 => sep.run::<T, 2>(avx2, sweep),
                    3 => sep.run::<T, 3>(avx2, sweep),
                    _ => sep.run::<T, 4>(avx2, sweep),
                }
            });
            return Some(Ok(out));
        }
        // Rotations: per-pixel taps on the packed input, a row at a time
        // through a function specialised on the channel count (and built
        // for AVX2 where the level allows).
        let avx2 = crate::cpu::level() == crate::cpu::Level::Avx2Fma;
        let ctx = RotateRow { pass: self, src, w, h, ow, filter: pr.filter, maxv, prog: &prog, finish: &finish };
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
    fn apply(m: &[f32; 12], (r, g, b): (f32, f32, f32)) -> (f32, f32, f32) {
        (
            m[0] * r + m[1] * g + m[2] * b + m[3],
            m[4] * r + m[5] * g + m[6] * b + m[7],
            m[8] * r + m[9] * g + m[10] * b + m[11],
        )
    }
    #[inline(always)]
    fn row<T: PackedSample, const C: usize>(dst: &mut [T], src: &[T], stages: &[[f32; 12]], unit: &[f32], maxv: f32) {
        let q = |v: f32| T::from_u32(crate::kernels::pack_pixels::quantise(v, maxv));
        for (d, s) in dst.chunks_exact_mut(C).zip(src.chunks_exact(C)) {
            let mut rgb = (unit[s[0].idx()], unit[s[1].idx()], unit[s[2].idx()]);
            // One stage (the planner composes adjacent affine ops) with
            // its matrix in registers; more in turn.
            if let [m] = stages {
                rgb = apply(m, rgb);
            } else {
                for m in stages {
                    rgb = apply(m, rgb);
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
        row::<T, C>(dst, src, stages, unit, maxv)
    }
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: the chosen level is never above what the CPU supports.
        return unsafe { row_avx2::<T, C>(dst, src, stages, unit, maxv) };
    }
    let _ = avx2;
    row::<T, C>(dst, src, stages, unit, maxv)
}

/// The axis-aligned packed path's two 1-D passes.
struct Separable<'a, F> {
    xt: &'a [Option<(Vec<usize>, Vec<f32>)>],
    xs: &'a [Axis],
    ys: &'a [Axis],
    yt: &'a [Option<(Vec<usize>, Vec<f32>)>],
    /// Input row -> its row of the horizontal pass's buffer.
    slot: &'a [usize],
    prog: &'a [f32],
    maxv: f32,
    finish: &'a F,
}

/// One row of work for [`Separable`]: an input row filtered along x into
/// the buffer (f32, / maxv), or output row `gy` from the buffer's rows.
enum Sweep<'a, T> {
    Row(&'a mut [f32], &'a [T]),
    Column(&'a mut [T], usize, &'a [f32]),
}

impl<F> Separable<'_, F> {
    fn run<T: PackedSample, const C: usize>(&self, avx2: bool, sweep: Sweep<'_, T>)
    where
        F: Fn(&mut [f32; 4], f32, u32, &mut [T]),
    {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the chosen level is never above what the CPU supports.
            return unsafe { self.run_avx2::<T, C>(sweep) };
        }
        let _ = avx2;
        self.sweep::<T, C>(sweep)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn run_avx2<T: PackedSample, const C: usize>(&self, sweep: Sweep<'_, T>)
    where
        F: Fn(&mut [f32; 4], f32, u32, &mut [T]),
    {
        self.sweep::<T, C>(sweep)
    }

    #[inline(always)]
    fn sweep<T: PackedSample, const C: usize>(&self, sweep: Sweep<'_, T>)
    where
        F: Fn(&mut [f32; 4], f32, u32, &mut [T]),
    {
        match sweep {
            Sweep::Row(dst, s) => {
                for (d, t) in dst.chunks_exact_mut(C).zip(self.xt) {
                    if let Some((idx, wts)) = t {
                        let mut acc = [0.0f32; C];
                        for (&i, &wv) in idx.iter().zip(wts) {
                            let px: &[T; C] = s[i * C..i * C + C].try_into().expect("C samples");
                            for c in 0..C {
                                acc[c] += wv * px[c].to_f32();
                            }
                        }
                        for c in 0..C {
                            d[c] = acc[c] / self.maxv;
                        }
                    }
                }
            }
            Sweep::Column(row, gy, hbuf) => {
                let ow = row.len() / C;
                for (gx, dst) in row.chunks_exact_mut(C).enumerate() {
                    let (mut v, order) = match fill_stage(self.xs[gx], self.ys[gy]) {
                        Some(k) => fill_of(self.prog, k, C),
                        None => {
                            let (idx, wts) = self.yt[gy].as_ref().expect("row inside");
                            let mut v = [0.0f32; 4];
                            for (&r, &wv) in idx.iter().zip(wts) {
                                let at = (self.slot[r] * ow + gx) * C;
                                let px: &[f32; C] = hbuf[at..at + C].try_into().expect("C values");
                                for c in 0..C {
                                    v[c] += wv * px[c];
                                }
                            }
                            (v, -1.0)
                        }
                    };
                    (self.finish)(&mut v, order, (gy * ow + gx) as u32, dst);
                }
            }
        }
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
        self.row::<C>(gy, gx0, row)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn row_avx2<const C: usize>(&self, gy: usize, gx0: usize, row: &mut [T]) {
        self.row::<C>(gy, gx0, row)
    }

    #[inline(always)]
    fn row<const C: usize>(&self, gy: usize, gx0: usize, row: &mut [T]) {
        let (w, h, pass, ow) = (self.w, self.h, self.pass, self.ow);
        let (mut tx, mut ty) = (Taps::new(), Taps::new());
        for (gx, dst) in (gx0..).zip(row.chunks_exact_mut(C)) {
            let (mut v, order) = match pass.land(gx, gy) {
                Err(k) => fill_of(self.prog, k, C),
                Ok((px, py)) => {
                    tx.fill(self.filter, px, pass.fx, w);
                    ty.fill(self.filter, py, pass.fy, h);
                    let (xi, xw) = (&tx.idx[..tx.n], &tx.w[..tx.n]);
                    // The shader's order: each input row's taps summed
                    // along x, then the rows weighted along y (independent
                    // row sums, so no single chain of adds through every tap).
                    let mut v = [0.0f32; 4];
                    for (&r, &wy) in ty.idx[..ty.n].iter().zip(&ty.w[..ty.n]) {
                        let s = &self.src[r as usize * w * C..(r as usize + 1) * w * C];
                        let mut rs = [0.0f32; 4];
                        for (&i, &wx) in xi.iter().zip(xw) {
                            let px: &[T; C] = s[i as usize * C..i as usize * C + C].try_into().expect("C samples");
                            for c in 0..C {
                                rs[c] += wx * px[c].to_f32();
                            }
                        }
                        for c in 0..C {
                            v[c] += wy * rs[c];
                        }
                    }
                    for vc in v.iter_mut().take(C) {
                        *vc /= self.maxv;
                    }
                    (v, -1.0)
                }
            };
            (self.finish)(&mut v, order, (gy * ow + gx) as u32, dst);
        }
    }
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
