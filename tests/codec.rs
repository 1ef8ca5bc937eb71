//! TinyCompress's non-learned stages: the arithmetic coder round-trips and
//! beats raw bit planes, the .tcz container refuses corrupt, truncated and
//! foreign files (the committed regression corpus and seeded mutations)
//! without panicking.

mod common;

use common::Rng;
use gpuimg::codec::{dequantise, entropy, quantise, Tcz};

fn valid_file(rng: &mut Rng, w: u32, h: u32, rate: u8, planes: u8) -> (Tcz, Vec<u8>) {
    let f = gpuimg::codec::container::factor(rate).unwrap();
    let (lw, lh) = ((w as usize).div_ceil(f), (h as usize).div_ceil(f));
    let latents: Vec<f32> = (0..3 * lw * lh).map(|i| ((i % lw) as f32 * 0.1).sin() + rng.uniform(-0.1, 0.1)).collect();
    let (codes, ranges) = quantise(&latents, 3, planes as u32);
    let payload = entropy::encode_latents(&codes, 3, lw, lh, planes as u32);
    let t = Tcz { rate, planes, width: w, height: h, ranges: [ranges[0], ranges[1], ranges[2]], payload };
    (t, codes)
}

#[test]
fn latents_round_trip_through_the_coder_at_every_plane_count() {
    let mut rng = Rng::for_test("latents_round_trip_through_the_coder_at_every_plane_count");
    for (w, h) in [(1usize, 1usize), (37, 23), (64, 61)] {
        for planes in 1..=8u32 {
            let top = 1u64 << planes;
            let smooth: Vec<u8> = (0..3 * w * h).map(|i| (((i % w) * top as usize) / w.max(1)) as u8).collect();
            let noise: Vec<u8> = (0..3 * w * h).map(|_| rng.below(top) as u8).collect();
            for v in [smooth, noise] {
                let bytes = entropy::encode_latents(&v, 3, w, h, planes);
                assert_eq!(entropy::decode_latents(&bytes, 3, w, h, planes), v, "{w}x{h}, {planes} planes");
            }
        }
    }
}

#[test]
fn arithmetic_coding_beats_raw_bit_planes_on_image_like_latents() {
    // Stand-in for encoder latents until the transforms exist: the sample
    // photo's planes at quarter resolution (smooth, correlated like latents).
    let img =
        gpuimg::image_io::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/chelsea.png")).unwrap();
    let x = gpuimg::kernels::UnpackPixels(img.layout()).cpu(&img.samples).unwrap();
    let small = gpuimg::kernels::ResizeBilinear::by_factor(0.5, false).cpu(&x).unwrap();
    let (w, h) = (small.shape.w, small.shape.h);
    for planes in [8u32, 6, 4] {
        let (codes, ranges) = quantise(&small.data, 3, planes);
        let bytes = entropy::encode_latents(&codes, 3, w, h, planes);
        let raw = (3 * w * h * planes as usize).div_ceil(8);
        let saving = 1.0 - bytes.len() as f64 / raw as f64;
        eprintln!("{planes} planes: {} bytes coded, {raw} raw, {:.1}% saved", bytes.len(), saving * 100.0);
        assert!(saving >= 0.12, "{planes} planes: only {:.1}% saved over raw bit planes", saving * 100.0);
        // Dequantised values are within half a step of the originals.
        let back = dequantise(&codes, &ranges, planes);
        // Two roundings: to 0..=255, then to the kept planes.
        let span = ranges.iter().map(|(lo, hi)| hi - lo).fold(0.0f32, f32::max);
        let step = span / ((1u32 << planes) - 1) as f32;
        let worst = back.iter().zip(&small.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 0.5 * step + 0.5 * span / 255.0 + 1e-5, "{planes} planes: error {worst} for step {step}");
    }
}

#[test]
fn containers_round_trip_and_corruption_is_refused() {
    let mut rng = Rng::for_test("containers_round_trip_and_corruption_is_refused");
    let (t, codes) = valid_file(&mut rng, 45, 31, 16, 6);
    let bytes = t.to_bytes();
    let back = Tcz::parse(&bytes).unwrap();
    assert_eq!(back, t);
    let (lw, lh) = back.latent_size();
    assert_eq!((lw, lh), (12, 8), "45x31 padded to multiples of 4");
    assert_eq!(entropy::decode_latents(&back.payload, 3, lw, lh, 6), codes);
    // Every truncation and every single-bit flip is an error.
    for n in 0..bytes.len() {
        assert!(Tcz::parse(&bytes[..n]).is_err(), "truncated to {n} bytes");
    }
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            assert!(Tcz::parse(&b).is_err(), "bit {bit} of byte {i} flipped");
        }
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(Tcz::parse(&trailing).unwrap_err().to_string().contains("trailing"));
    let png = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/chelsea.png")).unwrap();
    assert!(Tcz::parse(&png).unwrap_err().to_string().contains("not a .tcz file"));
}

#[test]
fn the_regression_corpus_is_refused_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/tcz");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "tcz") {
            let err = Tcz::parse(&std::fs::read(&p).unwrap()).expect_err(&p.display().to_string()).to_string();
            assert!(!err.is_empty() && !err.contains('\n'), "{}: {err}", p.display());
            n += 1;
        }
    }
    assert!(n >= 8, "{n} corpus files");
}

#[test]
fn seeded_mutations_never_panic_or_run_away() {
    let mut rng = Rng::for_test("seeded_mutations_never_panic_or_run_away");
    let (t, _) = valid_file(&mut rng, 20, 17, 4, 8);
    let bytes = t.to_bytes();
    for _ in 0..3000 {
        let mut b = bytes.clone();
        match rng.below(3) {
            0 => {
                let i = rng.below(b.len() as u64) as usize;
                b[i] = rng.below(256) as u8;
            }
            1 => b.truncate(rng.below(b.len() as u64) as usize),
            _ => b.extend((0..rng.below(8)).map(|_| rng.below(256) as u8)),
        }
        if let Ok(t) = Tcz::parse(&b) {
            // Only a CRC collision gets here; decoding is bounded by the header's size anyway.
            let (w, h) = t.latent_size();
            let _ = entropy::decode_latents(&t.payload, 3, w, h, t.planes as u32);
        }
    }
    // The decoder alone on garbage: bounded by the symbol count, no panic.
    for _ in 0..200 {
        let garbage: Vec<u8> = (0..rng.below(64)).map(|_| rng.below(256) as u8).collect();
        let v = entropy::decode_latents(&garbage, 3, 9, 7, 1 + rng.below(8) as u32);
        assert_eq!(v.len(), 3 * 9 * 7);
    }
}

fn random_codec(rate: usize, rng: &mut Rng) -> gpuimg::models::tinycompress::TinyCompress {
    // Untrained (random) weights: enough to test the format and the paths.
    let mut m = gpuimg::models::tinycompress::TinyCompress::new(rate).unwrap();
    m.init(&mut || rng.uniform(0.0, 1.0));
    m
}

#[test]
fn any_size_round_trips_and_devices_agree() {
    use gpuimg::{image_io::Image, Backend, Samples};
    let mut rng = Rng::for_test("any_size_round_trips_and_devices_agree");
    let gpu = common::gpu_backend();
    for rate in [4, 16, 64] {
        let m = random_codec(rate, &mut rng);
        assert_eq!(
            (m.enc.param_count(), m.dec.param_count()),
            (5427 * m.blocks, 1071 * m.blocks),
            "SCIENCE.md's parameter counts"
        );
        let back = gpuimg::models::tinycompress::TinyCompress::from_weights(&m.to_weights()).unwrap();
        assert_eq!(back, m, "weights round-trip");
        for (w, h) in [(37u32, 23u32), (8, 8), (1, 1)] {
            let img = Image::new(w, h, 3, Samples::U8((0..w * h * 3).map(|_| rng.below(256) as u8).collect())).unwrap();
            for planes in [8, 3] {
                let t = gpuimg::codec::compress(&Backend::Cpu, &m, &img, planes).unwrap();
                let parsed = Tcz::parse(&t.to_bytes()).unwrap();
                assert_eq!(parsed, t);
                let cpu = gpuimg::codec::decompress(&Backend::Cpu, &m, &parsed).unwrap();
                assert_eq!((cpu.width, cpu.height, cpu.channels), (w, h, 3), "the true size comes back");
                if let Some(g) = &gpu {
                    let gd = gpuimg::codec::decompress(g, &m, &parsed).unwrap();
                    let (Samples::U8(a), Samples::U8(b)) = (&cpu.samples, &gd.samples) else { panic!() };
                    let worst = a.iter().zip(b).map(|(x, y)| (*x as i32 - *y as i32).abs()).max().unwrap();
                    assert!(worst <= 1, "-{rate} {w}x{h}: GPU and CPU decodes differ by {worst} levels");
                    // The GPU encoder's file decodes too (its latents may round differently).
                    let tg = gpuimg::codec::compress(g, &m, &img, planes).unwrap();
                    assert_eq!((tg.width, tg.height, tg.rate), (w, h, rate as u8));
                }
            }
        }
    }
    let m = random_codec(4, &mut rng);
    for c in [1usize, 2, 4] {
        let img = Image::new(5, 4, c, Samples::U8(vec![9; 20 * c])).unwrap();
        let e = gpuimg::codec::compress(&Backend::Cpu, &m, &img, 8).unwrap_err().to_string();
        assert!(e.contains("not supported by TinyCompress (RGB only)"), "{e}");
    }
}
