//! GPU against CPU for every kernel, on fresh seeded random inputs at odd sizes
//! (1x1, 37x23, 256x256). Tolerances are stated per kernel.

mod common;

use common::{assert_close, assert_exact, gpu, Rng, SIZES};
use gpuimg::kernels::resize_bilinear::ResizeTarget;
use gpuimg::kernels::unpack_pixels::PixelLayout;
use gpuimg::kernels::*;
use gpuimg::{Samples, Shape};

#[test]
fn conv2d_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::for_test("conv2d_matches_cpu");
    let convs = [
        (2, Conv2d::new(3, 5, 3)),                        // dense, batch of 2
        (1, Conv2d::new(1, 4, 5)),                        // TinyPSSR's first layer shape
        (1, Conv2d::depthwise(6, 3)),                     // depthwise
        (1, Conv2d::pointwise(7, 4)),                     // pointwise
        (1, Conv2d { cin: 4, cout: 6, k: 5, groups: 2 }), // grouped
        (1, Conv2d::new(2, 3, 4)),                        // even kernel: PyTorch 'same' padding
    ];
    for (w, h) in SIZES {
        for (n, conv) in convs {
            let x = rng.tensor(Shape::new(n, conv.cin, h, w), -1.0, 1.0);
            let wt = rng.vec(conv.weight_len(), -0.5, 0.5);
            let b = rng.vec(conv.cout, -0.5, 0.5);
            let want = conv.cpu(&x, &wt, &b).unwrap();
            let got = conv.gpu(gpu, &x, &wt, &b).unwrap();
            assert_close(&format!("conv2d {conv:?} {w}x{h}"), &got.data, &want.data, 1e-4, 1e-4);
        }
    }
}

#[test]
fn activation_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::for_test("activation_matches_cpu");
    for (w, h) in SIZES {
        let x = rng.tensor(Shape::new(1, 3, h, w), -6.0, 6.0);
        for kind in ActivationKind::ALL {
            let op = Activation(kind);
            // tanh/exp are not correctly rounded on GPUs: 2e-6 absolute on values in [-1, 1] and (0, 1).
            assert_close(&format!("{kind:?} {w}x{h}"), &op.gpu(gpu, &x).unwrap().data, &op.cpu(&x).data, 2e-6, 1e-6);
        }
    }
}

#[test]
fn prelu_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::for_test("prelu_matches_cpu");
    for (w, h) in SIZES {
        let x = rng.tensor(Shape::new(2, 5, h, w), -2.0, 2.0);
        let a = rng.vec(5, -0.5, 0.5);
        // One multiply or a copy: bit-exact.
        assert_close(
            &format!("prelu {w}x{h}"),
            &Prelu.gpu(gpu, &x, &a).unwrap().data,
            &Prelu.cpu(&x, &a).unwrap().data,
            0.0,
            0.0,
        );
    }
}

#[test]
fn pixel_shuffle_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::for_test("pixel_shuffle_matches_cpu");
    for (w, h) in SIZES {
        for r in [2, 3] {
            let x = rng.tensor(Shape::new(2, 2 * r * r, h, w), -1.0, 1.0);
            let op = PixelShuffle { r };
            // A permutation: bit-exact.
            assert_close(
                &format!("pixel_shuffle r={r} {w}x{h}"),
                &op.gpu(gpu, &x).unwrap().data,
                &op.cpu(&x).unwrap().data,
                0.0,
                0.0,
            );
        }
    }
}

#[test]
fn pixel_unshuffle_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::for_test("pixel_unshuffle_matches_cpu");
    for (w, h) in SIZES {
        for r in [2, 3] {
            let x = rng.tensor(Shape::new(2, 3, h * r, w * r), -1.0, 1.0);
            let op = PixelUnshuffle { r };
            assert_close(
                &format!("pixel_unshuffle r={r} {w}x{h}"),
                &op.gpu(gpu, &x).unwrap().data,
                &op.cpu(&x).unwrap().data,
                0.0,
                0.0,
            );
        }
    }
}

#[test]
fn resize_bilinear_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::for_test("resize_bilinear_matches_cpu");
    for (w, h) in SIZES {
        let x = rng.tensor(Shape::new(1, 3, h, w), 0.0, 1.0);
        let ops = [
            ResizeBilinear::to_size(2 * h + 1, 3 * w + 2, false),
            ResizeBilinear::to_size(2 * h + 1, 3 * w + 2, true),
            ResizeBilinear::to_size(h.div_ceil(3), w.div_ceil(2), false),
            ResizeBilinear::by_factor(1.0 / 12.0, false), // Zero-DCE++ downscale
            ResizeBilinear { target: ResizeTarget::Factor { h: 1.5, w: 0.75 }, align_corners: true },
            ResizeBilinear::to_size(h, w, false), // identity
        ];
        for op in ops {
            let Ok(shape) = op.out_shape(x.shape) else { continue }; // 1/12 of a 1x1 image is empty
            let got = op.gpu(gpu, &x).unwrap();
            assert_eq!(got.shape, shape);
            assert_close(&format!("{op:?} {w}x{h}"), &got.data, &op.cpu(&x).unwrap().data, FMA_TOL, 0.0);
        }
    }
}

/// Tolerance of the kernels whose arithmetic a hardware compiler may contract
/// into fused multiply-adds (the CPU twins do not): NVIDIA's does, and the
/// source coordinate `scale * (dst + 0.5) - 0.5` then differs by one ulp (3e-5
/// at 500 pixels), which moves a bilinear weight by as much; the Zero-DCE
/// curve's eight iterations of `x + r (x^2 - x)` gather a few ulps. Measured on
/// an H200: up to 7.1e-6 (lavapipe: within 2e-6). A 16-bit level is 1.5e-5.
const FMA_TOL: f32 = 1e-5;

#[test]
fn zero_dce_curve_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::for_test("zero_dce_curve_matches_cpu");
    for (w, h) in SIZES {
        for per_iteration in [true, false] {
            let op = ZeroDceCurve { iterations: 8, per_iteration };
            let x = rng.tensor(Shape::new(2, 3, h, w), 0.0, 1.0);
            let sets = if per_iteration { 8 } else { 1 };
            let r = rng.tensor(Shape::new(2, 3 * sets, h, w), -1.0, 1.0);
            assert_close(
                &format!("{op:?} {w}x{h}"),
                &op.gpu(gpu, &x, &r).unwrap().data,
                &op.cpu(&x, &r).unwrap().data,
                FMA_TOL,
                0.0,
            );
        }
    }
}

#[test]
fn zero_dce_enhance_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::for_test("zero_dce_enhance_matches_cpu");
    for (w, h) in SIZES {
        for (per_iteration, channels) in [(true, 3), (false, 4)] {
            let op = ZeroDceEnhance { iterations: 8, per_iteration, colour: 3 };
            let x = rng.tensor(Shape::new(2, channels, h, w), 0.0, 1.0);
            let sets = if per_iteration { 8 } else { 1 };
            // Low-resolution maps (about 1/12 of the image, at least 1x1), and maps at full size.
            for (mh, mw) in [(h.div_ceil(12), w.div_ceil(12)), (h, w)] {
                let maps = rng.tensor(Shape::new(2, 3 * sets, mh, mw), -1.0, 1.0);
                assert_close(
                    &format!("{op:?} {w}x{h} maps {mw}x{mh}"),
                    &op.gpu(gpu, &x, &maps).unwrap().data,
                    &op.cpu(&x, &maps).unwrap().data,
                    FMA_TOL,
                    0.0,
                );
            }
        }
    }
}

#[test]
fn zero_dce_enhance_with_full_size_maps_is_the_curve() {
    let mut rng = Rng::for_test("zero_dce_enhance_is_curve");
    for per_iteration in [true, false] {
        let x = rng.tensor(Shape::new(1, 3, 23, 37), 0.0, 1.0);
        let maps = rng.tensor(Shape::new(1, if per_iteration { 24 } else { 3 }, 23, 37), -1.0, 1.0);
        let fused = ZeroDceEnhance { iterations: 8, per_iteration, colour: 3 }.cpu(&x, &maps).unwrap();
        let curve = ZeroDceCurve { iterations: 8, per_iteration }.cpu(&x, &maps).unwrap();
        assert_exact(&format!("per_iteration {per_iteration}"), &fused.data, &curve.data);
    }
}

fn random_samples(rng: &mut Rng, l: PixelLayout) -> Samples {
    let n = l.samples();
    if l.bits == 8 {
        Samples::U8((0..n).map(|_| rng.below(256) as u8).collect())
    } else {
        Samples::U16((0..n).map(|_| rng.below(65536) as u16).collect())
    }
}

#[test]
fn unpack_pixels_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::for_test("unpack_pixels_matches_cpu");
    for (w, h) in SIZES {
        for channels in 1..=4 {
            for bits in [8, 16] {
                let l = PixelLayout { n: 2, height: h, width: w, channels, bits };
                let s = random_samples(&mut rng, l);
                let op = UnpackPixels(l);
                // One division of an integer: within 1e-7 of the correctly rounded value.
                assert_close(
                    &format!("unpack {l:?}"),
                    &op.gpu(gpu, &s).unwrap().data,
                    &op.cpu(&s).unwrap().data,
                    1e-7,
                    0.0,
                );
            }
        }
    }
}

#[test]
fn pack_pixels_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::for_test("pack_pixels_matches_cpu");
    for (w, h) in SIZES {
        for channels in 1..=4 {
            for bits in [8, 16] {
                let l = PixelLayout { n: 2, height: h, width: w, channels, bits };
                // Past both ends of [0, 1] so clamping is exercised.
                let x = rng.tensor(l.shape(), -0.1, 1.1);
                let op = PackPixels(l);
                // Integer output: bit-exact. (A value within an ulp of a rounding
                // tie could round either way with FMA; random inputs essentially never land there.)
                let (got, want) = (op.gpu(gpu, &x).unwrap(), op.cpu(&x).unwrap());
                match (got, want) {
                    (Samples::U8(g), Samples::U8(wt)) => assert_exact(&format!("pack {l:?}"), &g, &wt),
                    (Samples::U16(g), Samples::U16(wt)) => assert_exact(&format!("pack {l:?}"), &g, &wt),
                    _ => panic!("pack {l:?}: bit depth changed"),
                }
            }
        }
    }
}

#[test]
fn resize_image_pipeline_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::for_test("resize_image_pipeline_matches_cpu");
    let gpu_backend = gpuimg::Backend::Gpu(std::sync::Arc::new(gpuimg::Gpu::from_existing(
        gpu.device().clone(),
        gpu.queue().clone(),
    )));
    for (w, h) in SIZES {
        for (channels, bits) in [(3, 8), (4, 16), (1, 8)] {
            let l = PixelLayout { n: 1, height: h, width: w, channels, bits };
            let img = gpuimg::image_io::Image::new(w as u32, h as u32, channels, random_samples(&mut rng, l)).unwrap();
            let op = ResizeBilinear::to_size(h * 2 + 1, w * 2 + 1, false);
            let g = gpuimg::ops::resize_image(&gpu_backend, &img, &op).unwrap();
            let c = gpuimg::ops::resize_image(&gpuimg::Backend::Cpu, &img, &op).unwrap();
            assert_eq!((g.width, g.height, g.channels), (c.width, c.height, c.channels));
            let (gs, cs): (Vec<i32>, Vec<i32>) = match (&g.samples, &c.samples) {
                (Samples::U8(a), Samples::U8(b)) => {
                    (a.iter().map(|&v| v as i32).collect(), b.iter().map(|&v| v as i32).collect())
                }
                (Samples::U16(a), Samples::U16(b)) => {
                    (a.iter().map(|&v| v as i32).collect(), b.iter().map(|&v| v as i32).collect())
                }
                _ => panic!("bit depth changed"),
            };
            // Float resize then rounding: at most one step apart.
            let worst = gs.iter().zip(&cs).map(|(a, b)| (a - b).abs()).max().unwrap();
            assert!(worst <= 1, "{channels}ch {bits}bit {w}x{h}: GPU and CPU differ by {worst} steps");
        }
    }
}

#[test]
fn augment_matches_cpu() {
    use gpuimg::augment::{Plan, Spec};
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::for_test("augment_matches_cpu");
    // Each op alone (one configuration of the kernel each), then a fused chain.
    let ops = [
        "hflip:p=1",
        "vflip:p=1",
        "rot90:k=1",
        "rot90:k=3",
        "rotate:angle=17.5",
        "rotate:angle=-33,border=reflect",
        "rotate:angle=50,border=edge",
        "crop:w=11,h=7",
        "center-crop:w=13,h=9",
        "random-resized-crop:size=17",
        "resize:w=29,h=13,method=nearest",
        "resize:w=9,h=7",
        "resize:w=9,h=7,method=bicubic",
        "resize:w=61,h=47,method=bicubic",
        "pad:all=3,mode=reflect",
        "pad:left=2,top=5,mode=edge",
        "pad:right=4,bottom=1,fill=0.2/0.4/0.6",
        "brightness:f=1.3",
        "contrast:f=0.7",
        "saturation:f=1.6",
        "hue:f=0.2",
        "grey",
        "gamma:g=0.6",
        "noise:sigma=0.05",
        "hflip:p=1;rotate:angle=12;jitter:brightness=0.3,contrast=0.3,saturation=0.3,hue=0.1;crop:w=15,h=12;resize:w=31,h=23;gamma:g=1.3",
    ];
    for (w, h) in [(37usize, 23usize), (20, 31)] {
        for c in [3, 4] {
            let x = rng.tensor(Shape::new(1, c, h, w), 0.0, 1.0);
            for spec in ops {
                let spec: Spec = spec.parse().unwrap();
                let d = spec.draw(rng.next_u64(), 0, w, h).unwrap();
                for plan in [Plan::fused(&d, w, h).unwrap(), Plan::op_by_op(&d, w, h).unwrap()] {
                    let want = plan.cpu(&x).unwrap();
                    let got = plan.gpu(gpu, &x).unwrap();
                    // Transcendentals (cos/log for noise, pow for gamma) are not correctly rounded on GPUs.
                    assert_close(&format!("augment {d} on {w}x{h}x{c}"), &got.data, &want.data, 2e-5, 2e-5);
                }
            }
        }
    }
}
