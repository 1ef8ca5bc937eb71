//! The command-line tool as a user meets it: exit codes, one-line errors,
//! outputs never over inputs, batch runs that carry on past a bad file.

mod common;

use common::tmpdir;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gpuimg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpuimg")).args(args).env_remove("GPUIMG_DEVICE").output().expect("run gpuimg")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/chelsea.png")
}

/// gpuimg's own error lines (Mesa may add its own noise to stderr).
fn error_lines(o: &Output) -> Vec<String> {
    stderr(o).lines().filter(|l| l.starts_with("gpuimg: error:")).map(String::from).collect()
}

#[test]
fn info_lists_adapters_and_choice() {
    let o = gpuimg(&["info"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("chosen (--device auto)"), "{out}");
    assert!(out.contains("cpu path:"), "{out}");
}

#[test]
fn unknown_values_are_refused_with_the_valid_list() {
    let o = gpuimg(&["--device", "tpu", "info"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("tpu") && e.contains("auto") && e.contains("gpu") && e.contains("cpu"), "{e}");
    let o = Command::new(env!("CARGO_BIN_EXE_gpuimg")).args(["info"]).env("GPUIMG_DEVICE", "npu").output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown device 'npu' (valid: auto, gpu, cpu)"), "{}", stderr(&o));
}

#[test]
fn resize_writes_the_expected_image_on_the_cpu() {
    let dir = tmpdir("resize");
    let out = dir.join("half.png");
    let o = gpuimg(&[
        "--device",
        "cpu",
        "resize",
        sample().to_str().unwrap(),
        "--scale",
        "0.5",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = gpuimg::image_io::load(&out).unwrap();
    assert_eq!((img.width, img.height, img.channels), (225, 150, 3));
    // Default name beside the input when -o is absent (in a copy, to keep assets/ clean).
    let copy = dir.join("cat.png");
    std::fs::copy(sample(), &copy).unwrap();
    let o = gpuimg(&["--device", "cpu", "resize", copy.to_str().unwrap(), "--width", "64", "--height", "32"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = gpuimg::image_io::load(&dir.join("cat_64x32.png")).unwrap();
    assert_eq!((img.width, img.height), (64, 32));
}

#[test]
fn resize_on_the_gpu_equals_the_cpu() {
    if !common::cli_gpu("CLI on the GPU") {
        return;
    }
    let dir = tmpdir("resize-gpu");
    let (g, c) = (dir.join("g.png"), dir.join("c.png"));
    for (dev, out) in [("gpu", &g), ("cpu", &c)] {
        let o = gpuimg(&[
            "--device",
            dev,
            "resize",
            sample().to_str().unwrap(),
            "--scale",
            "1.7",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{dev}: {}", stderr(&o));
    }
    let (gi, ci) = (gpuimg::image_io::load(&g).unwrap(), gpuimg::image_io::load(&c).unwrap());
    assert_eq!((gi.width, gi.height), (766, 510));
    let (gpuimg::Samples::U8(a), gpuimg::Samples::U8(b)) = (&gi.samples, &ci.samples) else { panic!("8-bit expected") };
    let worst = a.iter().zip(b).map(|(x, y)| (*x as i32 - *y as i32).abs()).max().unwrap();
    assert!(worst <= 1, "GPU and CPU outputs differ by {worst} levels");
}

#[test]
fn inputs_are_never_overwritten() {
    let dir = tmpdir("noclobber");
    let input = dir.join("in.png");
    std::fs::copy(sample(), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let o = gpuimg(&[
        "--device",
        "cpu",
        "resize",
        input.to_str().unwrap(),
        "--scale",
        "2",
        "-o",
        input.to_str().unwrap(),
        "--overwrite",
    ]);
    assert!(!o.status.success());
    let lines = error_lines(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("overwrite an input"), "{}", lines[0]);
    assert_eq!(std::fs::read(&input).unwrap(), before, "input changed");
}

#[test]
fn batch_carries_on_past_a_bad_file_and_fails_at_the_end() {
    let dir = tmpdir("batch");
    let (inp, out) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&inp).unwrap();
    std::fs::copy(sample(), inp.join("a.png")).unwrap();
    std::fs::write(inp.join("b.png"), b"\x89PNG\r\n\x1a\n truncated").unwrap();
    std::fs::copy(sample(), inp.join("c.png")).unwrap();
    std::fs::write(inp.join("notes.txt"), b"not an image, ignored").unwrap();
    let o =
        gpuimg(&["--device", "cpu", "resize", inp.to_str().unwrap(), "--scale", "0.25", "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("b.png") && e.contains("2 written, 0 skipped, 1 failed, 3 inputs"), "{e}");
    assert!(out.join("a_x0.25.png").exists() && out.join("c_x0.25.png").exists());
    assert!(!out.join("b_x0.25.png").exists(), "no output for the bad file");
    // Existing outputs are skipped unless --overwrite.
    let o = gpuimg(&[
        "--device",
        "cpu",
        "resize",
        inp.join("a.png").to_str().unwrap(),
        "--scale",
        "0.25",
        "-o",
        out.join("a_x0.25.png").to_str().unwrap(),
    ]);
    assert!(o.status.success() && stderr(&o).contains("skipped"), "{}", stderr(&o));
}

#[test]
fn bad_arguments_are_one_line_errors() {
    for args in [
        vec!["resize", "missing.png", "--scale", "2"],
        vec!["resize", sample().to_str().unwrap(), "--scale", "-1"],
        vec!["resize", sample().to_str().unwrap(), "--scale", "NaN"],
        vec!["resize", sample().to_str().unwrap(), "--scale", "0.0001"],
        vec!["resize", sample().to_str().unwrap(), "--width", "0", "--height", "5"],
        vec!["resize", sample().to_str().unwrap(), "--scale", "2", "-o", "/tmp/out.gif"],
    ] {
        let mut full = vec!["--device", "cpu"];
        full.extend(args.iter().copied());
        let o = gpuimg(&full);
        assert!(!o.status.success(), "{args:?} should fail");
        let lines = error_lines(&o);
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn sr_upscales_and_refuses_bad_scales_and_weights() {
    let dir = tmpdir("sr");
    let out = dir.join("cat_x2.png");
    let o = gpuimg(&["--device", "cpu", "sr", "--scale", "2", sample().to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = gpuimg::image_io::load(&out).unwrap();
    assert_eq!((img.width, img.height, img.channels), (902, 600, 3));

    let o = gpuimg(&["--device", "cpu", "sr", "--scale", "3", sample().to_str().unwrap()]);
    let lines = error_lines(&o);
    assert!(
        !o.status.success() && lines.len() == 1 && lines[0].contains("'3'") && lines[0].contains("2, 4"),
        "{lines:?}"
    );

    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"not weights").unwrap();
    let o = gpuimg(&[
        "--device",
        "cpu",
        "sr",
        "--scale",
        "2",
        "--weights",
        junk.to_str().unwrap(),
        sample().to_str().unwrap(),
    ]);
    let lines = error_lines(&o);
    assert!(!o.status.success() && lines.len() == 1 && lines[0].contains("junk.safetensors"), "{lines:?}");

    // x2 weights offered for x4 are refused.
    let x2 = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tinypssr_x2.safetensors");
    let o = gpuimg(&[
        "--device",
        "cpu",
        "sr",
        "--scale",
        "4",
        "--weights",
        x2.to_str().unwrap(),
        sample().to_str().unwrap(),
    ]);
    let lines = error_lines(&o);
    assert!(!o.status.success() && lines.len() == 1 && lines[0].contains("x2, not x4"), "{lines:?}");
}

#[test]
fn sr_in_tiles_writes_the_untiled_image() {
    // Seed-001 tiles with a halo of the model's receptive radius: --tile WxH,
    // and --tile auto under a memory budget the whole 451x300 image's work
    // (about 13 MB at x2) does not fit but four tiles' does. CPU path: the
    // same bytes.
    let dir = tmpdir("sr-tiles");
    let run = |scale: &str, tile: &str, limit: Option<&str>, out: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gpuimg"));
        c.args(["--device", "cpu", "sr", "--scale", scale, "--tile", tile, sample().to_str().unwrap()]);
        c.args(["-o", out.to_str().unwrap()]).env_remove("GPUIMG_DEVICE");
        if let Some(l) = limit {
            c.env("GPUIMG_MEMORY_LIMIT", l);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "--scale {scale} --tile {tile}: {}", stderr(&o));
        gpuimg::image_io::load(out).unwrap().samples
    };
    for (scale, tiles) in [("2", vec!["100x80", "451x16"]), ("4", vec!["64x64"])] {
        let whole = run(scale, "off", None, &dir.join(format!("whole{scale}.png")));
        for t in tiles {
            let tiled = run(scale, t, None, &dir.join(format!("t{scale}-{t}.png")));
            assert!(tiled == whole, "x{scale} in {t} tiles differs from the untiled output");
        }
    }
    let whole = run("2", "off", None, &dir.join("w.png"));
    assert!(run("2", "auto", Some("8M"), &dir.join("auto.png")) == whole, "auto tiles differ");
    // Without tiles that budget is refused, in one line naming the need.
    let o = Command::new(env!("CARGO_BIN_EXE_gpuimg"))
        .args(["--device", "cpu", "sr", "--scale", "2", "--tile", "off", sample().to_str().unwrap()])
        .args(["-o", dir.join("no.png").to_str().unwrap()])
        .env("GPUIMG_MEMORY_LIMIT", "8M")
        .output()
        .unwrap();
    let lines = error_lines(&o);
    assert!(!o.status.success() && lines.len() == 1 && lines[0].contains("needs about"), "{lines:?}");
    assert!(!dir.join("no.png").exists());
    // A bad --tile is one line naming it.
    for bad in ["8x8", "big", "0x100", "100"] {
        let o = gpuimg(&["--device", "cpu", "sr", "--tile", bad, sample().to_str().unwrap()]);
        let lines = error_lines(&o);
        assert!(!o.status.success() && lines.len() == 1 && lines[0].contains("--tile"), "{bad}: {lines:?}");
    }
}

#[test]
fn large_images_run_in_bands_from_the_cli() {
    // GPUIMG_BAND_BYTES=1 puts every image in bands (the default is 256 MiB
    // of output): the output is the whole run's, the report counts the
    // banded job, a JPEG output goes whole with a note (none under --quiet),
    // and enhance's first pass checks its memory before allocating.
    let dir = tmpdir("bands-cli");
    let run = |args: &[&str], bands: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gpuimg"));
        c.args(["--device", "cpu"]).args(args).env_remove("GPUIMG_DEVICE").env("GPUIMG_BAND_BYTES", bands);
        c.output().unwrap()
    };
    let input = sample();
    let input = input.to_str().unwrap();
    for (name, args) in [("sr", vec!["sr", "--scale", "2"]), ("enhance", vec!["enhance", "--scale-factor", "3"])] {
        let (b, w, r) =
            (dir.join(format!("{name}_b.png")), dir.join(format!("{name}_w.png")), dir.join(format!("{name}.json")));
        let mut a = args.clone();
        a.extend([input, "-o", b.to_str().unwrap(), "--report", r.to_str().unwrap()]);
        let o = run(&a, "1");
        assert!(o.status.success(), "{name} in bands: {}", stderr(&o));
        let report = std::fs::read_to_string(&r).unwrap();
        assert!(report.contains("\"banded\": 1"), "{report}");
        let mut a = args.clone();
        a.extend([input, "-o", w.to_str().unwrap()]);
        assert!(run(&a, "1T").status.success());
        let (b, w) = (gpuimg::image_io::load(&b).unwrap(), gpuimg::image_io::load(&w).unwrap());
        assert!(b.samples == w.samples, "{name}: the banded output differs from the whole one");
    }
    // compress and decompress: the same .tcz, the same decoded image.
    let (tb, tw) = (dir.join("c_b.tcz"), dir.join("c_w.tcz"));
    let r = dir.join("c.json");
    let o = run(&["compress", "--rate", "16", input, "-o", tb.to_str().unwrap(), "--report", r.to_str().unwrap()], "1");
    assert!(o.status.success(), "compress in bands: {}", stderr(&o));
    assert!(std::fs::read_to_string(&r).unwrap().contains("\"banded\": 1"));
    assert!(run(&["compress", "--rate", "16", input, "-o", tw.to_str().unwrap()], "1T").status.success());
    assert!(std::fs::read(&tb).unwrap() == std::fs::read(&tw).unwrap(), "compress: the banded .tcz differs");
    let (db, dw) = (dir.join("d_b.png"), dir.join("d_w.png"));
    let r = dir.join("d.json");
    let o =
        run(&["decompress", tw.to_str().unwrap(), "-o", db.to_str().unwrap(), "--report", r.to_str().unwrap()], "1");
    assert!(o.status.success(), "decompress in bands: {}", stderr(&o));
    assert!(std::fs::read_to_string(&r).unwrap().contains("\"banded\": 1"));
    assert!(run(&["decompress", tw.to_str().unwrap(), "-o", dw.to_str().unwrap()], "1T").status.success());
    let (b, w) = (gpuimg::image_io::load(&db).unwrap(), gpuimg::image_io::load(&dw).unwrap());
    assert!(b.samples == w.samples, "decompress: the banded image differs from the whole one");
    let jpg = dir.join("x.jpg");
    let o = run(&["sr", "--scale", "2", input, "-o", jpg.to_str().unwrap()], "1");
    assert!(o.status.success() && jpg.exists(), "{}", stderr(&o));
    assert!(stderr(&o).contains("gpuimg: note:") && stderr(&o).contains("only PNG and TIFF"), "{}", stderr(&o));
    let o = run(&["--quiet", "sr", "--scale", "2", input, "-o", jpg.to_str().unwrap(), "--overwrite"], "1");
    assert!(o.status.success() && !stderr(&o).contains("note:"), "{}", stderr(&o));
    let out = dir.join("tight.png");
    let o = Command::new(env!("CARGO_BIN_EXE_gpuimg"))
        .args(["--device", "cpu", "enhance", "--scale-factor", "2", input, "-o", out.to_str().unwrap()])
        .env_remove("GPUIMG_DEVICE")
        .env("GPUIMG_BAND_BYTES", "1")
        .env("GPUIMG_MEMORY_LIMIT", "16M")
        .output()
        .unwrap();
    let lines = error_lines(&o);
    assert!(!o.status.success() && lines.len() == 1 && lines[0].contains("in bands"), "{lines:?}");
    assert!(!out.exists());
}

#[test]
fn sr_on_the_gpu_matches_the_cpu() {
    if !common::cli_gpu("CLI on the GPU") {
        return;
    }
    let dir = tmpdir("sr-gpu");
    let (g, c) = (dir.join("g.png"), dir.join("c.png"));
    for (dev, out) in [("gpu", &g), ("cpu", &c)] {
        let o =
            gpuimg(&["--device", dev, "sr", "--scale", "2", sample().to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert!(o.status.success(), "{dev}: {}", stderr(&o));
    }
    // And in tiles on the GPU (the blocking path, tile by tile).
    let t = dir.join("t.png");
    let o = gpuimg(&[
        "--device",
        "gpu",
        "sr",
        "--scale",
        "2",
        "--tile",
        "100x80",
        sample().to_str().unwrap(),
        "-o",
        t.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "tiled: {}", stderr(&o));
    let ci = gpuimg::image_io::load(&c).unwrap();
    for (name, p) in [("GPU (fused)", &g), ("GPU in 100x80 tiles", &t)] {
        let gi = gpuimg::image_io::load(p).unwrap();
        let (gpuimg::Samples::U8(a), gpuimg::Samples::U8(b)) = (&gi.samples, &ci.samples) else {
            panic!("8-bit expected")
        };
        assert_eq!(a.len(), b.len(), "{name}");
        let worst = a.iter().zip(b).map(|(x, y)| (*x as i32 - *y as i32).abs()).max().unwrap();
        assert!(worst <= 1, "{name} and CPU sr differ by {worst} levels");
    }
}

#[test]
fn eval_sr_prints_a_table_that_beats_bicubic() {
    let dir = tmpdir("eval");
    std::fs::copy(sample(), dir.join("cat.png")).unwrap();
    let o = gpuimg(&["--device", "cpu", "eval", "sr", "--scale", "2", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let mean = out.lines().find(|l| l.contains("**mean**")).expect("mean row");
    let gain: f64 = mean.rsplit('|').nth(1).unwrap().trim().trim_end_matches(" dB").parse().unwrap();
    assert!(gain > 0.3, "{out}");
}

#[test]
fn eval_enhance_scores_levels_and_synthetic_pairs() {
    let dir = tmpdir("eval_enhance");
    std::fs::copy(sample(), dir.join("cat.png")).unwrap();
    std::fs::write(dir.join("broken.png"), b"not a png").unwrap();
    let cells = |line: &str| -> Vec<String> { line.split('|').map(|c| c.trim().to_string()).collect() };
    let num = |c: &str| -> f64 { c.split_whitespace().next().unwrap().parse().unwrap() };
    // Synthetic pairs: the cat darkened (seeded), enhanced, scored against itself.
    let args = ["--device", "cpu", "eval", "enhance", "--synthetic", dir.to_str().unwrap()];
    let o = gpuimg(&args);
    assert_eq!(o.status.code(), Some(1), "a skipped file fails the run: {}", stderr(&o));
    assert!(stderr(&o).contains("skipped") && stderr(&o).contains("broken.png"), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let row = cells(out.lines().find(|l| l.starts_with("| cat |")).expect("the cat's row"));
    let (original, dark, enhanced) = (num(&row[2]), num(&row[3]), num(&row[4]));
    assert!(dark < 0.5 * original && enhanced > 2.0 * dark, "{out}");
    let psnr = num(&row[7]);
    assert!(psnr > 12.0 && psnr < 60.0, "{out}");
    assert!(out.lines().any(|l| l.starts_with("| **mean** |")), "{out}");
    // The same seed, the same table; another seed, another darkening.
    assert_eq!(String::from_utf8_lossy(&gpuimg(&args).stdout), out);
    let mut other = args.to_vec();
    other.extend(["--seed", "7"]);
    assert_ne!(String::from_utf8_lossy(&gpuimg(&other).stdout), out);
    // Low-light photos as they are: the output is brighter than the input.
    std::fs::remove_file(dir.join("broken.png")).unwrap();
    std::fs::remove_file(dir.join("cat.png")).unwrap();
    let dark_sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/chelsea_dark.png");
    std::fs::copy(dark_sample, dir.join("dark.png")).unwrap();
    let o = gpuimg(&["--device", "cpu", "eval", "enhance", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let row = cells(out.lines().find(|l| l.starts_with("| dark |")).expect("the dark photo's row"));
    assert!(num(&row[3]) > 3.0 * num(&row[2]), "{out}");
    // --scale-factor 0 is refused in one line.
    let o = gpuimg(&["--device", "cpu", "eval", "enhance", "--scale-factor", "0", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(error_lines(&o).len(), 1, "{}", stderr(&o));
}

#[test]
fn train_sr_runs_a_few_steps_and_writes_loadable_weights() {
    let dir = tmpdir("train");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..5 {
        std::fs::copy(sample(), data.join(format!("p{i}.png"))).unwrap();
    }
    let out = dir.join("w.safetensors");
    let o = gpuimg(&[
        "train",
        "sr",
        "--scale",
        "2",
        "--data",
        data.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--steps",
        "3",
        "--batch",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let w = gpuimg::weights::Weights::load(&out).unwrap();
    assert!(w.metadata["recipe"].contains("--steps 3"));
    assert_eq!(gpuimg::models::TinyPssr::from_weights(&w).unwrap().parameter_count(), 1356);
    let o = gpuimg(&[
        "train",
        "sr",
        "--scale",
        "2",
        "--data",
        dir.join("nope").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success() && error_lines(&o).len() == 1, "{}", stderr(&o));
}

#[test]
fn enhance_brightens_and_refuses_bad_models_weights_and_factors() {
    let dir = tmpdir("enhance");
    let input = dir.join("cat.png");
    std::fs::copy(sample(), &input).unwrap();
    for (model, dev) in [("zero-dce++", "cpu"), ("zero-dce", "cpu"), ("zero-dce++", "gpu")] {
        if dev == "gpu" && !common::cli_gpu("enhance on the GPU") {
            continue;
        }
        let o = gpuimg(&["--device", dev, "enhance", "--model", model, input.to_str().unwrap(), "--overwrite"]);
        assert!(o.status.success(), "{model} {dev}: {}", stderr(&o));
        let out = gpuimg::image_io::load(&dir.join("cat_enhanced.png")).unwrap();
        assert_eq!((out.width, out.height, out.channels), (451, 300, 3));
        let mean = |i: &gpuimg::image_io::Image| match &i.samples {
            gpuimg::Samples::U8(v) => v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64,
            _ => panic!("8-bit expected"),
        };
        // The sample is well exposed (mean about 115): the curve still lifts its shadows.
        assert!(mean(&out) > mean(&gpuimg::image_io::load(&input).unwrap()), "{model} {dev} did not brighten");
    }
    let refuse = |args: &[&str], needle: &str| {
        let mut a = vec!["--device", "cpu", "enhance"];
        a.extend_from_slice(args);
        a.push(input.to_str().unwrap());
        let o = gpuimg(&a);
        let lines = error_lines(&o);
        assert!(!o.status.success() && lines.len() == 1 && lines[0].contains(needle), "{args:?}: {lines:?}");
    };
    refuse(&["--model", "retinex"], "unknown model 'retinex' (valid: zero-dce++, zero-dce)");
    refuse(&["--model", "zero-dce", "--iterations", "4"], "needs zero-dce++");
    refuse(&["--scale-factor", "0"], "--scale-factor 0");
    refuse(&["--scale-factor", "400", "--overwrite"], "scale factor 400 is larger than the image's shorter side (300)");
    let sr = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tinypssr_x2.safetensors");
    refuse(&["--weights", sr.to_str().unwrap()], "not Zero-DCE weights");
    let pp = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/zero_dce_pp.safetensors");
    refuse(&["--model", "zero-dce", "--weights", pp.to_str().unwrap()], "these weights are zero-dce++, not zero-dce");
}

#[test]
fn train_enhance_runs_a_few_steps_and_writes_loadable_weights() {
    let dir = tmpdir("train-enhance");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..5 {
        std::fs::copy(sample(), data.join(format!("p{i}.png"))).unwrap();
    }
    for (model, count, exposure) in [("zero-dce++", 10_561, "source"), ("zero-dce", 79_416, "fixed")] {
        let out = dir.join("w.safetensors");
        let o = gpuimg(&[
            "train",
            "enhance",
            "--model",
            model,
            "--data",
            data.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--steps",
            "2",
            "--batch",
            "2",
            "--patch",
            "32",
            "--exposure",
            exposure,
            "--overwrite",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let w = gpuimg::weights::Weights::load(&out).unwrap();
        let recipe = &w.metadata["recipe"];
        assert!(recipe.contains("--steps 2"), "{recipe}");
        // The default (fixed) is left out, so the shipped recipes read as they did.
        assert_eq!(recipe.contains("--exposure source"), exposure == "source", "{recipe}");
        assert!(w.metadata["losses"].contains(if exposure == "source" { "source photo" } else { "0.6" }));
        let m = gpuimg::models::ZeroDce::from_weights(&w).unwrap();
        assert_eq!((m.arch.name(), m.parameter_count()), (model, count));
    }
    let o =
        gpuimg(&["train", "enhance", "--data", data.to_str().unwrap(), "-o", "x.safetensors", "--exposure", "auto"]);
    assert!(!o.status.success() && error_lines(&o).len() == 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("--exposure auto"), "{}", stderr(&o));
    let args = ["train", "enhance", "--data", data.to_str().unwrap(), "-o", "x.safetensors"];
    let o = gpuimg(&[&args[..], &["--exposure", "source", "--exposure-weight", "nan"]].concat());
    assert!(!o.status.success() && error_lines(&o).len() == 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("--exposure-weight NaN"), "{}", stderr(&o));
    let o = gpuimg(&["train", "enhance", "--data", dir.join("nope").to_str().unwrap(), "-o", "x.safetensors"]);
    assert!(!o.status.success() && error_lines(&o).len() == 1, "{}", stderr(&o));
}

#[test]
fn a_gpu_batch_run_writes_a_report_and_fails_on_a_bad_file() {
    let dir = tmpdir("report");
    let (inp, out) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&inp).unwrap();
    std::fs::copy(sample(), inp.join("a.png")).unwrap();
    std::fs::write(inp.join("b.png"), b"\x89PNG\r\n\x1a\n truncated").unwrap();
    let o = gpuimg(&[
        "--device",
        "cpu",
        "resize",
        sample().to_str().unwrap(),
        "--scale",
        "0.25",
        "-o",
        inp.join("c.jpg").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = dir.join("r.json");
    let args = ["--device", "gpu", "resize", inp.to_str().unwrap(), "--scale", "0.5", "-o", out.to_str().unwrap()];
    let o = gpuimg(&[&args[..], &["--report", report.to_str().unwrap(), "--slots", "3", "-j", "2:1:2"]].concat());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("b.png"), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!((r["images"].as_u64(), r["failed"].as_u64(), r["slots"].as_u64()), (Some(2), Some(1), Some(3)));
    assert_eq!(r["threads"]["load"], 2);
    assert!(r["adapter"].as_str().is_some_and(|a| !a.is_empty() && a != "cpu"), "{r}");
    for k in ["decode_s", "upload_s", "gpu_s", "readback_s", "encode_s"] {
        assert!(r["stages"][k].as_f64().is_some_and(|v| v >= 0.0), "{k}: {r}");
    }
    assert!(r["wall_s"].as_f64().unwrap() > 0.0);
    assert!(
        r["gpu_utilization"].is_null() || r["gpu_utilization"].as_f64().is_some_and(|u| u > 0.0 && u <= 1.05),
        "{r}"
    );
    assert!(r["failures"][0]["input"].as_str().unwrap().ends_with("b.png"));
    // Again: everything exists, so everything is skipped, and the report says so.
    // The report itself exists now: refused without --overwrite, before any work.
    let o = gpuimg(&[&args[..], &["--report", report.to_str().unwrap(), "--quiet"]].concat());
    assert!(error_lines(&o).len() == 1 && stderr(&o).contains("exists"), "{}", stderr(&o));
    let report = dir.join("r2.json");
    let o = gpuimg(&[&args[..], &["--report", report.to_str().unwrap(), "--quiet"]].concat());
    assert_eq!(o.status.code(), Some(1), "the bad file still fails");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!((r["images"].as_u64(), r["skipped"].as_u64(), r["failed"].as_u64()), (Some(0), Some(2), Some(1)));
    // Bad stream settings are one-line errors.
    let o = gpuimg(&[&args[..], &["-j", "0:1:1"]].concat());
    assert_eq!(error_lines(&o).len(), 1, "{}", stderr(&o));
    assert!(error_lines(&o)[0].contains("LOAD:PROC:SAVE"));
    let o = gpuimg(&[&args[..], &["--slots", "0"]].concat());
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bench_quick_writes_rows_and_a_chart() {
    let dir = tmpdir("bench");
    let (json, chart) = (dir.join("b.json"), dir.join("b.svg"));
    for dev in ["cpu", "gpu"] {
        let o = gpuimg(&[
            "--device",
            dev,
            "bench",
            "--quick",
            "--only",
            "prelu,resize_bilinear",
            "--threads",
            "1,2",
            "--json",
            json.to_str().unwrap(),
            "--chart",
            chart.to_str().unwrap(),
            "--overwrite",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("| prelu | 128x96 | cpu | host | 2 |"));
        let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let rows = j["rows"].as_array().unwrap();
        let gpu_rows = if dev == "gpu" { 2 } else { 0 };
        // 2 cases x 2 sizes x (2 CPU thread counts + GPU resident and round trip).
        assert_eq!(rows.len(), 2 * 2 * (2 + gpu_rows), "{j}");
        for r in rows {
            for k in ["name", "backend", "mode", "width", "height", "threads", "median_ms"] {
                assert!(!r[k].is_null(), "{k} in {r}");
            }
            assert!(r["median_ms"].as_f64().unwrap() > 0.0);
        }
        if dev == "gpu" {
            assert!(rows.iter().any(|r| r["mode"] == "resident") && rows.iter().any(|r| r["mode"] == "roundtrip"));
        }
        let svg = std::fs::read_to_string(&chart).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline") && svg.contains("resize_bilinear"));
    }
    let o = gpuimg(&["bench", "--only", "nope"]);
    assert!(!o.status.success());
    assert!(error_lines(&o)[0].contains("nope") && error_lines(&o)[0].contains("zero_dce_pp"), "{}", stderr(&o));
}

#[test]
fn augment_writes_samples_saves_and_replays_parameters() {
    let dir = tmpdir("augment");
    let input = sample();
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    let params = dir.join("p.tsv");
    let ops = "hflip;rotate:deg=10;jitter:brightness=0.2,hue=0.05;random-resized-crop:size=64";
    let run = |dev: &str, out: &Path, extra: &[&str]| {
        let seed = if extra.contains(&"--params") { "99" } else { "5" };
        let mut args = vec![
            "--device",
            dev,
            "augment",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--ops",
            ops,
            "--count",
            "3",
            "--seed",
            seed,
        ];
        args.extend_from_slice(extra);
        gpuimg(&args)
    };
    let o = run("cpu", &a, &["--save-params", params.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&params).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.lines().all(|l| l.starts_with("chelsea.png\t") && l.contains("crop:fx=")), "{text}");
    // The same seed on the GPU: the same draws, pixels within 2 levels.
    let o = run("gpu", &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Replayed parameters with another seed: the same images as the first run.
    let o = run("cpu", &c, &["--params", params.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    for k in 0..3 {
        let name = format!("chelsea_{k}.png");
        let x = std::fs::read(a.join(&name)).unwrap();
        assert_eq!(x, std::fs::read(c.join(&name)).unwrap(), "replay of sample {k}");
        let (p, q) = (gpuimg::image_io::load(&a.join(&name)).unwrap(), gpuimg::image_io::load(&b.join(&name)).unwrap());
        assert_eq!((p.width, p.height), (64, 64));
        let (gpuimg::Samples::U8(p), gpuimg::Samples::U8(q)) = (p.samples, q.samples) else { panic!() };
        let worst = p.iter().zip(&q).map(|(x, y)| (*x as i32 - *y as i32).abs()).max().unwrap();
        assert!(worst <= 2, "sample {k}: GPU and CPU differ by {worst} levels");
    }
    // normalize writes .npy (1, 3, 64, 64) f32.
    let o = gpuimg(&[
        "--device",
        "cpu",
        "augment",
        input.to_str().unwrap(),
        "-o",
        dir.join("n").to_str().unwrap(),
        "--ops",
        "center-crop:w=64,h=48;normalize",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let npy = std::fs::read(dir.join("n/chelsea_0.npy")).unwrap();
    assert_eq!(&npy[..6], b"\x93NUMPY");
    let hlen = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    let header = String::from_utf8_lossy(&npy[10..10 + hlen]);
    assert!(header.contains("'descr': '<f4'") && header.contains("'shape': (1, 3, 48, 64)"), "{header}");
    assert_eq!((10 + hlen) % 64, 0);
    assert_eq!(npy.len(), 10 + hlen + 3 * 48 * 64 * 4);
    let v = f32::from_le_bytes(npy[10 + hlen..14 + hlen].try_into().unwrap());
    assert!((-2.2..=2.7).contains(&v), "normalised value {v}");
    // Bad specs are one-line errors naming the valid choices.
    for (ops, want) in [
        ("flip", "unknown op 'flip'"),
        ("hflip:q=1", "unknown key 'q' (valid: p)"),
        ("crop:w=999,h=9", "999x9 is larger than the 451x300 image"),
    ] {
        let o = gpuimg(&[
            "--device",
            "cpu",
            "augment",
            input.to_str().unwrap(),
            "-o",
            dir.join("e").to_str().unwrap(),
            "--ops",
            ops,
        ]);
        assert!(!o.status.success());
        let lines = error_lines(&o);
        assert!(!lines.is_empty() && lines[0].contains(want), "{ops}: {}", stderr(&o));
    }
}

#[test]
fn compress_and_decompress_files_and_refuse_bad_ones() {
    let dir = tmpdir("codec");
    // Untrained weights written by the library: the CLI paths, not quality.
    let mut m = gpuimg::models::tinycompress::TinyCompress::new(16).unwrap();
    let mut seed = 7u32;
    m.init(&mut || {
        seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
        (seed >> 8) as f32 / (1u32 << 24) as f32
    });
    let weights = dir.join("c16.safetensors");
    m.to_weights().save(&weights).unwrap();
    let w = weights.to_str().unwrap();
    let (inp, out) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&inp).unwrap();
    std::fs::copy(sample(), inp.join("a.png")).unwrap();
    std::fs::write(inp.join("b.png"), b"not a png").unwrap();
    let o = gpuimg(&[
        "--device",
        "cpu",
        "compress",
        inp.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--rate",
        "16",
        "--bitplanes",
        "6",
        "--weights",
        w,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(out.join("a.tcz").exists() && !out.join("b.tcz").exists());
    let t = gpuimg::codec::Tcz::parse(&std::fs::read(out.join("a.tcz")).unwrap()).unwrap();
    assert_eq!((t.rate, t.bitplanes, t.width, t.height), (16, 6, 451, 300));
    let o = gpuimg(&[
        "--device",
        "gpu",
        "decompress",
        out.join("a.tcz").to_str().unwrap(),
        "-o",
        dir.join("a.png").to_str().unwrap(),
        "--weights",
        w,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = gpuimg::image_io::load(&dir.join("a.png")).unwrap();
    assert_eq!((img.width, img.height, img.channels), (451, 300, 3));
    // Corrupt, truncated and foreign inputs: one-line errors, non-zero exit.
    let bytes = std::fs::read(out.join("a.tcz")).unwrap();
    std::fs::write(dir.join("cut.tcz"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(dir.join("png.tcz"), std::fs::read(sample()).unwrap()).unwrap();
    for (f, want) in [("cut.tcz", "truncated"), ("png.tcz", "not a .tcz file")] {
        let o = gpuimg(&["--device", "cpu", "decompress", dir.join(f).to_str().unwrap(), "--weights", w]);
        assert_eq!(o.status.code(), Some(1));
        let lines = error_lines(&o);
        assert_eq!(lines.len(), 1, "{}", stderr(&o));
        assert!(lines[0].contains(want), "{f}: {}", lines[0]);
    }
    let o = gpuimg(&["--device", "cpu", "compress", sample().to_str().unwrap(), "--rate", "4", "--weights", w]);
    assert!(error_lines(&o)[0].contains("rate 16, not 4"), "{}", stderr(&o));
    // A file made with other weights than the bundled ones is refused by name, not decoded wrongly.
    let o = gpuimg(&[
        "--device",
        "cpu",
        "decompress",
        out.join("a.tcz").to_str().unwrap(),
        "-o",
        dir.join("x.png").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(error_lines(&o)[0].contains("encoded with other TinyCompress-16 weights"), "{}", stderr(&o));
    assert!(!dir.join("x.png").exists());
    // The bundled weights: no --weights on either side.
    let o =
        gpuimg(&["--device", "cpu", "compress", sample().to_str().unwrap(), "-o", dir.join("b.tcz").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = gpuimg(&[
        "--device",
        "cpu",
        "decompress",
        dir.join("b.tcz").to_str().unwrap(),
        "-o",
        dir.join("b.png").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let back = gpuimg::image_io::load(&dir.join("b.png")).unwrap();
    let orig = gpuimg::image_io::load(&sample()).unwrap();
    let (gpuimg::Samples::U8(x), gpuimg::Samples::U8(y)) = (&orig.samples, &back.samples) else { panic!() };
    let mse = x.iter().zip(y).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>() / x.len() as f64;
    let psnr = 10.0 * (255.0f64 * 255.0 / mse).log10();
    assert!(psnr > 30.0, "bundled -4 round trip: {psnr:.2} dB");
    std::fs::remove_file(inp.join("b.png")).unwrap();
    let o = gpuimg(&["--device", "cpu", "eval", "codec", inp.to_str().unwrap(), "--weights", w, "--bitplanes", "8,4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("| a | -16 / 8 planes |") && table.contains("| **mean** | -16 / 4 planes |"), "{table}");
}

#[test]
fn shards_split_a_folder_without_overlap_or_gaps() {
    // Seven inputs over three shards (0-based), each run with the same
    // arguments: together they write exactly the unsharded run's outputs,
    // byte for byte, each once.
    let dir = tmpdir("shard");
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for i in 0..7 {
        std::fs::copy(sample(), inputs.join(format!("img{i}.png"))).unwrap();
    }
    let run = |out: &Path, shard: Option<&str>| {
        let (i, o) = (inputs.to_str().unwrap(), out.to_str().unwrap());
        let mut args = vec!["--device", "cpu", "resize", i, "--scale", "0.25", "-o", o];
        if let Some(s) = shard {
            args.extend(["--shard", s]);
        }
        let r = gpuimg(&args);
        assert!(r.status.success(), "{shard:?}: {}", stderr(&r));
        r
    };
    let files = |d: &Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    let whole = dir.join("whole");
    run(&whole, None);
    let mut seen = Vec::new();
    for k in 0..3 {
        let out = dir.join(format!("shard{k}"));
        let r = run(&out, Some(&format!("{k}/3")));
        let want = [3, 2, 2][k];
        assert!(stderr(&r).contains(&format!("shard {k}/3: {want} of 7 inputs")), "{}", stderr(&r));
        let got = files(&out);
        assert_eq!(got.len(), want, "shard {k}: {got:?}");
        for f in got {
            assert_eq!(std::fs::read(out.join(&f)).unwrap(), std::fs::read(whole.join(&f)).unwrap(), "{f}");
            seen.push(f);
        }
    }
    seen.sort();
    assert_eq!(seen, files(&whole), "the shards together cover every input once");
    // augment: a sample's seed follows its input's place in the whole list,
    // so the shards' samples are the unsharded run's (the inputs are copies
    // of one photo: only the seeds tell them apart).
    let aug = |out: &Path, shard: Option<&str>| {
        let (i, o) = (inputs.to_str().unwrap(), out.to_str().unwrap());
        let ops = "hflip:p=0.5;rotate:deg=10;random-resized-crop:size=32";
        let mut args = vec!["--device", "cpu", "augment", i, "-o", o, "--ops", ops, "--count", "2", "--seed", "5"];
        if let Some(s) = shard {
            args.extend(["--shard", s]);
        }
        let r = gpuimg(&args);
        assert!(r.status.success(), "augment {shard:?}: {}", stderr(&r));
    };
    let whole = dir.join("aug_whole");
    aug(&whole, None);
    let mut seen = Vec::new();
    for k in 0..2 {
        let out = dir.join(format!("aug{k}"));
        aug(&out, Some(&format!("{k}/2")));
        for f in files(&out) {
            assert_eq!(std::fs::read(out.join(&f)).unwrap(), std::fs::read(whole.join(&f)).unwrap(), "augment {f}");
            seen.push(f);
        }
    }
    seen.sort();
    assert_eq!(seen, files(&whole));
    assert_eq!(seen.len(), 14);
    // A shard with nothing to do succeeds; bad shard values are refused.
    let one = dir.join("one");
    std::fs::create_dir_all(&one).unwrap();
    std::fs::copy(sample(), one.join("a.png")).unwrap();
    let r = gpuimg(&["--device", "cpu", "resize", one.to_str().unwrap(), "--scale", "0.5", "--shard", "1/2"]);
    assert!(r.status.success() && stderr(&r).contains("shard 1/2: 0 of 1 inputs"), "{}", stderr(&r));
    for bad in ["2/2", "1/0", "x/3", "3"] {
        let r = gpuimg(&["--device", "cpu", "resize", one.to_str().unwrap(), "--scale", "0.5", "--shard", bad]);
        assert_eq!(r.status.code(), Some(2), "--shard {bad}: {}", stderr(&r));
        assert!(stderr(&r).contains("--shard"), "--shard {bad}: {}", stderr(&r));
    }
}
