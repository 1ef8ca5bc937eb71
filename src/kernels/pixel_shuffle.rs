//! Pixel shuffle: (N, C r^2, H, W) -> (N, C, H r, W r).

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::contract::{bench_rng, Case, Draw, Entry, Tolerance};
use super::{kernel_desc, rows_per_task, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{grid_groups, Gpu, GpuTensor};
use crate::rng::SplitMix;
use crate::tensor::{Shape, Tensor};

/// Params uniform of `shaders/pixel_shuffle.wgsl` and `shaders/pixel_unshuffle.wgsl`:
/// `c`, `h`, `w` are the channels of the shuffled (large) side and the sides of the small one.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
pub struct ShuffleParams {
    pub n: u32,
    pub c: u32,
    pub h: u32,
    pub w: u32,
    pub r: u32,
    pub _pad: [u32; 3],
}

/// Descriptor of the `pixel_shuffle` kernel.
pub static DESC: KernelDesc = kernel_desc!("pixel_shuffle", ShuffleParams, [Read, ReadWrite], [8, 8, 1]);

/// Pixel shuffle with upscale factor `r` (PyTorch's `nn.PixelShuffle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelShuffle {
    /// Upscale factor.
    pub r: usize,
}

impl PixelShuffle {
    /// Output shape for an input shape.
    pub fn out_shape(&self, s: Shape) -> Result<Shape> {
        let rr = self.r * self.r;
        if self.r == 0 || !s.c.is_multiple_of(rr) {
            return Err(Error::invalid("pixel_shuffle", format!("{} channels not divisible by r^2 = {rr}", s.c)));
        }
        Ok(Shape::new(s.n, s.c / rr, s.h * self.r, s.w * self.r))
    }

    /// CPU implementation, rayon over output rows.
    pub fn cpu(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.out_shape(x.shape)?;
        let (r, (h, w)) = (self.r, (x.shape.h, x.shape.w));
        let mut y = Tensor::zeros(out);
        if out.is_empty() {
            return Ok(y);
        }
        y.data.par_chunks_mut(out.w).with_min_len(rows_per_task(out.w)).enumerate().for_each(|(row, yrow)| {
            let (bc, i) = (row / out.h, row % out.h);
            for (j, v) in yrow.iter_mut().enumerate() {
                let ic = bc * r * r + (i % r) * r + j % r;
                *v = x.data[(ic * h + i / r) * w + j / r];
            }
        });
        Ok(y)
    }

    /// Records the shuffle into `encoder`.
    pub fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, x: &GpuTensor, y: &GpuTensor) -> Result<()> {
        let out = self.out_shape(x.shape)?;
        y.expect_shape("pixel_shuffle", out)?;
        let p = params(out.n, out.c, x.shape.h, x.shape.w, self.r);
        gpu.dispatch(
            encoder,
            &DESC,
            bytemuck::bytes_of(&p),
            &[x.buf(DESC.name)?, y.buf(DESC.name)?],
            grid_groups(out.w, out.h, out.n * out.c),
        )
    }
}

pub(crate) fn params(n: usize, c: usize, h: usize, w: usize, r: usize) -> ShuffleParams {
    ShuffleParams { n: n as u32, c: c as u32, h: h as u32, w: w as u32, r: r as u32, _pad: [0; 3] }
}

super::contract::unary_kernel!(PixelShuffle);

/// The registry line of `pixel_shuffle`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    for r in [2, 3] {
        let x = rng.planes(Shape::new(2, 2 * r * r, h, w), -1.0, 1.0);
        // A permutation: bit-exact.
        cases.push(Case::new(format!("r={r} {w}x{h}"), PixelShuffle { r }, vec![x], Tolerance::EXACT));
    }
    cases
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let x = bench_rng().planes(Shape::new(1, 4, h / 2, w / 2), 0.0, 1.0);
    Ok(Case::new("r=2, 4 channels", PixelShuffle { r: 2 }, vec![x], Tolerance::EXACT))
}
