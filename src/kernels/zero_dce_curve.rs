//! The Zero-DCE light-enhancement curve `x <- x + r (x^2 - x)`, iterated.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::{kernel_desc, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{linear_groups, Gpu, GpuTensor};
use crate::tensor::{Shape, Tensor};

/// Params uniform of `shaders/zero_dce_curve.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct CurveParams {
    pub len: u32,
    pub channels: u32,
    pub plane: u32,
    pub iterations: u32,
    pub per_iteration: u32,
    pub _pad: [u32; 3],
}

/// Descriptor of the `zero_dce_curve` kernel.
pub static DESC: KernelDesc = kernel_desc!("zero_dce_curve", CurveParams, [Read, Read, ReadWrite], [256, 1, 1]);

/// The curve applied `iterations` times with curve maps `r`.
///
/// `per_iteration = true` (Zero-DCE): `r` has `C * iterations` channels and
/// iteration `t` uses channels `t*C..t*C+C`. `false` (Zero-DCE++): `r` has `C`
/// channels shared by every iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroDceCurve {
    /// Number of iterations (8 in both papers).
    pub iterations: usize,
    /// One map set per iteration, or one shared set.
    pub per_iteration: bool,
}

impl ZeroDceCurve {
    /// Map sets: `iterations` with one set per iteration, else 1.
    pub fn sets(&self) -> usize {
        if self.per_iteration {
            self.iterations
        } else {
            1
        }
    }

    /// Checks that the map tensor fits the image tensor.
    pub fn check(&self, x: Shape, r: Shape) -> Result<()> {
        let want = Shape::new(x.n, x.c * self.sets(), x.h, x.w);
        if r != want {
            return Err(Error::invalid("zero_dce_curve", format!("maps are {r}, expected {want} for image {x}")));
        }
        Ok(())
    }

    /// CPU implementation: rayon over planes; each value iterates in registers.
    pub fn cpu(&self, x: &Tensor, r: &Tensor) -> Result<Tensor> {
        self.check(x.shape, r.shape)?;
        let (c, plane) = (x.shape.c, x.shape.plane());
        let mut y = x.clone();
        if plane == 0 {
            return Ok(y);
        }
        y.data.par_chunks_mut(plane).enumerate().for_each(|(bc, yp)| {
            let (b, ch) = (bc / c, bc % c);
            let maps: Vec<&[f32]> = (0..self.iterations)
                .map(|t| {
                    let set = if self.per_iteration { t } else { 0 };
                    r.plane(b, set * c + ch)
                })
                .collect();
            for (k, v) in yp.iter_mut().enumerate() {
                let mut s = *v;
                for m in &maps {
                    s += m[k] * (s * s - s);
                }
                *v = s;
            }
        });
        Ok(y)
    }

    /// Records the curve into `encoder`.
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        r: &GpuTensor,
        y: &GpuTensor,
    ) -> Result<()> {
        self.check(x.shape, r.shape)?;
        y.expect_shape("zero_dce_curve", x.shape)?;
        let s = x.shape;
        let p = CurveParams {
            len: s.len() as u32,
            channels: s.c as u32,
            plane: s.plane().max(1) as u32,
            iterations: self.iterations as u32,
            per_iteration: self.per_iteration as u32,
            _pad: [0; 3],
        };
        gpu.dispatch(
            encoder,
            &DESC,
            bytemuck::bytes_of(&p),
            &[&x.buffer, &r.buffer, &y.buffer],
            linear_groups(s.len(), 256),
        )
    }

    /// Runs end to end on the GPU.
    pub fn gpu(&self, gpu: &Gpu, x: &Tensor, r: &Tensor) -> Result<Tensor> {
        self.check(x.shape, r.shape)?;
        gpu.run_tensors("gpuimg.zero_dce_curve", &[x, r], x.shape, |enc, ins, y| {
            self.encode(gpu, enc, &ins[0], &ins[1], y)
        })
    }
}
