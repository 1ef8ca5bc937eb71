//! GPU against CPU for every kernel in the registry, on fresh seeded random
//! inputs at odd sizes (1x1, 37x23, 256x256): each kernel's registry line
//! carries its cases and tolerances (`kernels::Entry::parity`). Then whole
//! pipelines (resize of packed images, augmentation plans) against the CPU.

mod common;

use common::{assert_close, gpu, Rng, SIZES};
use gpuimg::kernels::{self, Data, Kernel, Tolerance};
use gpuimg::kernels::{Prelu, ResizeBilinear};
use gpuimg::{Samples, Shape};

#[test]
fn every_kernel_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut failures = Vec::new();
    for entry in kernels::ALL {
        let name = entry.desc.name;
        let mut rng = Rng::for_test(&format!("{name}_matches_cpu")).split_mix();
        let mut cases = 0;
        for (w, h) in SIZES {
            for case in (entry.parity)(&mut rng, w, h) {
                cases += 1;
                let ins = case.refs();
                let want = case.kernel.cpu(&ins).unwrap_or_else(|e| panic!("{name} {}: CPU: {e}", case.what));
                let got = case.kernel.gpu(gpu, &ins).unwrap_or_else(|e| panic!("{name} {}: GPU: {e}", case.what));
                assert_eq!(case.kernel.output(&ins).unwrap(), want.output(), "{name} {}: output()", case.what);
                if let Err(m) = case.tolerance.check(&got, &want) {
                    failures.push(format!("{name} {}: {m}", case.what));
                }
            }
        }
        assert!(cases >= SIZES.len(), "{name}: only {cases} parity cases over {} sizes", SIZES.len());
        eprintln!("{name}: {cases} cases");
    }
    assert!(failures.is_empty(), "{} case(s) differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_bench_case_runs_on_the_cpu() {
    // The bench cases are built from the registry too: each runs and writes what it promises.
    for entry in kernels::ALL {
        let case = (entry.bench)(64, 48).unwrap();
        let ins = case.refs();
        let out = case.kernel.cpu(&ins).unwrap();
        assert_eq!(out.output(), case.kernel.output(&ins).unwrap(), "{}", entry.desc.name);
        assert_eq!(case.kernel.desc().name, entry.desc.name, "bench case of {} runs another kernel", entry.desc.name);
    }
}

#[test]
fn the_parity_check_can_fail() {
    // A GPU result one step off, a wrong shape, a wrong input kind: each is caught.
    let x = Data::Planes(gpuimg::Tensor::from_vec(Shape::new(1, 1, 1, 3), vec![0.5, -1.0, 2.0]).unwrap());
    let a = kernels::contract::constants(vec![0.25]);
    let want = Kernel::cpu(&Prelu, &[&x, &a]).unwrap();
    let Data::Planes(mut t) = want.clone() else { panic!("planes") };
    t.data[1] += 1e-6;
    let off = Data::Planes(t);
    assert!(Tolerance::EXACT.check(&off, &want).unwrap_err().contains("index 1"));
    assert!(Tolerance { abs: 2e-6, rel: 0.0 }.check(&off, &want).is_ok());
    let packed = Data::Packed(Samples::U8(vec![1, 2, 3]));
    assert!(Tolerance::FMA.check(&packed, &want).is_err());
    assert!(Kernel::cpu(&Prelu, &[&packed, &a]).is_err());
    assert!(Tolerance { abs: 1.0, rel: 0.0 }.check(&Data::Packed(Samples::U8(vec![1, 3, 3])), &packed).is_ok());
    assert!(Tolerance { abs: 1.0, rel: 0.0 }.check(&Data::Packed(Samples::U8(vec![1, 4, 3])), &packed).is_err());
    assert!(ResizeBilinear::to_size(0, 3, false).output(&[&x]).is_err());
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
            let img = common::random_image(&mut rng, w as u32, h as u32, channels, bits);
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

/// A kernel named like a model case would shadow it in `gpuimg bench`.
#[test]
fn bench_case_names_are_unique() {
    let names = gpuimg::bench::names();
    let mut seen = std::collections::HashSet::new();
    for n in &names {
        assert!(seen.insert(n), "bench case {n} named twice (a kernel and a model?)");
    }
}
