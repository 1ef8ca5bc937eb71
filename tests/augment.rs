//! Augmentation: spec parsing, seeded draws, the fused planner against the
//! op-by-op reference, GPU against CPU on whole images, replayed parameters,
//! and the training-loop Augmenter.

mod common;

use common::{gpu_backend, Rng};
use gpuimg::augment::{Augmenter, Plan, Spec};
use gpuimg::image_io::{self, Image};
use gpuimg::kernels::UnpackPixels;
use gpuimg::{Backend, Samples, Shape, Tensor};

fn chelsea() -> Image {
    image_io::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/chelsea.png")).unwrap()
}

fn random_image(rng: &mut Rng, w: u32, h: u32, c: usize) -> Image {
    Image::new(w, h, c, Samples::U8((0..(w * h) as usize * c).map(|_| rng.below(256) as u8).collect())).unwrap()
}

/// Asserts two images are equal without printing their pixels.
fn same(a: &Image, b: &Image, what: &str) {
    assert_eq!((a.width, a.height, a.channels), (b.width, b.height, b.channels), "{what}: sizes");
    assert!(a == b, "{what}: pixels differ (max {} levels)", max_level_diff(a, b));
}

fn max_level_diff(a: &Image, b: &Image) -> i32 {
    assert_eq!((a.width, a.height, a.channels), (b.width, b.height, b.channels));
    match (&a.samples, &b.samples) {
        (Samples::U8(x), Samples::U8(y)) => x.iter().zip(y).map(|(p, q)| (*p as i32 - *q as i32).abs()).max().unwrap(),
        _ => panic!("8-bit expected"),
    }
}

/// Mean and max absolute difference in levels.
fn diff_stats(a: &Image, b: &Image) -> (f64, i32) {
    let (Samples::U8(x), Samples::U8(y)) = (&a.samples, &b.samples) else { panic!() };
    let sum: i64 = x.iter().zip(y).map(|(p, q)| (*p as i64 - *q as i64).abs()).sum();
    (sum as f64 / x.len() as f64, max_level_diff(a, b))
}

const SEED004: &str = "hflip:p=0.5;rotate:deg=15;jitter:brightness=0.2,contrast=0.2,saturation=0.2,hue=0.05;crop:w=256,h=192;resize:w=128,h=96";

#[test]
fn specs_parse_and_bad_ones_name_the_valid_choices() {
    let s: Spec = "hflip:p=0.5;rotate:deg=15;jitter:brightness=0.2,contrast=0.2;crop:w=512,h=512;random-resized-crop:size=224;resize:w=224,h=224;normalize".parse().unwrap();
    assert_eq!(s.0.len(), 7);
    assert_eq!(s.to_string().parse::<Spec>().unwrap(), s, "display round-trips");
    for (bad, want) in [
        ("flip", "unknown op 'flip' (valid: hflip, vflip"),
        ("hflip:q=1", "hflip: unknown key 'q' (valid: p)"),
        ("rotate:deg=x", "rotate: deg=x is not a number"),
        ("normalize;hflip", "normalize must be the last op"),
        ("crop:w=10", "crop: give w=W,h=H"),
        ("resize:w=10,method=lanczos", "method=lanczos (valid: nearest, bilinear, bicubic)"),
        ("hflip:p=2", "p=2: a probability is from 0 to 1"),
        ("pad:all=3,mode=wrap", "mode=wrap (valid: constant, edge, reflect)"),
        ("gamma:g=2-1", "g=2-1: give a number or a range lo-hi"),
        ("", "the op list is empty"),
    ] {
        let e = bad.parse::<Spec>().unwrap_err().to_string();
        assert!(e.contains(want), "{bad}: {e}");
    }
    let e = "crop:w=500,h=10".parse::<Spec>().unwrap().draw(1, 0, 451, 300).unwrap_err().to_string();
    assert!(e.contains("500x10 is larger than the 451x300 image"), "{e}");
}

#[test]
fn draws_follow_the_seed_and_the_ranges() {
    let s: Spec = "hflip;rotate:deg=20;random-resized-crop:size=64;gamma:g=0.5-2".parse().unwrap();
    let a = s.draw(42, 7, 451, 300).unwrap();
    assert_eq!(a, s.draw(42, 7, 451, 300).unwrap(), "same seed and sample, same draw");
    assert_ne!(a, s.draw(43, 7, 451, 300).unwrap());
    assert_ne!(a, s.draw(42, 8, 451, 300).unwrap());
    let mut flips = 0;
    for k in 0..2000 {
        let d = s.draw(5, k, 451, 300).unwrap();
        let get = |op: &str, key: &str| -> f64 {
            let o = d.0.iter().find(|o| o.name == op).unwrap();
            o.keys.iter().find(|(k, _)| k == key).unwrap().1.parse().unwrap()
        };
        flips += get("hflip", "p") as usize;
        let angle = get("rotate", "angle");
        assert!((-20.0..=20.0).contains(&angle));
        let g = get("gamma", "g");
        assert!((0.5..=2.0).contains(&g));
        let (fx, fw, fy, fh) = (get("crop", "fx"), get("crop", "fw"), get("crop", "fy"), get("crop", "fh"));
        assert!(fx >= 0.0 && fx + fw <= 1.0 + 1e-6 && fy >= 0.0 && fy + fh <= 1.0 + 1e-6, "{d}");
        // torchvision's scale range 0.08-1 of the area (rounding aside).
        assert!(fw * fh > 0.07 && fw * fh <= 1.0 + 1e-6, "{d}");
    }
    assert!((900..1100).contains(&flips), "{flips} flips in 2000 at p = 0.5");
}

#[test]
fn geometry_conventions() {
    let mut rng = Rng::for_test("geometry_conventions");
    let img = random_image(&mut rng, 31, 31, 3);
    let run = |s: &str| {
        let d: Spec = s.parse().unwrap();
        Plan::fused(&d, 31, 31).unwrap().run_image(&Backend::Cpu, &img).unwrap()
    };
    same(&run("hflip:p=1;hflip:p=1"), &img, "two flips are the identity");
    same(&run("rot90:k=1;rot90:k=3"), &img, "rot90 1 + 3");
    same(&run("rotate:angle=90"), &run("rot90:k=1"), "positive angles turn counter-clockwise, like rot90");
    same(&run("pad:all=4;crop:x=4,y=4,w=31,h=31"), &img, "pad then crop back");
    // rot90 k=1 moves the top-right pixel to the top-left.
    let r = run("rot90:k=1");
    let Samples::U8(a) = &img.samples else { panic!() };
    let Samples::U8(b) = &r.samples else { panic!() };
    assert_eq!(&b[0..3], &a[30 * 3..31 * 3]);
}

#[test]
fn the_fused_plan_matches_the_op_by_op_reference() {
    let img = chelsea();
    let (w, h) = (img.width as usize, img.height as usize);
    let mut rng = Rng::for_test("the_fused_plan_matches_the_op_by_op_reference");
    // Ops that only move pixels: exactly equal, in one pass.
    let exact: Spec = "hflip:p=1;rot90:k=1;pad:all=5,mode=reflect;crop:w=200,h=150;vflip:p=1;pad:left=3,fill=0.5;brightness:f=1.2;contrast:f=0.8;grey".parse().unwrap();
    let d = exact.draw(rng.next_u64(), 0, w, h).unwrap();
    let fused = Plan::fused(&d, w, h).unwrap();
    assert_eq!(fused.passes.len(), 1, "one pass");
    assert_eq!(Plan::op_by_op(&d, w, h).unwrap().passes.len(), 9);
    let a = fused.run_image(&Backend::Cpu, &img).unwrap();
    let b = Plan::op_by_op(&d, w, h).unwrap().run_image(&Backend::Cpu, &img).unwrap();
    assert!(max_level_diff(&a, &b) <= 1, "pixel moves and linear colour ops: within rounding");
    // The seed-004 chain and others with resampling: one interpolation
    // instead of several, so within a stated tolerance on a photo: mean
    // difference under 1.5 levels, and few pixels far apart (rotation edges).
    for chain in [
        SEED004,
        "rotate:deg=30,border=reflect;resize:w=200,h=133;gamma:g=0.8-1.2;noise:sigma=0.02",
        "random-resized-crop:size=96;hflip;jitter:saturation=0.5,hue=0.1",
    ] {
        let spec: Spec = chain.parse().unwrap();
        for k in 0..3 {
            let d = spec.draw(rng.next_u64(), k, w, h).unwrap();
            let fused = Plan::fused(&d, w, h).unwrap();
            let reference = Plan::op_by_op(&d, w, h).unwrap();
            assert!(fused.passes.len() < reference.passes.len(), "{d}: {} passes", fused.passes.len());
            let a = fused.run_image(&Backend::Cpu, &img).unwrap();
            let b = reference.run_image(&Backend::Cpu, &img).unwrap();
            let (mean, max) = diff_stats(&a, &b);
            eprintln!("fused vs op by op: {d}: mean {mean:.3} levels, max {max}");
            assert!(mean < 1.5, "{d}: mean difference {mean:.2} levels (max {max})");
        }
    }
    assert_eq!(
        Plan::fused(&SEED004.parse::<Spec>().unwrap().draw(1, 0, w, h).unwrap(), w, h).unwrap().passes.len(),
        1,
        "the seed-004 chain is one pass"
    );
}

#[test]
fn same_seed_same_bytes_and_gpu_matches_cpu() {
    let mut rng = Rng::for_test("same_seed_same_bytes_and_gpu_matches_cpu");
    let img = chelsea();
    let rgba = random_image(&mut rng, 45, 38, 4);
    let chains = [
        SEED004,
        "rotate:deg=40,border=constant,fill=1;pad:all=7,mode=reflect;resize:w=300,h=200,method=bicubic;noise:sigma=0.03;gamma:g=0.7-1.4",
        "random-resized-crop:w=64,h=48,method=nearest;vflip;grey:p=0.5;jitter:brightness=0.4,hue=0.3",
        "resize:w=100,h=67,antialias=false;center-crop:w=50,h=50;rot90",
    ];
    let gpu = gpu_backend();
    for chain in chains {
        let spec: Spec = chain.parse().unwrap();
        for im in [&img, &rgba] {
            if im.width < 256 && chain == SEED004 {
                continue;
            }
            let (w, h) = (im.width as usize, im.height as usize);
            let seed = rng.next_u64();
            let d = spec.draw(seed, 3, w, h).unwrap();
            let plan = Plan::fused(&d, w, h).unwrap();
            let cpu = plan.run_image(&Backend::Cpu, im).unwrap();
            let again =
                Plan::fused(&spec.draw(seed, 3, w, h).unwrap(), w, h).unwrap().run_image(&Backend::Cpu, im).unwrap();
            same(&cpu, &again, &format!("{chain}: same seed, same bytes"));
            if let Some(g) = &gpu {
                let a = plan.run_image(g, im).unwrap();
                let b = plan.run_image(g, im).unwrap();
                same(&a, &b, &format!("{chain}: the GPU path is deterministic too"));
                let diff = max_level_diff(&a, &cpu);
                assert!(diff <= 2, "{d}: GPU and CPU differ by {diff} levels");
            }
        }
    }
}

#[test]
fn antialiased_downscales_do_not_alias() {
    // A one-pixel checkerboard downscaled 3x: grey with antialiasing; aliased without.
    let (w, h) = (48usize, 36usize);
    let s: Vec<u8> = (0..w * h * 3).map(|i| if ((i / 3) % w + (i / 3) / w) % 2 == 0 { 255 } else { 0 }).collect();
    let img = Image::new(w as u32, h as u32, 3, Samples::U8(s)).unwrap();
    for (method, aa, flat) in
        [("bilinear", true, true), ("bicubic", true, true), ("bilinear", false, false), ("nearest", true, false)]
    {
        let d: Spec = format!("resize:w=16,h=12,method={method},antialias={aa}").parse().unwrap();
        let out = Plan::fused(&d, w, h).unwrap().run_image(&Backend::Cpu, &img).unwrap();
        let Samples::U8(o) = &out.samples else { panic!() };
        let spread = *o.iter().max().unwrap() as i32 - *o.iter().min().unwrap() as i32;
        assert_eq!(spread <= 16, flat, "{method} antialias={aa}: spread {spread}");
    }
}

#[test]
fn saved_parameters_replay_on_a_half_size_twin() {
    let hr = chelsea();
    let lr = gpuimg::ops::resize_image(&Backend::Cpu, &hr, &gpuimg::kernels::ResizeBilinear::to_size(150, 225, false))
        .unwrap();
    let spec: Spec = "hflip;crop:w=96,h=96;rot90".parse().unwrap();
    for k in 0..5 {
        let d = spec.draw(11, k, 451, 300).unwrap();
        let text = d.to_string();
        let back: Spec = text.parse().unwrap();
        assert_eq!(back, d, "drawn chains round-trip through text");
        let hr_out = Plan::fused(&back, 451, 300).unwrap().run_image(&Backend::Cpu, &hr).unwrap();
        let lr_plan = Plan::fused(&back, 225, 150).unwrap();
        assert_eq!((hr_out.width, hr_out.height), (96, 96));
        // The same region at half the size (within a pixel of rounding).
        let (lw, lh) = lr_plan.out_size();
        assert!((47..=49).contains(&lw) && (47..=49).contains(&lh), "{lw}x{lh}");
        let lr_out = lr_plan.run_image(&Backend::Cpu, &lr).unwrap();
        let down =
            gpuimg::ops::resize_image(&Backend::Cpu, &hr_out, &gpuimg::kernels::ResizeBilinear::to_size(lh, lw, false))
                .unwrap();
        let (mean, _) = diff_stats(&down, &lr_out);
        assert!(mean < 12.0, "{text}: the LR crop is not the HR crop's region (mean diff {mean:.1})");
    }
}

#[test]
fn the_augmenter_fills_batches_on_the_gpu() {
    let Some(Backend::Gpu(gpu)) = gpu_backend() else { return };
    let mut rng = Rng::for_test("the_augmenter_fills_batches_on_the_gpu");
    let images = [chelsea(), random_image(&mut rng, 300, 280, 3)];
    let spec: Spec = "random-resized-crop:size=64;hflip;jitter:brightness=0.2;normalize".parse().unwrap();
    let seed = rng.next_u64();
    let mut aug = Augmenter::new(gpu.clone(), &spec, &images, 4, seed).unwrap();
    assert_eq!(aug.batch_shape(), Shape::new(4, 3, 64, 64));
    let mut batches = Vec::new();
    for _ in 0..3 {
        let b = aug.next_batch().unwrap().clone();
        let t = gpu.download(&b).unwrap();
        batches.push((t, aug.drawn().to_vec()));
    }
    // Every sample equals its drawn chain run on the CPU (normalised the same way).
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    for (t, drawn) in &batches {
        assert_eq!(drawn.len(), 4);
        for (b, d) in drawn.iter().enumerate() {
            let found = images.iter().any(|img| {
                let (w, h) = (img.width as usize, img.height as usize);
                let Ok(plan) = Plan::fused(d, w, h) else { return false };
                let x = UnpackPixels(img.layout()).cpu(&img.samples).unwrap();
                let y: Tensor = plan.cpu(&x).unwrap();
                let plane = 64 * 64;
                (0..3).all(|c| {
                    (0..plane).all(|i| {
                        let want = (y.data[c * plane + i].clamp(0.0, 1.0) - mean[c]) / std[c];
                        (t.data[(b * 3 + c) * plane + i] - want).abs() < 1e-3
                    })
                })
            });
            assert!(found, "batch item {b} ({d}) matches no image run through its chain");
        }
    }
    assert_ne!(batches[0].0.data, batches[1].0.data, "batches differ");
    let mut again = Augmenter::new(gpu.clone(), &spec, &images, 4, seed).unwrap();
    let first = gpu.download(&again.next_batch().unwrap().clone()).unwrap();
    assert_eq!(first.data, batches[0].0.data, "same seed, same batches");
    let e = Augmenter::new(gpu.clone(), &"rotate:deg=5".parse().unwrap(), &images, 2, 1).err().unwrap().to_string();
    assert!(e.contains("output size varies"), "{e}");
}

#[test]
fn the_augmenter_records_into_the_callers_encoder_from_its_tensors() {
    // An application's frames already on the GPU (from_tensors), each batch
    // recorded into the application's encoder (encode_next): the batches
    // and draws of the self-submitting augmenter with the same seed.
    let Some(Backend::Gpu(gpu)) = gpu_backend() else { return };
    let mut rng = Rng::for_test("the_augmenter_records_into_the_callers_encoder_from_its_tensors");
    let images = [chelsea(), random_image(&mut rng, 300, 280, 3)];
    let spec: Spec = "random-resized-crop:size=48;hflip;jitter:brightness=0.2".parse().unwrap();
    let seed = rng.next_u64();
    let mut own = Augmenter::new(gpu.clone(), &spec, &images, 3, seed).unwrap();
    let tensors: Vec<gpuimg::GpuTensor> =
        images.iter().map(|i| gpu.upload(&UnpackPixels(i.layout()).cpu(&i.samples).unwrap()).unwrap()).collect();
    let mut host = Augmenter::from_tensors(gpu.clone(), &spec, tensors, 3, seed).unwrap();
    for k in 0..3 {
        let want = gpu.download(&own.next_batch().unwrap().clone()).unwrap();
        let mut enc = gpu.device().create_command_encoder(&Default::default());
        let t = host.encode_next(&mut enc).unwrap().clone();
        gpu.queue().submit([enc.finish()]);
        let got = gpu.download(&t).unwrap();
        assert_eq!(got.data, want.data, "batch {k}");
        assert_eq!(host.drawn(), own.drawn(), "batch {k}: draws");
    }
    assert!(own.encode_next(&mut gpu.device().create_command_encoder(&Default::default())).is_err());
    let grey = gpu.alloc(gpuimg::Shape::new(1, 1, 20, 20)).unwrap();
    let e = Augmenter::from_tensors(gpu.clone(), &spec, vec![grey], 1, 1).err().unwrap().to_string();
    assert!(e.contains("RGB or RGBA"), "{e}");
}

#[test]
fn the_augmenters_batches_make_no_bind_groups_once_warm() {
    // Its own context on the shared device, so that the traffic counters
    // are this test's alone.
    let Some(Backend::Gpu(g)) = gpu_backend() else { return };
    let gpu = std::sync::Arc::new(gpuimg::Gpu::from_existing(g.device().clone(), g.queue().clone()));
    let mut rng = Rng::for_test("the_augmenters_batches_make_no_bind_groups_once_warm");
    let images = [random_image(&mut rng, 90, 70, 3)];
    // One pass, and two (noise before a resampling op splits the plan:
    // the intermediate is the augmenter's own buffer too).
    for (text, passes) in [
        ("random-resized-crop:size=32;hflip;jitter:brightness=0.2,saturation=0.3;normalize", 1),
        ("noise:sigma=0.05;random-resized-crop:size=32;normalize", 2),
    ] {
        let spec: Spec = text.parse().unwrap();
        let seed = rng.next_u64();
        let plan = Plan::fused(&spec.draw(seed, 0, 90, 70).unwrap(), 90, 70).unwrap();
        assert_eq!(plan.passes.len(), passes, "{text}");
        let mut own = Augmenter::new(gpu.clone(), &spec, &images, 4, seed).unwrap();
        let want: Vec<Tensor> = (0..4).map(|_| gpu.download(&own.next_batch().unwrap().clone()).unwrap()).collect();
        let tensors = vec![gpu.upload(&UnpackPixels(images[0].layout()).cpu(&images[0].samples).unwrap()).unwrap()];
        let mut host = Augmenter::from_tensors(gpu.clone(), &spec, tensors, 4, seed).unwrap();
        // Two batches make the bind groups of both output buffers.
        for (k, want) in want.iter().enumerate().take(2) {
            let mut enc = gpu.device().create_command_encoder(&Default::default());
            let t = host.encode_next(&mut enc).unwrap().clone();
            gpu.queue().submit([enc.finish()]);
            assert_eq!(gpu.download(&t).unwrap().data, want.data, "{text}: batch {k}");
        }
        // Then two batches in one encoder, submitted together: each runs its
        // own draws (the records go up inside the encoder), and neither
        // makes a bind group or a uniform.
        let before = gpu.traffic();
        let mut enc = gpu.device().create_command_encoder(&Default::default());
        let a = host.encode_next(&mut enc).unwrap().clone();
        let b = host.encode_next(&mut enc).unwrap().clone();
        gpu.queue().submit([enc.finish()]);
        let t = gpu.traffic().since(before);
        assert!(
            t.dispatches >= 8 * passes as u64 && t.bind_groups == 0,
            "{text}: warm batches made bind groups: {t:?}"
        );
        assert_eq!(gpu.download(&a).unwrap().data, want[2].data, "{text}: batch 2");
        assert_eq!(gpu.download(&b).unwrap().data, want[3].data, "{text}: batch 3");
        assert_ne!(want[2].data, want[3].data, "{text}: the batches differ");
    }
}

#[test]
fn the_packed_cpu_path_equals_the_planar_one() {
    use gpuimg::kernels::PackPixels;
    let mut rng = Rng::for_test("the_packed_cpu_path_equals_the_planar_one");
    // 150 wide: the rotating path's tiles of 64 columns, the last one partial.
    for (w, h, c, bits) in [(37u32, 29u32, 3usize, 8u32), (40, 33, 4, 16), (150, 37, 3, 8)] {
        let n = (w * h) as usize * c;
        let samples = if bits == 8 {
            Samples::U8((0..n).map(|_| rng.below(256) as u8).collect())
        } else {
            Samples::U16((0..n).map(|_| rng.below(65536) as u16).collect())
        };
        let img = Image::new(w, h, c, samples).unwrap();
        let (wu, hu) = (w as usize, h as usize);
        for chain in [
            "hflip:p=1;rot90:k=1;pad:all=2,fill=0.3;crop:w=20,h=19", // gather, plain copy
            "vflip:p=1;pad:all=3,mode=reflect;brightness:f=1.3;grey", // gather with colour
            "resize:w=15,h=11;contrast:f=0.8",                       // separable downscale, antialiased (along y first)
            "hflip:p=1;resize:w=23,h=13",                            // flipped downscale, no colour stage
            "pad:left=4,mode=edge;resize:w=61,h=50,method=bicubic;hue:f=0.1", // separable upscale (along x first)
            "rotate:angle=23,border=constant,fill=0.5;saturation:f=0.5", // per-pixel taps
            "rotate:angle=-40,border=reflect;resize:w=20,h=20",
            "saturation:f=1.5;hue:f=0.1;brightness:f=1.2", // colour alone, affine stages
        ] {
            let d: Spec = chain.parse().unwrap();
            let plan = Plan::fused(&d, wu, hu).unwrap();
            assert_eq!(plan.passes.len(), 1, "{chain}");
            let packed = plan.run_image(&Backend::Cpu, &img).unwrap();
            let (ow, oh) = plan.out_size();
            let l = img.layout();
            let outl = gpuimg::kernels::unpack_pixels::PixelLayout { width: ow, height: oh, ..l };
            let planar = PackPixels(outl).cpu(&plan.cpu(&UnpackPixels(l).cpu(&img.samples).unwrap()).unwrap()).unwrap();
            let worst = match (&packed.samples, &planar) {
                (Samples::U8(a), Samples::U8(b)) => {
                    a.iter().zip(b).map(|(x, y)| (*x as i32 - *y as i32).abs()).max().unwrap()
                }
                (Samples::U16(a), Samples::U16(b)) => {
                    a.iter().zip(b).map(|(x, y)| (*x as i32 - *y as i32).abs()).max().unwrap()
                }
                _ => panic!("bit depth changed"),
            };
            assert!(worst <= 1, "{chain} ({bits}-bit): packed and planar paths differ by {worst} levels");
        }
    }
}

#[test]
fn per_channel_colour_tables_give_the_per_pixel_bytes() {
    // 8-bit pixel moves with brightness / contrast / gamma go through a table
    // per channel in the packed CPU path, and colour-only passes of affine
    // stages through their own row loop: the same bytes as the planar path
    // (unpack, the stages per pixel, pack), alpha included.
    use gpuimg::kernels::PackPixels;
    let mut rng = Rng::for_test("per_channel_colour_tables");
    for (w, h, c) in [(37u32, 29u32, 3usize), (40, 33, 4), (1, 1, 3)] {
        let n = (w * h) as usize * c;
        let img = Image::new(w, h, c, Samples::U8((0..n).map(|_| rng.below(256) as u8).collect())).unwrap();
        for chain in [
            "gamma:g=0.6",
            "brightness:f=1.3;contrast:f=0.8",
            "hflip:p=1;gamma:g=1.7;brightness:f=0.7",
            "rot90:k=1;pad:all=2,fill=0.3;contrast:f=1.4;gamma:g=0.9", // fill pixels take the per-pixel path
            "brightness:f=1.1;contrast:f=0.9;saturation:f=1.2;hue:f=0.03", // mixed channels: the affine row loop
            "saturation:f=0.4;grey;hue:f=0.2",
        ] {
            let d: Spec = chain.parse().unwrap();
            let plan = Plan::fused(&d, w as usize, h as usize).unwrap();
            let packed = plan.run_image(&Backend::Cpu, &img).unwrap();
            let (ow, oh) = plan.out_size();
            let l = img.layout();
            let outl = gpuimg::kernels::unpack_pixels::PixelLayout { width: ow, height: oh, ..l };
            let planar = PackPixels(outl).cpu(&plan.cpu(&UnpackPixels(l).cpu(&img.samples).unwrap()).unwrap()).unwrap();
            assert!(packed.samples == planar, "{chain} {w}x{h}x{c}: the table path differs from the per-pixel one");
        }
    }
}
