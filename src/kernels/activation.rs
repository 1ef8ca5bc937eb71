//! Elementwise activations: ReLU, tanh, sigmoid.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::contract::{bench_rng, gpu_planes, planes, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance};
use super::{kernel_desc, KernelDesc};
use crate::error::Result;
use crate::gpu::{linear_groups, Gpu, GpuTensor};
use crate::rng::SplitMix;
use crate::tensor::{Shape, Tensor};

/// Params uniform of `shaders/activation.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
pub struct ActivationParams {
    pub len: u32,
    pub mode: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// Descriptor of the `activation` kernel.
pub static DESC: KernelDesc =
    kernel_desc!("activation", ActivationParams, [Read, ReadWrite], [256, 1, 1], ["linear_index"]);

/// Which function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationKind {
    /// max(x, 0)
    Relu = 0,
    /// tanh(x)
    Tanh = 1,
    /// 1 / (1 + e^-x)
    Sigmoid = 2,
}

impl ActivationKind {
    /// Every kind, for listings.
    pub const ALL: [ActivationKind; 3] = [Self::Relu, Self::Tanh, Self::Sigmoid];

    /// The function on one value.
    #[inline]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Self::Relu => v.max(0.0),
            Self::Tanh => v.tanh(),
            Self::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        }
    }
}

impl ActivationKind {
    /// [`ActivationKind::apply`] on every value of `v`, at the CPU level
    /// chosen: in the AVX2 build tanh runs eight lanes at a time
    /// (`simd::tanh8`, within 1.5e-7 of libm's), the tail too, so a value
    /// gets the same bits wherever it sits. Everything that applies
    /// activations on the CPU goes through here.
    pub fn apply_all(self, v: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self == Self::Tanh && crate::cpu::level() == crate::cpu::Level::Avx2Fma {
            // SAFETY: the chosen level is never above what the CPU supports.
            return unsafe { tanh_avx2(v) };
        }
        v.iter_mut().for_each(|x| *x = self.apply(*x));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn tanh_avx2(v: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut chunks = v.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: eight floats.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), super::simd::tanh8(_mm256_loadu_ps(c.as_ptr()))) };
    }
    let rest = chunks.into_remainder();
    let mut t = [0.0f32; 8];
    t[..rest.len()].copy_from_slice(rest);
    // SAFETY: eight floats.
    unsafe { _mm256_storeu_ps(t.as_mut_ptr(), super::simd::tanh8(_mm256_loadu_ps(t.as_ptr()))) };
    let n = rest.len();
    rest.copy_from_slice(&t[..n]);
}

/// An elementwise activation op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activation(pub ActivationKind);

impl Activation {
    /// CPU implementation (rayon, chunked).
    pub fn cpu(&self, x: &Tensor) -> Tensor {
        let mut y = x.clone();
        let f = self.0;
        y.data.par_chunks_mut(1 << 14).for_each(|c| f.apply_all(c));
        y
    }

    /// Records the activation into `encoder`; `y` may not alias `x`.
    pub fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, x: &GpuTensor, y: &GpuTensor) -> Result<()> {
        y.expect_shape("activation", x.shape)?;
        let len = x.shape.len();
        let p = ActivationParams { len: len as u32, mode: self.0 as u32, _pad0: 0, _pad1: 0 };
        gpu.dispatch(
            encoder,
            &DESC,
            bytemuck::bytes_of(&p),
            &[x.buf(DESC.name)?, y.buf(DESC.name)?],
            linear_groups(len, 256),
        )
    }
}

impl Kernel for Activation {
    fn desc(&self) -> &'static KernelDesc {
        &DESC
    }
    fn output(&self, inputs: &[&Data]) -> Result<Output> {
        let [x] = planes(DESC.name, inputs)?;
        Ok(Output::Planes(x.shape))
    }
    fn cpu(&self, inputs: &[&Data]) -> Result<Data> {
        let [x] = planes(DESC.name, inputs)?;
        Ok(Data::Planes(Activation::cpu(self, x)))
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        let [x] = gpu_planes(DESC.name, inputs)?;
        Activation::encode(self, gpu, encoder, x, out.planes(DESC.name, 0)?)
    }
}

/// tanh/exp are not correctly rounded on GPUs: 2e-6 absolute on values in [-1, 1] and (0, 1).
const TOLERANCE: Tolerance = Tolerance { abs: 2e-6, rel: 1e-6 };

/// The registry line of `activation`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let x = rng.planes(Shape::new(1, 3, h, w), -6.0, 6.0);
    ActivationKind::ALL
        .iter()
        .map(|&k| Case::new(format!("{k:?} {w}x{h}"), Activation(k), vec![x.clone()], TOLERANCE))
        .collect()
}

fn bench(w: usize, h: usize) -> Result<Case> {
    let x = bench_rng().planes(Shape::new(1, 16, h, w), -1.0, 1.0);
    Ok(Case::new("tanh on 16 channels", Activation(ActivationKind::Tanh), vec![x], TOLERANCE))
}
