//! TinyPSSR: weights by name, parameter counts, and the three paths agreeing.

mod common;

use common::{assert_close, gpu, Rng};
use gpuimg::models::tinypssr::{Stage, TinyPssr};
use gpuimg::weights::Weights;
use gpuimg::{Backend, Shape};

fn random_model(rng: &mut Rng, stages: usize) -> TinyPssr {
    let mut u = || rng.uniform(0.0, 1.0);
    TinyPssr { stages: (0..stages).map(|_| Stage::init(&mut u)).collect() }
}

#[test]
fn parameter_counts_match_the_paper() {
    let mut rng = Rng::for_test("params");
    assert_eq!(random_model(&mut rng, 1).parameter_count(), 1356);
    let x4 = random_model(&mut rng, 2).parameter_count();
    assert!(x4 <= 3000 && x4 == 2712, "x4 has {x4}");
}

#[test]
fn weights_round_trip_and_bad_weights_are_named() {
    let mut rng = Rng::for_test("weights");
    let m = random_model(&mut rng, 2);
    let bytes = m.to_weights().to_bytes().unwrap();
    let back = TinyPssr::from_weights(&Weights::from_bytes(&bytes, "x.safetensors".as_ref()).unwrap()).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.scale(), 4);
    let mut w = m.to_weights();
    w.tensors.remove("stages.1.prelu2.weight");
    let e = TinyPssr::from_weights(&w).unwrap_err().to_string();
    assert!(e.contains("stages.1.prelu2.weight"), "{e}");
    let mut w = m.to_weights();
    w.insert("stages.0.conv3.weight", &[8, 4, 3, 3], vec![0.0; 288]);
    let e = TinyPssr::from_weights(&w).unwrap_err().to_string();
    assert!(e.contains("stages.0.conv3.weight") && e.contains("[8, 4, 5, 5]"), "{e}");
    assert!(Weights::from_bytes(b"garbage", "g.safetensors".as_ref())
        .unwrap_err()
        .to_string()
        .contains("g.safetensors"));
    let e = TinyPssr::stages_for(3).unwrap_err().to_string();
    assert!(e.contains("'3'") && e.contains("2, 4"), "{e}");
}

#[test]
fn tinypssr_gpu_layers_match_cpu() {
    let Some(gpu) = gpu() else { return };
    let gpu = Backend::Gpu(std::sync::Arc::new(gpuimg::Gpu::from_existing(gpu.device().clone(), gpu.queue().clone())));
    let mut rng = Rng::for_test("tinypssr_gpu_layers_match_cpu");
    for stages in [1, 2] {
        let m = random_model(&mut rng, stages);
        for (w, h) in [(1, 1), (37, 23)] {
            let x = rng.tensor(Shape::new(3, 1, h, w), 0.0, 1.0);
            let want = gpuimg::ops::run_tinypssr(&Backend::Cpu, &m, &x).unwrap();
            let got = gpuimg::ops::run_tinypssr(&gpu, &m, &x).unwrap();
            assert_close(&format!("x{} {w}x{h}", m.scale()), &got.data, &want.data, 1e-4, 1e-4);
        }
    }
}

#[test]
fn bicubic_initialisation_is_matlab_bicubic_inside_the_border() {
    let mut rng = Rng::for_test("bicubic_init");
    let mut u = || rng.uniform(0.0, 1.0);
    let m = TinyPssr { stages: vec![Stage::init_bicubic(&mut u)] };
    let x = rng.tensor(Shape::new(1, 1, 20, 24), 0.0, 1.0);
    let net = m.forward_cpu(&x).unwrap();
    let bic = gpuimg::resample::upscale(&x, 2);
    // Only the free channels (through conv4's small weights) and the zero
    // padding (MATLAB mirrors) separate the two; compare away from the border.
    let mut worst = 0.0f32;
    for i in 8..32 {
        for j in 8..40 {
            worst = worst.max((net.data[i * 48 + j] - bic.data[i * 48 + j]).abs());
        }
    }
    assert!(worst < 0.15, "initial model is not close to bicubic: {worst}");
}

fn random_image(rng: &mut Rng, w: usize, h: usize, channels: usize, bits: u32) -> gpuimg::image_io::Image {
    let n = w * h * channels;
    let s = if bits == 8 {
        gpuimg::Samples::U8((0..n).map(|_| rng.below(256) as u8).collect())
    } else {
        gpuimg::Samples::U16((0..n).map(|_| rng.below(65536) as u16).collect())
    };
    gpuimg::image_io::Image::new(w as u32, h as u32, channels, s).unwrap()
}

fn samples_i64(s: &gpuimg::Samples) -> Vec<i64> {
    match s {
        gpuimg::Samples::U8(v) => v.iter().map(|&x| x as i64).collect(),
        gpuimg::Samples::U16(v) => v.iter().map(|&x| x as i64).collect(),
    }
}

#[test]
fn tinypssr_fused_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::for_test("tinypssr_fused_matches_cpu");
    for stages in [1, 2] {
        let mut u = || rng.uniform(0.0, 1.0);
        // Bicubic start plus random free channels: realistic ranges, every weight non-trivial.
        let m = TinyPssr { stages: (0..stages).map(|_| Stage::init_bicubic(&mut u)).collect() };
        for (w, h) in [(1, 1), (37, 23), (256, 256)] {
            if stages == 2 && w == 256 {
                continue; // 1024x1024 output on the software adapter: covered by 37x23
            }
            for (channels, bits) in [(3, 8), (4, 16), (1, 8), (2, 8)] {
                let img = random_image(&mut rng, w, h, channels, bits);
                let want = gpuimg::ops::super_resolve_planar(&Backend::Cpu, &m, &img).unwrap();
                let got = gpuimg::ops::super_resolve_fused(gpu, &m, &img).unwrap();
                assert_eq!((got.width, got.height, got.channels), (want.width, want.height, want.channels));
                // The multi-strip branch (each strip with its halo) gives the same bytes.
                if h > 1 {
                    let strips = gpuimg::ops::super_resolve_fused_strips(gpu, &m, &img, 5).unwrap();
                    assert!(strips == got, "x{} {w}x{h} {channels}ch {bits}bit: 5-row strips differ", m.scale());
                }
                let (g, c) = (samples_i64(&got.samples), samples_i64(&want.samples));
                // Same arithmetic in another order, then rounding: one step at most.
                let worst = g.iter().zip(&c).map(|(a, b)| (a - b).abs()).max().unwrap();
                assert!(worst <= 1, "x{} {w}x{h} {channels}ch {bits}bit: fused differs by {worst} steps", m.scale());
            }
        }
    }
}

#[test]
fn strips_equal_the_whole_image() {
    let mut rng = Rng::for_test("strips");
    for stages in [1, 2] {
        let mut u = || rng.uniform(0.0, 1.0);
        let m = TinyPssr { stages: (0..stages).map(|_| Stage::init_bicubic(&mut u)).collect() };
        let x = rng.tensor(Shape::new(2, 1, 61, 19), 0.0, 1.0);
        let whole = m.forward_cpu(&x).unwrap();
        // A bound that forces 8-row strips.
        let strips = gpuimg::ops::run_tinypssr_tiled(&Backend::Cpu, &m, &x, 1).unwrap();
        assert_eq!(strips, whole, "x{}: strips differ from the untiled network", m.scale());
    }
}

#[test]
fn fast_cpu_path_matches_the_layer_path() {
    let mut rng = Rng::for_test("fast_cpu");
    for stages in [1, 2] {
        let mut u = || rng.uniform(0.0, 1.0);
        let m = TinyPssr { stages: (0..stages).map(|_| Stage::init_bicubic(&mut u)).collect() };
        // 301 wide: many of the strips' 8-pixel blocks, the last partial.
        for (w, h) in [(1, 1), (37, 23), (256, 256), (9, 40), (301, 19)] {
            if stages == 2 && w == 256 {
                continue;
            }
            let x = rng.tensor(Shape::new(3, 1, h, w), 0.0, 1.0);
            let want = m.forward_cpu(&x).unwrap();
            let got = m.forward_fast(&x).unwrap();
            assert_eq!(got.shape, want.shape);
            assert_close(&format!("fast x{} {w}x{h}", m.scale()), &got.data, &want.data, 1e-5, 1e-5);
        }
    }
}

#[test]
fn bundled_weights_beat_bicubic_on_the_sample() {
    // Guards against shipping bad weights: the sample photo is not in the training data.
    let hr =
        gpuimg::train::sr::load_rgb(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/chelsea.png")))
            .unwrap();
    for scale in [2, 4] {
        let m = TinyPssr::bundled(scale).unwrap();
        assert_eq!(m.scale(), scale);
        let (h, w) = (hr.shape.h / scale * scale, hr.shape.w / scale * scale);
        let hr = gpuimg::ops::crop_rows(&hr, 0, h);
        let hr = gpuimg::Tensor {
            shape: Shape::new(1, 3, h, w),
            data: (0..3 * h).flat_map(|r| hr.data[r * hr.shape.w..r * hr.shape.w + w].to_vec()).collect(),
        };
        let mut lr = gpuimg::resample::downscale(&hr, scale);
        gpuimg::resample::quantise_u8(&mut lr);
        let mut bic = gpuimg::resample::upscale(&lr, scale);
        gpuimg::resample::quantise_u8(&mut bic);
        let mut sr = gpuimg::eval::upscale_rgb(&m, &Backend::Cpu, &lr).unwrap();
        gpuimg::resample::quantise_u8(&mut sr);
        let (ps, pb) = (gpuimg::metrics::psnr_y(&sr, &hr, scale), gpuimg::metrics::psnr_y(&bic, &hr, scale));
        assert!(ps > pb + 0.3, "x{scale}: model {ps:.2} dB vs bicubic {pb:.2} dB");
    }
}
