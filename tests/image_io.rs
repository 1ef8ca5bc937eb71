//! Image files: formats, bit depths, alpha, decoder limits, atomic writes.

mod common;

use common::Rng;
use common::{random_image, tmpdir};
use gpuimg::image_io::{self, Image};
use gpuimg::Samples;

#[test]
fn lossless_formats_round_trip_depth_and_alpha() {
    let dir = tmpdir("roundtrip");
    let mut rng = Rng::for_test("lossless_formats_round_trip");
    // (extension, channels, bits) that must come back bit for bit.
    let cases = [
        ("png", 1, 8),
        ("png", 2, 8),
        ("png", 3, 8),
        ("png", 4, 8),
        ("png", 1, 16),
        ("png", 3, 16),
        ("png", 4, 16),
        ("tiff", 3, 8),
        ("tiff", 4, 16),
        ("tif", 1, 16),
        ("webp", 3, 8),
        ("webp", 4, 8),
        ("bmp", 3, 8),
        ("bmp", 4, 8),
    ];
    for (ext, channels, bits) in cases {
        let img = random_image(&mut rng, 37, 23, channels, bits);
        let p = dir.join(format!("c{channels}b{bits}.{ext}"));
        image_io::save(&img, &p).unwrap();
        let back = image_io::load(&p).unwrap_or_else(|e| panic!("{ext} {channels}ch {bits}bit: {e}"));
        assert_eq!(back, img, "{ext} {channels} channels {bits} bits did not round-trip");
    }
}

#[test]
fn jpeg_is_eight_bit_without_alpha() {
    let dir = tmpdir("jpeg");
    let mut rng = Rng::for_test("jpeg");
    let img = random_image(&mut rng, 40, 30, 4, 16);
    let p = dir.join("x.jpg");
    image_io::save(&img, &p).unwrap();
    let back = image_io::load(&p).unwrap();
    assert_eq!((back.width, back.height, back.channels, back.samples.bits()), (40, 30, 3, 8));
}

/// A PNG of a signature, an IHDR declaring `w` x `h`, an empty IDAT and IEND.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    let mut chunk = b"IHDR".to_vec();
    chunk.extend(w.to_be_bytes());
    chunk.extend(h.to_be_bytes());
    chunk.extend([8, 2, 0, 0, 0]); // 8-bit RGB
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    for body in [chunk, b"IDAT".to_vec(), b"IEND".to_vec()] {
        out.extend((body.len() as u32 - 4).to_be_bytes());
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    }
    out
}

#[test]
fn absurd_dimensions_are_refused_before_allocating() {
    let dir = tmpdir("limits");
    let p = dir.join("huge.png");
    std::fs::write(&p, png_header(100_000, 100_000)).unwrap();
    let e = image_io::load(&p).unwrap_err().to_string();
    assert!(e.contains("huge.png") && e.contains("100000x100000") && e.contains("limit"), "{e}");
    let limits = image_io::DecodeLimits { max_side: 64, ..Default::default() };
    std::fs::write(&p, png_header(65, 10)).unwrap();
    assert!(image_io::load_with_limits(&p, limits).unwrap_err().to_string().contains("65x10"));
}

#[test]
fn broken_files_are_clear_errors() {
    let dir = tmpdir("broken");
    let mut rng = Rng::for_test("broken");
    let good = dir.join("good.png");
    image_io::save(&random_image(&mut rng, 64, 64, 3, 8), &good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    for (name, data) in [
        ("truncated.png", bytes[..bytes.len() / 2].to_vec()),
        ("text.png", b"not an image at all".to_vec()),
        ("empty.png", vec![]),
        ("header_only.png", png_header(8, 8)),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        let e = image_io::load(&p).unwrap_err().to_string();
        assert!(e.contains(name), "{name}: error should name the file: {e}");
        assert!(!e.contains('\n'), "{name}: one line: {e}");
    }
    let e = image_io::load(&dir.join("missing.png")).unwrap_err().to_string();
    assert!(e.contains("missing.png"), "{e}");
}

#[test]
fn writes_are_atomic_and_unknown_extensions_refused() {
    let dir = tmpdir("atomic");
    let img = Image::new(2, 2, 1, Samples::U8(vec![0, 1, 2, 3])).unwrap();
    assert!(image_io::save(&img, &dir.join("no/such/dir/x.png")).is_err());
    let e = image_io::save(&img, &dir.join("x.gif")).unwrap_err().to_string();
    assert!(e.contains("gif") && e.contains("png"), "lists valid extensions: {e}");
    image_io::save(&img, &dir.join("ok.png")).unwrap();
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec!["ok.png".to_string()], "no temporary files left behind");
    assert!(image_io::same_file(&dir.join("ok.png"), &dir.join("./ok.png")));
}

/// `jpeg` with an EXIF APP1 segment whose IFD0 holds Orientation = `o`.
fn with_orientation(jpeg: &[u8], o: u16) -> Vec<u8> {
    let mut tiff = b"II*\0".to_vec();
    tiff.extend(8u32.to_le_bytes());
    tiff.extend(1u16.to_le_bytes());
    tiff.extend(0x0112u16.to_le_bytes());
    tiff.extend(3u16.to_le_bytes());
    tiff.extend(1u32.to_le_bytes());
    tiff.extend(o.to_le_bytes());
    tiff.extend([0, 0]);
    tiff.extend(0u32.to_le_bytes());
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend(((app1.len() + 2) as u16).to_be_bytes());
    out.extend(app1);
    out.extend(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied_on_decode() {
    let dir = tmpdir("exif");
    // 40x30, a red block in the top-left corner, grey elsewhere.
    let mut s = vec![128u8; 40 * 30 * 3];
    for y in 0..10 {
        for x in 0..10 {
            s[(y * 40 + x) * 3..][..3].copy_from_slice(&[250, 0, 0]);
        }
    }
    let img = Image::new(40, 30, 3, Samples::U8(s)).unwrap();
    let jpeg = image_io::encode(&img, image::ImageFormat::Jpeg).unwrap();
    let red = |im: &Image, x: usize, y: usize| {
        let Samples::U8(v) = &im.samples else { panic!() };
        let p = &v[(y * im.width as usize + x) * 3..][..3];
        p[0] > 200 && p[1] < 60
    };
    // Orientation 6: the stored image is shown turned 90 degrees clockwise,
    // so the top-left block appears top-right.
    let p = dir.join("o6.jpg");
    std::fs::write(&p, with_orientation(&jpeg, 6)).unwrap();
    let back = image_io::load(&p).unwrap();
    assert_eq!((back.width, back.height), (30, 40));
    assert!(red(&back, 25, 4) && !red(&back, 4, 4));
    // Orientation 1 (and none): as stored.
    std::fs::write(&p, with_orientation(&jpeg, 1)).unwrap();
    let back = image_io::load(&p).unwrap();
    assert_eq!((back.width, back.height), (40, 30));
    assert!(red(&back, 4, 4));
}

#[test]
fn icc_profiles_travel_to_outputs_that_hold_them() {
    use image::ImageEncoder;
    let dir = tmpdir("icc");
    let icc: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
    let p = dir.join("in.png");
    let mut bytes = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut bytes);
    enc.set_icc_profile(icc.clone()).unwrap();
    enc.write_image(&[10u8; 8 * 6 * 3], 8, 6, image::ExtendedColorType::Rgb8).unwrap();
    std::fs::write(&p, bytes).unwrap();
    let (img, meta) = image_io::load_full(&p, Default::default()).unwrap();
    assert_eq!(meta.icc.as_deref(), Some(&icc[..]));
    for ext in ["png", "jpg", "webp", "tiff"] {
        let out = dir.join(format!("out.{ext}"));
        image_io::save_with(&img, &out, &meta, true).unwrap();
        if ext == "tiff" {
            // The image crate's TIFF decoder does not read the tag back; the bytes are there.
            let b = std::fs::read(&out).unwrap();
            assert!(b.windows(icc.len()).any(|w| w == &icc[..]), "{ext}");
            continue;
        }
        let (_, m) = image_io::load_full(&out, Default::default()).unwrap();
        assert_eq!(m.icc.as_deref(), Some(&icc[..]), "{ext}");
    }
    // Through the CLI: resize keeps it.
    let out = dir.join("half.png");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_gpuimg"))
        .args(["--device", "cpu", "resize", p.to_str().unwrap(), "--scale", "0.5", "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(image_io::load_full(&out, Default::default()).unwrap().1.icc.as_deref(), Some(&icc[..]));
}

#[test]
fn truncated_jpegs_are_refused() {
    let dir = tmpdir("jpegcut");
    let mut rng = Rng::for_test("jpegcut");
    let img = random_image(&mut rng, 50, 40, 3, 8);
    let jpeg = image_io::encode(&img, image::ImageFormat::Jpeg).unwrap();
    let p = dir.join("x.jpg");
    std::fs::write(&p, &jpeg).unwrap();
    assert!(image_io::load(&p).is_ok());
    for keep in [0.1, 0.3, 0.5, 0.9, 0.99] {
        std::fs::write(&p, &jpeg[..(jpeg.len() as f64 * keep) as usize]).unwrap();
        let e = image_io::load(&p).unwrap_err().to_string();
        assert!(e.contains("x.jpg"), "{keep}: {e}");
    }
    std::fs::write(&p, &jpeg[..jpeg.len() - 1]).unwrap();
    assert!(image_io::load(&p).unwrap_err().to_string().contains("truncated JPEG"));
    // Bytes after the end marker (some cameras add them) are fine.
    let mut padded = jpeg.clone();
    padded.extend([0u8; 100]);
    std::fs::write(&p, &padded).unwrap();
    assert!(image_io::load(&p).is_ok());
}

#[test]
fn encoding_from_borrowed_samples_matches_the_image_crate_buffers() {
    // Where no conversion is needed, encode writes from the samples without
    // copying them into an image-crate buffer: the bytes must be the same.
    use gpuimg::image_io::{encode, to_dynamic};
    use image::ImageFormat as F;
    let mut rng = common::Rng::for_test("borrowed_encode");
    for (format, bits, channels) in [
        (F::Png, 8, 1..=4),
        (F::Png, 16, 1..=4),
        (F::Tiff, 8, 1..=4),
        (F::Tiff, 16, 1..=4),
        (F::Jpeg, 8, 1..=1),
        (F::Jpeg, 8, 3..=3),
        (F::WebP, 8, 3..=4),
    ] {
        for c in channels {
            let img = common::random_image(&mut rng, 13, 7, c, bits);
            let mut want = Vec::new();
            let d = to_dynamic(&img).unwrap();
            let r = match format {
                F::Png => d.write_with_encoder(image::codecs::png::PngEncoder::new(&mut want)),
                F::Tiff => d.write_with_encoder(image::codecs::tiff::TiffEncoder::new(std::io::Cursor::new(&mut want))),
                F::Jpeg => d.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut want, 95)),
                _ => d.write_with_encoder(image::codecs::webp::WebPEncoder::new_lossless(&mut want)),
            };
            match (encode(&img, format), r) {
                (Ok(got), Ok(())) => assert!(got == want, "{format:?} {c} channels {bits} bits: bytes differ"),
                // TIFF has no grey+alpha: refused either way.
                (Err(_), Err(_)) => assert_eq!((format, c), (F::Tiff, 2)),
                (got, r) => panic!("{format:?} {c} channels {bits} bits: {got:?} vs {r:?}"),
            }
        }
    }
}
