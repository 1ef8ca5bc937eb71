//! Criterion benches: one group per kernel, ids `cpu`, `gpu_resident` (inputs
//! already on the GPU; record, submit, wait) and `gpu_roundtrip` (upload,
//! run, read back), at a few sizes. GPU ids are skipped when there is no adapter.
//!
//! cargo bench --bench kernels [-- GROUP]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use gpuimg::kernels::unpack_pixels::PixelLayout;
use gpuimg::kernels::*;
use gpuimg::{Gpu, GpuTensor, Samples, Shape, Tensor};

const SIZES: [(usize, usize); 3] = [(256, 256), (1024, 1024), (1920, 1080)];

fn gpu() -> Option<&'static Gpu> {
    use std::sync::OnceLock;
    static G: OnceLock<Option<Gpu>> = OnceLock::new();
    G.get_or_init(|| match Gpu::new() {
        Ok(g) => {
            eprintln!("benchmarking on adapter: {}", g.adapter_info().name);
            Some(g)
        }
        Err(e) => {
            eprintln!("no GPU adapter ({e}): GPU ids skipped");
            None
        }
    })
    .as_ref()
}

fn tensor(shape: Shape, seed: u32) -> Tensor {
    let data = (0..shape.len())
        .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1u32 << 24) as f32)
        .collect();
    Tensor::from_vec(shape, data).unwrap()
}

/// Runs `record` on resident tensors and waits: the GPU-resident timing.
fn resident(gpu: &Gpu, record: impl Fn(&mut gpuimg::wgpu::CommandEncoder) -> gpuimg::Result<()>) {
    gpu.execute("bench", |enc| record(enc)).unwrap();
}

macro_rules! group {
    ($c:expr, $name:expr, |$w:ident, $h:ident| $setup:block, cpu: $cpu:expr, resident: $res:expr, roundtrip: $rt:expr) => {{
        let mut g = $c.benchmark_group($name);
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .measurement_time(std::time::Duration::from_secs(2))
            .warm_up_time(std::time::Duration::from_millis(300));
        for ($w, $h) in SIZES {
            let id = format!("{}x{}", $w, $h);
            g.throughput(Throughput::Elements(($w * $h) as u64));
            let s = $setup;
            g.bench_function(BenchmarkId::new("cpu", &id), |b| b.iter(|| black_box($cpu(&s))));
            if let Some(gpu) = gpu() {
                let r = ($res)(gpu, &s);
                g.bench_function(BenchmarkId::new("gpu_resident", &id), |b| b.iter(|| resident(gpu, |enc| r(enc))));
                g.bench_function(BenchmarkId::new("gpu_roundtrip", &id), |b| b.iter(|| black_box($rt(gpu, &s))));
            }
        }
        g.finish();
    }};
}

fn conv(c: &mut Criterion) {
    // TinyPSSR's widest layer: 5x5, 1 -> 16.
    let conv = Conv2d::new(1, 16, 5);
    group!(c, "conv2d", |w, h| {
        let x = tensor(Shape::new(1, 1, h, w), 1);
        let wt = tensor(Shape::new(1, 1, 1, conv.weight_len()), 2).data;
        (x, wt, vec![0.1; 16])
    },
    cpu: |s: &(Tensor, Vec<f32>, Vec<f32>)| conv.cpu(&s.0, &s.1, &s.2).unwrap(),
    resident: |gpu: &'static Gpu, s: &(Tensor, Vec<f32>, Vec<f32>)| {
        let (x, wb, bb) = (gpu.upload(&s.0).unwrap(), gpu.constant("w", &s.1), gpu.constant("b", &s.2));
        let y = gpu.alloc(conv.check(s.0.shape, s.1.len(), 16).unwrap()).unwrap();
        move |enc: &mut gpuimg::wgpu::CommandEncoder| conv.encode(gpu, enc, &x, &wb, &bb, &y)
    },
    roundtrip: |gpu: &Gpu, s: &(Tensor, Vec<f32>, Vec<f32>)| conv.gpu(gpu, &s.0, &s.1, &s.2).unwrap());
}

/// The one-input, one-output kernels, benched the same way.
trait Unary: Copy + 'static {
    fn cpu(&self, x: &Tensor) -> Tensor;
    fn out(&self, s: Shape) -> Shape;
    fn encode(
        &self,
        gpu: &Gpu,
        enc: &mut gpuimg::wgpu::CommandEncoder,
        x: &GpuTensor,
        y: &GpuTensor,
    ) -> gpuimg::Result<()>;
    fn gpu(&self, gpu: &Gpu, x: &Tensor) -> Tensor;
}

macro_rules! unary_impl {
    ($($t:ty),*) => {$(
        impl Unary for $t {
            fn cpu(&self, x: &Tensor) -> Tensor { <$t>::cpu(self, x).unwrap() }
            fn out(&self, s: Shape) -> Shape { self.out_shape(s).unwrap() }
            fn encode(&self, gpu: &Gpu, enc: &mut gpuimg::wgpu::CommandEncoder, x: &GpuTensor, y: &GpuTensor) -> gpuimg::Result<()> {
                <$t>::encode(self, gpu, enc, x, y)
            }
            fn gpu(&self, gpu: &Gpu, x: &Tensor) -> Tensor { <$t>::gpu(self, gpu, x).unwrap() }
        }
    )*};
}
unary_impl!(PixelShuffle, PixelUnshuffle, ResizeBilinear);

impl Unary for Activation {
    fn cpu(&self, x: &Tensor) -> Tensor {
        Activation::cpu(self, x)
    }
    fn out(&self, s: Shape) -> Shape {
        s
    }
    fn encode(
        &self,
        gpu: &Gpu,
        enc: &mut gpuimg::wgpu::CommandEncoder,
        x: &GpuTensor,
        y: &GpuTensor,
    ) -> gpuimg::Result<()> {
        Activation::encode(self, gpu, enc, x, y)
    }
    fn gpu(&self, gpu: &Gpu, x: &Tensor) -> Tensor {
        Activation::gpu(self, gpu, x).unwrap()
    }
}

fn unary(c: &mut Criterion, name: &'static str, in_shape: impl Fn(usize, usize) -> Shape, op: impl Unary) {
    group!(c, name, |w, h| { tensor(in_shape(w, h), 3) },
        cpu: |x: &Tensor| op.cpu(x),
        resident: |gpu: &'static Gpu, x: &Tensor| {
            let gx = gpu.upload(x).unwrap();
            let gy = gpu.alloc(op.out(x.shape)).unwrap();
            move |enc: &mut gpuimg::wgpu::CommandEncoder| op.encode(gpu, enc, &gx, &gy)
        },
        roundtrip: |gpu: &Gpu, x: &Tensor| op.gpu(gpu, x));
}

fn elementwise(c: &mut Criterion) {
    unary(c, "activation", |w, h| Shape::new(1, 16, h, w), Activation(ActivationKind::Tanh));
    unary(c, "pixel_shuffle", |w, h| Shape::new(1, 4, h / 2, w / 2), PixelShuffle { r: 2 });
    unary(c, "pixel_unshuffle", |w, h| Shape::new(1, 3, h, w), PixelUnshuffle { r: 2 });
    unary(c, "resize_bilinear", |w, h| Shape::new(1, 3, h, w), ResizeBilinear::by_factor(1.0 / 12.0, false));
}

fn prelu(c: &mut Criterion) {
    let slopes = vec![0.25f32; 16];
    group!(c, "prelu", |w, h| { tensor(Shape::new(1, 16, h, w), 4) },
        cpu: |x: &Tensor| Prelu.cpu(x, &slopes).unwrap(),
        resident: |gpu: &'static Gpu, x: &Tensor| {
            let (gx, a, gy) = (gpu.upload(x).unwrap(), gpu.constant("a", &slopes), gpu.alloc(x.shape).unwrap());
            move |enc: &mut gpuimg::wgpu::CommandEncoder| Prelu.encode(gpu, enc, &gx, &a, &gy)
        },
        roundtrip: |gpu: &Gpu, x: &Tensor| Prelu.gpu(gpu, x, &slopes).unwrap());
}

fn curve(c: &mut Criterion) {
    let op = ZeroDceCurve { iterations: 8, per_iteration: false };
    group!(c, "zero_dce_curve", |w, h| { (tensor(Shape::new(1, 3, h, w), 5), tensor(Shape::new(1, 3, h, w), 6)) },
        cpu: |s: &(Tensor, Tensor)| op.cpu(&s.0, &s.1).unwrap(),
        resident: |gpu: &'static Gpu, s: &(Tensor, Tensor)| {
            let (x, r, y) = (gpu.upload(&s.0).unwrap(), gpu.upload(&s.1).unwrap(), gpu.alloc(s.0.shape).unwrap());
            move |enc: &mut gpuimg::wgpu::CommandEncoder| op.encode(gpu, enc, &x, &r, &y)
        },
        roundtrip: |gpu: &Gpu, s: &(Tensor, Tensor)| op.gpu(gpu, &s.0, &s.1).unwrap());
}

fn enhance_kernel(c: &mut Criterion) {
    let op = ZeroDceEnhance { iterations: 8, per_iteration: false, colour: 3 };
    let maps = |w: usize, h: usize| Shape::new(1, 3, (h / 12).max(1), (w / 12).max(1));
    group!(c, "zero_dce_enhance", |w, h| { (tensor(Shape::new(1, 3, h, w), 5), tensor(maps(w, h), 6)) },
        cpu: |s: &(Tensor, Tensor)| op.cpu(&s.0, &s.1).unwrap(),
        resident: |gpu: &'static Gpu, s: &(Tensor, Tensor)| {
            let (x, r, y) = (gpu.upload(&s.0).unwrap(), gpu.upload(&s.1).unwrap(), gpu.alloc(s.0.shape).unwrap());
            move |enc: &mut gpuimg::wgpu::CommandEncoder| op.encode(gpu, enc, &x, &r, &y)
        },
        roundtrip: |gpu: &Gpu, s: &(Tensor, Tensor)| op.gpu(gpu, &s.0, &s.1).unwrap());
}

/// Whole-image Zero-DCE++ (s = 12, bundled weights), 8-bit RGB in and out:
/// `cpu` and `gpu_roundtrip` (upload, one submission, read back) at 1200x900 and 1080p.
fn zero_dce_pp(c: &mut Criterion) {
    use gpuimg::image_io::Image;
    use gpuimg::models::zero_dce::{Arch, ZeroDce};
    let model = ZeroDce::bundled(Arch::ZeroDcePlus).unwrap();
    let mut g = c.benchmark_group("zero_dce_pp");
    g.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(std::time::Duration::from_secs(3));
    for (w, h) in [(1200usize, 900usize), (1920, 1080)] {
        let img = Image::new(w as u32, h as u32, 3, Samples::U8((0..w * h * 3).map(|i| (i * 7 % 97) as u8).collect()))
            .unwrap();
        let id = format!("{w}x{h}");
        g.throughput(Throughput::Elements((w * h) as u64));
        g.bench_function(BenchmarkId::new("cpu", &id), |b| {
            b.iter(|| black_box(gpuimg::ops::enhance(&gpuimg::Backend::Cpu, &model, &img, 12, 8).unwrap()))
        });
        if let Some(gpu) = gpu() {
            g.bench_function(BenchmarkId::new("gpu_roundtrip", &id), |b| {
                b.iter(|| black_box(gpuimg::ops::enhance_gpu(gpu, &model, &img, 12, 8, usize::MAX).unwrap()))
            });
        }
    }
    g.finish();
}

fn pixels(c: &mut Criterion) {
    let layout = |w: usize, h: usize| PixelLayout { n: 1, height: h, width: w, channels: 4, bits: 8 };
    group!(c, "unpack_pixels", |w, h| {
        let l = layout(w, h);
        (l, Samples::U8((0..l.samples()).map(|i| (i * 31) as u8).collect()))
    },
        cpu: |s: &(PixelLayout, Samples)| UnpackPixels(s.0).cpu(&s.1).unwrap(),
        resident: |gpu: &'static Gpu, s: &(PixelLayout, Samples)| {
            let (l, src) = (s.0, gpu.upload_bytes(&s.1.to_le_bytes()).unwrap());
            let y = gpu.alloc(l.shape()).unwrap();
            move |enc: &mut gpuimg::wgpu::CommandEncoder| UnpackPixels(l).encode(gpu, enc, &src, &y)
        },
        roundtrip: |gpu: &Gpu, s: &(PixelLayout, Samples)| UnpackPixels(s.0).gpu(gpu, &s.1).unwrap());
    group!(c, "pack_pixels", |w, h| { (layout(w, h), tensor(layout(w, h).shape(), 7)) },
        cpu: |s: &(PixelLayout, Tensor)| PackPixels(s.0).cpu(&s.1).unwrap(),
        resident: |gpu: &'static Gpu, s: &(PixelLayout, Tensor)| {
            let op = PackPixels(s.0);
            let (x, dst) = (gpu.upload(&s.1).unwrap(), gpu.take_buffer((op.words() * 4) as u64, Gpu::TENSOR_USAGE));
            move |enc: &mut gpuimg::wgpu::CommandEncoder| op.encode(gpu, enc, &x, &dst)
        },
        roundtrip: |gpu: &Gpu, s: &(PixelLayout, Tensor)| PackPixels(s.0).gpu(gpu, &s.1).unwrap());
}

fn tinypssr(c: &mut Criterion) {
    use gpuimg::image_io::Image;
    use gpuimg::kernels::tinypssr_fused::{flat_weights, FusedParams, TinyPssrFused};
    use gpuimg::models::tinypssr::{Stage, TinyPssr};
    let mut seed = 7u32;
    let mut u = move || {
        seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
        (seed >> 8) as f32 / (1u32 << 24) as f32
    };
    let model = TinyPssr { stages: vec![Stage::init_bicubic(&mut u)] };
    group!(c, "tinypssr_fused", |w, h| {
        let s: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let img = Image::new(w as u32, h as u32, 3, Samples::U8(s)).unwrap();
        let planes = gpuimg::kernels::UnpackPixels(img.layout()).cpu(&img.samples).unwrap();
        (img, Tensor::from_vec(Shape::new(3, 1, h, w), planes.data).unwrap())
    },
        cpu: |s: &(Image, Tensor)| model.forward_fast(&s.1),
        resident: |gpu: &'static Gpu, s: &(Image, Tensor)| {
            let op = TinyPssrFused(FusedParams {
                w: s.0.width, h: s.0.height, channels: 3, colour: 3, bits: 8, in_mode: 0, out_mode: 0, _pad: 0,
            });
            let src = gpu.upload_bytes(&s.0.samples.to_le_bytes()).unwrap();
            let wts = gpu.constant("w", &flat_weights(&model.stages[0]));
            let dst = gpu.take_buffer(op.out_bytes(), Gpu::TENSOR_USAGE);
            move |enc: &mut gpuimg::wgpu::CommandEncoder| {
                enc.clear_buffer(&dst, 0, None);
                op.encode(gpu, enc, &src, &wts, &dst)
            }
        },
        roundtrip: |gpu: &Gpu, s: &(Image, Tensor)| gpuimg::ops::super_resolve_fused(gpu, &model, &s.0).unwrap());
}

criterion_group!(benches, conv, elementwise, prelu, curve, enhance_kernel, pixels, tinypssr, zero_dce_pp);
criterion_main!(benches);
