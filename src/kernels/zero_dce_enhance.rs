//! Zero-DCE's map upsampling (bilinear, `align_corners = true`) and curve
//! iterations fused in one pass: the full-resolution maps are never stored.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::resize_bilinear::{Axis, ResizeBilinear};
use super::{kernel_desc, rows_per_task, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{grid_groups, Gpu, GpuTensor};
use crate::tensor::{Shape, Tensor};

/// Params uniform of `shaders/zero_dce_enhance.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct EnhanceParams {
    pub n: u32,
    pub channels: u32,
    pub colour: u32,
    pub h: u32,
    pub w: u32,
    pub mh: u32,
    pub mw: u32,
    pub iterations: u32,
    pub per_iteration: u32,
    pub scale_h: f32,
    pub scale_w: f32,
    pub row0: u32,
    pub full_h: u32,
    pub _pad: [u32; 3],
}

/// Descriptor of the `zero_dce_enhance` kernel.
pub static DESC: KernelDesc = kernel_desc!("zero_dce_enhance", EnhanceParams, [Read, Read, ReadWrite], [8, 8, 1]);

/// Upsample low-resolution curve maps to the image and apply the curve.
///
/// `x` is (N, C, H, W); the maps are (N, colour * sets, h, w) with
/// `sets = iterations` (Zero-DCE) or 1 (Zero-DCE++). Channels `colour..C`
/// (alpha) pass through. With maps at the image's size this is exactly
/// [`super::ZeroDceCurve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroDceEnhance {
    /// Curve iterations (8 in both papers).
    pub iterations: usize,
    /// One map set per iteration (Zero-DCE) or one shared set (Zero-DCE++).
    pub per_iteration: bool,
    /// Channels the maps cover (3: RGB).
    pub colour: usize,
}

impl ZeroDceEnhance {
    fn sets(&self) -> usize {
        super::ZeroDceCurve { iterations: self.iterations, per_iteration: self.per_iteration }.sets()
    }

    /// Checks the shapes; returns the row and column axes of the upsampling.
    pub fn check(&self, x: Shape, maps: Shape) -> Result<(Axis, Axis)> {
        let e = |m: String| Err(Error::invalid("zero_dce_enhance", m));
        if self.colour == 0 || x.c < self.colour {
            return e(format!("image {x} has fewer than {} colour channels", self.colour));
        }
        if maps.n != x.n || maps.c != self.colour * self.sets() {
            return e(format!("maps are {maps}, expected {} channels for image {x}", self.colour * self.sets()));
        }
        if maps.h == 0 || maps.w == 0 || x.h == 0 || x.w == 0 {
            return e(format!("empty image {x} or maps {maps}"));
        }
        ResizeBilinear::to_size(x.h, x.w, true).axes(maps)
    }

    /// CPU implementation: rayon over rows of every plane; column taps
    /// computed once, row taps once per row, the curve in registers.
    pub fn cpu(&self, x: &Tensor, maps: &Tensor) -> Result<Tensor> {
        let (ay, ax) = self.check(x.shape, maps.shape)?;
        let s = x.shape;
        let (h, w) = (s.h, s.w);
        let cols: Vec<(usize, usize, f32, f32)> = (0..w).map(|j| ax.tap(j, true)).collect();
        let mut y = x.clone();
        y.data.par_chunks_mut(w).with_min_len(rows_per_task(w)).enumerate().for_each(|(row, yr)| {
            let i = row % h;
            let plane = row / h;
            let (b, c) = (plane / s.c, plane % s.c);
            if c >= self.colour {
                return;
            }
            let (i0, i1, l0y, l1y) = ay.tap(i, true);
            let rows: Vec<(&[f32], &[f32])> = (0..self.iterations)
                .map(|t| {
                    let set = if self.per_iteration { t } else { 0 };
                    let m = maps.plane(b, set * self.colour + c);
                    (&m[i0 * maps.shape.w..(i0 + 1) * maps.shape.w], &m[i1 * maps.shape.w..(i1 + 1) * maps.shape.w])
                })
                .collect();
            for (v, &(j0, j1, l0x, l1x)) in yr.iter_mut().zip(&cols) {
                let mut s = *v;
                for (top, bot) in &rows {
                    let t = l0x * top[j0] + l1x * top[j1];
                    let u = l0x * bot[j0] + l1x * bot[j1];
                    let r = l0y * t + l1y * u;
                    s += r * (s * s - s);
                }
                *v = s;
            }
        });
        Ok(y)
    }

    /// Records the fused pass into `encoder`.
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        maps: &GpuTensor,
        y: &GpuTensor,
    ) -> Result<()> {
        self.encode_rows(gpu, encoder, x, maps, y, 0, x.shape.h)
    }

    /// Records the pass for a strip: `x` and `y` hold rows `row0..row0 + x.h`
    /// of an image `full_h` rows high (the maps cover the whole image).
    #[allow(clippy::too_many_arguments)]
    pub fn encode_rows(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        maps: &GpuTensor,
        y: &GpuTensor,
        row0: usize,
        full_h: usize,
    ) -> Result<()> {
        let s = x.shape;
        if row0 + s.h > full_h {
            return Err(Error::invalid("zero_dce_enhance", format!("rows {row0}..{} outside {full_h}", row0 + s.h)));
        }
        let (ay, ax) = self.check(Shape::new(s.n, s.c, full_h, s.w), maps.shape)?;
        y.expect_shape("zero_dce_enhance", s)?;
        let p = EnhanceParams {
            n: s.n as u32,
            channels: s.c as u32,
            colour: self.colour as u32,
            h: s.h as u32,
            w: s.w as u32,
            mh: maps.shape.h as u32,
            mw: maps.shape.w as u32,
            iterations: self.iterations as u32,
            per_iteration: self.per_iteration as u32,
            scale_h: ay.scale,
            scale_w: ax.scale,
            row0: row0 as u32,
            full_h: full_h as u32,
            _pad: [0; 3],
        };
        gpu.dispatch(
            encoder,
            &DESC,
            bytemuck::bytes_of(&p),
            &[&x.buffer, &maps.buffer, &y.buffer],
            grid_groups(s.w, s.h, s.n),
        )
    }

    /// Runs end to end on the GPU.
    pub fn gpu(&self, gpu: &Gpu, x: &Tensor, maps: &Tensor) -> Result<Tensor> {
        self.check(x.shape, maps.shape)?;
        gpu.run_tensors("gpuimg.zero_dce_enhance", &[x, maps], x.shape, |enc, ins, y| {
            self.encode(gpu, enc, &ins[0], &ins[1], y)
        })
    }
}
