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
use crate::gpu::{Gpu, GpuTensor};
use crate::image_io::Image;
use crate::kernels::tinypssr_fused::FusedParams;
use crate::kernels::unpack_pixels::PixelLayout;
use crate::kernels::*;
use crate::models::tinypssr::{Stage, TinyPssr};
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

/// Every case: the kernels (by their registry names), then the models.
pub const NAMES: &[&str] = &[
    "activation",
    "conv2d",
    "pack_pixels",
    "pixel_shuffle",
    "pixel_unshuffle",
    "prelu",
    "resize_bilinear",
    "tinypssr_fused",
    "unpack_pixels",
    "zero_dce_curve",
    "zero_dce_enhance",
    "tinypssr_x2",
    "tinypssr_x4",
    "zero_dce_pp",
    "zero_dce",
    "augment_chain",
    "augment_chain_op_by_op",
    "tinycompress_4_encode",
    "tinycompress_4_decode",
];

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

/// A case whose kernel maps one tensor to one tensor.
fn unary<C, E, R>(
    name: &'static str,
    gpu: Option<&Arc<Gpu>>,
    x: Tensor,
    out: Shape,
    cpu: C,
    encode: E,
    rt: R,
) -> Result<Case>
where
    C: Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
    E: Fn(&Gpu, &mut wgpu::CommandEncoder, &GpuTensor, &GpuTensor) -> Result<()> + Send + Sync + 'static,
    R: Fn(&Gpu, &Tensor) -> Result<Tensor> + Send + Sync + 'static,
{
    let x = Arc::new(x);
    let (resident, roundtrip): (Option<Record>, Option<Run>) = match gpu {
        Some(g) => {
            let (gx, gy) = (g.upload(&x)?, g.alloc(out)?);
            let (g1, g2, x2) = (g.clone(), g.clone(), x.clone());
            (Some(Box::new(move |enc| encode(&g1, enc, &gx, &gy))), Some(Box::new(move || ok(rt(&g2, &x2)))))
        }
        None => (None, None),
    };
    Ok(Case { name, cpu: Box::new(move || ok(cpu(&x))), resident, roundtrip })
}

/// The case `name` at `w` x `h` pixels (GPU forms when `gpu` is given).
pub fn case(name: &str, gpu: Option<&Arc<Gpu>>, w: usize, h: usize) -> Result<Case> {
    let rgb = Shape::new(1, 3, h, w);
    let c16 = Shape::new(1, 16, h, w);
    let name: &'static str = NAMES.iter().copied().find(|n| *n == name).ok_or_else(|| Error::UnknownValue {
        what: "bench case",
        value: name.into(),
        valid: NAMES.join(", "),
    })?;
    match name {
        "activation" => {
            let op = Activation(ActivationKind::Tanh);
            unary(
                name,
                gpu,
                tensor(c16, 3),
                c16,
                move |x| Ok(op.cpu(x)),
                move |g, e, x, y| op.encode(g, e, x, y),
                move |g, x| op.gpu(g, x),
            )
        }
        "pixel_shuffle" => {
            let op = PixelShuffle { r: 2 };
            let s = Shape::new(1, 4, h / 2, w / 2);
            unary(
                name,
                gpu,
                tensor(s, 3),
                op.out_shape(s)?,
                move |x| op.cpu(x),
                move |g, e, x, y| op.encode(g, e, x, y),
                move |g, x| op.gpu(g, x),
            )
        }
        "pixel_unshuffle" => {
            let op = PixelUnshuffle { r: 2 };
            let s = Shape::new(1, 3, h / 2 * 2, w / 2 * 2);
            unary(
                name,
                gpu,
                tensor(s, 3),
                op.out_shape(s)?,
                move |x| op.cpu(x),
                move |g, e, x, y| op.encode(g, e, x, y),
                move |g, x| op.gpu(g, x),
            )
        }
        "resize_bilinear" => {
            let op = ResizeBilinear::by_factor(1.0 / 12.0, false);
            let out = op.out_shape(rgb)?;
            unary(
                name,
                gpu,
                tensor(rgb, 3),
                out,
                move |x| op.cpu(x),
                move |g, e, x, y| op.encode(g, e, x, y),
                move |g, x| op.gpu(g, x),
            )
        }
        "prelu" => {
            let slopes = Arc::new(vec![0.25f32; 16]);
            let buf = gpu.map(|g| g.constant("slopes", &slopes));
            let s2 = slopes.clone();
            unary(
                name,
                gpu,
                tensor(c16, 4),
                c16,
                move |x| Prelu.cpu(x, &slopes),
                move |g, e, x, y| Prelu.encode(g, e, x, buf.as_ref().expect("GPU case"), y),
                move |g, x| Prelu.gpu(g, x, &s2),
            )
        }
        "conv2d" => {
            // TinyPSSR's widest layer: 5x5, 1 -> 16.
            let op = Conv2d::new(1, 16, 5);
            let x = tensor(Shape::new(1, 1, h, w), 1);
            let (wt, b) = (Arc::new(tensor(Shape::new(1, 1, 1, op.weight_len()), 2).data), Arc::new(vec![0.1f32; 16]));
            let out = op.check(x.shape, wt.len(), 16)?;
            let bufs = gpu.map(|g| (g.constant("w", &wt), g.constant("b", &b)));
            let (wt2, b2, wt3, b3) = (wt.clone(), b.clone(), wt, b);
            unary(
                name,
                gpu,
                x,
                out,
                move |x| op.cpu(x, &wt2, &b2),
                move |g, e, x, y| {
                    let (wb, bb) = bufs.as_ref().expect("GPU case");
                    op.encode(g, e, x, wb, bb, y)
                },
                move |g, x| op.gpu(g, x, &wt3, &b3),
            )
        }
        "zero_dce_curve" | "zero_dce_enhance" => {
            let x = Arc::new(tensor(rgb, 5));
            let curve = ZeroDceCurve { iterations: 8, per_iteration: false };
            let fused = ZeroDceEnhance { iterations: 8, per_iteration: false, colour: 3 };
            let is_curve = name == "zero_dce_curve";
            let maps = if is_curve { rgb } else { Shape::new(1, 3, (h / 12).max(1), (w / 12).max(1)) };
            let r = Arc::new(tensor(maps, 6));
            let (x2, r2) = (x.clone(), r.clone());
            let cpu: Run = Box::new(move || if is_curve { ok(curve.cpu(&x2, &r2)) } else { ok(fused.cpu(&x2, &r2)) });
            let (resident, roundtrip): (Option<Record>, Option<Run>) = match gpu {
                Some(g) => {
                    let (gx, gr, gy) = (g.upload(&x)?, g.upload(&r)?, g.alloc(rgb)?);
                    let (g1, g2) = (g.clone(), g.clone());
                    (
                        Some(Box::new(move |enc| {
                            if is_curve {
                                curve.encode(&g1, enc, &gx, &gr, &gy)
                            } else {
                                fused.encode(&g1, enc, &gx, &gr, &gy)
                            }
                        })),
                        Some(Box::new(
                            move || if is_curve { ok(curve.gpu(&g2, &x, &r)) } else { ok(fused.gpu(&g2, &x, &r)) },
                        )),
                    )
                }
                None => (None, None),
            };
            Ok(Case { name, cpu, resident, roundtrip })
        }
        "unpack_pixels" | "pack_pixels" => {
            let l = PixelLayout { n: 1, height: h, width: w, channels: 4, bits: 8 };
            let samples = Arc::new(Samples::U8((0..l.samples()).map(|i| (i * 31) as u8).collect()));
            let t = Arc::new(tensor(l.shape(), 7));
            let unpack = name == "unpack_pixels";
            let (s2, t2) = (samples.clone(), t.clone());
            let cpu: Run =
                Box::new(move || if unpack { ok(UnpackPixels(l).cpu(&s2)) } else { ok(PackPixels(l).cpu(&t2)) });
            let (resident, roundtrip): (Option<Record>, Option<Run>) = match gpu {
                Some(g) => {
                    let src = g.upload_bytes(&samples.le_bytes())?;
                    let planes = g.upload(&t)?;
                    let dst = g.take_buffer((PackPixels(l).words() * 4) as u64, Gpu::TENSOR_USAGE);
                    let y = g.alloc(l.shape())?;
                    let (g1, g2) = (g.clone(), g.clone());
                    (
                        Some(Box::new(move |enc| {
                            if unpack {
                                UnpackPixels(l).encode(&g1, enc, &src, &y)
                            } else {
                                PackPixels(l).encode(&g1, enc, &planes, &dst)
                            }
                        })),
                        Some(Box::new(move || {
                            if unpack {
                                ok(UnpackPixels(l).gpu(&g2, &samples))
                            } else {
                                ok(PackPixels(l).gpu(&g2, &t))
                            }
                        })),
                    )
                }
                None => (None, None),
            };
            Ok(Case { name, cpu, resident, roundtrip })
        }
        "tinypssr_fused" => {
            // One x2 stage with bicubic-initialised weights, 8-bit RGB in and out.
            let mut seed = 7u32;
            let mut u = move || {
                seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                (seed >> 8) as f32 / (1u32 << 24) as f32
            };
            let model = Arc::new(TinyPssr { stages: vec![Stage::init_bicubic(&mut u)] });
            let img = Arc::new(image(w, h));
            let planes = Tensor::from_vec(Shape::new(3, 1, h, w), UnpackPixels(img.layout()).cpu(&img.samples)?.data)?;
            let m2 = model.clone();
            let cpu: Run = Box::new(move || {
                m2.forward_fast(&planes);
                Ok(())
            });
            let (resident, roundtrip): (Option<Record>, Option<Run>) = match gpu {
                Some(g) => {
                    let op = TinyPssrFused(FusedParams {
                        w: w as u32,
                        h: h as u32,
                        channels: 3,
                        colour: 3,
                        bits: 8,
                        in_mode: 0,
                        out_mode: 0,
                        _pad: 0,
                    });
                    let src = g.upload_bytes(&img.samples.le_bytes())?;
                    let wts = g.constant("w", &model.stages[0].flat());
                    let dst = g.take_buffer(op.out_bytes(), Gpu::TENSOR_USAGE);
                    let (g1, g2) = (g.clone(), g.clone());
                    (
                        Some(Box::new(move |enc| {
                            enc.clear_buffer(&dst, 0, None);
                            op.encode(&g1, enc, &src, &wts, &dst)
                        })),
                        Some(Box::new(move || ok(crate::ops::super_resolve_fused(&g2, &model, &img)))),
                    )
                }
                None => (None, None),
            };
            Ok(Case { name, cpu, resident, roundtrip })
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
        "augment_chain" | "augment_chain_op_by_op" => {
            use crate::augment::{Plan, Spec};
            let img = Arc::new(image(w, h));
            let d: Spec = seed004_chain(w, h).parse()?;
            let plan =
                Arc::new(if name == "augment_chain" { Plan::fused(&d, w, h)? } else { Plan::op_by_op(&d, w, h)? });
            let (p2, i2) = (plan.clone(), img.clone());
            let cpu: Run = Box::new(move || ok(p2.run_image(&crate::Backend::Cpu, &i2)));
            let (resident, roundtrip): (Option<Record>, Option<Run>) = match gpu {
                Some(g) => {
                    let src = g.upload_bytes(&img.samples.le_bytes())?;
                    let (g1, b2, p3, l) = (g.clone(), crate::Backend::Gpu(g.clone()), plan.clone(), img.layout());
                    (
                        Some(Box::new(move |enc| {
                            // Recycled at once: the pool hands it out again only after this submission.
                            p3.record_packed(&g1, enc, l, &src)?.0.recycle(&g1);
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
        _ => unreachable!("every name in NAMES has a case"),
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
    use crate::ops::{EnhanceOp, SuperResolveOp};
    use crate::stream::StreamOp;
    let img = Arc::new(img);
    let run = Arc::new(run);
    let (i2, r2) = (img.clone(), run.clone());
    let cpu: Run = Box::new(move || r2(&crate::Backend::Cpu, &i2));
    let (resident, roundtrip): (Option<Record>, Option<Run>) = match gpu {
        Some(g) => {
            let op: Arc<dyn StreamOp> = match name {
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
                    Some((rec, _)) => {
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
/// resident is the transform alone on data already uploaded.
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
            // The transform's input: the padded image (encode) or the latents (decode).
            let (lw, lh) = crate::codec::container::latent_size(4, w, h);
            let (net, side) = if encode { (m.enc.clone(), 2) } else { (m.dec.clone(), 1) };
            let x = g.upload(&tensor(Shape::new(1, 3, lh * side, lw * side), 5))?;
            let up = net.upload(g);
            let (g1, b2) = (g.clone(), crate::Backend::Gpu(g.clone()));
            (
                Some(Box::new(move |enc| {
                    let mut scratch = Vec::new();
                    let r = net.encode(&g1, enc, &up, &x, &mut scratch);
                    // Recycled at once: the pool hands them out again only after this submission.
                    for t in scratch {
                        g1.recycle(t);
                    }
                    ok(r)
                })),
                Some(Box::new(move || run(&b2))),
            )
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
}

impl Row {
    /// Megapixels per second.
    pub fn mpix_s(&self) -> f64 {
        (self.width * self.height) as f64 / (self.median_ms * 1e3)
    }
}

/// How much to measure.
#[derive(Debug, Clone)]
pub struct Plan {
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

impl Plan {
    /// Seconds for CI (about a minute on a 2-core VM with the software
    /// adapter): two small sizes, 1 and all threads, two runs after a warm-up.
    pub fn quick() -> Self {
        let n = rayon::current_num_threads();
        let mut threads = vec![1, n];
        threads.dedup();
        Plan {
            names: NAMES.iter().map(|s| s.to_string()).collect(),
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
        Plan {
            names: NAMES.iter().map(|s| s.to_string()).collect(),
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

/// Runs a plan, calling `row` as each measurement lands.
pub fn run(plan: &Plan, gpu: Option<&Arc<Gpu>>, mut row: impl FnMut(&Row)) -> Result<Vec<Row>> {
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
            let mut push = |backend, mode, threads, median_ms| {
                let r = Row { name: name.clone(), backend, mode, width: w, height: h, threads, median_ms };
                row(&r);
                rows.push(r);
            };
            if let (Some(g), Some(rec)) = (gpu, &c.resident) {
                let ms = time(|| g.execute("gpuimg.bench", |enc| rec(enc)), plan.min_runs, plan.budget)?;
                push("gpu", "resident", 0, ms);
            }
            if let Some(rt) = &c.roundtrip {
                push("gpu", "roundtrip", 0, time(rt, plan.min_runs, plan.budget)?);
            }
            for (t, pool) in &pools {
                let ms = pool.install(|| time(&c.cpu, plan.min_runs, plan.budget))?;
                push("cpu", "host", *t, ms);
            }
        }
    }
    Ok(rows)
}

/// Rows as JSON: `{adapter, cpu_threads, rows: [{name, backend, mode, width, height, threads, median_ms}]}`.
pub fn to_json(rows: &[Row], adapter: &str) -> String {
    use crate::stream::json_str;
    let body: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "    {{\"name\": {}, \"backend\": \"{}\", \"mode\": \"{}\", \"width\": {}, \"height\": {}, \"threads\": {}, \"median_ms\": {:.4}}}",
                json_str(&r.name),
                r.backend,
                r.mode,
                r.width,
                r.height,
                r.threads,
                r.median_ms
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
