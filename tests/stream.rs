//! The streaming batch engine: streamed results equal the per-image ops on
//! every backend and ring depth, bad files are reported and skipped, memory
//! stays bounded, and the report's measurements are filled in.

mod common;

use std::path::{Path, PathBuf};

use common::{gpu_backend, Rng};
use common::{random_image, tmpdir};
use gpuimg::image_io::{self, Image};
use gpuimg::kernels::ResizeBilinear;
use gpuimg::models::zero_dce::{Arch, ZeroDce};
use gpuimg::models::TinyPssr;
use gpuimg::stream::{self, Job, ProgressBar, Silent, StreamConfig, StreamOp};
use gpuimg::{ops, Backend};

/// A directory of images of every layout and several sizes (small ones to
/// batch, one too large to batch), a corrupt file and a truncated PNG.
/// Returns the jobs (outputs in `out/`) and the two bad inputs.
fn mixed(name: &str, rng: &mut Rng) -> (Vec<Job>, Vec<PathBuf>) {
    let dir = tmpdir(name);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut inputs = Vec::new();
    let specs: &[(u32, u32, usize, u32)] = &[
        (37, 29, 3, 8),
        (40, 33, 4, 8),
        (23, 41, 1, 8),
        (50, 31, 2, 8),
        (61, 47, 3, 16),
        (301, 257, 3, 8),
        (19, 17, 3, 8),
        (21, 16, 4, 8),
        (18, 25, 3, 8),
        (33, 20, 3, 8),
    ];
    for (i, &(w, h, c, bits)) in specs.iter().enumerate() {
        let p = dir.join(format!("img{i:02}.png"));
        image_io::save(&random_image(rng, w, h, c, bits), &p).unwrap();
        inputs.push(p);
    }
    let corrupt = dir.join("img98_corrupt.png");
    std::fs::write(&corrupt, b"this is not a png").unwrap();
    let full = std::fs::read(&inputs[0]).unwrap();
    let truncated = dir.join("img99_truncated.png");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    inputs.push(corrupt.clone());
    inputs.push(truncated.clone());
    let jobs = inputs.iter().map(|p| Job { input: p.clone(), output: out.join(p.file_name().unwrap()) }).collect();
    (jobs, vec![corrupt, truncated])
}

/// Runs `op` over `jobs` and checks every output against `single` (the
/// per-image op on the same backend), the failures and the report.
fn check_run(
    backend: &Backend,
    op: &dyn StreamOp,
    jobs: &[Job],
    bad: &[PathBuf],
    cfg: &StreamConfig,
    single: impl Fn(&Image) -> Image,
) {
    for j in jobs {
        let _ = std::fs::remove_file(&j.output);
    }
    let r = stream::run_batch(backend, op, jobs, cfg, &Silent);
    let good = jobs.len() - bad.len();
    assert_eq!(r.images, good, "{:?}", r.failures);
    assert_eq!(r.failed, bad.len());
    let failed: Vec<&Path> = r.failures.iter().map(|(p, _)| p.as_path()).collect();
    assert_eq!(failed, bad.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    for j in jobs {
        if bad.contains(&j.input) {
            assert!(!j.output.exists(), "{}: no output for a bad input", j.output.display());
            continue;
        }
        let got = image_io::load(&j.output).unwrap();
        let want = single(&image_io::load(&j.input).unwrap());
        assert_eq!(got, want, "{} (slots {})", j.input.display(), cfg.slots);
    }
    assert!(r.peak_in_memory >= 1 && r.peak_in_memory <= cfg.max_in_memory());
    // Every written image was decoded and encoded: their stages took time on the clock.
    assert!(r.images == 0 || (r.stages.decode_s > 0.0 && r.stages.encode_s > 0.0));
    match backend {
        Backend::Cpu => {
            assert!(r.stages.cpu_s > 0.0 && r.gpu_busy_s.is_none() && r.submissions == 0);
        }
        Backend::Gpu(g) => {
            assert!(r.submissions >= 1 && r.submissions <= good, "{} submissions", r.submissions);
            assert!(r.stages.gpu_s > 0.0 && r.stages.upload_s > 0.0);
            if g.has_timestamps() {
                let busy = r.gpu_busy_s.expect("timestamps give busy time");
                let u = r.gpu_utilization().unwrap();
                assert!(busy > 0.0 && u > 0.0 && u <= 1.05, "busy {busy} s, utilisation {u}");
            }
        }
    }
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).expect("report is JSON");
    assert_eq!(json["images"], good);
    assert_eq!(json["failed"], bad.len());
    assert_eq!(json["slots"], cfg.slots);
    for k in ["decode_s", "upload_s", "gpu_s", "readback_s", "encode_s"] {
        assert!(json["stages"][k].is_number(), "{k}");
    }
}

#[test]
fn streamed_resize_equals_the_per_image_op_on_every_ring_depth() {
    let mut rng = Rng::for_test("streamed_resize_equals_the_per_image_op_on_every_ring_depth");
    let (jobs, bad) = mixed("resize", &mut rng);
    let op = ops::ResizeOp(ResizeBilinear::by_factor(0.5 + rng.uniform(0.0, 0.9) as f64, false));
    let mut cfg = StreamConfig::new();
    cfg.set_threads("2:2:2").unwrap();
    check_run(&Backend::Cpu, &op, &jobs, &bad, &cfg, |img| ops::resize_image(&Backend::Cpu, img, &op.0).unwrap());
    let Some(gpu) = gpu_backend() else { return };
    for slots in [1, 2, 3] {
        cfg.slots = slots;
        check_run(&gpu, &op, &jobs, &bad, &cfg, |img| ops::resize_image(&gpu, img, &op.0).unwrap());
    }
}

#[test]
fn streamed_models_equal_the_per_image_calls() {
    let Some(gpu) = gpu_backend() else { return };
    let mut rng = Rng::for_test("streamed_models_equal_the_per_image_calls");
    let dir = tmpdir("models");
    let mut jobs = Vec::new();
    for (i, (w, h, c)) in [(29u32, 23u32, 3usize), (24, 31, 4), (33, 26, 1), (27, 25, 2)].into_iter().enumerate() {
        let p = dir.join(format!("m{i}.png"));
        image_io::save(&random_image(&mut rng, w, h, c, 8), &p).unwrap();
        jobs.push(Job { input: p, output: dir.join(format!("m{i}_out.png")) });
    }
    let mut cfg = StreamConfig::new();
    cfg.slots = 2;
    let enhance = ops::EnhanceOp::new(ZeroDce::bundled(Arch::ZeroDcePlus).unwrap(), Some(2), 8).unwrap();
    let model = ZeroDce::bundled(Arch::ZeroDcePlus).unwrap();
    for backend in [Backend::Cpu, gpu.clone()] {
        check_run(&backend, &enhance, &jobs, &[], &cfg, |img| ops::enhance(&backend, &model, img, 2, 8).unwrap());
    }
    let sr = ops::SuperResolveOp::new(TinyPssr::bundled(2).unwrap());
    let m = TinyPssr::bundled(2).unwrap();
    let srjobs: Vec<Job> = jobs.iter().filter(|j| !j.input.ends_with("m2.png")).cloned().collect();
    for backend in [Backend::Cpu, gpu.clone()] {
        check_run(&backend, &sr, &srjobs, &[], &cfg, |img| ops::super_resolve(&backend, &m, img).unwrap());
    }
}

#[test]
fn a_thousand_images_stream_in_bounded_memory() {
    let mut rng = Rng::for_test("a_thousand_images_stream_in_bounded_memory");
    let dir = tmpdir("thousand");
    let jobs: Vec<Job> = (0..1000)
        .map(|i| {
            let p = dir.join(format!("t{i:04}.png"));
            image_io::save(&random_image(&mut rng, 7 + (i % 5) as u32, 5 + (i % 3) as u32, 3, 8), &p).unwrap();
            Job { input: p, output: dir.join(format!("t{i:04}_out.png")) }
        })
        .collect();
    let op = ops::ResizeOp(ResizeBilinear::by_factor(2.0, false));
    let mut cfg = StreamConfig::new();
    cfg.set_threads("2:1:2").unwrap();
    let mut backends = vec![Backend::Cpu];
    backends.extend(gpu_backend());
    for b in &backends {
        let r = stream::run_batch(b, &op, &jobs, &cfg, &Silent);
        assert_eq!((r.images, r.failed), (1000, 0), "{:?}", r.failures.first());
        let bound = cfg.max_in_memory();
        assert!(bound < 100, "the bound ({bound}) does not grow with the number of files");
        assert!(r.peak_in_memory <= bound, "peak {} images in memory, bound {bound}", r.peak_in_memory);
        if let Backend::Gpu(_) = b {
            // Tiny images share submissions.
            assert!(r.submissions < 1000, "{} submissions for 1000 tiny images", r.submissions);
        }
        for j in &jobs {
            std::fs::remove_file(&j.output).unwrap();
        }
    }
}

#[test]
fn thread_specs_and_progress_lines() {
    let mut cfg = StreamConfig::new();
    cfg.set_threads("3:4:5").unwrap();
    assert_eq!((cfg.load_threads, cfg.proc_threads, cfg.save_threads), (3, 4, 5));
    for bad in ["0:1:1", "1:2", "a:b:c", "1:2:3:4", ""] {
        let e = cfg.set_threads(bad).unwrap_err().to_string();
        assert!(e.contains("LOAD:PROC:SAVE"), "{bad}: {e}");
    }
    let bar = ProgressBar::new("gpuimg", false);
    let line = bar.line(30, 120, std::time::Duration::from_secs(10));
    assert!(line.contains("30/120 3.0 img/s ETA 0:30"), "{line}");
    assert!(line.contains(&format!("[{}{}]", "#".repeat(7), " ".repeat(23))), "{line}");
}

#[test]
fn small_images_of_one_layout_share_dispatches() {
    let Some(gpu) = gpu_backend() else { return };
    let Backend::Gpu(g) = &gpu else { unreachable!() };
    let mut rng = Rng::for_test("small_images_of_one_layout_share_dispatches");
    let op = ops::ResizeOp(ResizeBilinear::by_factor(1.5, false));
    // Directly: one recording for three images equals three single ones.
    let imgs: Vec<Image> = (0..3).map(|_| random_image(&mut rng, 13, 9, 4, 8)).collect();
    let bytes: Vec<u8> = imgs.iter().flat_map(|i| i.samples.to_le_bytes()).collect();
    let src = g.upload_bytes(&bytes).unwrap();
    let refs: Vec<&Image> = imgs.iter().collect();
    let mut layout = None;
    let out = ops::run_recorded(g, "group", 3 * 19 * 13 * 4, |enc| {
        let rec = op.record_group(&[0, 1, 2], g, enc, &refs, &src)?.expect("resize groups");
        layout = Some(rec.layout);
        Ok(rec)
    })
    .unwrap();
    let l = layout.unwrap();
    assert_eq!((l.n, l.width, l.height), (3, 19, 13));
    for (k, img) in imgs.iter().enumerate() {
        let want = ops::resize_image(&gpu, img, &op.0).unwrap();
        let one = 19 * 13 * 4;
        assert_eq!(&out[k * one..(k + 1) * one], &want.samples.to_le_bytes()[..], "image {k} of the group");
    }
    // Through the engine: equal outputs, and the report counts grouped images.
    let dir = tmpdir("grouped");
    let jobs: Vec<Job> = (0..64)
        .map(|i| {
            let p = dir.join(format!("g{i:02}.png"));
            image_io::save(&random_image(&mut rng, 16, 12, 3, 8), &p).unwrap();
            Job { input: p, output: dir.join(format!("g{i:02}_out.png")) }
        })
        .collect();
    let mut cfg = StreamConfig::new();
    cfg.set_threads("2:1:2").unwrap();
    cfg.slots = 3;
    let r = stream::run_batch(&gpu, &op, &jobs, &cfg, &Silent);
    assert_eq!((r.images, r.failed), (64, 0));
    for j in &jobs {
        let got = image_io::load(&j.output).unwrap();
        let want = ops::resize_image(&gpu, &image_io::load(&j.input).unwrap(), &op.0).unwrap();
        assert_eq!(got, want, "{}", j.input.display());
    }
    eprintln!("{} of 64 images shared dispatches, {} submissions", r.grouped, r.submissions);
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["grouped"], r.grouped);
    // At most 8 images a submission (max_batch), and grouping means fewer
    // submissions than images.
    assert!(r.submissions >= 64 / 8 && r.submissions <= 64, "{} submissions", r.submissions);
    assert!(r.grouped == 0 || r.submissions < 64, "{} grouped in {} submissions", r.grouped, r.submissions);
}
