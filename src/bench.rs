//! Benchmark cases for every kernel and model, shared by `gpuimg bench` and
//! the criterion benches (`benches/kernels.rs`), so both time the same work.
//!
//! Each case at a size has three forms: `cpu` (host data, the rayon path;
//! run it inside a pool to choose the thread count), `resident` (inputs
//! already on the GPU: record, submit, wait) and `roundtrip` (upload, run,
//! read back).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::image_io::Image;
use crate::kernels::{Entry, GpuData};
use crate::models::tinypssr::TinyPssr;
use crate::models::zero_dce::{Arch, ZeroDce};
use crate::tensor::{Samples, Shape, Tensor};

/// Work on host data.
pub type Run = Box<dyn Fn() -> Result<()> + Send + Sync>;
/// Work recorded into an encoder on resident buffers.
pub type Record = Box<dyn Fn(&mut wgpu::CommandEncoder) -> Result<()> + Send + Sync>;

/// One case at one size.
pub struct Case {
    /// Kernel or model name.
    pub name: &'static str,
    /// The CPU path on host data.
    pub cpu: Run,
    /// GPU, inputs resident (absent without a GPU).
    pub resident: Option<Record>,
    /// GPU, upload + run + read back (absent without a GPU).
    pub roundtrip: Option<Run>,
}

/// The model cases, after the kernels (which come from the registry).
pub const MODELS: &[&str] = &[
    "resize_quarter",
    "resize_quarter_unfused",
    "tinypssr_x2",
    "tinypssr_x4",
    "zero_dce_pp",
    "zero_dce",
    "augment_chain",
    "augment_chain_op_by_op",
    "augment_colour",
    "augment_jitter",
    "tinycompress_4_encode",
    "tinycompress_4_decode",
];

/// Every case: the kernels by their registry names, then the models.
pub fn names() -> Vec<&'static str> {
    crate::kernels::ALL.iter().map(|e| e.desc.name).chain(MODELS.iter().copied()).collect()
}

/// The `augment_colour` case's ops: brightness, contrast and gamma.
pub const COLOUR_OPS: &str = "brightness:f=1.2;contrast:f=0.8;gamma:g=0.7";

/// The `augment_jitter` case's ops: the seed-004 colour jitter (brightness,
/// contrast, saturation, hue: channels mixed, so no per-channel table).
pub const JITTER_OPS: &str = "brightness:f=1.1;contrast:f=0.9;saturation:f=1.2;hue:f=0.03";

/// The seed-004 chain (hflip, rotate, jitter, crop, resize) with fixed
/// values for a w x h image: crop to 80% of each side, resize to half of the crop.
pub fn seed004_chain(w: usize, h: usize) -> String {
    format!(
        "hflip:p=1;rotate:angle=10;brightness:f=1.1;contrast:f=0.9;saturation:f=1.2;hue:f=0.03;crop:x={},y={},w={},h={};resize:w={},h={}",
        w / 10,
        h / 10,
        (w * 4 / 5).max(1),
        (h * 4 / 5).max(1),
        (w * 2 / 5).max(1),
        (h * 2 / 5).max(1)
    )
}

/// Deterministic values in [0, 1).
pub fn tensor(shape: Shape, seed: u32) -> Tensor {
    let data = (0..shape.len())
        .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1u32 << 24) as f32)
        .collect();
    Tensor { shape, data }
}

/// An 8-bit RGB test image with some structure.
pub fn image(w: usize, h: usize) -> Image {
    let s = (0..w * h * 3).map(|i| ((i * 7 % 251) as u8).wrapping_add((i / (3 * w)) as u8)).collect();
    Image { width: w as u32, height: h as u32, channels: 3, samples: Samples::U8(s) }
}

fn ok<T>(r: Result<T>) -> Result<()> {
    r.map(|_| ())
}

/// A kernel's registry bench case: the CPU twin, the kernel recorded on
/// inputs already resident, and the trait's default end-to-end GPU run.
fn kernel_case(entry: &'static Entry, gpu: Option<&Arc<Gpu>>, w: usize, h: usize) -> Result<Case> {
    let kc = Arc::new((entry.bench)(w, h)?);
    let k1 = kc.clone();
    let cpu: Run = Box::new(move || ok(k1.kernel.cpu(&k1.refs())));
    let (resident, roundtrip): (Option<Record>, Option<Run>) = match gpu {
        Some(g) => {
            let mut ins = Vec::with_capacity(kc.inputs.len());
            for d in &kc.inputs {
                ins.push(GpuData::upload(g, d)?);
            }
            let out = GpuData::alloc(g, kc.kernel.output(&kc.refs())?)?;
            let (g1, g2, k2, k3) = (g.clone(), g.clone(), kc.clone(), kc);
            (
                Some(Box::new(move |enc| {
                    let refs: Vec<&GpuData> = ins.iter().collect();
                    k2.kernel.encode(&g1, enc, &refs, &out)
                })),
                Some(Box::new(move || ok(k3.kernel.gpu(&g2, &k3.refs())))),
            )
        }
        None => (None, None),
    };
    Ok(Case { name: entry.desc.name, cpu, resident, roundtrip })
}

/// The case `name` at `w` x `h` pixels (GPU forms when `gpu` is given).
pub fn case(name: &str, gpu: Option<&Arc<Gpu>>, w: usize, h: usize) -> Result<Case> {
    if let Some(entry) = crate::kernels::find(name) {
        return kernel_case(entry, gpu, w, h);
    }
    let name: &'static str = MODELS.iter().copied().find(|n| *n == name).ok_or_else(|| Error::UnknownValue {
        what: "bench case",
        value: name.into(),
        valid: names().join(", "),
    })?;
    match name {
        "resize_quarter" => {
            // `gpuimg resize --scale 0.25`: packed pixels in and out.
            let op = crate::kernels::ResizeBilinear::by_factor(0.25, false);
            model_case(name, gpu, image(w, h), move |b, img| ok(crate::ops::resize_image(b, img, &op)))
        }
        "resize_quarter_unfused" => {
            // The same resize as three CPU steps (unpack to f32, resize, pack):
            // the baseline the fused CPU path is measured against, in the same run.
            let (op, img) = (crate::kernels::ResizeBilinear::by_factor(0.25, false), Arc::new(image(w, h)));
            let outl = crate::ops::resize_layout(img.layout(), &op)?;
            let cpu: Run = Box::new(move || ok(crate::ops::resize_packed_reference(&img, &op, outl)));
            Ok(Case { name, cpu, resident: None, roundtrip: None })
        }
        "tinypssr_x2" | "tinypssr_x4" => {
            let model = Arc::new(TinyPssr::bundled(if name == "tinypssr_x2" { 2 } else { 4 })?);
            model_case(name, gpu, image(w, h), move |b, img| ok(crate::ops::super_resolve(b, &model, img)))
        }
        "zero_dce_pp" | "zero_dce" => {
            let arch = if name == "zero_dce" { Arch::ZeroDce } else { Arch::ZeroDcePlus };
            let model = Arc::new(ZeroDce::bundled(arch)?);
            let s = crate::models::zero_dce::default_scale_factor(h, w);
            model_case(name, gpu, image(w, h), move |b, img| ok(crate::ops::enhance(b, &model, img, s, 8)))
        }
        "augment_chain" | "augment_chain_op_by_op" | "augment_colour" | "augment_jitter" => {
            use crate::augment::{Plan, Spec};
            let img = Arc::new(image(w, h));
            // augment_colour: the per-channel colour ops alone (OpenCV's
            // convertScaleAbs + LUT class of work), 8-bit in and out.
            let spec = match name {
                "augment_colour" => COLOUR_OPS.to_string(),
                "augment_jitter" => JITTER_OPS.to_string(),
                _ => seed004_chain(w, h),
            };
            let d: Spec = spec.parse()?;
            let plan = Arc::new(if name == "augment_chain_op_by_op" {
                Plan::op_by_op(&d, w, h)?
            } else {
                Plan::fused(&d, w, h)?
            });
            let (p2, i2) = (plan.clone(), img.clone());
            let cpu: Run = Box::new(move || ok(p2.run_image(&crate::Backend::Cpu, &i2)));
            let (resident, roundtrip): (Option<Record>, Option<Run>) = match gpu {
                Some(g) => {
                    let src = g.upload_bytes(&img.samples.le_bytes())?;
                    let (g1, b2, p3, l) = (g.clone(), crate::Backend::Gpu(g.clone()), plan.clone(), img.layout());
                    (
                        Some(Box::new(move |enc| {
                            // Recycled at once: the pool hands it out again only after this submission.
                            p3.record_packed(&g1, enc, l, &src)?.recycle(&g1);
                            Ok(())
                        })),
                        Some(Box::new(move || ok(plan.run_image(&b2, &img)))),
                    )
                }
                None => (None, None),
            };
            Ok(Case { name, cpu, resident, roundtrip })
        }
        "tinycompress_4_encode" | "tinycompress_4_decode" => codec_case(name, gpu, w, h),
        _ => unreachable!("every name in MODELS has a case"),
    }
}

/// A whole-image model case: the CPU path, the GPU round trip (packed pixels
/// up, one submission, packed pixels back), and as `resident` the same
/// recorded work on pixels already uploaded.
fn model_case(
    name: &'static str,
    gpu: Option<&Arc<Gpu>>,
    img: Image,
    run: impl Fn(&crate::Backend, &Image) -> Result<()> + Send + Sync + 'static,
) -> Result<Case> {
    use crate::ops::{EnhanceOp, ResizeOp, SuperResolveOp};
    use crate::stream::StreamOp;
    let img = Arc::new(img);
    let run = Arc::new(run);
    let (i2, r2) = (img.clone(), run.clone());
    let cpu: Run = Box::new(move || r2(&crate::Backend::Cpu, &i2));
    let (resident, roundtrip): (Option<Record>, Option<Run>) = match gpu {
        Some(g) => {
            let op: Arc<dyn StreamOp> = match name {
                "resize_quarter" => Arc::new(ResizeOp(crate::kernels::ResizeBilinear::by_factor(0.25, false))),
                "tinypssr_x2" => Arc::new(SuperResolveOp::new(TinyPssr::bundled(2)?)),
                "tinypssr_x4" => Arc::new(SuperResolveOp::new(TinyPssr::bundled(4)?)),
                "zero_dce" => Arc::new(EnhanceOp::new(ZeroDce::bundled(Arch::ZeroDce)?, None, 8)?),
                _ => Arc::new(EnhanceOp::new(ZeroDce::bundled(Arch::ZeroDcePlus)?, None, 8)?),
            };
            let src = g.upload_bytes(&img.samples.le_bytes())?;
            let (g1, b2) = (g.clone(), crate::Backend::Gpu(g.clone()));
            let i3 = img.clone();
            (
                Some(Box::new(move |enc| match op.record(0, &g1, enc, &i3, &src)? {
                    Some(rec) => {
                        // Recycled at once: the pool hands it out again only after this submission.
                        rec.recycle(&g1);
                        Ok(())
                    }
                    None => Err(Error::invalid("bench", "image too large for one pass")),
                })),
                Some(Box::new(move || run(&b2, &img))),
            )
        }
        None => (None, None),
    };
    Ok(Case { name, cpu, resident, roundtrip })
}

/// TinyCompress-4 (bundled weights) encoding an RGB image into a `.tcz`
/// or decoding one: the CPU path and the GPU round trip run the whole
/// codec (transform, quantisation, arithmetic coding, container); GPU
/// resident is the transform alone (the fused blocks) on data already uploaded.
fn codec_case(name: &'static str, gpu: Option<&Arc<Gpu>>, w: usize, h: usize) -> Result<Case> {
    use crate::models::tinycompress::TinyCompress;
    let m = Arc::new(TinyCompress::bundled(4)?);
    let img = Arc::new(image(w, h));
    let encode = name == "tinycompress_4_encode";
    let tcz = Arc::new(crate::codec::compress(&crate::Backend::Cpu, &m, &img, 8)?);
    let run = {
        let (m, img, tcz) = (m.clone(), img.clone(), tcz.clone());
        Arc::new(move |b: &crate::Backend| {
            if encode {
                ok(crate::codec::compress(b, &m, &img, 8))
            } else {
                ok(crate::codec::decompress(b, &m, &tcz))
            }
        })
    };
    let r2 = run.clone();
    let cpu: Run = Box::new(move || r2(&crate::Backend::Cpu));
    let (resident, roundtrip): (Option<Record>, Option<Run>) = match gpu {
        Some(g) => {
            // The transform alone: from the packed pixels to the latents
            // (encode), or from the latents to the packed image (decode).
            let (lw, lh) = crate::codec::container::latent_size(4, w, h);
            let (g1, b2) = (g.clone(), crate::Backend::Gpu(g.clone()));
            let rec: Record = if encode {
                let weights = crate::codec::upload_blocks(g, &m.enc, crate::kernels::tinycompress_enc::FLAT_LEN);
                let src = g.upload_bytes(&img.samples.le_bytes())?;
                let (m2, l) = (m.clone(), img.layout());
                Box::new(move |enc| {
                    let rec = crate::codec::record_encode(&g1, enc, &m2, &weights, l, 8, &src)?;
                    // Recycled at once: the pool hands them out again only after this submission.
                    rec.recycle(&g1);
                    Ok(())
                })
            } else {
                let weights = crate::codec::upload_blocks(g, &m.dec, crate::kernels::tinycompress_dec::FLAT_LEN);
                let codes: Vec<u8> = (0..3 * lw * lh).map(|i| (i * 37 % 256) as u8).collect();
                let x = g.upload_bytes(&codes)?;
                let (m2, q) = (m.clone(), ([(-0.5, 1.5), (0.0, 1.0), (-1.0, 0.5)], 8));
                Box::new(move |enc| {
                    let rec = crate::codec::record_decode(&g1, enc, &m2, &weights, q, (lw, lh), (w, h), &x)?;
                    rec.recycle(&g1);
                    Ok(())
                })
            };
            (Some(rec), Some(Box::new(move || run(&b2))))
        }
        None => (None, None),
    };
    Ok(Case { name, cpu, resident, roundtrip })
}

/// One measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Case name.
    pub name: String,
    /// `gpu` or `cpu`.
    pub backend: &'static str,
    /// `resident`, `roundtrip` (GPU) or `host` (CPU).
    pub mode: &'static str,
    /// Image width.
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// CPU threads (0 for GPU rows).
    pub threads: usize,
    /// Median wall time of one run.
    pub median_ms: f64,
    /// GPU rows: what one run recorded and moved, from the engine's
    /// counters ([`crate::gpu::Traffic`]); `None` on CPU rows.
    pub traffic: Option<crate::gpu::Traffic>,
}

impl Row {
    /// Megapixels per second.
    pub fn mpix_s(&self) -> f64 {
        (self.width * self.height) as f64 / (self.median_ms * 1e3)
    }
}

/// How much to measure.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// Cases to run.
    pub names: Vec<String>,
    /// Image sizes (width, height).
    pub sizes: Vec<(usize, usize)>,
    /// CPU thread counts.
    pub threads: Vec<usize>,
    /// Timed runs per measurement (after one warm-up), at least...
    pub min_runs: usize,
    /// ... and more while under this much time.
    pub budget: Duration,
}

impl Sweep {
    /// Minutes for CI (about 4.5 on a 2-core VM with the software adapter,
    /// which runs the fused model kernels slowly): two small sizes, 1 and
    /// all threads, two runs after a warm-up.
    pub fn quick() -> Self {
        let n = rayon::current_num_threads();
        let mut threads = vec![1, n];
        threads.dedup();
        Sweep {
            names: names().iter().map(|s| s.to_string()).collect(),
            sizes: vec![(64, 48), (128, 96)],
            threads,
            min_runs: 2,
            budget: Duration::ZERO,
        }
    }

    /// The full sweep: four sizes up to 1080p, threads 1, 2, 4, ... and all.
    pub fn full() -> Self {
        let n = rayon::current_num_threads();
        let mut threads: Vec<usize> =
            std::iter::successors(Some(1usize), |t| Some(t * 2)).take_while(|&t| t < n).collect();
        threads.push(n);
        Sweep {
            names: names().iter().map(|s| s.to_string()).collect(),
            sizes: vec![(320, 240), (640, 480), (1280, 720), (1920, 1080)],
            threads,
            min_runs: 5,
            budget: Duration::from_secs(1),
        }
    }
}

/// Median time of `f` in ms: one warm-up, then `min_runs` runs and more
/// while the total stays under `budget` (at most 50).
pub fn time(mut f: impl FnMut() -> Result<()>, min_runs: usize, budget: Duration) -> Result<f64> {
    f()?;
    let start = Instant::now();
    let mut t = Vec::new();
    while t.len() < min_runs.max(1) || (start.elapsed() < budget && t.len() < 50) {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// What one run of `f` recorded and moved. The counters are the context's:
/// nothing else may use it meanwhile (the sweep runs one case at a time).
fn counted(gpu: &Gpu, f: impl FnOnce() -> Result<()>) -> Result<crate::gpu::Traffic> {
    let before = gpu.traffic();
    f()?;
    Ok(gpu.traffic().since(before))
}

/// Runs a plan, calling `row` as each measurement lands.
pub fn run_sweep(plan: &Sweep, gpu: Option<&Arc<Gpu>>, mut row: impl FnMut(&Row)) -> Result<Vec<Row>> {
    let pools: Vec<(usize, rayon::ThreadPool)> = plan
        .threads
        .iter()
        .map(|&t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .map(|p| (t, p))
                .map_err(|e| Error::invalid("bench", e.to_string()))
        })
        .collect::<Result<_>>()?;
    let mut rows = Vec::new();
    for name in &plan.names {
        for &(w, h) in &plan.sizes {
            let c = case(name, gpu, w, h)?;
            let mut push = |backend, mode, threads, median_ms, traffic| {
                let r = Row { name: name.clone(), backend, mode, width: w, height: h, threads, median_ms, traffic };
                row(&r);
                rows.push(r);
            };
            // Traffic from one more run after the timed ones (one-time
            // uploads such as a streamed op's weights are done by then).
            if let (Some(g), Some(rec)) = (gpu, &c.resident) {
                let run = || g.execute("gpuimg.bench", |enc| rec(enc));
                let ms = time(run, plan.min_runs, plan.budget)?;
                push("gpu", "resident", 0, ms, Some(counted(g, run)?));
            }
            if let (Some(g), Some(rt)) = (gpu, &c.roundtrip) {
                let ms = time(rt, plan.min_runs, plan.budget)?;
                push("gpu", "roundtrip", 0, ms, Some(counted(g, rt)?));
            }
            for (t, pool) in &pools {
                let ms = pool.install(|| time(&c.cpu, plan.min_runs, plan.budget))?;
                push("cpu", "host", *t, ms, None);
            }
        }
    }
    Ok(rows)
}

/// Rows as JSON: `{adapter, cpu_threads, rows: [{name, backend, mode,
/// width, height, threads, median_ms}]}`; GPU rows add `dispatches`,
/// `bytes_up` and `bytes_down` per run (one image).
pub fn to_json(rows: &[Row], adapter: &str) -> String {
    use crate::stream::json_str;
    let body: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "    {{\"name\": {}, \"backend\": \"{}\", \"mode\": \"{}\", \"width\": {}, \"height\": {}, \"threads\": {}, \"median_ms\": {:.4}{}}}",
                json_str(&r.name),
                r.backend,
                r.mode,
                r.width,
                r.height,
                r.threads,
                r.median_ms,
                r.traffic
                    .map(|t| format!(
                        ", \"dispatches\": {}, \"bytes_up\": {}, \"bytes_down\": {}",
                        t.dispatches, t.bytes_up, t.bytes_down
                    ))
                    .unwrap_or_default()
            )
        })
        .collect();
    format!(
        "{{\n  \"adapter\": {},\n  \"cpu_threads\": {},\n  \"rows\": [\n{}\n  ]\n}}\n",
        json_str(adapter),
        rayon::current_num_threads(),
        body.join(",\n")
    )
}

/// A chart of the rows as SVG: time against image size (CPU at the most
/// threads, solid; GPU resident, dashed) and CPU time against threads at the
/// largest size; log scales, one colour per case.
pub fn chart_svg(rows: &[Row], title: &str) -> String {
    let mut names: Vec<&str> = Vec::new();
    for r in rows {
        if !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    let colour = |i: usize| {
        format!("hsl({},70%,{}%)", (i * 360 / names.len().max(1)) % 360, if i.is_multiple_of(2) { 40 } else { 55 })
    };
    let max_threads = rows.iter().map(|r| r.threads).max().unwrap_or(1);
    let pix = |r: &Row| (r.width * r.height) as f64 / 1e6;
    let largest = rows.iter().map(|r| r.width * r.height).max().unwrap_or(1);
    let ms: Vec<f64> = rows.iter().map(|r| r.median_ms).filter(|v| *v > 0.0).collect();
    let (ylo, yhi) = log_range(&ms);
    let (xlo, xhi) = log_range(&rows.iter().map(pix).collect::<Vec<_>>());
    let (tlo, thi) =
        log_range(&rows.iter().filter(|r| r.backend == "cpu").map(|r| r.threads as f64).collect::<Vec<_>>());
    let (pw, ph, top, left1, left2) = (400.0, 340.0, 60.0, 70.0, 560.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1200\" height=\"460\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"1200\" height=\"460\" fill=\"white\"/>\n<text x=\"600\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        xml(title)
    );
    let map = |v: f64, lo: f64, hi: f64, len: f64| if hi > lo { (v.log10() - lo) / (hi - lo) * len } else { len / 2.0 };
    for (left, xlabel, (alo, ahi)) in [(left1, "megapixels", (xlo, xhi)), (left2, "CPU threads", (tlo, thi))] {
        svg +=
            &format!("<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>\n");
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{xlabel} (log)</text>\n",
            left + pw / 2.0,
            top + ph + 36.0
        );
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 {} {})\">median ms (log)</text>\n",
            left - 50.0,
            top + ph / 2.0,
            left - 50.0,
            top + ph / 2.0
        );
        for d in decades(ylo, yhi) {
            let y = top + ph - map(d, ylo, yhi, ph);
            svg += &format!("<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n", left + pw, left - 4.0, y + 4.0, fmt_num(d));
        }
        let ticks: Vec<f64> = if xlabel == "CPU threads" {
            let mut t: Vec<f64> = rows.iter().filter(|r| r.backend == "cpu").map(|r| r.threads as f64).collect();
            t.sort_by(f64::total_cmp);
            t.dedup();
            t
        } else {
            let mut t: Vec<f64> = rows.iter().map(pix).collect();
            t.sort_by(f64::total_cmp);
            t.dedup();
            t
        };
        for v in ticks {
            let x = left + map(v, alo, ahi, pw);
            svg += &format!("<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", top + ph, top + ph + 16.0, fmt_num(v));
        }
    }
    svg += &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">time against size: CPU ({max_threads} threads) solid, GPU resident dashed</text>\n", left1 + pw / 2.0, top - 8.0);
    svg += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">CPU time against threads at the largest size</text>\n",
        left2 + pw / 2.0,
        top - 8.0
    );
    for (i, name) in names.iter().enumerate() {
        let c = colour(i);
        let series = |pred: &dyn Fn(&Row) -> bool, x: &dyn Fn(&Row) -> f64, lo: f64, hi: f64, left: f64| {
            let mut pts: Vec<(f64, f64)> =
                rows.iter().filter(|r| r.name == *name && pred(r)).map(|r| (x(r), r.median_ms)).collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            pts.iter()
                .map(|&(xv, yv)| format!("{:.1},{:.1}", left + map(xv, lo, hi, pw), top + ph - map(yv, ylo, yhi, ph)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let cpu = series(&|r| r.backend == "cpu" && r.threads == max_threads, &pix, xlo, xhi, left1);
        let gpu = series(&|r| r.backend == "gpu" && r.mode == "resident", &pix, xlo, xhi, left1);
        let thr =
            series(&|r| r.backend == "cpu" && r.width * r.height == largest, &|r| r.threads as f64, tlo, thi, left2);
        for (pts, dash) in [(cpu, ""), (gpu, " stroke-dasharray=\"5,3\""), (thr, "")] {
            if !pts.is_empty() {
                svg +=
                    &format!("<polyline points=\"{pts}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"1.8\"{dash}/>\n");
            }
        }
        let ly = top + 4.0 + i as f64 * 22.0;
        svg += &format!("<line x1=\"990\" x2=\"1015\" y1=\"{ly:.1}\" y2=\"{ly:.1}\" stroke=\"{c}\" stroke-width=\"3\"/><text x=\"1020\" y=\"{:.1}\">{}</text>\n", ly + 4.0, xml(name));
    }
    svg += "</svg>\n";
    svg
}

fn log_range(v: &[f64]) -> (f64, f64) {
    let pos: Vec<f64> = v.iter().copied().filter(|x| *x > 0.0 && x.is_finite()).collect();
    if pos.is_empty() {
        return (0.0, 1.0);
    }
    let lo = pos.iter().copied().fold(f64::INFINITY, f64::min).log10();
    let hi = pos.iter().copied().fold(f64::NEG_INFINITY, f64::max).log10();
    let pad = ((hi - lo) * 0.05).max(0.05);
    (lo - pad, hi + pad)
}

fn decades(lo: f64, hi: f64) -> Vec<f64> {
    (lo.floor() as i32..=hi.ceil() as i32)
        .map(|e| 10f64.powi(e))
        .filter(|d| d.log10() >= lo && d.log10() <= hi)
        .collect()
}

fn fmt_num(v: f64) -> String {
    if v >= 1.0 && v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
