//! 2-D convolution, stride 1, "same" zero padding, bias, groups.

use super::contract::{
    bench_rng, constants, gpu_planes, planes, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance,
};
use super::{kernel_desc, ActivationKind, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{grid_groups, Gpu, GpuTensor};
use crate::rng::SplitMix;
use crate::tensor::{Shape, Tensor};
use bytemuck::{Pod, Zeroable};

mod cpu;

/// Params uniform of `shaders/conv2d.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
// Fields mirror the shader's `Params` struct, where each is documented.
#[allow(missing_docs)]
pub struct Conv2dParams {
    pub n: u32,
    pub cin: u32,
    pub cout: u32,
    pub h: u32,
    pub w: u32,
    pub k: u32,
    pub groups: u32,
    pub _pad: u32,
}

/// Descriptor of the `conv2d` kernel.
pub static DESC: KernelDesc = kernel_desc!("conv2d", Conv2dParams, [Read, Read, Read, ReadWrite], [8, 8, 1]);

/// A convolution's geometry. Weights are OIHW `(cout, cin/groups, k, k)`, bias `(cout)`.
/// `groups == cin == cout` is a depthwise convolution, `k == 1` a pointwise one.
///
/// Every kernel has the same three faces: typed `cpu` and `encode` methods,
/// and the [`Kernel`] trait, whose `gpu` runs it end to end:
///
/// ```
/// use gpuimg::kernels::{contract::constants, Conv2d, Data, Kernel};
/// use gpuimg::{Shape, Tensor};
/// let conv = Conv2d::depthwise(3, 3);
/// let x = Tensor::from_vec(Shape::new(1, 3, 5, 7), (0..105).map(|i| i as f32 / 105.0).collect())?;
/// let (w, b) = (vec![1.0 / 9.0; conv.weight_len()], vec![0.0; 3]); // a box blur
/// let y = conv.cpu(&x, &w, &b)?;
/// assert_eq!(y.shape, x.shape);
/// if let Some(gpu) = gpuimg::gpu::doctest_gpu() {
///     let on_gpu = Kernel::gpu(&conv, &gpu, &[&Data::Planes(x), &constants(w), &constants(b)])?;
///     let Data::Planes(g) = on_gpu else { unreachable!() };
///     assert!(g.data.iter().zip(&y.data).all(|(a, b)| (a - b).abs() < 1e-5));
/// }
/// # Ok::<(), gpuimg::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2d {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel side.
    pub k: usize,
    /// Channel groups.
    pub groups: usize,
}

impl Conv2d {
    /// A dense convolution.
    pub fn new(cin: usize, cout: usize, k: usize) -> Self {
        Conv2d { cin, cout, k, groups: 1 }
    }
    /// A depthwise convolution (one filter per channel).
    pub fn depthwise(channels: usize, k: usize) -> Self {
        Conv2d { cin: channels, cout: channels, k, groups: channels }
    }
    /// A pointwise (1 x 1) convolution.
    pub fn pointwise(cin: usize, cout: usize) -> Self {
        Conv2d::new(cin, cout, 1)
    }
    /// Number of weight values.
    pub fn weight_len(&self) -> usize {
        self.cout * (self.cin / self.groups.max(1)) * self.k * self.k
    }
    /// Multiply-adds per output pixel.
    pub fn macs_per_pixel(&self) -> usize {
        self.weight_len()
    }

    /// Checks the geometry and the input, weight and bias sizes; returns the output shape.
    pub fn check(&self, input: Shape, weight: usize, bias: usize) -> Result<Shape> {
        let e = |m: String| Err(Error::invalid("conv2d", m));
        if self.k == 0 || self.groups == 0 || self.cin == 0 || self.cout == 0 {
            return e(format!("zero in geometry {self:?}"));
        }
        if !self.cin.is_multiple_of(self.groups) || !self.cout.is_multiple_of(self.groups) {
            return e(format!("groups {} must divide cin {} and cout {}", self.groups, self.cin, self.cout));
        }
        if input.c != self.cin {
            return e(format!("input {input} has {} channels, conv expects {}", input.c, self.cin));
        }
        if weight != self.weight_len() {
            return e(format!("weight has {weight} values, expected {}", self.weight_len()));
        }
        if bias != self.cout {
            return e(format!("bias has {bias} values, expected {}", self.cout));
        }
        Ok(Shape::new(input.n, self.cout, input.h, input.w))
    }

    /// CPU implementation (the `cpu` module): register tiles of output channels x
    /// columns over a zero-padded copy of each band of input rows; the
    /// AVX2+FMA build is picked at run time and gives the baseline's bits.
    pub fn cpu(&self, x: &Tensor, weight: &[f32], bias: &[f32]) -> Result<Tensor> {
        self.cpu_cat(&[x], weight, bias, None)
    }

    /// [`Conv2d::cpu`] of `inputs` read as one tensor concatenated along
    /// channels (same batch and size; channels adding up to `cin`), with
    /// `act` applied to every output: what a concatenation, the convolution
    /// and an activation pass give, without the copies.
    pub fn cpu_cat(
        &self,
        inputs: &[&Tensor],
        weight: &[f32],
        bias: &[f32],
        act: Option<ActivationKind>,
    ) -> Result<Tensor> {
        let Some(first) = inputs.first() else {
            return Err(Error::invalid("conv2d", "no input"));
        };
        let mut shape = first.shape;
        shape.c = inputs.iter().map(|x| x.shape.c).sum();
        if let Some(x) = inputs.iter().find(|x| (x.shape.n, x.shape.h, x.shape.w) != (shape.n, shape.h, shape.w)) {
            return Err(Error::invalid(
                "conv2d",
                format!("inputs {} and {} differ in batch or size", first.shape, x.shape),
            ));
        }
        let out = self.check(shape, weight.len(), bias.len())?;
        Ok(cpu::run(self, inputs, weight, bias, act, out))
    }

    /// Records the convolution into `encoder` on caller-owned buffers.
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        weight: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        y: &GpuTensor,
    ) -> Result<()> {
        let out = self.check(x.shape, self.weight_len(), self.cout)?;
        y.expect_shape("conv2d", out)?;
        let p = Conv2dParams {
            n: out.n as u32,
            cin: self.cin as u32,
            cout: self.cout as u32,
            h: out.h as u32,
            w: out.w as u32,
            k: self.k as u32,
            groups: self.groups as u32,
            _pad: 0,
        };
        crate::gpu::check_buffer(DESC.name, "weight", weight, (self.weight_len() * 4) as u64)?;
        crate::gpu::check_buffer(DESC.name, "bias", bias, (self.cout * 4) as u64)?;
        let groups = grid_groups(out.w, out.h, out.n * out.c);
        gpu.dispatch(
            encoder,
            &DESC,
            bytemuck::bytes_of(&p),
            &[x.buf(DESC.name)?, weight, bias, y.buf(DESC.name)?],
            groups,
        )
    }
}

/// The plain direct loop, kept as the reference the fast paths are tested against.
pub fn reference(conv: &Conv2d, x: &Tensor, weight: &[f32], bias: &[f32]) -> Result<Tensor> {
    let out = conv.check(x.shape, weight.len(), bias.len())?;
    let mut y = Tensor::zeros(out);
    let (h, w, k) = (out.h as isize, out.w as isize, conv.k);
    let cin_g = conv.cin / conv.groups;
    let cout_g = conv.cout / conv.groups;
    let pad = ((k - 1) / 2) as isize;
    for b in 0..out.n {
        for o in 0..conv.cout {
            let g = o / cout_g;
            for i in 0..h {
                for j in 0..w {
                    let mut acc = bias[o] as f64;
                    for c in 0..cin_g {
                        for u in 0..k {
                            for v in 0..k {
                                let (ii, jj) = (i + u as isize - pad, j + v as isize - pad);
                                if ii < 0 || jj < 0 || ii >= h || jj >= w {
                                    continue;
                                }
                                let xv = x.plane(b, g * cin_g + c)[(ii * w + jj) as usize];
                                acc += (weight[((o * cin_g + c) * k + u) * k + v] * xv) as f64;
                            }
                        }
                    }
                    y.data[((b * conv.cout + o) * out.h + i as usize) * out.w + j as usize] = acc as f32;
                }
            }
        }
    }
    Ok(y)
}

impl Kernel for Conv2d {
    fn desc(&self) -> &'static KernelDesc {
        &DESC
    }
    fn output(&self, inputs: &[&Data]) -> Result<Output> {
        let [x, wt, b] = planes(DESC.name, inputs)?;
        Ok(Output::Planes(self.check(x.shape, wt.data.len(), b.data.len())?))
    }
    fn cpu(&self, inputs: &[&Data]) -> Result<Data> {
        let [x, wt, b] = planes(DESC.name, inputs)?;
        Ok(Data::Planes(Conv2d::cpu(self, x, &wt.data, &b.data)?))
    }
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()> {
        let [x, wt, b] = gpu_planes(DESC.name, inputs)?;
        self.check(x.shape, wt.shape.len(), b.shape.len())?;
        Conv2d::encode(self, gpu, encoder, x, &wt.buffer, &b.buffer, out.planes(DESC.name, 0)?)
    }
}

/// Sums of up to 100 products in another order.
const TOLERANCE: Tolerance = Tolerance { abs: 1e-4, rel: 1e-4 };

/// The registry line of `conv2d`.
pub static ENTRY: Entry = Entry { desc: &DESC, parity, bench };

fn parity(rng: &mut SplitMix, w: usize, h: usize) -> Vec<Case> {
    let convs = [
        (2, Conv2d::new(3, 5, 3)),                        // dense, batch of 2
        (1, Conv2d::new(1, 4, 5)),                        // TinyPSSR's first layer shape
        (1, Conv2d::depthwise(6, 3)),                     // depthwise
        (1, Conv2d::pointwise(7, 4)),                     // pointwise
        (1, Conv2d { cin: 4, cout: 6, k: 5, groups: 2 }), // grouped
        (1, Conv2d::new(2, 3, 4)),                        // even kernel: PyTorch 'same' padding
    ];
    convs
        .into_iter()
        .map(|(n, conv)| {
            let x = rng.planes(Shape::new(n, conv.cin, h, w), -1.0, 1.0);
            let wt = rng.constants(conv.weight_len(), -0.5, 0.5);
            let b = rng.constants(conv.cout, -0.5, 0.5);
            Case::new(format!("{conv:?} {w}x{h}"), conv, vec![x, wt, b], TOLERANCE)
        })
        .collect()
}

fn bench(w: usize, h: usize) -> Result<Case> {
    // TinyPSSR's widest layer: 5x5, 1 -> 16.
    let conv = Conv2d::new(1, 16, 5);
    let mut rng = bench_rng();
    let x = rng.planes(Shape::new(1, 1, h, w), 0.0, 1.0);
    let wt = rng.constants(conv.weight_len(), -0.5, 0.5);
    Ok(Case::new("5x5, 1 -> 16", conv, vec![x, wt, constants(vec![0.1; 16])], TOLERANCE))
}
