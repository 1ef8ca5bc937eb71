//! Bilinear resize with PyTorch's `F.interpolate(mode='bilinear')` semantics.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::contract::{bench_rng, Case, Data, Draw, Entry, Tolerance};
use super::{kernel_desc, rows_per_task, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{grid_groups, Gpu, GpuTensor};
use crate::rng::SplitMix;
use crate::tensor::{Shape, Tensor};

/// Params uniform of `shaders/resize_bilinear.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
pub struct ResizeParams {
    pub planes: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub align_corners: u32,
    pub scale_h: f32,
    pub scale_w: f32,
    pub out_row0: u32,
    pub out_rows: u32,
    pub in_row0: u32,
    pub in_rows: u32,
}

/// Descriptor of the `resize_bilinear` kernel.
pub static DESC: KernelDesc = kernel_desc!("resize_bilinear", ResizeParams, [Read, ReadWrite], [8, 8, 1], ["bilinear"]);

/// What size to resize to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResizeTarget {
    /// An explicit output size (height, width).
    Size {
        /// Output height.
        h: usize,
        /// Output width.
        w: usize,
    },
    /// A scale factor per axis: output `floor(in * f)`, and with
    /// `align_corners = false` the source step is `1 / f` (PyTorch's
    /// `scale_factor` with `recompute_scale_factor` unset).
    Factor {
        /// Factor along the height.
        h: f64,
        /// Factor along the width.
        w: f64,
    },
}

/// Bilinear resize of every plane of an NCHW tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResizeBilinear {
    /// Output size or scale factor.
    pub target: ResizeTarget,
    /// PyTorch's `align_corners`.
    pub align_corners: bool,
}

/// One axis of a resize, resolved against an input size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axis {
    /// Input size.
    pub input: usize,
    /// Output size.
    pub output: usize,
    /// Source step, as PyTorch computes it (f32).
    pub scale: f32,
}

impl Axis {
    fn new(input: usize, target: usize, factor: Option<f64>, align: bool) -> Axis {
        let scale = if align {
            if target > 1 {
                (input as f32 - 1.0) / (target as f32 - 1.0)
            } else {
                0.0
            }
        } else {
            match factor {
                Some(f) if f > 0.0 => (1.0 / f) as f32,
                _ => input as f32 / target as f32,
            }
        };
        Axis { input, output: target, scale }
    }

    /// Source rows/columns and weights `(i0, i1, l0, l1)` of output index `dst`.
    #[inline]
    pub fn tap(&self, dst: usize, align: bool) -> (usize, usize, f32, f32) {
        if self.input == self.output {
            return (dst, dst, 1.0, 0.0);
        }
        let src = if align { self.scale * dst as f32 } else { (self.scale * (dst as f32 + 0.5) - 0.5).max(0.0) };
        let i0 = (src.floor() as usize).min(self.input - 1);
        let l1 = (src - i0 as f32).clamp(0.0, 1.0);
        let i1 = i0 + usize::from(i0 < self.input - 1);
        (i0, i1, 1.0 - l1, l1)
    }
}

impl ResizeBilinear {
    /// Resize to a fixed size.
    pub fn to_size(h: usize, w: usize, align_corners: bool) -> Self {
        ResizeBilinear { target: ResizeTarget::Size { h, w }, align_corners }
    }
    /// Resize by a scale factor on both axes.
    pub fn by_factor(f: f64, align_corners: bool) -> Self {
        ResizeBilinear { target: ResizeTarget::Factor { h: f, w: f }, align_corners }
    }

    /// Resolves both axes for an input shape: `(rows, columns)`.
    pub fn axes(&self, s: Shape) -> Result<(Axis, Axis)> {
        let (oh, ow, fh, fw) = match self.target {
            ResizeTarget::Size { h, w } => (h, w, None, None),
            ResizeTarget::Factor { h, w } => {
                if !(h > 0.0 && w > 0.0 && h.is_finite() && w.is_finite()) {
                    return Err(Error::invalid("resize_bilinear", format!("scale factor {h}x{w} must be positive")));
                }
                ((s.h as f64 * h).floor() as usize, (s.w as f64 * w).floor() as usize, Some(h), Some(w))
            }
        };
        if s.h == 0 || s.w == 0 || oh == 0 || ow == 0 {
            return Err(Error::invalid(
                "resize_bilinear",
                format!("cannot resize {}x{} to {ow}x{oh}: empty side", s.w, s.h),
            ));
        }
        Ok((Axis::new(s.h, oh, fh, self.align_corners), Axis::new(s.w, ow, fw, self.align_corners)))
    }

    /// Output shape for an input shape.
    pub fn out_shape(&self, s: Shape) -> Result<Shape> {
        let (ay, ax) = self.axes(s)?;
        Ok(Shape::new(s.n, s.c, ay.output, ax.output))
    }

    /// CPU implementation: taps precomputed per row and column, rayon over output rows.
    pub fn cpu(&self, x: &Tensor) -> Result<Tensor> {
        let (ay, ax) = self.axes(x.shape)?;
        let out = Shape::new(x.shape.n, x.shape.c, ay.output, ax.output);
        let align = self.align_corners;
        let cols: Vec<_> = (0..ax.output).map(|j| ax.tap(j, align)).collect();
        let mut y = Tensor::zeros(out);
        let (ih, iw) = (x.shape.h, x.shape.w);
        y.data.par_chunks_mut(out.w).with_min_len(rows_per_task(out.w)).enumerate().for_each(|(row, yrow)| {
            let (plane, i) = (row / out.h, row % out.h);
            let (y0, y1, ly0, ly1) = ay.tap(i, align);
            let base = plane * ih * iw;
            let r0 = &x.data[base + y0 * iw..base + (y0 + 1) * iw];
            let r1 = &x.data[base + y1 * iw..base + (y1 + 1) * iw];
            for (v, &(x0, x1, lx0, lx1)) in yrow.iter_mut().zip(&cols) {
                let top = lx0 * r0[x0] + lx1 * r0[x1];
                let bot = lx0 * r1[x0] + lx1 * r1[x1];
                *v = ly0 * top + ly1 * bot;
            }
        });
        Ok(y)
    }

    /// Records the resize into `encoder`.
    pub fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, x: &GpuTensor, y: &GpuTensor) -> Result<()> {
        self.encode_strip(gpu, encoder, x.shape, x, y, 0, 0)
    }

    /// Input rows `(first, last)` (inclusive) that output rows `a..b` read
    /// in a resize of `full`.
    pub fn strip_input_rows(&self, full: Shape, a: usize, b: usize) -> Result<(usize, usize)> {
        let (ay, _) = self.axes(full)?;
        Ok((ay.tap(a, self.align_corners).0, ay.tap(b - 1, self.align_corners).1))
    }

    /// Records output rows `out_row0 .. out_row0 + y.h` of the resize of a
    /// `full`-shaped input, `x` holding its rows `in_row0 .. in_row0 + x.h`
    /// (at least [`ResizeBilinear::strip_input_rows`]): what an image larger
    /// than one binding runs as.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_strip(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        full: Shape,
        x: &GpuTensor,
        y: &GpuTensor,
        in_row0: usize,
        out_row0: usize,
    ) -> Result<()> {
        let (ay, ax) = self.axes(full)?;
        let out_rows = y.shape.h;
        let out = Shape::new(full.n, full.c, out_rows, ax.output);
        y.expect_shape("resize_bilinear", out)?;
        if out_row0 + out_rows > ay.output || x.shape.w != full.w || (x.shape.n, x.shape.c) != (full.n, full.c) {
            return Err(Error::invalid("resize_bilinear", format!("strip {out} at row {out_row0} of {full}")));
        }
        if out_rows > 0 {
            let (first, last) = self.strip_input_rows(full, out_row0, out_row0 + out_rows)?;
            if first < in_row0 || last >= in_row0 + x.shape.h {
                return Err(Error::invalid(
                    "resize_bilinear",
                    format!("input rows {first}..={last} are not all in the strip's {in_row0}+{}", x.shape.h),
                ));
            }
        }
        let p = ResizeParams {
            out_row0: out_row0 as u32,
            out_rows: out_rows as u32,
            in_row0: in_row0 as u32,
            in_rows: x.shape.h as u32,
            planes: (out.n * out.c) as u32,
            in_h: ay.input as u32,
            in_w: ax.input as u32,
            out_h: ay.output as u32,
            out_w: ax.output as u32,
            align_corners: self.align_corners as u32,
            scale_h: ay.scale,
            scale_w: ax.scale,
        };
        gpu.dispatch(
            encoder,
            &DESC,
            bytemuck::bytes_of(&p),
            &[x.buf(DESC.name)?, y.buf(DESC.name)?],
            grid_groups(out.w, out_rows, out.n * out.c),
        )
    }
}

super::contract::unary_kernel!(ResizeBilinear);

/// The registry line of `resize_bilinear`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let x = rng.tensor(Shape::new(1, 3, h, w), 0.0, 1.0);
    let ops = [
        ResizeBilinear::to_size(2 * h + 1, 3 * w + 2, false),
        ResizeBilinear::to_size(2 * h + 1, 3 * w + 2, true),
        ResizeBilinear::to_size(h.div_ceil(3), w.div_ceil(2), false),
        ResizeBilinear::by_factor(1.0 / 12.0, false), // Zero-DCE++ downscale
        ResizeBilinear { target: ResizeTarget::Factor { h: 1.5, w: 0.75 }, align_corners: true },
        ResizeBilinear::to_size(h, w, false), // identity
    ];
    ops.into_iter()
        .filter(|op| op.out_shape(x.shape).is_ok()) // 1/12 of a 1x1 image is empty
        .map(|op| Case::new(format!("{op:?} {w}x{h}"), op, vec![Data::Planes(x.clone())], Tolerance::FMA))
        .collect()
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let x = bench_rng().planes(Shape::new(1, 3, h, w), 0.0, 1.0);
    Ok(Case::new("to 1/12, RGB", ResizeBilinear::by_factor(1.0 / 12.0, false), vec![x], Tolerance::FMA))
}
