//! The one kernel contract: every kernel is a [`Kernel`] (what it writes,
//! its CPU twin, its GPU recording, and from those a default end-to-end GPU
//! run), and every kernel has one [`Entry`] in the registry carrying its
//! descriptor, its parity cases and its benchmark case. `tests/parity.rs`
//! and `gpuimg bench` loop over the registry, so a new kernel is a shader, a
//! module and one registry line.
//!
//! Kernels keep their typed methods (`Conv2d::cpu(&x, &w, &b)`,
//! `Conv2d::encode(..)`) for the models; the trait is the uniform face the
//! registry, the parity tests and the bench use, with inputs and outputs as
//! [`Data`]: f32 planes or packed pixel samples.

use std::fmt;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuTensor, KernelDesc};
use crate::pixel::PixelLayout;
use crate::rng::SplitMix;
use crate::tensor::{Samples, Shape, Tensor};

/// Host data a kernel reads or writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// f32 planes (NCHW); weights and other constants are planes too.
    Planes(Tensor),
    /// Interleaved 8- or 16-bit samples.
    Packed(Samples),
}

/// The same data resident on the GPU.
#[derive(Debug)]
pub enum GpuData {
    /// f32 planes.
    Planes(GpuTensor),
    /// Packed samples in 32-bit words (little-endian, the tail padded).
    Packed {
        /// The words.
        buffer: wgpu::Buffer,
        /// 8 or 16.
        bits: u32,
        /// Number of samples.
        len: usize,
    },
}

/// What a kernel writes, known before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// f32 planes of this shape.
    Planes(Shape),
    /// `len` packed samples of `bits` bits.
    Packed {
        /// 8 or 16.
        bits: u32,
        /// Number of samples.
        len: usize,
    },
}

impl Output {
    /// Bytes on the GPU (packed samples padded to whole words).
    pub fn bytes(&self) -> u64 {
        match *self {
            Output::Planes(s) => s.bytes(),
            Output::Packed { bits, len } => (len as u64 * bits as u64 / 8).next_multiple_of(4),
        }
    }

    /// Host data from the bytes read back.
    pub fn read(&self, bytes: &[u8]) -> Result<Data> {
        match *self {
            Output::Planes(s) => Ok(Data::Planes(Tensor::from_vec(s, bytemuck::pod_collect_to_vec(bytes))?)),
            Output::Packed { bits, len } => Ok(Data::Packed(Samples::from_le_bytes(bits, bytes, len))),
        }
    }
}

impl Data {
    /// The planes, or an error naming the kernel and the input.
    pub fn planes(&self, kernel: &'static str, i: usize) -> Result<&Tensor> {
        match self {
            Data::Planes(t) => Ok(t),
            Data::Packed(_) => Err(Error::invalid(kernel, format!("input {i} is packed samples, expected f32 planes"))),
        }
    }

    /// The packed samples, or an error naming the kernel and the input.
    pub fn packed(&self, kernel: &'static str, i: usize) -> Result<&Samples> {
        match self {
            Data::Packed(s) => Ok(s),
            Data::Planes(_) => Err(Error::invalid(kernel, format!("input {i} is f32 planes, expected packed samples"))),
        }
    }

    /// What this data is, as an [`Output`].
    pub fn output(&self) -> Output {
        match self {
            Data::Planes(t) => Output::Planes(t.shape),
            Data::Packed(s) => Output::Packed { bits: s.bits(), len: s.len() },
        }
    }
}

impl GpuData {
    /// Uploads host data to pooled buffers.
    pub fn upload(gpu: &Gpu, d: &Data) -> Result<GpuData> {
        Ok(match d {
            Data::Planes(t) => GpuData::Planes(gpu.upload(t)?),
            Data::Packed(s) => {
                GpuData::Packed { buffer: gpu.upload_bytes(&s.le_bytes())?, bits: s.bits(), len: s.len() }
            }
        })
    }

    /// A pooled buffer for an output (contents undefined).
    pub fn alloc(gpu: &Gpu, out: Output) -> Result<GpuData> {
        Ok(match out {
            Output::Planes(s) => GpuData::Planes(gpu.alloc(s)?),
            Output::Packed { bits, len } => {
                gpu.check_size("packed samples", out.bytes())?;
                GpuData::Packed { buffer: gpu.take_buffer(out.bytes(), Gpu::TENSOR_USAGE), bits, len }
            }
        })
    }

    /// The buffer holding the data.
    pub fn buffer(&self) -> &wgpu::Buffer {
        match self {
            GpuData::Planes(t) => &t.buffer,
            GpuData::Packed { buffer, .. } => buffer,
        }
    }

    /// The planes, or an error naming the kernel and the slot.
    pub fn planes(&self, kernel: &'static str, i: usize) -> Result<&GpuTensor> {
        match self {
            GpuData::Planes(t) => Ok(t),
            GpuData::Packed { .. } => {
                Err(Error::invalid(kernel, format!("slot {i} holds packed samples, expected f32 planes")))
            }
        }
    }

    /// Returns the buffer to the pool.
    pub fn recycle(self, gpu: &Gpu) {
        match self {
            GpuData::Planes(t) => gpu.recycle(t),
            GpuData::Packed { buffer, .. } => gpu.recycle_buffer(buffer),
        }
    }
}

/// `N` plane inputs, or an error naming the kernel.
pub fn planes<'a, const N: usize>(kernel: &'static str, inputs: &[&'a Data]) -> Result<[&'a Tensor; N]> {
    count(kernel, inputs.len(), N)?;
    let mut out = Vec::with_capacity(N);
    for (i, d) in inputs.iter().enumerate() {
        out.push(d.planes(kernel, i)?);
    }
    Ok(out.try_into().unwrap_or_else(|_| unreachable!("length checked")))
}

/// `N` resident plane inputs, or an error naming the kernel.
pub fn gpu_planes<'a, const N: usize>(kernel: &'static str, inputs: &[&'a GpuData]) -> Result<[&'a GpuTensor; N]> {
    count(kernel, inputs.len(), N)?;
    let mut out = Vec::with_capacity(N);
    for (i, d) in inputs.iter().enumerate() {
        out.push(d.planes(kernel, i)?);
    }
    Ok(out.try_into().unwrap_or_else(|_| unreachable!("length checked")))
}

/// Checks the number of inputs.
pub fn count(kernel: &'static str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::invalid(kernel, format!("{got} inputs, expected {want}")));
    }
    Ok(())
}

/// `impl Kernel` for a kernel of one f32-planes input and output whose typed
/// methods are `out_shape(Shape) -> Result<Shape>`, `cpu(&Tensor) ->
/// Result<Tensor>` and `encode(gpu, encoder, x, y)`, with `DESC` in scope.
macro_rules! unary_kernel {
    ($ty:ty) => {
        impl $crate::kernels::Kernel for $ty {
            fn desc(&self) -> &'static $crate::gpu::KernelDesc {
                &DESC
            }
            fn output(&self, inputs: &[&$crate::kernels::Data]) -> $crate::error::Result<$crate::kernels::Output> {
                let [x] = $crate::kernels::contract::planes(DESC.name, inputs)?;
                Ok($crate::kernels::Output::Planes(<$ty>::out_shape(self, x.shape)?))
            }
            fn cpu(&self, inputs: &[&$crate::kernels::Data]) -> $crate::error::Result<$crate::kernels::Data> {
                let [x] = $crate::kernels::contract::planes(DESC.name, inputs)?;
                Ok($crate::kernels::Data::Planes(<$ty>::cpu(self, x)?))
            }
            fn encode(
                &self,
                gpu: &$crate::gpu::Gpu,
                encoder: &mut wgpu::CommandEncoder,
                inputs: &[&$crate::kernels::GpuData],
                out: &$crate::kernels::GpuData,
            ) -> $crate::error::Result<()> {
                let [x] = $crate::kernels::contract::gpu_planes(DESC.name, inputs)?;
                <$ty>::encode(self, gpu, encoder, x, out.planes(DESC.name, 0)?)
            }
        }
    };
}
pub(crate) use unary_kernel;

/// A GPU kernel with its CPU twin.
pub trait Kernel: fmt::Debug + Send + Sync {
    /// The kernel's descriptor (shader, bindings, workgroup size).
    fn desc(&self) -> &'static KernelDesc;

    /// What the kernel writes for these inputs; errors on inputs it cannot take.
    fn output(&self, inputs: &[&Data]) -> Result<Output>;

    /// The CPU twin.
    fn cpu(&self, inputs: &[&Data]) -> Result<Data>;

    /// Records the kernel into `encoder`: `inputs` resident, `out` allocated
    /// for [`Kernel::output`] (contents undefined: a kernel that accumulates
    /// clears it first).
    fn encode(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, inputs: &[&GpuData], out: &GpuData) -> Result<()>;

    /// Runs end to end on the GPU: uploads the inputs to pooled buffers,
    /// records, reads the output back in the same submission and recycles
    /// every buffer.
    fn gpu(&self, gpu: &Gpu, inputs: &[&Data]) -> Result<Data> {
        run_gpu(self, gpu, inputs)
    }
}

/// How far a GPU result may be from the CPU twin's: `|got - want| <= abs + rel * |want|`
/// on planes, `|got - want| <= abs` levels on packed samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Absolute part (levels, on packed samples).
    pub abs: f32,
    /// Relative part (planes only).
    pub rel: f32,
}

impl Tolerance {
    /// Bit-exact.
    pub const EXACT: Tolerance = Tolerance { abs: 0.0, rel: 0.0 };

    /// Kernels whose arithmetic a hardware compiler may contract into fused
    /// multiply-adds (the CPU twins do not): NVIDIA's does, and the source
    /// coordinate `scale * (dst + 0.5) - 0.5` then differs by one ulp (3e-5 at
    /// 500 pixels), which moves a bilinear weight by as much; the Zero-DCE
    /// curve's eight iterations of `x + r (x^2 - x)` gather a few ulps.
    /// Measured on an H200: up to 7.1e-6 (lavapipe: within 2e-6). A 16-bit
    /// level is 1.5e-5.
    pub const FMA: Tolerance = Tolerance { abs: 1e-5, rel: 0.0 };

    /// `Ok` when `got` is within tolerance of `want`, else a message naming
    /// the worst element.
    pub fn check(&self, got: &Data, want: &Data) -> std::result::Result<(), String> {
        if got.output() != want.output() {
            return Err(format!("got {:?}, expected {:?}", got.output(), want.output()));
        }
        let (g, w): (Vec<f64>, Vec<f64>) = match (got, want) {
            (Data::Planes(a), Data::Planes(b)) => {
                (a.data.iter().map(|&v| v as f64).collect(), b.data.iter().map(|&v| v as f64).collect())
            }
            (Data::Packed(a), Data::Packed(b)) => (levels(a), levels(b)),
            _ => unreachable!("same output kind"),
        };
        let rel = if matches!(want, Data::Planes(_)) { self.rel as f64 } else { 0.0 };
        let mut worst: Option<(usize, f64)> = None;
        for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
            let excess = (a - b).abs() - (self.abs as f64 + rel * b.abs());
            if (excess > 0.0 || a.is_nan() != b.is_nan()) && worst.is_none_or(|(_, e)| excess > e) {
                worst = Some((i, excess));
            }
        }
        match worst {
            None => Ok(()),
            Some((i, _)) => Err(format!(
                "worst mismatch at index {i}: got {} want {} (diff {}, tolerance {} + {} * |want|)",
                g[i],
                w[i],
                (g[i] - w[i]).abs(),
                self.abs,
                rel
            )),
        }
    }
}

fn levels(s: &Samples) -> Vec<f64> {
    match s {
        Samples::U8(v) => v.iter().map(|&x| x as f64).collect(),
        Samples::U16(v) => v.iter().map(|&x| x as f64).collect(),
    }
}

/// One configuration of a kernel on concrete inputs.
#[derive(Debug)]
pub struct Case {
    /// What the case is (configuration and sizes), for messages.
    pub what: String,
    /// The kernel, configured.
    pub kernel: Box<dyn Kernel>,
    /// Its inputs.
    pub inputs: Vec<Data>,
    /// How far the GPU may be from the CPU twin.
    pub tolerance: Tolerance,
}

impl Case {
    /// A case.
    pub fn new(
        what: impl Into<String>,
        kernel: impl Kernel + 'static,
        inputs: Vec<Data>,
        tolerance: Tolerance,
    ) -> Case {
        Case { what: what.into(), kernel: Box::new(kernel), inputs, tolerance }
    }

    /// The inputs as the trait takes them.
    pub fn refs(&self) -> Vec<&Data> {
        self.inputs.iter().collect()
    }
}

/// A kernel's registry line.
#[derive(Debug)]
pub struct Entry {
    /// Its descriptor.
    pub desc: &'static KernelDesc,
    /// Its parity cases on seeded random inputs at a `w` x `h` image size
    /// (every configuration worth checking; none where the size cannot be used).
    pub parity: fn(&mut SplitMix, usize, usize) -> Vec<Case>,
    /// Its benchmark workload at a `w` x `h` image size.
    pub bench: fn(usize, usize) -> Result<Case>,
}

/// Seeded random values for cases.
pub trait Draw {
    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f32, hi: f32) -> f32;
    /// `len` uniform values.
    fn values(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(lo, hi)).collect()
    }
    /// A tensor of uniform values.
    fn tensor(&mut self, shape: Shape, lo: f32, hi: f32) -> Tensor {
        Tensor { shape, data: self.values(shape.len(), lo, hi) }
    }
    /// Planes of uniform values.
    fn planes(&mut self, shape: Shape, lo: f32, hi: f32) -> Data {
        Data::Planes(self.tensor(shape, lo, hi))
    }
    /// A constant array (weights, slopes) as a (1, 1, 1, len) tensor.
    fn constants(&mut self, len: usize, lo: f32, hi: f32) -> Data {
        self.planes(Shape::new(1, 1, 1, len), lo, hi)
    }
    /// Random samples of a layout, every level possible.
    fn samples(&mut self, l: PixelLayout) -> Samples;
}

impl Draw for SplitMix {
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
    fn samples(&mut self, l: PixelLayout) -> Samples {
        let n = l.samples();
        if l.bits == 8 {
            Samples::U8((0..n).map(|_| self.below(256) as u8).collect())
        } else {
            Samples::U16((0..n).map(|_| self.below(65536) as u16).collect())
        }
    }
}

/// [`Kernel::gpu`]'s default: uploads the inputs to pooled buffers, records,
/// reads the output back in the same submission and recycles every buffer
/// (for kernels that override `gpu` to post-process what they read).
pub fn run_gpu<K: Kernel + ?Sized>(kernel: &K, gpu: &Gpu, inputs: &[&Data]) -> Result<Data> {
    let out = kernel.output(inputs)?;
    // Everything uploaded so far goes back to the pool, whatever fails.
    let mut resident = Vec::with_capacity(inputs.len());
    let res = inputs.iter().try_for_each(|d| GpuData::upload(gpu, d).map(|g| resident.push(g))).and_then(|()| {
        let y = GpuData::alloc(gpu, out)?;
        let refs: Vec<&GpuData> = resident.iter().collect();
        let r = gpu.run_and_read(&kernel.desc().label(), out.bytes(), |enc| {
            kernel.encode(gpu, enc, &refs, &y)?;
            Ok(y.buffer().clone())
        });
        y.recycle(gpu);
        r
    });
    for g in resident {
        g.recycle(gpu);
    }
    out.read(&res?)
}

/// A constant array as the trait passes it: a (1, 1, 1, len) tensor.
pub fn constants(values: Vec<f32>) -> Data {
    Data::Planes(Tensor { shape: Shape::new(1, 1, 1, values.len()), data: values })
}

/// Successive slices of flat weights: each call takes the next `n` values
/// (the fused kernels' CPU twins read their layers so).
pub fn flat_cursor<'a>(flat: &'a [f32]) -> impl FnMut(usize) -> &'a [f32] {
    let mut at = 0;
    move |n| {
        at += n;
        &flat[at - n..at]
    }
}

/// The generator bench inputs are drawn from: fixed, so every run times the same values.
pub fn bench_rng() -> SplitMix {
    SplitMix(0x6770_7569_6d67)
}
