//! Shared test support: the GPU (required in CI), seeded random inputs, and
//! comparisons whose failure names the worst index and both values.
#![allow(dead_code)]

use std::sync::OnceLock;

use gpuimg::{Gpu, Shape, Tensor};

/// The shared GPU context for GPU tests. In CI (`CI` or `GPUIMG_REQUIRE_GPU`
/// set) a missing adapter fails the test; elsewhere the test is skipped with a
/// loud message.
pub fn gpu() -> Option<&'static Gpu> {
    gpu_arc_ref().as_deref()
}

/// The shared GPU context as a backend for image-level ops.
pub fn gpu_backend() -> Option<gpuimg::Backend> {
    gpu_arc_ref().clone().map(gpuimg::Backend::Gpu)
}

fn gpu_arc_ref() -> &'static Option<std::sync::Arc<Gpu>> {
    static GPU: OnceLock<Option<std::sync::Arc<Gpu>>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new().map(std::sync::Arc::new) {
        Ok(g) => {
            eprintln!("GPU tests run on adapter: {} ({:?})", g.adapter_info().name, g.adapter_info().backend);
            Some(g)
        }
        Err(e) => {
            if gpu_required() {
                panic!("a GPU adapter is required here (CI / GPUIMG_REQUIRE_GPU) but none opened: {e}");
            }
            eprintln!("!!! SKIPPING GPU TEST: no GPU adapter ({e}); set GPUIMG_REQUIRE_GPU=1 to make this fail");
            None
        }
    })
}

/// True when GPU tests must run: in CI (`CI`) or with `GPUIMG_REQUIRE_GPU`.
pub fn gpu_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("GPUIMG_REQUIRE_GPU").is_some()
}

/// The one skip rule for tests that drive the CLI on `--device gpu`: false
/// (with a loud line) only where no adapter exists and none is required.
pub fn cli_gpu(what: &str) -> bool {
    if !gpu_required() && gpuimg::gpu::adapters().is_empty() {
        eprintln!("!!! SKIPPING GPU TEST {what}: no GPU adapter; set GPUIMG_REQUIRE_GPU=1 to make this fail");
        return false;
    }
    true
}

/// A fresh folder under the system's temporary directory for one test.
pub fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gpuimg-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A seeded random image of `w` x `h` with `channels` samples of `bits` bits.
pub fn random_image(rng: &mut Rng, w: u32, h: u32, channels: usize, bits: u32) -> gpuimg::image_io::Image {
    let n = (w * h) as usize * channels;
    let s = if bits == 8 {
        gpuimg::Samples::U8((0..n).map(|_| rng.below(256) as u8).collect())
    } else {
        gpuimg::Samples::U16((0..n).map(|_| rng.below(65536) as u16).collect())
    };
    gpuimg::image_io::Image::new(w, h, channels, s).unwrap()
}

/// The library's SplitMix64 with a per-test seed.
pub struct Rng(gpuimg::rng::SplitMix);

impl Rng {
    /// A generator for a named test: a fixed seed (1) unless
    /// `GPUIMG_TEST_SEED` sets another (`GPUIMG_TEST_SEED=time` draws one from
    /// the clock, to explore); it is printed so a failure can be replayed.
    pub fn for_test(name: &str) -> Rng {
        let base = match std::env::var("GPUIMG_TEST_SEED").ok().as_deref() {
            Some("time") => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
            Some(s) => s.parse().unwrap_or(1),
            None => 1,
        };
        let seed = name.bytes().fold(base, |h, b| h.wrapping_mul(0x100000001b3).wrapping_add(b as u64));
        eprintln!("{name}: GPUIMG_TEST_SEED={base}");
        Rng(gpuimg::rng::SplitMix(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.0.unit()
    }
    /// The library's generator, seeded from this one (for registry cases).
    pub fn split_mix(&mut self) -> gpuimg::rng::SplitMix {
        gpuimg::rng::SplitMix(self.next_u64())
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn vec(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(lo, hi)).collect()
    }
    pub fn tensor(&mut self, shape: Shape, lo: f32, hi: f32) -> Tensor {
        Tensor::from_vec(shape, self.vec(shape.len(), lo, hi)).unwrap()
    }
}

/// The odd sizes every parity test runs at: (width, height).
pub const SIZES: [(usize, usize); 3] = [(1, 1), (37, 23), (256, 256)];

/// Asserts |a - b| <= abs + rel * |b| everywhere; the message names the worst index.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], abs: f32, rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let mut worst: Option<(usize, f32)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let excess = (g - w).abs() - (abs + rel * w.abs());
        if (excess > 0.0 || g.is_nan() != w.is_nan()) && worst.is_none_or(|(_, e)| excess > e) {
            worst = Some((i, excess));
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}: worst mismatch at index {i}: got {} want {} (diff {}, tolerance {} + {} * |want|)",
            got[i],
            want[i],
            (got[i] - want[i]).abs(),
            abs,
            rel
        );
    }
}

/// Asserts integer equality everywhere; the message names the first index.
pub fn assert_exact<T: PartialEq + std::fmt::Debug>(what: &str, got: &[T], want: &[T]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
        panic!("{what}: first mismatch at index {i}: got {:?} want {:?}", got[i], want[i]);
    }
}
