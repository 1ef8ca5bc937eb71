//! One TinyPSSR x2 stage in one dispatch (see `shaders/tinypssr_fused.wgsl`).

use bytemuck::{Pod, Zeroable};

use super::{kernel_desc, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{grid_groups, Gpu};

/// Params uniform of `shaders/tinypssr_fused.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct FusedParams {
    /// Input width.
    pub w: u32,
    /// Input height.
    pub h: u32,
    /// Samples per pixel of the packed input and output (1-4).
    pub channels: u32,
    /// Channels run through the network (the first `colour`).
    pub colour: u32,
    /// 8 or 16 (packed modes).
    pub bits: u32,
    /// 0 packed samples, 1 f32 planes.
    pub in_mode: u32,
    /// 0 packed samples (into a zeroed buffer), 1 f32 planes.
    pub out_mode: u32,
    /// Padding.
    pub _pad: u32,
}

/// Descriptor of the `tinypssr_fused` kernel.
pub static DESC: KernelDesc = kernel_desc!("tinypssr_fused", FusedParams, [Read, Read, ReadWrite], [8, 8, 1]);

/// Number of weights of one stage in the shader's flat layout.
pub const FLAT_LEN: usize = 1356;

/// The fused stage op.
#[derive(Debug, Clone, Copy)]
pub struct TinyPssrFused(pub FusedParams);

impl TinyPssrFused {
    /// Bytes the output needs.
    pub fn out_bytes(&self) -> u64 {
        let p = self.0;
        let pixels = (p.w * 2) as u64 * (p.h * 2) as u64;
        if p.out_mode == 1 {
            pixels * p.colour as u64 * 4
        } else {
            (pixels * p.channels as u64 * p.bits as u64 / 8).next_multiple_of(4)
        }
    }

    /// Records one stage: `src` (packed or planes) to `dst` (which must be
    /// zeroed first in packed output mode), with `weights` from `models::tinypssr::Stage::flat` (the
    /// shader's order, [`FLAT_LEN`] values).
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        weights: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Result<()> {
        let p = self.0;
        let ok = (1..=4).contains(&p.channels)
            && (1..=p.channels).contains(&p.colour)
            && (p.bits == 8 || p.bits == 16)
            && p.in_mode <= 1
            && p.out_mode <= 1;
        if !ok {
            return Err(Error::invalid("tinypssr_fused", format!("bad params {p:?}")));
        }
        if dst.size() < self.out_bytes() || weights.size() < (FLAT_LEN * 4) as u64 {
            return Err(Error::invalid("tinypssr_fused", "output or weight buffer too small".to_string()));
        }
        gpu.dispatch(
            encoder,
            &DESC,
            bytemuck::bytes_of(&p),
            &[src, weights, dst],
            grid_groups(p.w as usize, p.h as usize, 1),
        )
    }
}
