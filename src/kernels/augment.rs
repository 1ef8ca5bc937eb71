//! The augmentation pass: a chain of geometric stages (affine maps with
//! borders) sampled once with a separable filter, then a chain of colour
//! stages, in one dispatch (see `shaders/augment.wgsl` for the semantics).
//! Every augmentation op is one configuration of this kernel; the planner in
//! `crate::augment` fuses several into one pass.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::{kernel_desc, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{grid_groups, Gpu, GpuTensor};
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
        let plane = ow * oh;
        // Rows in parallel; each task writes its row of every plane.
        let mut rows: Vec<Vec<f32>> = vec![Vec::new(); oh];
        rows.par_iter_mut().enumerate().for_each(|(gy, row)| {
            row.resize(nc * ow, 0.0);
            for gx in 0..ow {
                let v = pixel(&pr, &prog, &x.data, gx as u32, gy as u32);
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

    /// Runs end to end on the GPU.
    pub fn gpu(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        self.check(x.shape)?;
        gpu.run_tensors("gpuimg.augment", &[x], self.out_shape(x.shape), |enc, ins, y| {
            self.encode(gpu, enc, &ins[0], y, 0)
        })
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
fn pixel(p: &AugmentParams, prog: &[f32], x: &[f32], gx: u32, gy: u32) -> [f32; 4] {
    let (mut px, mut py) = (gx as f32 + 0.5, gy as f32 + 0.5);
    let mut fill_stage: i32 = -1;
    for k in (0..p.n_geo as usize).rev() {
        let o = k * 16;
        let nx = prog[o] * px + prog[o + 1] * py + prog[o + 2];
        let ny = prog[o + 3] * px + prog[o + 4] * py + prog[o + 5];
        px = nx;
        py = ny;
        let (w, h) = (prog[o + 6], prog[o + 7]);
        let border = prog[o + 8] as u32;
        if border != 3 && (px < 0.0 || py < 0.0 || px >= w || py >= h) {
            if border == 0 {
                fill_stage = k as i32;
                break;
            } else if border == 1 {
                px = px.clamp(0.5, w - 0.5);
                py = py.clamp(0.5, h - 0.5);
            } else {
                px = reflect_index(px - 0.5, w) + 0.5;
                py = reflect_index(py - 0.5, h) + 0.5;
            }
        }
    }
    let mut v = [0.0f32; 4];
    let mut fill_order = -1.0f32;
    let nc = p.channels.min(4) as usize;
    if fill_stage >= 0 {
        let o = fill_stage as usize * 16;
        v[..nc].copy_from_slice(&prog[o + 9..o + 9 + nc]);
        fill_order = prog[o + 13];
    } else {
        for (c, vc) in v.iter_mut().enumerate().take(nc) {
            *vc = sample(p, x, c as u32, px, py);
        }
    }
    let pixel = gy * p.out_w + gx;
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
    v
}
