//! Planning a drawn chain into passes of the `augment` kernel, and running
//! a plan on either backend (planar tensors, packed images, recorded into an encoder).

use crate::error::Result;
use crate::kernels::augment::{AugmentPass, Border, ColourOp, Filter, GeoStage, OutMode, MAX_STAGES};

use crate::backend::Backend;
use crate::gpu::{Gpu, GpuTensor};
use crate::image_io::Image;
use crate::kernels::unpack_pixels::PixelLayout;
use crate::kernels::{PackPixels, UnpackPixels};
use crate::ops::{record_pixel_chain, Recorded};
use crate::tensor::{Samples, Shape, Tensor};

use super::*;

/// Passes of the `augment` kernel for one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The passes, in order; the last writes the result.
    pub passes: Vec<AugmentPass>,
}

/// What one drawn op becomes.
pub(super) enum Step {
    Geo(GeoStage, Option<(Filter, bool)>, (usize, usize)),
    Colour(ColourOp),
    Normalize([f32; 3], [f32; 3]),
    Nothing,
}

pub(super) fn affine(m: [f32; 9], t: [f32; 3]) -> ColourOp {
    ColourOp::Affine { m, t }
}

pub(super) fn identity_plus(f: f32, blend: [f32; 3]) -> [f32; 9] {
    let mut m = [0.0; 9];
    for r in 0..3 {
        for c in 0..3 {
            m[3 * r + c] = if r == c { f } else { 0.0 } + (1.0 - f) * blend[c];
        }
    }
    m
}

/// Hue rotation by `f` turns about the grey axis, in YIQ.
pub(super) fn hue_matrix(f: f32) -> [f32; 9] {
    let to_yiq = [0.299, 0.587, 0.114, 0.596, -0.274, -0.322, 0.211, -0.523, 0.312];
    let from_yiq = [1.0, 0.956, 0.621, 1.0, -0.272, -0.647, 1.0, -1.106, 1.703];
    let (s, c) = (std::f32::consts::TAU * f).sin_cos();
    let rot = [1.0, 0.0, 0.0, 0.0, c, -s, 0.0, s, c];
    mul3(&from_yiq, &mul3(&rot, &to_yiq))
}

pub(super) fn mul3(a: &[f32; 9], b: &[f32; 9]) -> [f32; 9] {
    let mut m = [0.0; 9];
    for r in 0..3 {
        for c in 0..3 {
            m[3 * r + c] = (0..3).map(|k| a[3 * r + k] * b[3 * k + c]).sum();
        }
    }
    m
}

pub(super) fn step(o: &OpSpec, w: usize, h: usize) -> Result<Step> {
    let (wf, hf) = (w as f32, h as f32);
    let geo = |map: [f32; 6], border: Border, resample: Option<(Filter, bool)>, size: (usize, usize)| {
        Step::Geo(GeoStage { map, w: wf, h: hf, border, order: 0.0 }, resample, size)
    };
    let on = |o: &OpSpec| o.get("p") == Some("1");
    let f = |o: &OpSpec| o.num("f").map(|v| v.unwrap_or(1.0) as f32);
    Ok(match o.name.as_str() {
        "hflip" if on(o) => geo([-1.0, 0.0, wf, 0.0, 1.0, 0.0], Border::Inside, None, (w, h)),
        "vflip" if on(o) => geo([1.0, 0.0, 0.0, 0.0, -1.0, hf], Border::Inside, None, (w, h)),
        "hflip" | "vflip" => Step::Nothing,
        "grey" if on(o) => Step::Colour(affine(identity_plus(0.0, LUMA), [0.0; 3])),
        "grey" => Step::Nothing,
        "rot90" => match o.count("k")? % 4 {
            0 => Step::Nothing,
            1 => geo([0.0, -1.0, wf, 1.0, 0.0, 0.0], Border::Inside, None, (h, w)),
            2 => geo([-1.0, 0.0, wf, 0.0, -1.0, hf], Border::Inside, None, (w, h)),
            _ => geo([0.0, 1.0, 0.0, -1.0, 0.0, hf], Border::Inside, None, (h, w)),
        },
        "rotate" => {
            let a = o.num_or("angle", 0.0)?.to_radians();
            let (s, c) = (a.sin() as f32, a.cos() as f32);
            let (cx, cy) = (wf / 2.0, hf / 2.0);
            let map = [c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy];
            // Antialiasing is a no-op for a pure rotation (footprint 1), so
            // rotations fuse with antialiased bilinear resizes.
            geo(map, o.border("border")?, Some((Filter::Bilinear, true)), (w, h))
        }
        "crop" => {
            let (cw, ch) = (
                (o.num_or("fw", 1.0)? * w as f64).round().max(1.0),
                (o.num_or("fh", 1.0)? * h as f64).round().max(1.0),
            );
            let x = (o.num_or("fx", 0.0)? * w as f64).round().clamp(0.0, (w as f64 - cw).max(0.0));
            let y = (o.num_or("fy", 0.0)? * h as f64).round().clamp(0.0, (h as f64 - ch).max(0.0));
            if cw > w as f64 || ch > h as f64 {
                return Err(o.err(format!("{cw}x{ch} is larger than the {w}x{h} image")));
            }
            geo([1.0, 0.0, x as f32, 0.0, 1.0, y as f32], Border::Inside, None, (cw as usize, ch as usize))
        }
        "resize" => {
            let (nw, nh) = (o.size("w")?.unwrap_or(w), o.size("h")?.unwrap_or(h));
            let aa = !matches!(o.get("antialias"), Some("false" | "0"));
            let map = [wf / nw as f32, 0.0, 0.0, 0.0, hf / nh as f32, 0.0];
            geo(map, Border::Inside, Some((o.filter()?, aa)), (nw, nh))
        }
        "pad" => {
            let all = o.count("all")?;
            let side = |k: &str| -> Result<usize> { Ok(if o.get(k).is_some() { o.count(k)? } else { all }) };
            let (l, t, r, b) = (side("left")?, side("top")?, side("right")?, side("bottom")?);
            geo([1.0, 0.0, -(l as f32), 0.0, 1.0, -(t as f32)], o.border("mode")?, None, (w + l + r, h + t + b))
        }
        "brightness" => Step::Colour(affine(identity_plus(f(o)?, [0.0; 3]), [0.0; 3])),
        "contrast" => {
            let f = f(o)?;
            Step::Colour(affine(identity_plus(f, [0.0; 3]), [0.5 * (1.0 - f); 3]))
        }
        "saturation" => Step::Colour(affine(identity_plus(f(o)?, LUMA), [0.0; 3])),
        "hue" => Step::Colour(affine(hue_matrix(o.num_or("f", 0.0)? as f32), [0.0; 3])),
        "gamma" => Step::Colour(ColourOp::Gamma(o.num_or("g", 1.0)? as f32)),
        "noise" => Step::Colour(ColourOp::Noise(o.num_or("sigma", 0.0)? as f32)),
        "normalize" => {
            Step::Normalize(o.triple("mean", [0.485, 0.456, 0.406])?, o.triple("std", [0.229, 0.224, 0.225])?)
        }
        _ => return Err(o.err("not a drawn op (draw the spec first)")),
    })
}

/// A pass being assembled.
pub(super) struct Open {
    in_size: (usize, usize),
    size: (usize, usize),
    geo: Vec<GeoStage>,
    colour: Vec<(ColourOp, f32)>,
    seeds: Vec<u32>,
    resample: Option<(Filter, bool)>,
    last_geo_order: f32,
}

impl Open {
    pub(super) fn new(size: (usize, usize)) -> Self {
        Open {
            in_size: size,
            size,
            geo: Vec::new(),
            colour: Vec::new(),
            seeds: Vec::new(),
            resample: None,
            last_geo_order: -1.0,
        }
    }
    pub(super) fn close(self, out_mode: OutMode) -> AugmentPass {
        let (filter, aa) = self.resample.unwrap_or((Filter::Bilinear, false));
        // Footprint: row norms of the composed linear map (input step per output step).
        let mut j = [1.0f32, 0.0, 0.0, 1.0];
        for s in &self.geo {
            let l = [s.map[0], s.map[1], s.map[3], s.map[4]];
            j = [
                j[0] * l[0] + j[1] * l[2],
                j[0] * l[1] + j[1] * l[3],
                j[2] * l[0] + j[3] * l[2],
                j[2] * l[1] + j[3] * l[3],
            ];
        }
        let max = filter.max_footprint();
        let foot =
            |a: f32, b: f32| if aa && filter != Filter::Nearest { (a * a + b * b).sqrt().clamp(1.0, max) } else { 1.0 };
        let _ = self.in_size;
        AugmentPass {
            out_w: self.size.0,
            out_h: self.size.1,
            fx: foot(j[0], j[1]),
            fy: foot(j[2], j[3]),
            geo: self.geo,
            colour: self.colour,
            filter,
            out_mode,
            seed: self.seeds.first().copied().unwrap_or(0),
        }
    }
}

impl Plan {
    /// The fused plan of a drawn chain on a `w` x `h` image: as few passes as
    /// exactness allows (see the module docs). Ops still random in the chain
    /// are drawn with seed 0, sample 0.
    pub fn fused(drawn: &Drawn, w: usize, h: usize) -> Result<Plan> {
        Self::build(drawn, w, h, false)
    }

    /// One pass per op: the reference.
    pub fn op_by_op(drawn: &Drawn, w: usize, h: usize) -> Result<Plan> {
        Self::build(drawn, w, h, true)
    }

    /// Output size (width, height).
    pub fn out_size(&self) -> (usize, usize) {
        self.passes.last().map(|p| (p.out_w, p.out_h)).unwrap_or((0, 0))
    }

    pub(super) fn build(drawn: &Drawn, w: usize, h: usize, separate: bool) -> Result<Plan> {
        // Drawing a drawn chain gives it back unchanged; this also turns a
        // spec with fixed values (crop:x=..,w=..) into the drawn form.
        let drawn = &drawn.draw(0, 0, w, h)?;
        let mut passes = Vec::new();
        let mut open = Open::new((w, h));
        let mut norm = None;
        let mut noise_seed = None;
        for (i, o) in drawn.0.iter().enumerate() {
            let order = i as f32;
            if o.name == "noise" {
                noise_seed = Some(o.num_or("seed", 0.0)? as u32);
            }
            match step(o, open.size.0, open.size.1)? {
                Step::Nothing => continue,
                Step::Normalize(mean, std) => norm = Some((mean, std)),
                Step::Geo(mut g, resample, size) => {
                    g.order = order;
                    let nonlinear = open.colour.iter().any(|(c, _)| !matches!(c, ColourOp::Affine { .. }));
                    let noisy = open.colour.iter().any(|(c, _)| matches!(c, ColourOp::Noise(_)));
                    let clash = matches!((open.resample, resample), (Some(a), Some(b)) if a != b);
                    let busy = !open.geo.is_empty() || !open.colour.is_empty();
                    if busy
                        && (separate
                            || noisy
                            || (resample.is_some() && nonlinear)
                            || clash
                            || open.geo.len() == MAX_STAGES)
                    {
                        let size = open.size;
                        passes.push(std::mem::replace(&mut open, Open::new(size)).close(OutMode::Raw));
                    }
                    // The stage works on the canvas as it is now.
                    g.w = open.size.0 as f32;
                    g.h = open.size.1 as f32;
                    open.geo.push(g);
                    open.last_geo_order = order;
                    open.resample = open.resample.or(resample);
                    open.size = size;
                }
                Step::Colour(c) => {
                    let busy = !open.geo.is_empty() || !open.colour.is_empty();
                    if busy
                        && (separate
                            || open.colour.len() == MAX_STAGES
                            || (noise_seed.is_some() && !open.seeds.is_empty() && matches!(c, ColourOp::Noise(_))))
                    {
                        let size = open.size;
                        passes.push(std::mem::replace(&mut open, Open::new(size)).close(OutMode::Raw));
                    }
                    if let (ColourOp::Noise(_), Some(s)) = (c, noise_seed) {
                        open.seeds.push(s);
                    }
                    // Consecutive affine colour ops (no geometric op written
                    // between them) merge into one matrix: M2 (M1 x + t1) + t2.
                    let after_geo = open.last_geo_order < open.colour.last().map_or(f32::MAX, |l| l.1);
                    match (open.colour.last_mut(), c, after_geo) {
                        (Some((ColourOp::Affine { m: m1, t: t1 }, _)), ColourOp::Affine { m: m2, t: t2 }, true)
                            if !separate =>
                        {
                            let m = mul3(&m2, m1);
                            let t = [0, 1, 2].map(|r| (0..3).map(|k| m2[3 * r + k] * t1[k]).sum::<f32>() + t2[r]);
                            (*m1, *t1) = (m, t);
                        }
                        _ => open.colour.push((c, order)),
                    }
                }
            }
        }
        let mode = match norm {
            Some((mean, std)) => OutMode::Normalize { mean, std },
            None => OutMode::Clamp,
        };
        passes.push(open.close(mode));
        Ok(Plan { passes })
    }
}

impl Plan {
    /// Runs the plan on planar f32 input (1, C, H, W) on the CPU.
    pub fn cpu(&self, x: &Tensor) -> Result<Tensor> {
        let mut cur = x.clone();
        for p in &self.passes {
            cur = p.cpu(&cur)?;
        }
        Ok(cur)
    }

    /// Records the plan from `x` into batch item `item` of `y`;
    /// intermediates come from the pool and are pushed onto `scratch`.
    pub fn encode(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        y: &GpuTensor,
        item: usize,
        scratch: &mut Vec<GpuTensor>,
    ) -> Result<()> {
        let mut cur = x.clone();
        for (i, p) in self.passes.iter().enumerate() {
            if i + 1 == self.passes.len() {
                p.encode(gpu, enc, &cur, y, item)?;
            } else {
                let t = gpu.alloc(p.out_shape(cur.shape))?;
                p.encode(gpu, enc, &cur, &t, 0)?;
                scratch.push(t.clone());
                cur = t;
            }
        }
        Ok(())
    }

    /// The records of the passes (see [`AugmentPass::record`]) from `x`
    /// into batch item `item`, one after another: what
    /// [`Plan::encode_at`] reads.
    pub fn records(&self, x: Shape, item: usize) -> Vec<u32> {
        let mut words = Vec::with_capacity(self.passes.len() * crate::kernels::augment::RECORD_LEN);
        let mut cur = x;
        for (i, p) in self.passes.iter().enumerate() {
            words.extend(p.record(cur, if i + 1 == self.passes.len() { item } else { 0 }));
            cur = p.out_shape(cur);
        }
        words
    }

    /// [`Plan::encode`] with the passes' records in `progs` from word
    /// `base` on (as [`Plan::records`] makes them): each pass binds the
    /// same buffer at its own offset, and `inter(i, shape)` gives the
    /// output of pass `i` before the last, so that a caller giving the same
    /// buffers makes the same dispatches again.
    pub fn encode_at(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        (progs, base): (&wgpu::Buffer, usize),
        (y, item): (&GpuTensor, usize),
        inter: &mut dyn FnMut(usize, Shape) -> Result<GpuTensor>,
    ) -> Result<()> {
        let mut cur = x.clone();
        let len = crate::kernels::augment::RECORD_LEN;
        for (i, p) in self.passes.iter().enumerate() {
            let at = (progs, base + i * len);
            if i + 1 == self.passes.len() {
                p.encode_at(gpu, enc, &cur, at, y, item)?;
            } else {
                let t = inter(i, p.out_shape(cur.shape))?;
                p.encode_at(gpu, enc, &cur, at, &t, 0)?;
                cur = t;
            }
        }
        Ok(())
    }

    /// Runs the plan on the GPU on host tensors.
    pub fn gpu(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        let (w, h) = self.out_size();
        let mut scratch = Vec::new();
        let r = gpu.run_tensors("gpuimg.augment", &[x], Shape::new(1, x.shape.c, h, w), |enc, ins, y| {
            self.encode(gpu, enc, &ins[0], y, 0, &mut scratch)
        });
        for t in scratch {
            gpu.recycle(t);
        }
        r
    }

    /// Records the plan for packed samples of layout `l` in `src`: unpack,
    /// the passes, pack (the plan must end clamped, not normalised).
    pub fn record_packed(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        l: PixelLayout,
        src: &wgpu::Buffer,
    ) -> Result<Recorded> {
        let (w, h) = self.out_size();
        let outl = PixelLayout { width: w, height: h, ..l };
        let mut scratch = Vec::new();
        let mut rec =
            record_pixel_chain(gpu, enc, l, src, outl, |enc, x, y| self.encode(gpu, enc, x, y, 0, &mut scratch))?;
        rec.scratch.extend(scratch.into_iter().map(|t| t.buffer));
        Ok(rec)
    }

    /// Runs the plan on an image (RGB or RGBA, 8 or 16 bits) on a backend;
    /// the result keeps the layout and bit depth.
    pub fn run_image(&self, backend: &Backend, img: &Image) -> Result<Image> {
        let l = img.layout();
        let (w, h) = self.out_size();
        let outl = PixelLayout { width: w, height: h, ..l };
        let samples = match backend {
            Backend::Cpu if self.passes.len() == 1 => {
                let p = &self.passes[0];
                let (iw, ih, maxv) = (l.width, l.height, l.max_value());
                let packed = match &img.samples {
                    Samples::U8(s) => p.cpu_packed(s, iw, ih, l.channels, maxv).map(|r| r.map(Samples::U8)),
                    Samples::U16(s) => p.cpu_packed(s, iw, ih, l.channels, maxv).map(|r| r.map(Samples::U16)),
                };
                match packed {
                    Some(r) => r?,
                    None => PackPixels(outl).cpu(&self.cpu(&UnpackPixels(l).cpu(&img.samples)?)?)?,
                }
            }
            Backend::Cpu => PackPixels(outl).cpu(&self.cpu(&UnpackPixels(l).cpu(&img.samples)?)?)?,
            Backend::Gpu(gpu) => return self.run_image_gpu(gpu, img),
        };
        Image::new(w as u32, h as u32, l.channels, samples)
    }

    /// [`Plan::run_image`] on a GPU, in one submission.
    pub fn run_image_gpu(&self, gpu: &Gpu, img: &Image) -> Result<Image> {
        let l = img.layout();
        let (w, h) = self.out_size();
        let outl = PixelLayout { width: w, height: h, ..l };
        let src = gpu.upload_bytes(&img.samples.le_bytes())?;
        let r =
            crate::ops::run_recorded(gpu, "gpuimg.augment", outl.bytes(), |enc| self.record_packed(gpu, enc, l, &src));
        gpu.recycle_buffer(src);
        Image::new(w as u32, h as u32, l.channels, Samples::from_le_bytes(outl.bits, &r?, outl.samples()))
    }
}
