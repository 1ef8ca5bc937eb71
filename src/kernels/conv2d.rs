//! 2-D convolution, stride 1, "same" zero padding, bias, groups.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::contract::{
    bench_rng, constants, gpu_planes, planes, Case, Data, Draw, Entry, GpuData, Kernel, Output, Tolerance,
};
use super::{kernel_desc, rows_per_task, KernelDesc};
use crate::error::{Error, Result};
use crate::gpu::{grid_groups, Gpu, GpuTensor};
use crate::rng::SplitMix;
use crate::tensor::{Shape, Tensor};

/// Params uniform of `shaders/conv2d.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
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

    /// CPU implementation: rayon over output rows; interior columns in
    /// register tiles, the borders as vectorisable axpy runs (one per input
    /// channel and kernel tap). Compiled twice, for AVX2+FMA machines (picked
    /// at run time) and for the baseline; both give the same bits (Rust does
    /// not contract a * b + c into an FMA).
    pub fn cpu(&self, x: &Tensor, weight: &[f32], bias: &[f32]) -> Result<Tensor> {
        let out = self.check(x.shape, weight.len(), bias.len())?;
        let mut y = Tensor::zeros(out);
        if out.is_empty() {
            return Ok(y);
        }
        let w = out.w;
        let avx2 = crate::cpu::level() == crate::cpu::Level::Avx2Fma;
        let _ = avx2; // read on x86-64 only
        y.data.par_chunks_mut(w).with_min_len(rows_per_task(w)).enumerate().for_each(|(row, yrow)| {
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: the chosen level is never above what the CPU supports.
                return unsafe { self.row_avx2(x, weight, bias, out, row, yrow) };
            }
            self.row(x, weight, bias, out, row, yrow)
        });
        Ok(y)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn row_avx2(&self, x: &Tensor, weight: &[f32], bias: &[f32], out: Shape, row: usize, yrow: &mut [f32]) {
        self.row(x, weight, bias, out, row, yrow)
    }

    /// Output row `row` (over all planes) of the convolution.
    #[inline(always)]
    fn row(&self, x: &Tensor, weight: &[f32], bias: &[f32], out: Shape, row: usize, yrow: &mut [f32]) {
        let (h, w, k) = (out.h, out.w, self.k);
        let cin_g = self.cin / self.groups;
        let cout_g = self.cout / self.groups;
        let pad = (k - 1) / 2;
        let i = row % h;
        let plane = row / h;
        let (b, o) = (plane / self.cout, plane % self.cout);
        let g = o / cout_g;
        yrow.fill(bias[o]);
        // Columns whose every tap is inside the row go in tiles of outputs
        // held in registers (one load per multiply-add); the
        // rest tap by tap along the row. Both add the taps in the same
        // order (channel, row, column) onto the bias, so the results
        // are the same to the bit.
        let rows = |c: usize| {
            let xplane = x.plane(b, g * cin_g + c);
            (0..k).filter_map(move |u| {
                let ii = (i + u).checked_sub(pad).filter(|&ii| ii < h)?;
                Some((u, &xplane[ii * w..(ii + 1) * w]))
            })
        };
        // One tile of T outputs from column j0 (all its taps inside the row).
        #[inline(always)]
        fn tile<'a, const T: usize, R: Iterator<Item = (usize, &'a [f32])>>(
            yrow: &mut [f32],
            j0: usize,
            (k, pad, cin_g): (usize, usize, usize),
            weights: &[f32],
            rows: impl Fn(usize) -> R,
        ) {
            let mut acc = [0f32; T];
            acc.copy_from_slice(&yrow[j0..j0 + T]);
            for c in 0..cin_g {
                let wc = &weights[c * k * k..(c + 1) * k * k];
                for (u, xrow) in rows(c) {
                    for v in 0..k {
                        let wv = wc[u * k + v];
                        let xs = &xrow[j0 + v - pad..j0 + v - pad + T];
                        for (a, &xv) in acc.iter_mut().zip(xs) {
                            *a += wv * xv;
                        }
                    }
                }
            }
            yrow[j0..j0 + T].copy_from_slice(&acc);
        }
        // Tiles of 64 (eight AVX registers of accumulators, enough to hide
        // the add latency), then of 16, over the interior columns.
        let weights = &weight[o * cin_g * k * k..(o + 1) * cin_g * k * k];
        let dims = (k, pad, cin_g);
        let mut j0 = pad;
        // Taps reach pad columns left and k - 1 - pad right (even k: one fewer).
        let end = w.saturating_sub(k - 1 - pad);
        while j0 + 64 <= end {
            tile::<64, _>(yrow, j0, dims, weights, rows);
            j0 += 64;
        }
        while j0 + 16 <= end {
            tile::<16, _>(yrow, j0, dims, weights, rows);
            j0 += 16;
        }
        for (lo, hi) in [(0, pad), (j0, w)] {
            for c in 0..cin_g {
                let wc = &weights[c * k * k..(c + 1) * k * k];
                for (u, xrow) in rows(c) {
                    for v in 0..k {
                        let wv = wc[u * k + v];
                        // Output columns j in lo..hi whose input column j + v - pad is inside.
                        let j0 = pad.saturating_sub(v).max(lo);
                        let j1 = (w + pad).saturating_sub(v).min(w).min(hi);
                        if j0 >= j1 {
                            continue;
                        }
                        let xs = &xrow[j0 + v - pad..j1 + v - pad];
                        for (acc, &xv) in yrow[j0..j1].iter_mut().zip(xs) {
                            *acc += wv * xv;
                        }
                    }
                }
            }
        }
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
        let groups = grid_groups(out.w, out.h, out.n * out.c);
        gpu.dispatch(encoder, &DESC, bytemuck::bytes_of(&p), &[&x.buffer, weight, bias, &y.buffer], groups)
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
