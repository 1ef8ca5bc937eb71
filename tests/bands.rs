//! Large images in bands (`StreamOp::bands`): decoded (PNG row by row),
//! processed and encoded (PNG, TIFF) a band of rows at a time, the output
//! equal to the whole-image run's (bit for bit on the CPU, within one
//! level on the GPU); formats that cannot be written in bands go whole
//! with a notice; a broken input fails without leaving a file.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::{gpu_backend, random_image, tmpdir, Rng};
use gpuimg::image_io::{self, Image};
use gpuimg::models::zero_dce::{Arch, ZeroDce};
use gpuimg::models::TinyPssr;
use gpuimg::stream::{self, Job, Observer, Report, StreamConfig, StreamOp};
use gpuimg::{ops, Backend, Samples};

/// Runs `op` on one file: in bands of `rows` input rows, or (`rows` 0) whole.
fn run_one(
    backend: &Backend,
    op: &dyn StreamOp,
    input: &Path,
    output: &Path,
    rows: usize,
    obs: &dyn Observer,
) -> Report {
    let mut cfg = StreamConfig::new();
    cfg.overwrite = true;
    cfg.band_bytes = if rows > 0 { 0 } else { u64::MAX };
    cfg.band_rows = rows;
    let jobs = [Job { input: input.to_path_buf(), output: output.to_path_buf() }];
    stream::run_batch(backend, op, &jobs, &cfg, obs)
}

/// Banded and whole runs of `op` on `input` into `ext` files: both decoded.
fn both(backend: &Backend, op: &dyn StreamOp, input: &Path, ext: &str, rows: usize) -> (Image, Image) {
    let stem = input.file_stem().unwrap().to_string_lossy().to_string();
    let dir = input.parent().unwrap();
    let (banded, whole) = (dir.join(format!("{stem}_bands.{ext}")), dir.join(format!("{stem}_whole.{ext}")));
    let r = run_one(backend, op, input, &banded, rows, &stream::Silent);
    assert_eq!((r.images, r.failed, r.banded), (1, 0, 1), "{stem} in bands: {:?}", r.failures);
    let r = run_one(backend, op, input, &whole, 0, &stream::Silent);
    assert_eq!((r.images, r.failed, r.banded), (1, 0, 0), "{stem} whole: {:?}", r.failures);
    (image_io::load(&banded).unwrap(), image_io::load(&whole).unwrap())
}

fn assert_same(what: &str, a: &Image, b: &Image) {
    assert_eq!((a.width, a.height, a.channels), (b.width, b.height, b.channels), "{what}: layout");
    assert!(a.samples == b.samples, "{what}: the banded output differs from the whole one");
}

/// The largest difference between two images' samples.
fn max_diff(a: &Image, b: &Image) -> u32 {
    assert_eq!((a.width, a.height, a.channels), (b.width, b.height, b.channels));
    match (&a.samples, &b.samples) {
        (Samples::U8(x), Samples::U8(y)) => x.iter().zip(y).map(|(p, q)| p.abs_diff(*q) as u32).max().unwrap_or(0),
        (Samples::U16(x), Samples::U16(y)) => x.iter().zip(y).map(|(p, q)| p.abs_diff(*q) as u32).max().unwrap_or(0),
        _ => panic!("depths differ"),
    }
}

fn save(dir: &Path, name: &str, img: &Image) -> PathBuf {
    let p = dir.join(name);
    image_io::save(img, &p).unwrap();
    p
}

#[test]
fn super_resolution_in_bands_equals_whole_on_the_cpu() {
    let mut rng = Rng::for_test("super_resolution_in_bands_equals_whole_on_the_cpu");
    let dir = tmpdir("bands-sr");
    for (scale, c, bits, rows) in [(2, 3, 8, 13), (2, 4, 16, 9), (2, 1, 8, 17), (4, 2, 16, 11), (2, 3, 8, 1)] {
        let op = ops::SuperResolveOp::new(TinyPssr::bundled(scale).unwrap());
        let input = save(&dir, &format!("x{scale}_{c}_{bits}_{rows}.png"), &random_image(&mut rng, 45, 71, c, bits));
        for ext in ["png", "tif"] {
            if ext == "tif" && c == 2 {
                continue; // grey+alpha TIFF is written by neither path
            }
            let (banded, whole) = both(&Backend::Cpu, &op, &input, ext, rows);
            assert_eq!((banded.width, banded.height), (45 * scale as u32, 71 * scale as u32));
            assert_same(&format!("x{scale} {c}x{bits} bands of {rows} ({ext})"), &banded, &whole);
        }
    }
}

#[test]
fn enhancement_in_bands_equals_whole_on_the_cpu() {
    let mut rng = Rng::for_test("enhancement_in_bands_equals_whole_on_the_cpu");
    let dir = tmpdir("bands-enhance");
    // s = 1: bands with the network's halo; s = 3: the two passes.
    for (s, c, bits, rows) in [(1, 3, 8, 10), (3, 3, 8, 7), (3, 1, 16, 12), (4, 4, 8, 5), (1, 4, 16, 31)] {
        let op = ops::EnhanceOp::new(ZeroDce::bundled(Arch::ZeroDcePlus).unwrap(), Some(s), 8).unwrap();
        let input = save(&dir, &format!("s{s}_{c}_{bits}.png"), &random_image(&mut rng, 53, 67, c, bits));
        let (banded, whole) = both(&Backend::Cpu, &op, &input, "png", rows);
        assert_same(&format!("s = {s}, {c}x{bits}, bands of {rows}"), &banded, &whole);
    }
}

#[test]
fn inputs_other_than_plain_png_are_decoded_whole_then_banded() {
    let mut rng = Rng::for_test("inputs_other_than_plain_png_are_decoded_whole_then_banded");
    let dir = tmpdir("bands-inputs");
    let op = ops::SuperResolveOp::new(TinyPssr::bundled(2).unwrap());
    // A JPEG (decoded whole, banded from memory) and a TIFF (strip by strip).
    for name in ["in.jpg", "in.tif"] {
        let input = save(&dir, name, &random_image(&mut rng, 39, 44, 3, 8));
        let (banded, whole) = both(&Backend::Cpu, &op, &input, "png", 10);
        assert_same(name, &banded, &whole);
    }
    // A 4-bit palette PNG with transparency: expanded as `image` expands it.
    let p = dir.join("palette.png");
    {
        let (w, h) = (37u32, 29u32);
        let mut e = png::Encoder::new(std::io::BufWriter::new(std::fs::File::create(&p).unwrap()), w, h);
        e.set_color(png::ColorType::Indexed);
        e.set_depth(png::BitDepth::Four);
        e.set_palette((0..16u8).flat_map(|i| [i * 16, 255 - i * 16, i * 7]).collect::<Vec<u8>>());
        e.set_trns(vec![255u8, 0, 128, 200]);
        let mut wr = e.write_header().unwrap();
        let row = (w as usize).div_ceil(2);
        let data: Vec<u8> = (0..row * h as usize).map(|_| rng.below(256) as u8).collect();
        wr.write_image_data(&data).unwrap();
    }
    assert_eq!(image_io::load(&p).unwrap().channels, 4, "tRNS gives alpha");
    let (banded, whole) = both(&Backend::Cpu, &op, &p, "png", 6);
    assert_same("palette PNG", &banded, &whole);
}

#[derive(Default)]
struct Notes(Mutex<Vec<String>>);
impl Observer for Notes {
    fn notice(&self, _input: &Path, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}

#[test]
fn formats_that_cannot_stream_go_whole_with_a_notice() {
    let mut rng = Rng::for_test("formats_that_cannot_stream_go_whole_with_a_notice");
    let dir = tmpdir("bands-formats");
    let op = ops::SuperResolveOp::new(TinyPssr::bundled(2).unwrap());
    let input = save(&dir, "in.png", &random_image(&mut rng, 31, 27, 3, 8));
    let notes = Notes::default();
    let r = run_one(&Backend::Cpu, &op, &input, &dir.join("out.jpg"), 8, &notes);
    assert_eq!((r.images, r.failed, r.banded), (1, 0, 0));
    let n = notes.0.lock().unwrap();
    assert!(n.len() == 1 && n[0].contains("only PNG and TIFF"), "{n:?}");
    assert_eq!(image_io::load(&dir.join("out.jpg")).unwrap().width, 62);
    // --tile off: no bands.
    let off = ops::SuperResolveOp::new(TinyPssr::bundled(2).unwrap()).with_tiles(gpuimg::tiling::TileMode::Off);
    let r = run_one(&Backend::Cpu, &off, &input, &dir.join("off.png"), 8, &stream::Silent);
    assert_eq!((r.images, r.banded), (1, 0));
}

#[test]
fn a_broken_input_in_bands_fails_without_leaving_a_file() {
    let mut rng = Rng::for_test("a_broken_input_in_bands_fails_without_leaving_a_file");
    let dir = tmpdir("bands-broken");
    let op = ops::SuperResolveOp::new(TinyPssr::bundled(2).unwrap());
    let good = save(&dir, "good.png", &random_image(&mut rng, 40, 90, 3, 8));
    let bytes = std::fs::read(&good).unwrap();
    // Cut in the image data: the first bands decode, a later one fails.
    let cut = dir.join("cut.png");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    for (rows, out) in [(8, "cut_out.png"), (8, "cut_out.tif")] {
        let r = run_one(&Backend::Cpu, &op, &cut, &dir.join(out), rows, &stream::Silent);
        assert_eq!((r.images, r.failed, r.banded), (0, 1, 1), "{out}");
        assert!(r.failures[0].1.contains("cut.png"), "{}", r.failures[0].1);
        assert!(!dir.join(out).exists(), "{out}: a half-written output was left");
    }
    // An output that exists is left alone without --overwrite.
    let existing = dir.join("exists.png");
    std::fs::write(&existing, b"mine").unwrap();
    let mut cfg = StreamConfig::new();
    cfg.band_bytes = 0;
    cfg.band_rows = 8;
    let jobs = [Job { input: good.clone(), output: existing.clone() }];
    let r = stream::run_batch(&Backend::Cpu, &op, &jobs, &cfg, &stream::Silent);
    assert_eq!((r.images, r.skipped, r.failed), (0, 1, 0));
    assert_eq!(std::fs::read(&existing).unwrap(), b"mine");
    let temps: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "temporaries left: {temps:?}");
}

#[test]
fn bands_on_the_gpu_are_within_one_level_of_whole() {
    let Some(gpu) = gpu_backend() else { return };
    let mut rng = Rng::for_test("bands_on_the_gpu_are_within_one_level_of_whole");
    let dir = tmpdir("bands-gpu");
    let input = save(&dir, "in.png", &random_image(&mut rng, 47, 61, 3, 8));
    let sr = ops::SuperResolveOp::new(TinyPssr::bundled(2).unwrap());
    let (banded, whole) = both(&gpu, &sr, &input, "png", 12);
    let d = max_diff(&banded, &whole);
    assert!(d <= 1, "sr: bands differ from whole by {d} levels");
    for s in [1, 3] {
        let op = ops::EnhanceOp::new(ZeroDce::bundled(Arch::ZeroDcePlus).unwrap(), Some(s), 8).unwrap();
        let (banded, whole) = both(&gpu, &op, &input, "png", 9);
        let d = max_diff(&banded, &whole);
        assert!(d <= 1, "enhance s = {s}: bands differ from whole by {d} levels");
    }
}

#[test]
fn resizing_in_bands_equals_whole() {
    use gpuimg::kernels::ResizeBilinear;
    let mut rng = Rng::for_test("resizing_in_bands_equals_whole");
    let dir = tmpdir("bands-resize");
    let mut backends = vec![Backend::Cpu];
    backends.extend(gpu_backend());
    // Down (output rows skip input rows), up, and to a size; corners aligned or not.
    let cases = [
        ResizeBilinear::by_factor(0.37, false),
        ResizeBilinear::by_factor(2.5, false),
        ResizeBilinear::to_size(23, 90, true),
        ResizeBilinear::by_factor(0.5, true),
    ];
    for (k, (c, bits)) in [(3, 8), (4, 16), (1, 8)].into_iter().enumerate() {
        let input = save(&dir, &format!("r{k}.png"), &random_image(&mut rng, 61, 83, c, bits));
        for (j, r) in cases.iter().enumerate() {
            let op = ops::ResizeOp(*r);
            for backend in &backends {
                let (banded, whole) = both(backend, &op, &input, "png", 7);
                let what =
                    format!("{c}x{bits}, case {j}, {}", if matches!(backend, Backend::Cpu) { "cpu" } else { "gpu" });
                match backend {
                    Backend::Cpu => assert_same(&what, &banded, &whole),
                    _ => assert!(max_diff(&banded, &whole) <= 1, "{what}"),
                }
                let _ = std::fs::remove_file(dir.join(format!("r{k}_bands.png")));
            }
        }
    }
}

/// Runs `op` on `input` into `output` in bands of `rows` (or whole, 0) and
/// checks it went the way asked.
fn one(backend: &Backend, op: &dyn StreamOp, input: &Path, output: &Path, rows: usize) -> Report {
    let r = run_one(backend, op, input, output, rows, &stream::Silent);
    let banded = usize::from(rows > 0);
    assert_eq!((r.images, r.failed, r.banded), (1, 0, banded), "{} ({rows} rows): {:?}", output.display(), r.failures);
    // The job's time is in the stages: decoding for the engine's bands and
    // whole jobs, the op's own time for jobs it runs end to end.
    let s = &r.stages;
    assert!(s.decode_s + s.own_s > 0.0, "{}: no time in the stages: {s:?}", output.display());
    if rows == 0 {
        assert_eq!(s.own_s, 0.0, "{}: a whole job counted as the op's own", output.display());
    }
    r
}

#[test]
fn compression_in_bands_equals_whole_on_the_cpu() {
    // The .tcz of a banded compress is the whole run's, byte for byte, at
    // every rate (halos of 8, 24 and 56 rows), for 8- and 16-bit inputs and
    // band heights from one latent row up; the banded decompress of it
    // (PNG and TIFF rows) is the whole decompress's.
    use gpuimg::codec::{CompressOp, DecompressOp};
    use gpuimg::models::tinycompress::TinyCompress;
    let mut rng = Rng::for_test("compression_in_bands_equals_whole_on_the_cpu");
    let dir = tmpdir("bands-codec");
    let cases = [(4, 45, 71, 8, 13), (4, 60, 33, 16, 2), (16, 37, 90, 8, 9), (64, 29, 151, 8, 17), (64, 40, 64, 16, 8)];
    for (k, (rate, w, h, bits, rows)) in cases.into_iter().enumerate() {
        let m = TinyCompress::bundled(rate).unwrap();
        let input = save(&dir, &format!("c{k}.png"), &random_image(&mut rng, w, h, 3, bits));
        let op = CompressOp::new(m.clone(), 6).unwrap();
        let (b, wh) = (dir.join(format!("c{k}_b.tcz")), dir.join(format!("c{k}_w.tcz")));
        let r = one(&Backend::Cpu, &op, &input, &b, rows);
        assert!(r.stages.own_s > 0.0, "case {k}: the banded compress's time is not in own_s: {:?}", r.stages);
        one(&Backend::Cpu, &op, &input, &wh, 0);
        let (bb, wb) = (std::fs::read(&b).unwrap(), std::fs::read(&wh).unwrap());
        assert!(bb == wb, "case {k} (rate {rate}, {rows} rows): the banded .tcz differs from the whole one");
        let dec = DecompressOp::new(vec![m]);
        let whole = dir.join(format!("c{k}_w.png"));
        one(&Backend::Cpu, &dec, &wh, &whole, 0);
        let whole = image_io::load(&whole).unwrap();
        for ext in ["png", "tif"] {
            let banded = dir.join(format!("c{k}_b.{ext}"));
            one(&Backend::Cpu, &dec, &wh, &banded, rows);
            assert_same(&format!("decompress case {k} to {ext}"), &image_io::load(&banded).unwrap(), &whole);
        }
    }
}

#[test]
fn codec_bands_refuse_what_the_whole_way_refuses_and_leave_nothing() {
    use gpuimg::codec::{CompressOp, DecompressOp};
    use gpuimg::models::tinycompress::TinyCompress;
    let mut rng = Rng::for_test("codec_bands_refuse_what_the_whole_way_refuses_and_leave_nothing");
    let dir = tmpdir("bands-codec-bad");
    let m = TinyCompress::bundled(16).unwrap();
    let op = CompressOp::new(m.clone(), 8).unwrap();
    // Grey: refused with the whole way's message.
    let grey = save(&dir, "grey.png", &random_image(&mut rng, 40, 40, 1, 8));
    let r = run_one(&Backend::Cpu, &op, &grey, &dir.join("grey.tcz"), 8, &stream::Silent);
    assert_eq!((r.images, r.failed, r.banded), (0, 1, 1));
    assert!(r.failures[0].1.contains("RGB only"), "{}", r.failures[0].1);
    // A PNG cut in its image data: fails in a later band, no .tcz left.
    let good = save(&dir, "good.png", &random_image(&mut rng, 40, 120, 3, 8));
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.join("cut.png");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let r = run_one(&Backend::Cpu, &op, &cut, &dir.join("cut.tcz"), 8, &stream::Silent);
    assert_eq!((r.images, r.failed, r.banded), (0, 1, 1));
    assert!(!dir.join("cut.tcz").exists());
    // Nor the latents' temporary file.
    let temps = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    };
    assert!(temps(&dir).is_empty(), "temporaries left: {:?}", temps(&dir));
    // A .tcz with a flipped payload byte: the CRC refuses it, no image left.
    let tcz = dir.join("good.tcz");
    one(&Backend::Cpu, &op, &good, &tcz, 8);
    let mut t = std::fs::read(&tcz).unwrap();
    let mid = t.len() / 2;
    t[mid] ^= 0x40;
    let bad = dir.join("bad.tcz");
    std::fs::write(&bad, &t).unwrap();
    let dec = DecompressOp::new(vec![m]);
    let r = run_one(&Backend::Cpu, &dec, &bad, &dir.join("bad.png"), 8, &stream::Silent);
    assert_eq!((r.images, r.failed, r.banded), (0, 1, 1));
    assert!(r.failures[0].1.contains("bad.tcz") && r.failures[0].1.contains("CRC"), "{}", r.failures[0].1);
    assert!(!dir.join("bad.png").exists());
    // Another rate's weights: refused by codec id before any work.
    let other = DecompressOp::new(vec![TinyCompress::bundled(4).unwrap()]);
    let r = run_one(&Backend::Cpu, &other, &tcz, &dir.join("other.png"), 8, &stream::Silent);
    assert_eq!((r.images, r.failed), (0, 1));
    assert!(r.failures[0].1.contains("none for rate 16"), "{}", r.failures[0].1);
    // JPEG output cannot take rows: decoded whole, with a notice.
    assert!(temps(&dir).is_empty(), "temporaries left: {:?}", temps(&dir));
    let notes = Notes::default();
    let r = run_one(&Backend::Cpu, &dec, &tcz, &dir.join("out.jpg"), 8, &notes);
    assert_eq!((r.images, r.failed, r.banded), (1, 0, 0));
    assert!(notes.0.lock().unwrap().iter().any(|n| n.contains("only PNG and TIFF")));
}

#[test]
fn codec_bands_on_the_gpu_are_close_to_whole() {
    use gpuimg::codec::{CompressOp, DecompressOp};
    use gpuimg::models::tinycompress::TinyCompress;
    let Some(gpu) = gpu_backend() else { return };
    let mut rng = Rng::for_test("codec_bands_on_the_gpu_are_close_to_whole");
    let dir = tmpdir("bands-codec-gpu");
    for (k, rate) in [4, 64].into_iter().enumerate() {
        let m = TinyCompress::bundled(rate).unwrap();
        let input = save(&dir, &format!("g{k}.png"), &random_image(&mut rng, 53, 87, 3, 8));
        let op = CompressOp::new(m.clone(), 8).unwrap();
        let dec = DecompressOp::new(vec![m]);
        let (b, wh) = (dir.join(format!("g{k}_b.tcz")), dir.join(format!("g{k}_w.tcz")));
        one(&gpu, &op, &input, &b, 16);
        one(&gpu, &op, &input, &wh, 0);
        // Both files decoded the same way (whole, CPU): the latents agree
        // to within a code, so the images do to within a level or two.
        let (ib, iw) = (dir.join(format!("g{k}_b.png")), dir.join(format!("g{k}_w.png")));
        one(&Backend::Cpu, &dec, &b, &ib, 0);
        one(&Backend::Cpu, &dec, &wh, &iw, 0);
        let d = max_diff(&image_io::load(&ib).unwrap(), &image_io::load(&iw).unwrap());
        assert!(d <= 2, "rate {rate}: GPU compress in bands differs from whole by {d} levels after decoding");
        // Decompress on the GPU in bands against whole.
        let (db, dw) = (dir.join(format!("g{k}_db.png")), dir.join(format!("g{k}_dw.png")));
        one(&gpu, &dec, &wh, &db, 16);
        one(&gpu, &dec, &wh, &dw, 0);
        let d = max_diff(&image_io::load(&db).unwrap(), &image_io::load(&dw).unwrap());
        assert!(d <= 1, "rate {rate}: GPU decompress in bands differs from whole by {d} levels");
    }
}

/// Writes a `c`-channel TIFF of `bits` from `img` in strips of `rows` rows
/// with `compression`, and with `orientation` in its tags when given.
fn write_tiff(path: &Path, img: &Image, rows: u32, lzw: bool, orientation: Option<u16>) {
    use tiff::encoder::{colortype as ct, Compression, TiffEncoder};
    let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut enc = TiffEncoder::new(f).unwrap();
    if lzw {
        enc = enc.with_compression(Compression::Lzw);
    }
    macro_rules! go {
        ($c:ty, $data:expr) => {{
            let mut t = enc.new_image::<$c>(img.width, img.height).unwrap();
            t.rows_per_strip(rows).unwrap();
            if let Some(o) = orientation {
                t.encoder().write_tag(tiff::tags::Tag::Orientation, o).unwrap();
            }
            t.write_data($data).unwrap();
        }};
    }
    match (&img.samples, img.channels) {
        (Samples::U8(v), 1) => go!(ct::Gray8, v),
        (Samples::U8(v), 3) => go!(ct::RGB8, v),
        (Samples::U8(v), 4) => go!(ct::RGBA8, v),
        (Samples::U16(v), 1) => go!(ct::Gray16, v),
        (Samples::U16(v), 3) => go!(ct::RGB16, v),
        (Samples::U16(v), 4) => go!(ct::RGBA16, v),
        _ => panic!("no TIFF colour type for this test image"),
    }
}

#[test]
fn stripped_tiffs_are_read_strip_by_strip() {
    // A stripped, interleaved TIFF of 8 or 16 bits is read a strip at a
    // time (LZW or not), its rows the samples the whole-image decoder gives
    // whatever the reads' sizes; a rotated one is decoded whole (the
    // rotation applied); and sr in bands of it equals sr whole.
    use gpuimg::rows::RowReader;
    let mut rng = Rng::for_test("stripped_tiffs_are_read_strip_by_strip");
    let dir = tmpdir("bands-tiff");
    let limits = image_io::DecodeLimits::default();
    for (k, (c, bits, rows, lzw)) in
        [(3, 8, 7, false), (1, 16, 5, true), (4, 16, 64, false), (3, 16, 1, true), (1, 8, 300, true)]
            .into_iter()
            .enumerate()
    {
        let img = random_image(&mut rng, 41, 97, c, bits);
        let p = dir.join(format!("s{k}.tif"));
        write_tiff(&p, &img, rows, lzw, None);
        let (whole, _) = image_io::load_full(&p, limits).unwrap();
        assert!(whole.samples == img.samples, "case {k}: the TIFF written is not the image");
        let mut r = RowReader::open(&p, limits, || image_io::load_full(&p, limits)).unwrap();
        assert!(r.by_rows(), "case {k}: a stripped TIFF was decoded whole");
        assert_eq!((r.width, r.height, r.channels, r.bits), (41, 97, c, bits));
        let mut got = r.empty();
        let mut done = 0;
        for step in [1, 6, 13, 2].into_iter().cycle() {
            let n = step.min(97 - done);
            r.read(n, &mut got).unwrap();
            done += n;
            if done == 97 {
                break;
            }
        }
        assert!(got == whole.samples, "case {k}: rows read strip by strip differ from the whole decode");
        assert!(r.read(1, &mut got).is_err(), "case {k}: read past the last row");
        r.rewind().unwrap();
        let mut again = r.empty();
        r.read(97, &mut again).unwrap();
        assert!(again == whole.samples, "case {k}: after rewind");
    }
    // Rotated (Orientation 6): decoded whole, the rotation applied.
    let img = random_image(&mut rng, 30, 20, 3, 8);
    let p = dir.join("rotated.tif");
    write_tiff(&p, &img, 4, false, Some(6));
    let r = RowReader::open(&p, limits, || image_io::load_full(&p, limits)).unwrap();
    assert!(!r.by_rows());
    assert_eq!((r.width, r.height), (20, 30), "the orientation was applied");
    // sr in bands of a stripped TIFF.
    let p = dir.join("in.tif");
    write_tiff(&p, &random_image(&mut rng, 45, 77, 3, 8), 9, true, None);
    let op = ops::SuperResolveOp::new(TinyPssr::bundled(2).unwrap());
    let (banded, whole) = both(&Backend::Cpu, &op, &p, "png", 11);
    assert_same("sr of a stripped TIFF", &banded, &whole);
    // A TIFF cut inside its strips fails in bands without leaving a file.
    let bytes = std::fs::read(&p).unwrap();
    let cut = dir.join("cut.tif");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let r = run_one(&Backend::Cpu, &op, &cut, &dir.join("cut.png"), 8, &stream::Silent);
    assert_eq!((r.images, r.failed), (0, 1), "{:?}", r.failures);
    assert!(!dir.join("cut.png").exists());
}

#[test]
fn banded_compression_streams_many_entropy_bands() {
    // Wide enough that each channel's plane is several entropy bands (a
    // stream per 65,536 latent values), with processing bands that cut
    // across them: the streams are coded as their rows come in and the
    // file is still the whole run's, byte for byte.
    use gpuimg::codec::{entropy, CompressOp, Tcz};
    use gpuimg::models::tinycompress::TinyCompress;
    let mut rng = Rng::for_test("banded_compression_streams_many_entropy_bands");
    let dir = tmpdir("bands-entropy");
    let m = TinyCompress::bundled(4).unwrap();
    let input = save(&dir, "wide.png", &random_image(&mut rng, 1500, 400, 3, 8));
    let op = CompressOp::new(m, 7).unwrap();
    let (b, w) = (dir.join("wide_b.tcz"), dir.join("wide_w.tcz"));
    one(&Backend::Cpu, &op, &input, &b, 22);
    one(&Backend::Cpu, &op, &input, &w, 0);
    let (bb, wb) = (std::fs::read(&b).unwrap(), std::fs::read(&w).unwrap());
    let t = Tcz::parse(&wb).unwrap();
    let (lw, lh) = t.latent_size();
    assert!(lh > 2 * entropy::band_rows(lw), "{lw}x{lh} latents are not several entropy bands");
    assert!(bb == wb, "the banded .tcz differs from the whole one");
}
