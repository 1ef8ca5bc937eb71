//! Criterion benches: one group per kernel and model of `gpuimg::bench`
//! (the cases `gpuimg bench` times too), ids `cpu` (all threads),
//! `gpu_resident` (inputs already on the GPU; record, submit, wait) and
//! `gpu_roundtrip` (upload, run, read back). GPU ids are skipped when there
//! is no adapter.
//!
//! cargo bench --bench kernels [-- GROUP]

use std::sync::{Arc, OnceLock};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use gpuimg::bench::{case, names};
use gpuimg::Gpu;

/// Kernel sizes; the whole-image cases (`bench::MODELS`) run at 640x480, 1200x900 and 1080p.
const SIZES: [(usize, usize); 3] = [(256, 256), (1024, 1024), (1920, 1080)];
const MODEL_SIZES: [(usize, usize); 3] = [(640, 480), (1200, 900), (1920, 1080)];

fn gpu() -> Option<&'static Arc<Gpu>> {
    static G: OnceLock<Option<Arc<Gpu>>> = OnceLock::new();
    G.get_or_init(|| match Gpu::new() {
        Ok(g) => {
            eprintln!("benchmarking on adapter: {}", g.adapter_info().name);
            Some(Arc::new(g))
        }
        Err(e) => {
            eprintln!("no GPU adapter ({e}): GPU ids skipped");
            None
        }
    })
    .as_ref()
}

fn all(c: &mut Criterion) {
    for name in names() {
        let mut g = c.benchmark_group(name);
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .measurement_time(std::time::Duration::from_secs(2))
            .warm_up_time(std::time::Duration::from_millis(300));
        let sizes: &[(usize, usize)] = if gpuimg::bench::MODELS.contains(&name) { &MODEL_SIZES } else { &SIZES };
        for &(w, h) in sizes {
            let id = format!("{w}x{h}");
            g.throughput(Throughput::Elements((w * h) as u64));
            let k = case(name, gpu(), w, h).unwrap();
            g.bench_function(BenchmarkId::new("cpu", &id), |b| b.iter(|| (k.cpu)().unwrap()));
            if let (Some(gpu), Some(rec)) = (gpu(), &k.resident) {
                g.bench_function(BenchmarkId::new("gpu_resident", &id), |b| {
                    b.iter(|| gpu.execute("bench", |enc| rec(enc)).unwrap())
                });
            }
            if let Some(rt) = &k.roundtrip {
                g.bench_function(BenchmarkId::new("gpu_roundtrip", &id), |b| b.iter(|| rt().unwrap()));
            }
        }
        g.finish();
    }
}

criterion_group!(benches, all);
criterion_main!(benches);
