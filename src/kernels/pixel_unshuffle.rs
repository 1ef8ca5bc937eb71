//! Pixel unshuffle: (N, C, H r, W r) -> (N, C r^2, H, W).

use rayon::prelude::*;

use super::contract::{bench_rng, Case, Draw, Entry, Tolerance};
use super::pixel_shuffle::{params, ShuffleParams};
use super::{kernel_desc, rows_per_task, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{grid_groups, Gpu, GpuTensor};
use crate::rng::SplitMix;
use crate::tensor::{Shape, Tensor};

/// Descriptor of the `pixel_unshuffle` kernel.
pub static DESC: KernelDesc = kernel_desc!("pixel_unshuffle", ShuffleParams, [Read, ReadWrite], [8, 8, 1]);

/// Pixel unshuffle with downscale factor `r` (PyTorch's `nn.PixelUnshuffle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelUnshuffle {
    /// Downscale factor.
    pub r: usize,
}

impl PixelUnshuffle {
    /// Output shape for an input shape.
    pub fn out_shape(&self, s: Shape) -> Result<Shape> {
        let r = self.r;
        if r == 0 || !s.h.is_multiple_of(r) || !s.w.is_multiple_of(r) {
            return Err(Error::invalid("pixel_unshuffle", format!("{}x{} is not divisible by r = {r}", s.w, s.h)));
        }
        Ok(Shape::new(s.n, s.c * r * r, s.h / r, s.w / r))
    }

    /// CPU implementation, rayon over output rows.
    pub fn cpu(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.out_shape(x.shape)?;
        let (r, (ih, iw)) = (self.r, (x.shape.h, x.shape.w));
        let mut y = Tensor::zeros(out);
        if out.is_empty() {
            return Ok(y);
        }
        y.data.par_chunks_mut(out.w).with_min_len(rows_per_task(out.w)).enumerate().for_each(|(row, yrow)| {
            let (oc, i) = (row / out.h, row % out.h);
            let (bc, u, v) = (oc / (r * r), (oc % (r * r)) / r, oc % r);
            let src = &x.data[(bc * ih + i * r + u) * iw..];
            for (j, o) in yrow.iter_mut().enumerate() {
                *o = src[j * r + v];
            }
        });
        Ok(y)
    }

    /// Records the unshuffle into `encoder`.
    pub fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, x: &GpuTensor, y: &GpuTensor) -> Result<()> {
        let out = self.out_shape(x.shape)?;
        y.expect_shape("pixel_unshuffle", out)?;
        let p = params(out.n, x.shape.c, out.h, out.w, self.r);
        gpu.dispatch(
            encoder,
            &DESC,
            bytemuck::bytes_of(&p),
            &[x.buf(DESC.name)?, y.buf(DESC.name)?],
            grid_groups(out.w, out.h, out.n * out.c),
        )
    }
}

super::contract::unary_kernel!(PixelUnshuffle);

/// The registry line of `pixel_unshuffle`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    for r in [2, 3] {
        let x = rng.planes(Shape::new(2, 3, h * r, w * r), -1.0, 1.0);
        // A permutation: bit-exact.
        cases.push(Case::new(format!("r={r} {w}x{h}"), PixelUnshuffle { r }, vec![x], Tolerance::EXACT));
    }
    cases
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let x = bench_rng().planes(Shape::new(1, 3, h / 2 * 2, w / 2 * 2), 0.0, 1.0);
    Ok(Case::new("r=2, RGB", PixelUnshuffle { r: 2 }, vec![x], Tolerance::EXACT))
}
