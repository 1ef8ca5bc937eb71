//! Training TinyPSSR: random HR patches from photos, LR by the same MATLAB
//! bicubic the evaluation uses, L1 loss (the paper found MAE gave the best
//! PSNR), Adam with cosine decay, validation on held-out photos, best kept.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::grad::{conv2d_backward, pixel_shuffle_backward, prelu_backward};
use super::Adam;
use crate::error::{Error, Result};
use crate::kernels::{PixelShuffle, Prelu};
use crate::metrics::psnr;
use crate::models::tinypssr::{Stage, TinyPssr, CONVS};
use crate::resample;
use crate::rng::SplitMix;
use crate::tensor::{Shape, Tensor};

/// What to train and how.
#[derive(Debug, Clone)]
pub struct SrTrainConfig {
    /// 2 or 4.
    pub scale: usize,
    /// Directory of training photos (searched recursively).
    pub data: PathBuf,
    /// Optimiser steps.
    pub steps: usize,
    /// Patches per step.
    pub batch: usize,
    /// HR patch side (a multiple of `scale`).
    pub patch: usize,
    /// Initial learning rate (cosine decay to 1/100 of it).
    pub lr: f32,
    /// Seed of every random choice: the same seed and data give the same weights.
    pub seed: u64,
    /// Validate every this many steps.
    pub val_every: usize,
    /// Start from these weights (x4: a trained x2 model for both stages).
    pub init: Option<TinyPssr>,
}

impl SrTrainConfig {
    /// The defaults the shipped weights were trained with.
    pub fn defaults(scale: usize, data: PathBuf) -> Self {
        SrTrainConfig {
            scale,
            data,
            steps: if scale == 2 { 16000 } else { 6000 },
            batch: if scale == 2 { 32 } else { 16 },
            patch: 64,
            lr: 3e-3,
            seed: 1,
            val_every: 500,
            init: None,
        }
    }
}

pub use crate::data::{image_files, load_rgb, training_files};

/// Activations of one stage kept for the backward pass.
struct Cache {
    input: Tensor,
    pre: Vec<Tensor>,  // conv1..conv3 outputs (PReLU inputs)
    post: Vec<Tensor>, // PReLU outputs (conv2..conv4 inputs)
}

fn stage_forward(s: &Stage, x: &Tensor) -> (Tensor, Cache) {
    let mut cache = Cache { input: x.clone(), pre: Vec::new(), post: Vec::new() };
    let mut cur = x.clone();
    for (l, conv) in CONVS.iter().enumerate() {
        cur = conv.cpu(&cur, &s.conv[l].0, &s.conv[l].1).expect("shapes fixed by the model");
        if l < 3 {
            cache.pre.push(cur.clone());
            cur = Prelu.cpu(&cur, &s.prelu[l]).expect("shapes fixed by the model");
            cache.post.push(cur.clone());
        }
    }
    (PixelShuffle { r: 2 }.cpu(&cur).expect("4 channels"), cache)
}

fn stage_backward(s: &Stage, c: &Cache, dout: &Tensor, need_dx: bool, g: &mut Stage) -> Option<Tensor> {
    let mut d = pixel_shuffle_backward(2, dout);
    for l in (0..4).rev() {
        let input = if l == 0 { &c.input } else { &c.post[l - 1] };
        let (dx, dw, db) = conv2d_backward(&CONVS[l], input, &s.conv[l].0, &d, l > 0 || need_dx);
        add(&mut g.conv[l].0, &dw);
        add(&mut g.conv[l].1, &db);
        match dx {
            Some(dx) if l > 0 => {
                let (dz, da) = prelu_backward(&c.pre[l - 1], &s.prelu[l - 1], &dx);
                add(&mut g.prelu[l - 1], &da);
                d = dz;
            }
            dx => return dx,
        }
    }
    None
}

fn add(a: &mut [f32], b: &[f32]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
}

fn zeros_like(m: &TinyPssr) -> TinyPssr {
    let mut z = m.clone();
    for s in &mut z.stages {
        s.conv.iter_mut().for_each(|(w, b)| {
            w.fill(0.0);
            b.fill(0.0);
        });
        s.prelu.iter_mut().for_each(|a| a.fill(0.0));
    }
    z
}

/// All parameters in a fixed order.
pub fn flatten(m: &TinyPssr) -> Vec<f32> {
    let mut v = Vec::with_capacity(m.parameter_count());
    for s in &m.stages {
        for (w, b) in &s.conv {
            v.extend_from_slice(w);
            v.extend_from_slice(b);
        }
        for a in &s.prelu {
            v.extend_from_slice(a);
        }
    }
    v
}

/// Writes parameters back in [`flatten`]'s order.
pub fn unflatten(m: &mut TinyPssr, v: &[f32]) {
    let mut i = 0;
    let mut take = |dst: &mut Vec<f32>| {
        let n = dst.len();
        dst.copy_from_slice(&v[i..i + n]);
        i += n;
    };
    for s in &mut m.stages {
        for (w, b) in &mut s.conv {
            take(w);
            take(b);
        }
        for a in &mut s.prelu {
            take(a);
        }
    }
}

/// Forward pass with caches, L1 loss against `hr` over the interior (`margin`
/// HR pixels left out on every side), and the gradient of every parameter:
/// `(loss, gradients as a model)`.
pub fn loss_and_grad(m: &TinyPssr, lr: &Tensor, hr: &Tensor, margin: usize) -> (f64, TinyPssr) {
    let mut caches = Vec::new();
    let mut cur = lr.clone();
    for s in &m.stages {
        let (out, c) = stage_forward(s, &cur);
        caches.push(c);
        cur = out;
    }
    let (h, w) = (cur.shape.h, cur.shape.w);
    let inside = |k: usize| {
        let (i, j) = ((k / w) % h, k % w);
        i >= margin && i < h - margin && j >= margin && j < w - margin
    };
    let n = (cur.shape.n * (h - 2 * margin) * (w - 2 * margin)) as f32;
    let mut loss = 0.0f64;
    let mut d = cur.clone();
    for (k, (g, &t)) in d.data.iter_mut().zip(&hr.data).enumerate() {
        let diff = *g - t;
        if inside(k) {
            loss += diff.abs() as f64;
            *g = if diff > 0.0 {
                1.0 / n
            } else if diff < 0.0 {
                -1.0 / n
            } else {
                0.0
            };
        } else {
            *g = 0.0;
        }
    }
    let loss = loss / n as f64;
    let mut grads = zeros_like(m);
    for (i, s) in m.stages.iter().enumerate().rev() {
        match stage_backward(s, &caches[i], &d, i > 0, &mut grads.stages[i]) {
            Some(dx) => d = dx,
            None => break,
        }
    }
    (loss, grads)
}

/// A set of (LR, HR) patch pairs, as two (N, 1, h, w) / (N, 1, H, W) tensors.
/// Each carries `margin` HR pixels of context on every side around the
/// patch proper; losses and scores use the interior only.
pub struct Batch {
    /// Network inputs.
    pub lr: Tensor,
    /// Targets.
    pub hr: Tensor,
    /// Context in HR pixels on each side.
    pub margin: usize,
}

/// Context in LR pixels each side of a training patch: the receptive field.
pub fn context(scale: usize) -> usize {
    if scale == 2 {
        4
    } else {
        8
    }
}

/// Cuts `count` random patches (random image, channel, position and one of
/// the 8 flips/rotations) and degrades them with MATLAB bicubic, quantised to 8 bits.
pub fn sample_batch(images: &[Tensor], count: usize, patch: usize, scale: usize, rng: &mut SplitMix) -> Batch {
    let margin = context(scale) * scale;
    let patch = patch + 2 * margin;
    let lp = patch / scale;
    let mut hr = Tensor::zeros(Shape::new(count, 1, patch, patch));
    let mut lr = Tensor::zeros(Shape::new(count, 1, lp, lp));
    for n in 0..count {
        let img = loop {
            let im = &images[rng.below(images.len())];
            if im.shape.h >= patch && im.shape.w >= patch {
                break im;
            }
        };
        let c = rng.below(3);
        // Texture-biased: a flat patch (std < 0.04) is kept only 1 time in 10;
        // most of a wallpaper is sky or blur and teaches the model little.
        let (y0, x0) = loop {
            let (y0, x0) = (rng.below(img.shape.h - patch + 1), rng.below(img.shape.w - patch + 1));
            let plane = img.plane(0, c);
            let (mut s, mut s2) = (0.0f64, 0.0f64);
            for i in (0..patch).step_by(4) {
                for &v in plane[(y0 + i) * img.shape.w + x0..][..patch].iter().step_by(4) {
                    s += v as f64;
                    s2 += (v * v) as f64;
                }
            }
            let n = ((patch / 4) * (patch / 4)) as f64;
            let std = (s2 / n - (s / n).powi(2)).max(0.0).sqrt();
            if std >= 0.04 || rng.below(10) == 0 {
                break (y0, x0);
            }
        };
        let t = rng.below(8);
        let plane = img.plane(0, c);
        let dst = &mut hr.data[n * patch * patch..(n + 1) * patch * patch];
        for i in 0..patch {
            for j in 0..patch {
                let (a, b) = if t & 4 != 0 { (j, i) } else { (i, j) };
                let a = if t & 1 != 0 { patch - 1 - a } else { a };
                let b = if t & 2 != 0 { patch - 1 - b } else { b };
                dst[i * patch + j] = plane[(y0 + a) * img.shape.w + x0 + b];
            }
        }
        let one = Tensor::from_vec(Shape::new(1, 1, patch, patch), dst.to_vec()).expect("patch");
        let mut small = resample::downscale(&one, scale);
        resample::quantise_u8(&mut small);
        lr.data[n * lp * lp..(n + 1) * lp * lp].copy_from_slice(&small.data);
    }
    Batch { lr, hr, margin }
}

/// Mean PSNR (peak 1) of the model and of bicubic upscaling over a batch.
pub fn validate(m: &TinyPssr, b: &Batch, scale: usize) -> (f64, f64) {
    let sr = m.forward_cpu(&b.lr).expect("model shapes");
    let bic = resample::upscale(&b.lr, scale);
    let (h, w, m) = (b.hr.shape.h, b.hr.shape.w, b.margin);
    let (mut ps, mut pb) = (0.0, 0.0);
    for n in 0..b.hr.shape.n {
        let interior = |x: &Tensor, quant: bool| -> Vec<f64> {
            let mut v = Vec::with_capacity((h - 2 * m) * (w - 2 * m));
            for i in m..h - m {
                for &x in &x.data[(n * h + i) * w + m..(n * h + i) * w + w - m] {
                    v.push(if quant { (x.clamp(0.0, 1.0) * 255.0).round() as f64 / 255.0 } else { x as f64 });
                }
            }
            v
        };
        let t = interior(&b.hr, false);
        ps += psnr(&interior(&sr, true), &t, 1.0);
        pb += psnr(&interior(&bic, true), &t, 1.0);
    }
    let n = b.hr.shape.n as f64;
    (ps / n, pb / n)
}

/// Trains a model; `log` receives progress lines. Returns the best model on
/// the validation patches and its validation PSNR gain over bicubic.
pub fn train(cfg: &SrTrainConfig, mut log: impl FnMut(&str)) -> Result<(TinyPssr, f64)> {
    let stages = TinyPssr::stages_for(cfg.scale)?;
    if !cfg.patch.is_multiple_of(cfg.scale) || cfg.patch < 4 * cfg.scale {
        return Err(Error::invalid(
            "train",
            format!("patch {} must be a multiple of scale {} and >= {}", cfg.patch, cfg.scale, 4 * cfg.scale),
        ));
    }
    let files = training_files(&cfg.data)?;
    // Every 5th image (by sorted name) is held out for validation.
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, f) in files.iter().enumerate() {
        let img = load_rgb(f)?;
        let side = img.shape.h.min(img.shape.w);
        // Large photos also at half and quarter size: more detail per patch.
        let mut extra = Vec::new();
        for (min_side, f) in [(1000, 2), (1800, 4)] {
            if side >= min_side {
                let mut small = resample::imresize(&img, img.shape.h / f, img.shape.w / f);
                resample::quantise_u8(&mut small);
                extra.push(small);
            }
        }
        let set = if i % 5 == 4 { &mut val } else { &mut train };
        set.push(img);
        set.extend(extra);
    }
    log(&format!(
        "data: {} photos ({} training images, {} validation images incl. smaller copies)",
        files.len(),
        train.len(),
        val.len()
    ));

    let mut rng = SplitMix(cfg.seed);
    let mut model = match &cfg.init {
        Some(m) if m.stages.len() == stages => m.clone(),
        Some(m) => TinyPssr { stages: (0..stages).map(|i| m.stages[i.min(m.stages.len() - 1)].clone()).collect() },
        None => {
            let mut u = || rng.unit();
            TinyPssr { stages: (0..stages).map(|_| Stage::init_bicubic(&mut u)).collect() }
        }
    };
    let val_batch = sample_batch(&val, 256, cfg.patch, cfg.scale, &mut SplitMix(cfg.seed ^ 0xABCD));
    let (v0, vb) = validate(&model, &val_batch, cfg.scale);
    log(&format!("start: val PSNR {v0:.2} dB, bicubic {vb:.2} dB, {} parameters", model.parameter_count()));

    let mut params = flatten(&model);
    let mut adam = Adam::new(params.len(), cfg.lr, 0.9, 0.999);
    // The starting weights are a candidate too: training never returns worse than it began.
    let mut best = (v0, model.clone());
    let start = Instant::now();
    let mut avg = 0.0;
    for step in 1..=cfg.steps {
        let t = (step - 1) as f32 / cfg.steps as f32;
        adam.lr = cfg.lr * (0.01 + 0.99 * 0.5 * (1.0 + (std::f32::consts::PI * t).cos()));
        let b = sample_batch(&train, cfg.batch, cfg.patch, cfg.scale, &mut rng);
        let (loss, g) = loss_and_grad(&model, &b.lr, &b.hr, b.margin);
        avg = if step == 1 { loss } else { 0.98 * avg + 0.02 * loss };
        adam.step(&mut params, &flatten(&g));
        unflatten(&mut model, &params);
        if step % cfg.val_every == 0 || step == cfg.steps {
            let (vs, vb) = validate(&model, &val_batch, cfg.scale);
            if vs > best.0 {
                best = (vs, model.clone());
            }
            log(&format!(
                "step {step}/{}: loss {avg:.5}, val PSNR {vs:.2} dB (bicubic {vb:.2}, gain {:+.2}), lr {:.2e}, {:.0} s",
                cfg.steps,
                vs - vb,
                adam.lr,
                start.elapsed().as_secs_f64()
            ));
        }
    }
    Ok((best.1, best.0 - vb))
}

impl SrTrainConfig {
    /// The command line that repeats this run (`init`: where the starting
    /// weights came from), stored in the weights' metadata.
    pub fn recipe(&self, init: Option<&Path>) -> String {
        format!(
            "gpuimg train sr --scale {} --data {} --steps {} --batch {} --lr {} --seed {}{}",
            self.scale,
            self.data.display(),
            self.steps,
            self.batch,
            self.lr,
            self.seed,
            init.map(|p| format!(" --init {}", p.display())).unwrap_or_default()
        )
    }
}

/// Trains with `cfg` (starting from the weights at `init` if given) and
/// writes the weights to `output` with the recipe, the validation gain and
/// the training time in their metadata. Returns the one-line summary.
pub fn train_to_file(cfg: &SrTrainConfig, init: Option<&Path>, output: &Path, log: impl FnMut(&str)) -> Result<String> {
    let mut cfg = cfg.clone();
    if let Some(p) = init {
        let w = crate::weights::Weights::load(p)?;
        cfg.init =
            Some(TinyPssr::from_weights(&w).map_err(|e| Error::invalid("--init", format!("{}: {e}", p.display())))?);
    }
    let started = Instant::now();
    let (model, gain) = train(&cfg, log)?;
    let mut w = model.to_weights();
    w.metadata.insert("recipe".into(), cfg.recipe(init));
    w.metadata.insert("patch".into(), cfg.patch.to_string());
    w.metadata.insert("lr".into(), format!("{} cosine to 1%, Adam(0.9, 0.999), L1 loss", cfg.lr));
    w.metadata.insert("val_gain_db".into(), format!("{gain:.3}"));
    w.metadata.insert("train_seconds".into(), format!("{:.0}", started.elapsed().as_secs_f64()));
    w.metadata.insert("threads".into(), rayon::current_num_threads().to_string());
    w.save(output)?;
    Ok(format!(
        "wrote {} ({:.0} s, validation gain over bicubic {gain:+.2} dB)",
        output.display(),
        started.elapsed().as_secs_f64()
    ))
}
