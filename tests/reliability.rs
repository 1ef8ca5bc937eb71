//! Nothing lost, nothing huge, no aborts: the CLI against bad input, bombs,
//! hostile values and faults, case by case from a table. Every case checks
//! the exit code, that gpuimg's error is one line naming the problem, that
//! nothing panicked, and that no file in the case's folder was changed or
//! left behind except the outputs the case expects. Inputs are generated
//! here with fixed contents (no randomness).

mod common;

use common::tmpdir;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gpuimg::image_io::{self, Image};
use gpuimg::tensor::Samples;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gpuimg"));
    c.env_remove("GPUIMG_DEVICE").env_remove("GPUIMG_MEMORY_LIMIT");
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A deterministic RGB gradient image.
fn gradient(w: u32, h: u32) -> Image {
    let mut s = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            s.extend([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, ((x + y) % 256) as u8]);
        }
    }
    Image::new(w, h, 3, Samples::U8(s)).unwrap()
}

fn write_png(p: &Path, w: u32, h: u32) {
    image_io::save(&gradient(w, h), p).unwrap();
}

/// Every file under `d` (recursively) with its bytes.
fn snapshot(d: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![d.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap().flatten() {
            let q = e.path();
            if q.is_dir() {
                stack.push(q);
            } else {
                out.insert(q.strip_prefix(d).unwrap().to_path_buf(), std::fs::read(&q).unwrap());
            }
        }
    }
    out
}

/// A valid .tcz header (CRC included) declaring `w` x `h` with `payload`.
fn forged_tcz(w: u32, h: u32, rate: u8, payload: &[u8]) -> Vec<u8> {
    let m = gpuimg::models::tinycompress::TinyCompress::bundled(rate as usize).unwrap();
    gpuimg::codec::Tcz {
        version: gpuimg::codec::container::VERSION,
        rate,
        bitplanes: 8,
        width: w,
        height: h,
        codec: m.id(),
        ranges: [(0.0, 1.0); 3],
        payload: payload.to_vec(),
    }
    .to_bytes()
}

/// Safetensors bytes of `weights` with the first value of the first tensor
/// whose name contains `name_part` set to NaN.
fn poisoned(weights: &Path, name_part: &str) -> Vec<u8> {
    let mut w = gpuimg::weights::Weights::load(weights).unwrap();
    let key = w.tensors.keys().find(|k| k.contains(name_part)).unwrap().clone();
    w.tensors.get_mut(&key).unwrap().1[0] = f32::NAN;
    w.to_bytes().unwrap()
}

fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets").join(name)
}

/// One case: files to make, the arguments (`{d}` is the case's folder),
/// and what must happen.
struct Case {
    name: &'static str,
    setup: fn(&Path),
    args: &'static str,
    env: &'static [(&'static str, &'static str)],
    /// Expected exit code.
    code: i32,
    /// Text stderr must contain (case-insensitive).
    says: &'static str,
    /// Files (relative to the folder) the run may create; all others must be unchanged.
    creates: &'static [&'static str],
}

fn one_png(d: &Path) {
    write_png(&d.join("a.png"), 37, 23);
}

fn cases() -> Vec<Case> {
    vec![
        // 1. Input overwritten.
        Case {
            name: "report-over-input",
            setup: one_png,
            args: "--device cpu resize {d}/a.png --scale 0.5 -o {d}/b.png --report {d}/a.png",
            env: &[],
            code: 1,
            says: "would overwrite an input",
            creates: &[],
        },
        Case {
            name: "save-params-over-input",
            setup: one_png,
            args: "--device cpu augment {d}/a.png -o {d}/out --ops hflip --save-params {d}/a.png",
            env: &[],
            code: 1,
            says: "would overwrite an input",
            creates: &[],
        },
        Case {
            name: "report-exists",
            setup: |d| {
                one_png(d);
                std::fs::write(d.join("r.json"), b"keep me").unwrap();
            },
            args: "--device cpu resize {d}/a.png --scale 0.5 -o {d}/b.png --report {d}/r.json",
            env: &[],
            code: 1,
            says: "exists (--overwrite replaces it)",
            creates: &[],
        },
        // 2. Name collisions.
        Case {
            name: "collision-extensions",
            setup: |d| {
                std::fs::create_dir_all(d.join("in")).unwrap();
                write_png(&d.join("in/x.png"), 20, 12);
                image_io::save(&gradient(20, 12), &d.join("in/x.jpg")).unwrap();
            },
            args: "--device cpu compress {d}/in -o {d}/out",
            env: &[],
            code: 1,
            says: "would both be written to",
            creates: &[],
        },
        Case {
            name: "collision-folders",
            setup: |d| {
                std::fs::create_dir_all(d.join("a")).unwrap();
                std::fs::create_dir_all(d.join("b")).unwrap();
                write_png(&d.join("a/x.png"), 9, 7);
                write_png(&d.join("b/x.png"), 9, 7);
            },
            args: "--device cpu sr --scale 2 {d}/a/x.png {d}/b/x.png -o {d}/out",
            env: &[],
            code: 1,
            says: "would both be written to",
            creates: &[],
        },
        Case {
            name: "same-input-twice",
            setup: one_png,
            args: "--device cpu resize {d}/a.png {d}/a.png --scale 0.5 -o {d}/out",
            env: &[],
            code: 1,
            says: "is given twice",
            creates: &[],
        },
        Case {
            name: "augment-npy-collision",
            setup: |d| {
                write_png(&d.join("x.png"), 9, 7);
                image_io::save(&gradient(9, 7), &d.join("x.bmp")).unwrap();
            },
            args: "--device cpu augment {d}/x.png {d}/x.bmp -o {d}/out --ops normalize",
            env: &[],
            code: 1,
            says: "would both be written to",
            creates: &[],
        },
        // 3. The .tcz decoder trusts the header.
        Case {
            name: "tcz-gigapixel-header",
            setup: |d| std::fs::write(d.join("bomb.tcz"), forged_tcz(32768, 32768, 64, &[0; 4])).unwrap(),
            args: "--device cpu decompress {d}/bomb.tcz",
            env: &[],
            code: 1,
            says: "over the limit",
            creates: &[],
        },
        Case {
            name: "tcz-short-payload",
            setup: |d| std::fs::write(d.join("short.tcz"), forged_tcz(16384, 16384, 64, &[0x55; 12_000])).unwrap(),
            args: "--device cpu decompress {d}/short.tcz",
            // Past the memory check (a 16k x 16k decode needs more than CI has) to the payload's.
            env: &[("GPUIMG_MEMORY_LIMIT", "1T")],
            code: 1,
            says: "ends early",
            creates: &[],
        },
        // 4. Sizes that are legal to type.
        Case {
            name: "resize-million",
            setup: one_png,
            args: "--device cpu resize {d}/a.png --width 1000000 --height 1000000",
            env: &[],
            code: 1,
            says: "over the limit",
            creates: &[],
        },
        Case {
            name: "resize-40k",
            setup: one_png,
            args: "--device cpu resize {d}/a.png --width 40000 --height 40000",
            env: &[],
            code: 1,
            says: "over the limit",
            creates: &[],
        },
        Case {
            name: "resize-scale-5000",
            setup: one_png,
            args: "--device cpu resize {d}/a.png --scale 5000",
            env: &[],
            code: 1,
            says: "over the limit",
            creates: &[],
        },
        Case {
            name: "augment-pad-60000",
            setup: one_png,
            args: "--device cpu augment {d}/a.png -o {d}/out --ops pad:all=60000",
            env: &[],
            code: 1,
            says: "over the limit",
            creates: &[],
        },
        Case {
            name: "augment-resize-65536",
            setup: one_png,
            args: "--device cpu augment {d}/a.png -o {d}/out --ops resize:w=65536,h=65536",
            env: &[],
            code: 1,
            says: "over the limit",
            creates: &[],
        },
        Case {
            name: "augment-rrc-65536",
            setup: one_png,
            args: "--device cpu augment {d}/a.png -o {d}/out --ops random-resized-crop:size=65536",
            env: &[],
            code: 1,
            says: "over the limit",
            creates: &[],
        },
        Case {
            name: "max-pixels-lowered",
            setup: one_png,
            args: "--device cpu resize --scale 0.5 {d}/a.png",
            env: &[("GPUIMG_MAX_PIXELS", "800")],
            code: 1,
            says: "over the limit of 32768 per side and 800 pixels",
            creates: &[],
        },
        Case {
            name: "decode-over-memory",
            setup: |d| write_png(&d.join("big.png"), 1000, 1000),
            args: "--device cpu resize --scale 0.5 {d}/big.png",
            env: &[("GPUIMG_MEMORY_LIMIT", "1M")],
            code: 1,
            says: "decoding 1000x1000 needs about",
            creates: &[],
        },
        Case {
            name: "sr-output-too-wide",
            setup: |d| write_png(&d.join("wide.png"), 32768, 1),
            args: "--device cpu sr --scale 4 {d}/wide.png",
            env: &[],
            code: 1,
            says: "over the limit",
            creates: &[],
        },
        Case {
            name: "sr-output-wide-with-raised-limit",
            setup: |d| write_png(&d.join("wide.png"), 32768, 1),
            args: "--device cpu sr --scale 4 {d}/wide.png",
            env: &[("GPUIMG_MAX_SIDE", "256K")],
            code: 0,
            says: "",
            creates: &["wide_x4.png"],
        },
        Case {
            name: "compress-over-memory",
            setup: one_png,
            args: "--device cpu compress {d}/a.png",
            env: &[("GPUIMG_MEMORY_LIMIT", "64K")],
            code: 1,
            says: "needs about",
            creates: &[],
        },
        Case {
            name: "sr-over-memory",
            setup: one_png,
            args: "--device cpu sr {d}/a.png",
            env: &[("GPUIMG_MEMORY_LIMIT", "64K")],
            code: 1,
            says: "needs about",
            creates: &[],
        },
        // 5. Panics in evaluation.
        Case {
            name: "eval-sr-tiny",
            setup: |d| {
                write_png(&d.join("thin.png"), 1, 40);
                write_png(&d.join("small.png"), 7, 5);
            },
            args: "--device cpu eval sr {d}",
            env: &[],
            code: 1,
            says: "too small",
            creates: &[],
        },
        Case {
            name: "eval-codec-1x1",
            setup: |d| write_png(&d.join("dot.png"), 1, 1),
            args: "--device cpu eval codec {d} --rates 4",
            env: &[],
            code: 1,
            says: "too small",
            creates: &[],
        },
        // 6. Unbounded values.
        Case {
            name: "threads-proc",
            setup: one_png,
            args: "--device cpu resize {d}/a.png --scale 0.5 -j 1:100000:1",
            env: &[],
            code: 1,
            says: "from 1 to 256",
            creates: &[],
        },
        Case {
            name: "threads-save",
            setup: one_png,
            args: "--device cpu resize {d}/a.png --scale 0.5 -j 1:1:100000",
            env: &[],
            code: 1,
            says: "from 1 to 256",
            creates: &[],
        },
        Case {
            name: "iterations",
            setup: one_png,
            args: "--device cpu enhance {d}/a.png --iterations 1000000",
            env: &[],
            code: 2,
            says: "1000000",
            creates: &[],
        },
        // 8. Truncated JPEGs.
        Case {
            name: "jpeg-cut-half",
            setup: |d| truncated_jpeg(d, 0.5),
            args: "--device cpu resize {d}/cut.jpg --scale 0.5",
            env: &[],
            code: 1,
            says: "truncated jpeg",
            creates: &[],
        },
        Case {
            name: "jpeg-cut-999",
            setup: |d| truncated_jpeg(d, 0.999),
            args: "--device cpu resize {d}/cut.jpg --scale 0.5",
            env: &[],
            code: 1,
            says: "truncated jpeg",
            creates: &[],
        },
        Case {
            name: "jpeg-cut-10",
            setup: |d| truncated_jpeg(d, 0.1),
            args: "--device cpu resize {d}/cut.jpg --scale 0.5",
            env: &[],
            code: 1,
            says: "cut.jpg",
            creates: &[],
        },
        // 9. Non-finite and oversized weights.
        Case {
            name: "nan-sr-weights",
            setup: |d| {
                one_png(d);
                std::fs::write(d.join("w.safetensors"), poisoned(&asset("tinypssr_x2.safetensors"), "conv1.weight"))
                    .unwrap();
            },
            args: "--device cpu sr --scale 2 {d}/a.png --weights {d}/w.safetensors",
            env: &[],
            code: 1,
            says: "non-finite",
            creates: &[],
        },
        Case {
            name: "nan-enhance-weights",
            setup: |d| {
                one_png(d);
                std::fs::write(d.join("w.safetensors"), poisoned(&asset("zero_dce_pp.safetensors"), "weight")).unwrap();
            },
            args: "--device cpu enhance {d}/a.png --weights {d}/w.safetensors",
            env: &[],
            code: 1,
            says: "non-finite",
            creates: &[],
        },
        Case {
            name: "nan-codec-weights",
            setup: |d| {
                one_png(d);
                std::fs::write(d.join("w.safetensors"), poisoned(&asset("tinycompress_4.safetensors"), "weight"))
                    .unwrap();
            },
            args: "--device cpu compress {d}/a.png --weights {d}/w.safetensors",
            env: &[],
            code: 1,
            says: "non-finite",
            creates: &[],
        },
        Case {
            name: "huge-weights-file",
            setup: |d| {
                one_png(d);
                // A 2 GiB sparse file with a plausible header: refused before it is read.
                let f = std::fs::File::create(d.join("big.safetensors")).unwrap();
                use std::io::Write;
                let mut w = std::io::BufWriter::new(&f);
                w.write_all(&2u64.to_le_bytes()).unwrap();
                w.write_all(b"{}").unwrap();
                drop(w);
                f.set_len(2 << 30).unwrap();
            },
            args: "--device cpu sr {d}/a.png --weights {d}/big.safetensors",
            env: &[],
            code: 1,
            says: "larger than any gpuimg model",
            creates: &[],
        },
        Case {
            name: "garbage-weights-header",
            setup: |d| {
                one_png(d);
                std::fs::write(d.join("g.safetensors"), [0xFFu8; 64]).unwrap();
            },
            args: "--device cpu sr {d}/a.png --weights {d}/g.safetensors",
            env: &[],
            code: 1,
            says: "not a safetensors file",
            creates: &[],
        },
        // 11. Spec checks against the real image.
        Case {
            name: "crop-wider-than-4096",
            setup: |d| write_png(&d.join("pano.png"), 6000, 40),
            args: "--device cpu augment {d}/pano.png -o {d}/out --ops crop:w=5000,h=30",
            env: &[],
            code: 0,
            says: "",
            creates: &["out/pano_0.png"],
        },
        // 14. Messages.
        Case {
            name: "os-error-once",
            setup: |_| {},
            args: "--device cpu resize {d}/missing.png --scale 0.5",
            env: &[],
            code: 1,
            says: "missing.png",
            creates: &[],
        },
        Case {
            name: "output-folder-slash",
            setup: one_png,
            args: "--device cpu resize {d}/a.png --scale 0.5 -o {d}/newdir/",
            env: &[],
            code: 0,
            says: "",
            creates: &["newdir/a_x0.5.png"],
        },
        Case {
            name: "compress-wrong-extension",
            setup: one_png,
            args: "--device cpu compress {d}/a.png -o {d}/x.png",
            env: &[],
            code: 1,
            says: "writes .tcz files",
            creates: &[],
        },
        Case {
            name: "rot90-negative",
            setup: one_png,
            args: "--device cpu augment {d}/a.png -o {d}/out --ops rot90:k=-1",
            env: &[],
            code: 0,
            says: "",
            creates: &["out/a_0.png"],
        },
        Case {
            name: "gamma-tiny",
            setup: one_png,
            args: "--device cpu augment {d}/a.png -o {d}/out --ops gamma:g=1e-30",
            env: &[],
            code: 1,
            says: "gamma is from 0.01 to 100",
            creates: &[],
        },
        Case {
            name: "params-bad-line",
            setup: |d| {
                one_png(d);
                std::fs::write(d.join("p.tsv"), "a.png\t0\thflip:p=1\nnot a params line\n").unwrap();
            },
            args: "--device cpu augment {d}/a.png -o {d}/out --ops hflip --params {d}/p.tsv",
            env: &[],
            code: 1,
            says: "p.tsv line 2: expected FILE<TAB>SAMPLE<TAB>CHAIN",
            creates: &[],
        },
        Case {
            name: "normalize-nan",
            setup: one_png,
            args: "--device cpu augment {d}/a.png -o {d}/out --ops normalize:mean=nan",
            env: &[],
            code: 1,
            says: "finite",
            creates: &[],
        },
    ]
}

fn truncated_jpeg(d: &Path, keep: f64) {
    let bytes = image_io::encode(&gradient(64, 48), image::ImageFormat::Jpeg).unwrap();
    let n = ((bytes.len() as f64 * keep) as usize).clamp(4, bytes.len() - 1);
    std::fs::write(d.join("cut.jpg"), &bytes[..n]).unwrap();
}

#[test]
fn every_hostile_case_ends_in_a_clear_error_or_a_correct_result() {
    let mut failures = Vec::new();
    for c in cases() {
        let d = tmpdir(c.name);
        (c.setup)(&d);
        let before = snapshot(&d);
        let args: Vec<String> = c.args.split_whitespace().map(|a| a.replace("{d}", d.to_str().unwrap())).collect();
        let mut cmd = bin();
        cmd.args(&args);
        for (k, v) in c.env {
            cmd.env(k, v);
        }
        let o = cmd.output().expect("run gpuimg");
        let e = stderr(&o);
        let errors: Vec<&str> = e.lines().filter(|l| l.starts_with("gpuimg: error:")).collect();
        let mut why = Vec::new();
        if o.status.code() != Some(c.code) {
            why.push(format!("exit {:?}, want {}", o.status.code(), c.code));
        }
        if e.contains("panicked") || e.contains("RUST_BACKTRACE") {
            why.push("panicked".into());
        }
        if !e.to_lowercase().contains(&c.says.to_lowercase()) {
            why.push(format!("stderr lacks {:?}", c.says));
        }
        if c.code == 1 && errors.is_empty() && !e.contains("skipped") {
            why.push("no error line".into());
        }
        if errors.len() > 1 {
            why.push(format!("{} error lines", errors.len()));
        }
        if e.matches("os error").count() > 1 {
            why.push("OS error printed twice".into());
        }
        let after = snapshot(&d);
        for (p, bytes) in &before {
            if after.get(p) != Some(bytes) {
                why.push(format!("{} changed or removed", p.display()));
            }
        }
        for p in after.keys().filter(|p| !before.contains_key(*p)) {
            if !c.creates.iter().any(|w| Path::new(w) == p.as_path()) {
                why.push(format!("{} left behind", p.display()));
            }
        }
        for w in c.creates {
            if !after.contains_key(Path::new(w)) {
                why.push(format!("{w} not written"));
            }
        }
        if !why.is_empty() {
            failures.push(format!("{}: {} | {}", c.name, why.join("; "), e.trim().replace('\n', " / ")));
        }
        let _ = std::fs::remove_dir_all(&d);
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_bad_input_with_many_samples_fails_once() {
    let d = tmpdir("count");
    std::fs::write(d.join("bad.png"), b"\x89PNG\r\n\x1a\n not really").unwrap();
    write_png(&d.join("good.png"), 16, 12);
    let o = bin()
        .args(["--device", "cpu", "augment"])
        .arg(d.join("bad.png"))
        .arg(d.join("good.png"))
        .args(["-o"])
        .arg(d.join("out"))
        .args(["--ops", "hflip", "--count", "200"])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert_eq!(e.lines().filter(|l| l.contains("bad.png")).count(), 2, "one error and one 'failed:' line: {e}");
    assert!(e.contains("200 written, 0 skipped, 1 failed"), "{e}");
}

#[test]
fn stale_temporaries_of_a_killed_run_are_removed() {
    let d = tmpdir("stale");
    one_png(&d);
    std::fs::create_dir_all(d.join("out")).unwrap();
    // No process has this id (pid_max is at most 2^22 on Linux).
    let stale = d.join("out/.a_x0.5.png.4999999.tmp");
    let other = d.join("out/.notes.txt.tmp");
    std::fs::write(&stale, b"half").unwrap();
    std::fs::write(&other, b"not ours").unwrap();
    let o = bin()
        .args(["--device", "cpu", "resize"])
        .arg(d.join("a.png"))
        .args(["--scale", "0.5", "-o"])
        .arg(d.join("out/"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stale.exists(), "stale temporary removed");
    assert!(other.exists(), "files of another pattern are left alone");
    assert!(d.join("out/a_x0.5.png").exists());
}

#[cfg(unix)]
#[test]
fn sigterm_stops_a_batch_cleanly() {
    let d = tmpdir("sigterm");
    write_png(&d.join("a.png"), 256, 256);
    let child = bin()
        .args(["--device", "cpu", "augment"])
        .arg(d.join("a.png"))
        .arg("-o")
        .arg(d.join("out"))
        .args(["--ops", "rotate:deg=30;resize:w=512,h=512", "--count", "100000", "-j", "1:1:1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it is writing, then stop it.
    let started = std::time::Instant::now();
    while std::fs::read_dir(d.join("out")).map(|r| r.count()).unwrap_or(0) < 3 {
        assert!(started.elapsed().as_secs() < 120, "no output after two minutes");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(143), "{e}");
    assert!(e.contains("not run (interrupted)"), "{e}");
    let names: Vec<String> = std::fs::read_dir(d.join("out"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "temporary files left: {names:?}");
    assert!(names.len() < 100_000);
    // Every file written is a whole image.
    for n in names {
        image_io::load(&d.join("out").join(&n)).unwrap_or_else(|e| panic!("{n}: {e}"));
    }
}

/// Images over the adapter's limits: resize splits them into strips; ops
/// without a split form (augment) run them on the CPU path. Either way the
/// output equals the CPU path's. On lavapipe (128 MiB bindings) a 6000x1500
/// RGB image as f32 planes (108 MB) is over the 64 MiB tensor cap. The codec
/// is not here: its fused GPU blocks read the packed pixels (27 MB) and keep
/// the full-resolution layers in workgroup memory, so this image fits, and on
/// the software adapter it would run for many minutes (tests/codec.rs checks
/// GPU against CPU at small sizes).
#[test]
fn gpu_ops_over_the_device_limits_split_or_fall_back() {
    let Some(gpu) = common::gpu() else { return };
    let d = tmpdir("gpu-limits");
    write_png(&d.join("big.png"), 6000, 1500);
    let small_binding = gpu.device().limits().max_storage_buffer_binding_size < (6000 * 1500 * 3 * 4);
    for (name, args, ext, fallback) in [
        ("resize", vec!["resize", "--scale", "0.5"], "png", false),
        ("augment", vec!["augment", "--ops", "hflip;brightness:f=1.2"], "", true),
    ] {
        let mut outs = Vec::new();
        for dev in ["cpu", "gpu"] {
            let out =
                if ext.is_empty() { d.join(format!("{name}-{dev}")) } else { d.join(format!("{name}-{dev}.{ext}")) };
            let report = d.join(format!("{name}-{dev}.json"));
            let o = bin()
                .args(["--device", dev, args[0]])
                .arg(d.join("big.png"))
                .args(&args[1..])
                .arg("-o")
                .arg(&out)
                .arg("--report")
                .arg(&report)
                .output()
                .unwrap();
            assert!(o.status.success(), "{name} on {dev}: {}", stderr(&o));
            let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
            if dev == "gpu" && small_binding {
                assert_eq!(r["cpu_fallbacks"].as_u64(), Some(fallback as u64), "{name}: {r}");
            }
            let out = if ext.is_empty() { out.join("big_0.png") } else { out };
            outs.push(match image_io::load(&out).unwrap().samples {
                Samples::U8(v) => v,
                _ => panic!(),
            });
        }
        if small_binding && fallback {
            // The CPU path ran: the same bytes.
            assert!(outs[0] == outs[1], "{name}: the fallback's output differs from the CPU's");
        } else {
            let worst = outs[0].iter().zip(&outs[1]).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
            assert!(worst <= 2, "{name}: the GPU output differs from the CPU path by {worst} levels");
        }
    }
}

#[cfg(unix)]
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::io::Read;
    let mut child = bin()
        .args(["--device", "cpu", "bench", "--quick", "--only", "prelu", "--threads", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe, as `| head -1` does.
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    out.read_exact(&mut first).unwrap();
    drop(out);
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert!(!e.contains("panicked"), "{e}");
}
