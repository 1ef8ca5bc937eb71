//! The augmentation pass: a chain of geometric stages (affine maps with
//! borders) sampled once with a separable filter, then a chain of colour
//! stages, in one dispatch (see `shaders/augment.wgsl` for the semantics).
//! Every augmentation op is one configuration of this kernel; the planner in
//! the `augment` module fuses several into one pass.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::contract::{bench_rng, gpu_planes, planes, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance};
use super::{kernel_desc, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{grid_groups, Gpu, GpuTensor};
use crate::rng::SplitMix;
use crate::tensor::{Shape, Tensor};

/// Params uniform of `shaders/augment.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct AugmentParams {
    pub in_w: u32,
    pub in_h: u32,
    pub out_w: u32,
    pub out_h: u32,
    pub channels: u32,
    pub n_geo: u32,
    pub n_col: u32,
    pub filter: u32,
    pub fx: f32,
    pub fy: f32,
    pub out_mode: u32,
    pub seed: u32,
    pub item: u32,
    pub _pad: [u32; 3],
}

/// Descriptor of the `augment` kernel.
pub static DESC: KernelDesc = kernel_desc!("augment", AugmentParams, [Read, Read, ReadWrite], [8, 8, 1]);

/// Most geometric and colour stages in one pass.
pub const MAX_STAGES: usize = 8;
/// Length of the program buffer (f32).
pub const PROGRAM_LEN: usize = 262;
const COL: usize = 128;
const NORM: usize = 256;
const MAX_TAPS: i32 = 66;

/// What a geometric stage does with points outside its input canvas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Border {
    /// The pixel is this colour (RGBA, alpha used for 4-channel images).
    Constant([f32; 4]),
    /// Clamp to the nearest pixel centre (torch 'replicate').
    Edge,
    /// Mirror about the edge pixels (torch 'reflect').
    Reflect,
    /// Not checked: the op cannot leave its input.
    Inside,
}

impl Border {
    fn code(&self) -> f32 {
        match self {
            Border::Constant(_) => 0.0,
            Border::Edge => 1.0,
            Border::Reflect => 2.0,
            Border::Inside => 3.0,
        }
    }
}

/// One geometric stage: output point -> input point, `x' = m0 x + m1 y + m2`,
/// `y' = m3 x + m4 y + m5`, on an input canvas `w` x `h`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoStage {
    /// The affine map.
    pub map: [f32; 6],
    /// Input canvas width.
    pub w: f32,
    /// Input canvas height.
    pub h: f32,
    /// Border handling.
    pub border: Border,
    /// Position of the op in the written chain: its fill colour goes through
    /// only the colour stages written after it.
    pub order: f32,
}

/// One colour stage on R, G, B.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColourOp {
    /// `rgb <- M rgb + t` (M row-major).
    Affine { m: [f32; 9], t: [f32; 3] },
    /// `v <- max(v, 0)^g`.
    Gamma(f32),
    /// `v <- v + sigma N(0, 1)`.
    Noise(f32),
}

/// The resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    /// Nearest pixel.
    Nearest,
    /// Triangle (bilinear).
    #[default]
    Bilinear,
    /// Keys cubic, a = -0.5 (bicubic).
    Bicubic,
}

impl Filter {
    fn code(self) -> u32 {
        match self {
            Filter::Nearest => 0,
            Filter::Bilinear => 1,
            Filter::Bicubic => 2,
        }
    }
    /// Largest footprint widening the tap limit allows.
    pub fn max_footprint(self) -> f32 {
        match self {
            Filter::Bicubic => 16.0,
            _ => 32.0,
        }
    }
}

/// What the pass writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutMode {
    /// Values as computed (between passes).
    Raw,
    /// Clamped to [0, 1].
    Clamp,
    /// Clamped, then `(v - mean) / std` on R, G, B.
    Normalize { mean: [f32; 3], std: [f32; 3] },
}

/// One augmentation pass.
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentPass {
    /// Output width.
    pub out_w: usize,
    /// Output height.
    pub out_h: usize,
    /// Geometric stages in the order written (applied to points last first).
    pub geo: Vec<GeoStage>,
    /// Colour stages in order, each with its position in the written chain.
    pub colour: Vec<(ColourOp, f32)>,
    /// Resampling filter.
    pub filter: Filter,
    /// Footprint widening along the input x axis (>= 1; 1 without antialiasing).
    pub fx: f32,
    /// Footprint widening along the input y axis.
    pub fy: f32,
    /// Output mode.
    pub out_mode: OutMode,
    /// Seed of the noise stages.
    pub seed: u32,
}

fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
    (word >> 22) ^ word
}

/// The standard normal the shader draws for (seed, pixel, channel, stage).
pub fn normal(seed: u32, pixel: u32, c: u32, stage: u32) -> f32 {
    let h1 = pcg(seed ^ pcg(pixel.wrapping_mul(16).wrapping_add(c * 4).wrapping_add(stage)));
    let h2 = pcg(h1 ^ 0x9e3779b9);
    let u1 = ((h1 >> 8) as f32 + 0.5) / 16777216.0;
    let u2 = (h2 >> 8) as f32 / 16777216.0;
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

fn reflect_index(u: f32, n: f32) -> f32 {
    if n <= 1.0 {
        return 0.0;
    }
    let period = 2.0 * (n - 1.0);
    let mut v = u - period * (u / period).floor();
    if v > n - 1.0 {
        v = period - v;
    }
    v
}

impl AugmentPass {
    /// Checks stage counts, sizes and footprints.
    pub fn check(&self, x: Shape) -> Result<()> {
        let e = |m: String| Err(Error::invalid("augment", m));
        if x.n != 1 || x.c == 0 || x.c > 4 || x.h == 0 || x.w == 0 {
            return e(format!("input {x} must be one image of 1-4 channels"));
        }
        if self.out_w == 0 || self.out_h == 0 {
            return e(format!("output size {}x{} is empty", self.out_w, self.out_h));
        }
        if self.geo.len() > MAX_STAGES || self.colour.len() > MAX_STAGES {
            return e(format!(
                "{} geometric / {} colour stages (at most {MAX_STAGES})",
                self.geo.len(),
                self.colour.len()
            ));
        }
        let max = self.filter.max_footprint();
        if !(self.fx >= 1.0 && self.fx <= max && self.fy >= 1.0 && self.fy <= max) {
            return e(format!("footprint {} x {} outside 1..{max}", self.fx, self.fy));
        }
        Ok(())
    }

    /// The output shape for input `x`.
    pub fn out_shape(&self, x: Shape) -> Shape {
        Shape::new(1, x.c, self.out_h, self.out_w)
    }

    /// The program buffer the shader reads.
    pub fn program(&self) -> Vec<f32> {
        let mut p = vec![0.0f32; PROGRAM_LEN];
        for (k, s) in self.geo.iter().enumerate() {
            let o = k * 16;
            p[o..o + 6].copy_from_slice(&s.map);
            p[o + 6] = s.w;
            p[o + 7] = s.h;
            p[o + 8] = s.border.code();
            if let Border::Constant(f) = s.border {
                p[o + 9..o + 13].copy_from_slice(&f);
            }
            p[o + 13] = s.order;
        }
        for (j, (op, order)) in self.colour.iter().enumerate() {
            let o = COL + j * 16;
            p[o + 1] = *order;
            match op {
                ColourOp::Affine { m, t } => {
                    for r in 0..3 {
                        p[o + 2 + 4 * r..o + 5 + 4 * r].copy_from_slice(&m[3 * r..3 * r + 3]);
                        p[o + 5 + 4 * r] = t[r];
                    }
                }
                ColourOp::Gamma(g) => {
                    p[o] = 1.0;
                    p[o + 14] = *g;
                }
                ColourOp::Noise(s) => {
                    p[o] = 2.0;
                    p[o + 14] = *s;
                }
            }
        }
        if let OutMode::Normalize { mean, std } = self.out_mode {
            p[NORM..NORM + 3].copy_from_slice(&mean);
            p[NORM + 3..NORM + 6].copy_from_slice(&std);
        }
        p
    }

    fn params(&self, x: Shape, item: usize) -> AugmentParams {
        AugmentParams {
            in_w: x.w as u32,
            in_h: x.h as u32,
            out_w: self.out_w as u32,
            out_h: self.out_h as u32,
            channels: x.c as u32,
            n_geo: self.geo.len() as u32,
            n_col: self.colour.len() as u32,
            filter: self.filter.code(),
            fx: self.fx,
            fy: self.fy,
            out_mode: match self.out_mode {
                OutMode::Raw => 0,
                OutMode::Clamp => 1,
                OutMode::Normalize { .. } => 2,
            },
            seed: self.seed,
            item: item as u32,
            _pad: [0; 3],
        }
    }

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

    /// Records the pass: `x` (1, C, h, w) to batch item `item` of `y`
    /// (items, C, out_h, out_w). The program goes up as a small constant buffer.
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        y: &GpuTensor,
        item: usize,
    ) -> Result<()> {
        self.check(x.shape)?;
        let ys = y.shape;
        if ys.c != x.shape.c || ys.h != self.out_h || ys.w != self.out_w || item >= ys.n {
            return Err(Error::invalid(
                "augment",
                format!("output {ys} cannot take item {item} of {}", self.out_shape(x.shape)),
            ));
        }
        let prog = gpu.constant("gpuimg.augment.program", &self.program());
        let p = self.params(x.shape, item);
        gpu.dispatch(
            encoder,
            &DESC,
            bytemuck::bytes_of(&p),
            &[&x.buffer, &prog, &y.buffer],
            grid_groups(self.out_w, self.out_h, 1),
        )
    }
}

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
    if filter == 0 {
        return (vec![(p.floor() as i64).clamp(0, n as i64 - 1) as usize], vec![1.0]);
    }
    let radius = if filter == 1 { 1.0 } else { 2.0 };
    let u = p - 0.5;
    let i0 = (u - radius * f).ceil() as i32;
    let i1 = ((u + radius * f).floor() as i32).min(i0 + MAX_TAPS - 1);
    let w: Vec<f32> = (i0..=i1).map(|i| kernel_weight(filter, (i as f32 - u) / f)).collect();
    let sum: f32 = w.iter().sum();
    ((i0..=i1).map(|i| i.clamp(0, n as i32 - 1) as usize).collect(), w.iter().map(|v| v / sum).collect())
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
                _ => {
                    for (c, vc) in v.iter_mut().enumerate().take(3) {
                        *vc += prog[o + 14] * normal(p.seed, pixel, c as u32, 0);
                    }
                }
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
                dst[c] = T::from_u32(super::pack_pixels::quantise(v[c], maxv));
            }
        };
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
            hbuf.par_chunks_mut(ow * nc).zip(rows.par_iter()).for_each(|(dst, &r)| {
                let s = &src[r * w * nc..(r + 1) * w * nc];
                for (gx, t) in xt.iter().enumerate() {
                    if let Some((idx, wts)) = t {
                        for c in 0..nc {
                            dst[gx * nc + c] =
                                idx.iter().zip(wts).map(|(&i, &wv)| wv * s[i * nc + c].to_f32()).sum::<f32>() / maxv;
                        }
                    }
                }
            });
            out.par_chunks_mut(ow * nc).enumerate().for_each(|(gy, row)| {
                for gx in 0..ow {
                    let dst = &mut row[gx * nc..gx * nc + nc];
                    let (mut v, order) = match fill_stage(xs[gx], ys[gy]) {
                        Some(k) => fill_of(&prog, k, nc),
                        None => {
                            let (idx, wts) = yt[gy].as_ref().expect("row inside");
                            let mut v = [0.0f32; 4];
                            for c in 0..nc {
                                v[c] =
                                    idx.iter().zip(wts).map(|(&r, &wv)| wv * hbuf[(slot[r] * ow + gx) * nc + c]).sum();
                            }
                            (v, -1.0)
                        }
                    };
                    finish(&mut v, order, (gy * ow + gx) as u32, dst);
                }
            });
            return Some(Ok(out));
        }
        // Rotations: per-pixel taps on the packed input.
        out.par_chunks_mut(ow * nc).enumerate().for_each(|(gy, row)| {
            for gx in 0..ow {
                let dst = &mut row[gx * nc..gx * nc + nc];
                let (mut v, order) = match self.land(gx, gy) {
                    Err(k) => fill_of(&prog, k, nc),
                    Ok((px, py)) => {
                        let (xi, xw) = taps(pr.filter, px, self.fx, w);
                        let (yi, yw) = taps(pr.filter, py, self.fy, h);
                        let mut v = [0.0f32; 4];
                        for (&r, &wy) in yi.iter().zip(&yw) {
                            let s = &src[r * w * nc..(r + 1) * w * nc];
                            for (&i, &wx) in xi.iter().zip(&xw) {
                                for c in 0..nc {
                                    v[c] += wy * wx * s[i * nc + c].to_f32();
                                }
                            }
                        }
                        for vc in v.iter_mut().take(nc) {
                            *vc /= maxv;
                        }
                        (v, -1.0)
                    }
                };
                finish(&mut v, order, (gy * ow + gx) as u32, dst);
            }
        });
        Some(Ok(out))
    }
}

impl Kernel for AugmentPass {
    fn desc(&self) -> &'static KernelDesc {
        &DESC
    }
    fn output(&self, inputs: &[&Data]) -> Result<Output> {
        let [x] = planes(DESC.name, inputs)?;
        self.check(x.shape)?;
        Ok(Output::Planes(self.out_shape(x.shape)))
    }
    fn cpu(&self, inputs: &[&Data]) -> Result<Data> {
        let [x] = planes(DESC.name, inputs)?;
        Ok(Data::Planes(AugmentPass::cpu(self, x)?))
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        let [x] = gpu_planes(DESC.name, inputs)?;
        self.check(x.shape)?;
        AugmentPass::encode(self, gpu, encoder, x, out.planes(DESC.name, 0)?, 0)
    }
}

/// Transcendentals (cos/log for noise, pow for gamma) are not correctly rounded on GPUs.
const TOLERANCE: Tolerance = Tolerance { abs: 2e-5, rel: 2e-5 };

/// The registry line of `augment`. Its parity cases are single passes built
/// here; `tests/parity.rs` also checks whole augmentation plans op by op.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

/// A pass of `w` x `h` output: a rotation by `angle` about the centre of a
/// `w` x `h` input, then the seed-004 jitter, a gamma and (with `noise`) Gaussian noise.
fn rotate_jitter(w: usize, h: usize, angle: f32, border: Border, filter: Filter, noise: bool) -> AugmentPass {
    let (s, c) = angle.to_radians().sin_cos();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let map = [c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy];
    let geo = vec![GeoStage { map, w: w as f32, h: h as f32, border, order: 0.0 }];
    let jitter = ColourOp::Affine { m: [1.1, 0.05, 0.0, 0.0, 0.9, 0.1, 0.02, 0.0, 1.05], t: [0.01, -0.02, 0.0] };
    let mut colour = vec![(jitter, 1.0), (ColourOp::Gamma(0.8), 2.0)];
    if noise {
        colour.push((ColourOp::Noise(0.05), 3.0));
    }
    AugmentPass { out_w: w, out_h: h, geo, colour, filter, fx: 1.0, fy: 1.0, out_mode: OutMode::Clamp, seed: 7 }
}

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    // Rotated sample points are one ulp apart between GPU and CPU (3e-5 pixels
    // at 256): on random-noise images that moves a bilinear value by as much,
    // and flips a nearest pick at a near-tie, which at 65,536 pixels happens a
    // few times per image. Up to 64 pixels a side neither shows.
    if w > 64 || h > 64 {
        return cases;
    }
    for c in [3, 4] {
        let x = rng.planes(Shape::new(1, c, h, w), 0.0, 1.0);
        for (angle, border, filter, noise) in [
            (17.5, Border::Constant([0.2, 0.4, 0.6, 1.0]), Filter::Bilinear, false),
            (-33.0, Border::Reflect, Filter::Bicubic, true),
            (50.0, Border::Edge, Filter::Nearest, false),
        ] {
            let pass = rotate_jitter(w, h, angle, border, filter, noise);
            let what = format!("rotate {angle} {border:?} {filter:?} noise {noise} on {w}x{h}x{c}");
            cases.push(Case::new(what, pass, vec![x.clone()], TOLERANCE));
        }
    }
    cases
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let x = bench_rng().planes(Shape::new(1, 3, h, w), 0.0, 1.0);
    let pass = rotate_jitter(w, h, 10.0, Border::Constant([0.0; 4]), Filter::Bilinear, false);
    Ok(Case::new("rotate, jitter, gamma, RGB", pass, vec![x], TOLERANCE))
}
