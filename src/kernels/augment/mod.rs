//! The augmentation pass: a chain of geometric stages (affine maps with
//! borders) sampled once with a separable filter, then a chain of colour
//! stages, in one dispatch (see `shaders/augment.wgsl` for the semantics).
//! Every augmentation op is one configuration of this kernel; the planner in
//! the `augment` module fuses several into one pass.

use bytemuck::{Pod, Zeroable};

use super::contract::{bench_rng, gpu_planes, planes, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance};
use super::{kernel_desc, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{grid_groups, Gpu, GpuTensor};
use crate::rng::SplitMix;
use crate::tensor::Shape;

mod cpu;

pub use cpu::PackedSample;

/// The header of a record of `shaders/augment.wgsl` (its `Params`; the
/// record's first 16 words).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
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

/// Params uniform of `shaders/augment.wgsl`: where the dispatch's record
/// starts in the program buffer (words).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct AugmentRecord {
    /// Word offset of the record (header, then program) in the buffer.
    pub base: u32,
    /// Padding to the uniform's 16 bytes.
    pub _pad: [u32; 3],
}

/// Descriptor of the `augment` kernel.
pub static DESC: KernelDesc = kernel_desc!("augment", AugmentRecord, [Read, Read, ReadWrite], [8, 8, 1]);

/// Most geometric and colour stages in one pass.
pub const MAX_STAGES: usize = 8;
/// Length of the program (f32) after a record's header.
pub const PROGRAM_LEN: usize = 262;
/// Words of a record in the program buffer: the header, then the program.
pub const RECORD_LEN: usize = HEADER_LEN + PROGRAM_LEN;
const HEADER_LEN: usize = 16;
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
    Affine {
        /// The 3x3 matrix, row-major (output channel by input channel).
        m: [f32; 9],
        /// The offset added per output channel.
        t: [f32; 3],
    },
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
    Normalize {
        /// Per-channel mean subtracted (R, G, B).
        mean: [f32; 3],
        /// Per-channel standard deviation divided by (R, G, B).
        std: [f32; 3],
    },
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

    /// The record the shader reads for input `x` into batch item `item`:
    /// the header, then the program, as words.
    pub fn record(&self, x: Shape, item: usize) -> Vec<u32> {
        let mut r = Vec::with_capacity(RECORD_LEN);
        r.extend_from_slice(bytemuck::cast_slice::<AugmentParams, u32>(&[self.params(x, item)]));
        r.extend(self.program().iter().map(|v| v.to_bits()));
        r
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

    /// Records the pass: `x` (1, C, h, w) to batch item `item` of `y`
    /// (items, C, out_h, out_w). The record goes up as a small constant buffer.
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        y: &GpuTensor,
        item: usize,
    ) -> Result<()> {
        self.check_io(x, y, item)?;
        let prog = gpu.constant("gpuimg.augment.program", bytemuck::cast_slice(&self.record(x.shape, item)));
        self.encode_at(gpu, encoder, x, (&prog, 0), y, item)
    }

    /// [`AugmentPass::encode`] with the record already in `progs` at word
    /// `base` (`at`: the two; as [`AugmentPass::record`] makes it for `x` and `item`): a
    /// caller recording the same dispatches again (the augmenter, batch after
    /// batch) binds the same buffers with the same uniform each time.
    ///
    /// # Errors
    /// As [`AugmentPass::encode`], and for a record past the buffer's end.
    pub fn encode_at(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        (progs, base): (&wgpu::Buffer, usize),
        y: &GpuTensor,
        item: usize,
    ) -> Result<()> {
        self.check_io(x, y, item)?;
        if ((base + RECORD_LEN) * 4) as u64 > progs.size() {
            return Err(Error::invalid(
                "augment",
                format!("a record at word {base} overruns the {}-byte program buffer", progs.size()),
            ));
        }
        let u = AugmentRecord { base: base as u32, _pad: [0; 3] };
        gpu.dispatch(
            encoder,
            &DESC,
            bytemuck::bytes_of(&u),
            &[x.buf(DESC.name)?, progs, y.buf(DESC.name)?],
            grid_groups(self.out_w, self.out_h, 1),
        )
    }

    /// The checks of a dispatch from `x` into item `item` of `y`.
    fn check_io(&self, x: &GpuTensor, y: &GpuTensor, item: usize) -> Result<()> {
        self.check(x.shape)?;
        let ys = y.shape;
        if ys.c != x.shape.c || ys.h != self.out_h || ys.w != self.out_w || item >= ys.n {
            return Err(Error::invalid(
                "augment",
                format!("output {ys} cannot take item {item} of {}", self.out_shape(x.shape)),
            ));
        }
        Ok(())
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
