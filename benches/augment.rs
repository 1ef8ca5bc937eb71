//! Augmentation benches (criterion): every op on its own, the seed-004 chain
//! (hflip, rotate, jitter, crop, resize) fused against op by op, and resize
//! on the CPU against fast_image_resize and the image crate. Images of
//! 640x427, 2000x1500 and 3000x5000 (8-bit RGB in and out); throughput is
//! input pixels. GPU ids run on a hardware adapter, or on a software one with
//! GPUIMG_BENCH_SOFTWARE=1.
//!
//! cargo bench --bench augment [-- GROUP]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use gpuimg::augment::{Plan, Spec};
use gpuimg::bench::{image, seed004_chain};
use gpuimg::gpu::AdapterRequest;
use gpuimg::{Backend, Gpu};

const SIZES: [(usize, usize); 3] = [(640, 427), (2000, 1500), (3000, 5000)];

fn gpu() -> Option<Backend> {
    let soft = std::env::var_os("GPUIMG_BENCH_SOFTWARE").is_some();
    match Gpu::with_request(&AdapterRequest { allow_software: soft, name: None }) {
        Ok(g) => {
            eprintln!("GPU ids on adapter: {}", g.adapter_info().name);
            Some(Backend::Gpu(Arc::new(g)))
        }
        Err(e) => {
            eprintln!("no hardware GPU adapter ({e}): GPU ids skipped (GPUIMG_BENCH_SOFTWARE=1 takes a software one)");
            None
        }
    }
}

/// Each op alone, with fixed values, at image size w x h.
fn ops(w: usize, h: usize) -> Vec<(&'static str, String)> {
    let (cw, ch) = (w * 4 / 5, h * 4 / 5);
    vec![
        ("hflip", "hflip:p=1".into()),
        ("vflip", "vflip:p=1".into()),
        ("rot90", "rot90:k=1".into()),
        ("rotate", "rotate:angle=10".into()),
        ("crop", format!("crop:x=7,y=5,w={cw},h={ch}")),
        ("center-crop", format!("center-crop:w={cw},h={ch}")),
        ("random-resized-crop", "random-resized-crop:size=224".into()),
        ("resize-nearest-half", format!("resize:w={},h={},method=nearest", w / 2, h / 2)),
        ("resize-bilinear-half", format!("resize:w={},h={}", w / 2, h / 2)),
        ("resize-bicubic-half", format!("resize:w={},h={},method=bicubic", w / 2, h / 2)),
        ("pad-reflect", "pad:all=16,mode=reflect".into()),
        ("jitter", "brightness:f=1.1;contrast:f=0.9;saturation:f=1.2;hue:f=0.03".into()),
        ("gamma", "gamma:g=1.3".into()),
        ("noise", "noise:sigma=0.02,seed=7".into()),
        ("grey", "grey".into()),
    ]
}

fn config(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(std::time::Duration::from_secs(2))
        .warm_up_time(std::time::Duration::from_millis(200));
}

fn per_op(c: &mut Criterion) {
    let gpu = gpu();
    for (name, _) in ops(640, 427) {
        let mut g = c.benchmark_group(format!("augment_op/{name}"));
        config(&mut g);
        for (w, h) in SIZES {
            let img = image(w, h);
            let spec: Spec = ops(w, h).into_iter().find(|o| o.0 == name).unwrap().1.parse().unwrap();
            let plan = Plan::fused(&spec.draw(1, 0, w, h).unwrap(), w, h).unwrap();
            let id = format!("{w}x{h}");
            g.throughput(Throughput::Elements((w * h) as u64));
            g.bench_function(BenchmarkId::new("cpu", &id), |b| {
                b.iter(|| black_box(plan.run_image(&Backend::Cpu, &img).unwrap()))
            });
            if let Some(gb) = &gpu {
                g.bench_function(BenchmarkId::new("gpu_roundtrip", &id), |b| {
                    b.iter(|| black_box(plan.run_image(gb, &img).unwrap()))
                });
            }
        }
        g.finish();
    }
}

fn chain_group(c: &mut Criterion) {
    let gpu = gpu();
    let mut g = c.benchmark_group("augment_chain");
    config(&mut g);
    for (w, h) in SIZES {
        let img = image(w, h);
        let d = seed004_chain(w, h).parse::<Spec>().unwrap();
        let fused = Plan::fused(&d, w, h).unwrap();
        let reference = Plan::op_by_op(&d, w, h).unwrap();
        let id = format!("{w}x{h}");
        g.throughput(Throughput::Elements((w * h) as u64));
        g.bench_function(BenchmarkId::new("cpu_fused", &id), |b| {
            b.iter(|| black_box(fused.run_image(&Backend::Cpu, &img).unwrap()))
        });
        g.bench_function(BenchmarkId::new("cpu_op_by_op", &id), |b| {
            b.iter(|| black_box(reference.run_image(&Backend::Cpu, &img).unwrap()))
        });
        if let Some(gb) = &gpu {
            g.bench_function(BenchmarkId::new("gpu_fused", &id), |b| {
                b.iter(|| black_box(fused.run_image(gb, &img).unwrap()))
            });
            g.bench_function(BenchmarkId::new("gpu_op_by_op", &id), |b| {
                b.iter(|| black_box(reference.run_image(gb, &img).unwrap()))
            });
        }
    }
    g.finish();
}

/// Downscale by 4 per side, bilinear (triangle filter, antialiased), 8-bit RGB to 8-bit RGB.
/// fast_image_resize is built with its `rayon` feature, so it splits the
/// image over rayon's global pool as gpuimg does: both use the same threads.
/// Borders differ (fast_image_resize drops the taps outside the image,
/// gpuimg clamps them to the edge pixel), the interior is the same filter.
fn resize_peers(c: &mut Criterion) {
    use fast_image_resize::{images::Image as FirImage, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
    let mut g = c.benchmark_group("resize_peers");
    config(&mut g);
    for (w, h) in SIZES {
        let img = image(w, h);
        let (ow, oh) = (w / 4, h / 4);
        let id = format!("{w}x{h}");
        g.throughput(Throughput::Elements((w * h) as u64));
        let plan = Plan::fused(&format!("resize:w={ow},h={oh}").parse::<Spec>().unwrap(), w, h).unwrap();
        g.bench_function(BenchmarkId::new("gpuimg_cpu", &id), |b| {
            b.iter(|| black_box(plan.run_image(&Backend::Cpu, &img).unwrap()))
        });
        let gpuimg::Samples::U8(bytes) = &img.samples else { unreachable!() };
        let src = FirImage::from_vec_u8(w as u32, h as u32, bytes.clone(), PixelType::U8x3).unwrap();
        let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        let mut resizer = Resizer::new();
        g.bench_function(BenchmarkId::new("fast_image_resize", &id), |b| {
            b.iter(|| {
                let mut dst = FirImage::new(ow as u32, oh as u32, PixelType::U8x3);
                resizer.resize(&src, &mut dst, &opts).unwrap();
                black_box(dst)
            })
        });
        let rgb = ::image::RgbImage::from_raw(w as u32, h as u32, bytes.clone()).unwrap();
        g.bench_function(BenchmarkId::new("image_crate", &id), |b| {
            b.iter(|| {
                black_box(::image::imageops::resize(
                    &rgb,
                    ow as u32,
                    oh as u32,
                    ::image::imageops::FilterType::Triangle,
                ))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, per_op, chain_group, resize_peers);
criterion_main!(benches);
