//! The CPU path at every feature level the machine supports gives the same
//! bits (the AVX2+FMA builds keep the summation order and contract
//! nothing), except the convolutions, which use FMA there and agree to float
//! accuracy; so the baseline path is tested on AVX2 machines too. Its own test binary:
//! the level is process-wide.

mod common;

use common::Rng;
use gpuimg::cpu::{self, Level};
use gpuimg::kernels::{Conv2d, ZeroDceEnhance};
use gpuimg::models::tinypssr::{Stage, TinyPssr};
use gpuimg::Shape;

#[test]
fn every_level_gives_the_same_bits() {
    let levels = cpu::supported();
    eprintln!("levels: {levels:?} (detected {:?})", cpu::detected());
    assert_eq!(levels[0], Level::Baseline);
    let mut rng = Rng::for_test("cpu_levels");
    // Per level, each case: its name, the tolerance it has at the AVX2
    // level (None: the same bits), and its output.
    type Case = (String, Option<f32>, Vec<f32>);
    let mut results: Vec<Vec<Case>> = Vec::new();
    let m = {
        let mut u = || rng.uniform(0.0, 1.0);
        TinyPssr { stages: (0..2).map(|_| Stage::init_bicubic(&mut u)).collect() }
    };
    let x_sr = rng.tensor(Shape::new(2, 1, 19, 301), 0.0, 1.0);
    let convs: Vec<_> = [(3usize, 5usize, 4usize, 1usize), (8, 8, 3, 8), (4, 6, 1, 1), (3, 3, 9, 1), (2, 4, 4, 2)]
        .into_iter()
        .map(|(cin, cout, k, groups)| {
            let conv = Conv2d { cin, cout, k, groups };
            let x = rng.tensor(Shape::new(1, cin, 23, 97), -1.0, 1.0);
            let w = rng.vec(cout * (cin / groups) * k * k, -0.5, 0.5);
            let b = rng.vec(cout, -0.1, 0.1);
            (conv, x, w, b)
        })
        .collect();
    // The Zero-DCE curve: maps at 1/12 (shared and per iteration) and at full size.
    let x_dce = rng.tensor(Shape::new(1, 4, 29, 53), 0.0, 1.0);
    let dce: Vec<_> = [(false, 3, 5), (true, 3, 5), (false, 29, 53), (true, 29, 53)]
        .into_iter()
        .map(|(per_iteration, mh, mw)| {
            let op = ZeroDceEnhance::rgb(per_iteration);
            (op, rng.tensor(Shape::new(1, 3 * op.sets(), mh, mw), -1.0, 1.0))
        })
        .collect();
    // The fused CPU resize and enhance (packed rows in and out, AVX2 builds).
    let dark = {
        let s: Vec<u8> = (0..61 * 47 * 3).map(|_| (rng.uniform(0.0, 96.0)) as u8).collect();
        gpuimg::image_io::Image::new(61, 47, 3, gpuimg::Samples::U8(s)).unwrap()
    };
    let zdce = gpuimg::models::zero_dce::ZeroDce::bundled(gpuimg::models::zero_dce::Arch::ZeroDcePlus).unwrap();
    for &l in &levels {
        cpu::set_level(l).unwrap();
        assert_eq!(cpu::level(), l);
        // The convolutions (conv2d's tiles, TinyPSSR's fused stage, and so
        // the Zero-DCE network under enhance) use FMA in the AVX2 build
        // (issue #15's micro-kernels): one rounding per multiply-add instead
        // of two, so they agree with the baseline to float accuracy (and the
        // 8-bit enhance output to one level), not bit for bit. Everything
        // else: same bits.
        let mut r: Vec<Case> = convs
            .iter()
            .enumerate()
            .map(|(i, (c, x, w, b))| (format!("conv {i}"), Some(1e-5), c.cpu(x, w, b).unwrap().data))
            .collect();
        r.push(("tinypssr".into(), Some(2e-5), m.forward_fast(&x_sr).unwrap().data));
        r.extend(
            dce.iter()
                .enumerate()
                .map(|(i, (op, maps))| (format!("curve {i}"), None, op.cpu(&x_dce, maps).unwrap().data)),
        );
        let rs = gpuimg::kernels::ResizeBilinear::by_factor(0.37, false);
        let outl = gpuimg::ops::resize_layout(dark.layout(), &rs).unwrap();
        let gpuimg::Samples::U8(q) = gpuimg::ops::resize_packed_cpu(&dark, &rs, outl).unwrap() else { unreachable!() };
        r.push(("resize".into(), None, q.iter().map(|&v| v as f32).collect()));
        let e = gpuimg::ops::enhance_packed_cpu(&zdce, &dark, 4, 8).unwrap();
        let gpuimg::Samples::U8(e) = e.samples else { unreachable!() };
        r.push(("enhance".into(), Some(1.0), e.iter().map(|&v| v as f32).collect()));
        // The packed augment path's rotating tiles (seed-004 chain shape,
        // wider than one tile of columns).
        let (aw, ah) = (161, 47);
        let d: gpuimg::augment::Spec = gpuimg::bench::seed004_chain(aw, ah).parse().unwrap();
        let plan = gpuimg::augment::Plan::fused(&d, aw, ah).unwrap();
        let wide = gpuimg::bench::image(aw, ah);
        let gpuimg::Samples::U8(a) = plan.run_image(&gpuimg::Backend::Cpu, &wide).unwrap().samples else {
            unreachable!()
        };
        r.push(("seed-004 chain".into(), None, a.iter().map(|&v| v as f32).collect()));
        // The packed augment path's separable passes: an antialiased
        // downscale (summed along y first), a flipped bicubic upscale (along
        // x first), 8-bit RGB and 16-bit RGBA, odd sizes; and its colour rows.
        let rgba16 = {
            let s: Vec<u16> = (0..53 * 31 * 4).map(|i| ((i * 7919) % 65536) as u16).collect();
            gpuimg::image_io::Image::new(53, 31, 4, gpuimg::Samples::U16(s)).unwrap()
        };
        let rgba8 = {
            let s: Vec<u8> = (0..67 * 45 * 4).map(|i| ((i * 7919 + i / 67) % 256) as u8).collect();
            gpuimg::image_io::Image::new(67, 45, 4, gpuimg::Samples::U8(s)).unwrap()
        };
        for (chain, img) in [
            // Rotating passes on 8-bit samples (eight pixels to a register
            // in the AVX2 build): fills, reflected and clamped edges, both
            // filters, 3 and 4 channels, groups past the tap limit (the
            // 23x bilinear downscale), the bottom-right pixel.
            ("rotate:angle=23,border=constant,fill=0.5;saturation:f=0.5", &wide),
            ("rotate:angle=-40,border=reflect;resize:w=40,h=13,method=bicubic", &wide),
            ("rotate:angle=3;resize:w=7,h=5", &wide),
            ("hflip:p=1;rotate:angle=7,border=edge;resize:w=29,h=21;gamma:g=0.8", &rgba8),
            ("rotate:angle=12;resize:w=15,h=9,method=bicubic;hue:f=0.1", &rgba8),
            ("rotate:angle=-5,border=edge;contrast:f=1.2", &rgba8),
            ("resize:w=37,h=11;contrast:f=0.9", &wide),
            ("hflip:p=1;pad:left=3;resize:w=119,h=70,method=bicubic", &rgba16),
            ("resize:w=20,h=13", &rgba16),
            // A colour-only pass of affine stages (8-bit RGB: eight pixels
            // to a register in the AVX2 build).
            ("brightness:f=1.1;contrast:f=0.9;saturation:f=1.2;hue:f=0.03", &wide),
        ] {
            let (iw, ih) = (img.width as usize, img.height as usize);
            let plan = gpuimg::augment::Plan::fused(&chain.parse().unwrap(), iw, ih).unwrap();
            let out = plan.run_image(&gpuimg::Backend::Cpu, img).unwrap();
            let v: Vec<f32> = match out.samples {
                gpuimg::Samples::U8(v) => v.iter().map(|&v| v as f32).collect(),
                gpuimg::Samples::U16(v) => v.iter().map(|&v| v as f32).collect(),
            };
            r.push((chain.into(), None, v));
        }
        results.push(r);
    }
    for (l, r) in levels.iter().zip(&results).skip(1) {
        assert_eq!(r.len(), results[0].len());
        for ((name, tolerance, a), (_, _, b)) in r.iter().zip(&results[0]) {
            match tolerance {
                Some(tol) if *l == Level::Avx2Fma => {
                    assert_eq!(a.len(), b.len());
                    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
                    assert!(worst <= *tol, "{l:?}: {name} differs from the baseline by {worst} (> {tol})");
                    eprintln!("{l:?}: {name} within {worst:e} of the baseline");
                }
                _ => assert!(a == b, "{l:?} differs from the baseline in {name}"),
            }
        }
    }
    // A level the machine lacks is refused; GPUIMG_CPU picks one for `gpuimg info`.
    if cpu::detected() == Level::Baseline {
        assert!(cpu::set_level(Level::Avx2Fma).is_err());
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_gpuimg"))
        .arg("info")
        .env("GPUIMG_CPU", "baseline")
        .env("GPUIMG_DEVICE", "cpu")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("level baseline"), "{}", String::from_utf8_lossy(&o.stdout));
}
