//! Training Zero-DCE / Zero-DCE++ with the four zero-reference losses
//! (../shared/SCIENCE.md), on dark images synthesised from normal photos.
//!
//! Losses, as the reference training weighs them, on the enhanced image E,
//! the dark input I and the curve maps A:
//! - spatial consistency (x1): channel means of E and I, 4x4 average pools;
//!   squared differences of their 4-neighbour gradients (zero padding);
//! - exposure control (x10): channel mean of E, 16x16 average pool, mean of (pool - T)^2,
//!   T = 0.6 (the reference's, [`Exposure::Fixed`]) or the same region's level in the
//!   photo the dark input was made from ([`Exposure::Source`]);
//! - colour constancy (x5): channel means mr, mg, mb of E;
//!   sqrt((mr-mg)^4 + (mr-mb)^4 + (mg-mb)^4), averaged over the batch;
//! - illumination smoothness (x1600 Zero-DCE++, x200 Zero-DCE): total variation of A,
//!   2 (h_tv / ((h-1) w) + w_tv / (h (w-1))) / batch.
//!
//! Every gradient is the project's own code; `tests/grad.rs` checks them
//! against finite differences.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use super::grad::conv2d_backward;
use super::Adam;
use crate::data::{load_rgb, training_files};
use crate::error::{Error, Result};
use crate::kernels::ZeroDceEnhance;
use crate::models::zero_dce::{Arch, Trace, ZeroDce, ITERATIONS, LAYERS, WIDTH};
use crate::resample;
use crate::rng::SplitMix;
use crate::tensor::{Shape, Tensor};

/// Loss weights of the reference training.
pub const W_SPA: f64 = 1.0;
/// Exposure-control weight.
pub const W_EXP: f64 = 10.0;
/// Colour-constancy weight.
pub const W_COL: f64 = 5.0;
/// Well-exposedness level the exposure loss pulls towards.
pub const EXPOSURE: f32 = 0.6;

/// Where the exposure loss pulls each 16x16 region of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Exposure {
    /// Towards [`EXPOSURE`] everywhere: the reference's zero-reference loss,
    /// which lifts every region of a dark photo, lamps and windows included.
    #[default]
    Fixed,
    /// Towards the level of the same region in the normal photo the dark
    /// input was synthesised from: the network learns the exposure of
    /// normal photos (no ground-truth pixels are used, only region means).
    Source,
}

impl Exposure {
    /// `fixed` or `source`.
    pub fn parse(s: &str) -> Result<Exposure> {
        match s {
            "fixed" => Ok(Exposure::Fixed),
            "source" => Ok(Exposure::Source),
            _ => Err(Error::invalid("train enhance", format!("--exposure {s}: fixed or source"))),
        }
    }
    /// The name `parse` takes.
    pub fn name(self) -> &'static str {
        match self {
            Exposure::Fixed => "fixed",
            Exposure::Source => "source",
        }
    }
}

/// Illumination-smoothness weight: 1600 in the Zero-DCE++ code, 200 in Zero-DCE's.
pub fn w_tv(arch: Arch) -> f64 {
    match arch {
        Arch::ZeroDcePlus => 1600.0,
        Arch::ZeroDce => 200.0,
    }
}

/// The four weighted loss terms and their sum.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Losses {
    /// Spatial consistency (weighted).
    pub spa: f64,
    /// Exposure control (weighted).
    pub exp: f64,
    /// Colour constancy (weighted).
    pub col: f64,
    /// Illumination smoothness (weighted).
    pub tv: f64,
}

impl Losses {
    /// The training objective.
    pub fn total(&self) -> f64 {
        self.spa + self.exp + self.col + self.tv
    }
}

impl std::fmt::Display for Losses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.4} (spa {:.4}, exp {:.4}, col {:.4}, tv {:.4})",
            self.total(),
            self.spa,
            self.exp,
            self.col,
            self.tv
        )
    }
}

/// Channel mean of each batch item: (N, 1, H, W) as flat planes.
fn channel_mean(x: &Tensor) -> Vec<f32> {
    let s = x.shape;
    let p = s.plane();
    let mut m = vec![0.0f32; s.n * p];
    for n in 0..s.n {
        for c in 0..s.c {
            for (d, v) in m[n * p..(n + 1) * p].iter_mut().zip(x.plane(n, c)) {
                *d += v;
            }
        }
    }
    m.iter_mut().for_each(|v| *v /= s.c as f32);
    m
}

/// k x k average pool of planes (h, w) (floor: trailing rows/columns dropped).
fn avg_pool(planes: &[f32], n: usize, h: usize, w: usize, k: usize) -> (Vec<f32>, usize, usize) {
    let (ph, pw) = (h / k, w / k);
    let mut out = vec![0.0f32; n * ph * pw];
    for b in 0..n {
        for i in 0..ph {
            for j in 0..pw {
                let mut s = 0.0f32;
                for u in 0..k {
                    let row = &planes[b * h * w + (i * k + u) * w + j * k..][..k];
                    s += row.iter().sum::<f32>();
                }
                out[(b * ph + i) * pw + j] = s / (k * k) as f32;
            }
        }
    }
    (out, ph, pw)
}

/// Spreads the gradient of a pooled map back over the (N, C, H, W) tensor it
/// was pooled from through the channel mean: `d[n, c, i, j] += dp / (k^2 C)`.
fn unpool_into(d: &mut Tensor, dpool: &[f32], ph: usize, pw: usize, k: usize) {
    let s = d.shape;
    let f = 1.0 / (k * k * s.c) as f32;
    for n in 0..s.n {
        for c in 0..s.c {
            let plane = &mut d.data[(n * s.c + c) * s.plane()..][..s.plane()];
            for i in 0..ph * k {
                for j in 0..pw * k {
                    plane[i * s.w + j] += dpool[(n * ph + i / k) * pw + j / k] * f;
                }
            }
        }
    }
}

/// Weighted spatial-consistency loss of `e` against `org` and its gradient (added to `de`).
pub fn spatial_loss(e: &Tensor, org: &Tensor, de: &mut Tensor) -> f64 {
    let s = e.shape;
    let (pe, ph, pw) = avg_pool(&channel_mean(e), s.n, s.h, s.w, 4);
    let (po, _, _) = avg_pool(&channel_mean(org), s.n, s.h, s.w, 4);
    if ph == 0 || pw == 0 {
        return 0.0;
    }
    // z = org - enh; each of the 4 directions adds (z[p] - z[neighbour])^2, zero outside.
    let z: Vec<f32> = po.iter().zip(&pe).map(|(o, e)| o - e).collect();
    let m = (s.n * ph * pw) as f64;
    let mut loss = 0.0f64;
    let mut dz = vec![0.0f32; z.len()];
    for b in 0..s.n {
        let at = |i: isize, j: isize| -> f32 {
            if i < 0 || j < 0 || i >= ph as isize || j >= pw as isize {
                0.0
            } else {
                z[(b * ph + i as usize) * pw + j as usize]
            }
        };
        for i in 0..ph as isize {
            for j in 0..pw as isize {
                let zp = at(i, j);
                let mut g = 0.0f32;
                for (di, dj) in [(0, -1), (0, 1), (-1, 0), (1, 0)] {
                    let (ni, nj) = (i + di, j + dj);
                    let d = zp - at(ni, nj);
                    loss += (d * d) as f64;
                    g += d;
                    // The neighbour's own term in the opposite direction, when it exists.
                    if ni >= 0 && nj >= 0 && ni < ph as isize && nj < pw as isize {
                        g += d;
                    }
                }
                dz[(b * ph + i as usize) * pw + j as usize] = (2.0 * W_SPA / m) as f32 * g;
            }
        }
    }
    // d loss / d enh_pool = -dz.
    let dpool: Vec<f32> = dz.iter().map(|v| -v).collect();
    unpool_into(de, &dpool, ph, pw, 4);
    W_SPA * loss / m
}

/// Weighted exposure-control loss and its gradient (added to `de`): towards
/// [`EXPOSURE`] weighted [`W_EXP`], or with `source` (the normal photos the
/// dark inputs were made from, E's shape, and the weight) towards each
/// region's level there.
pub fn exposure_loss(e: &Tensor, source: Option<(&Tensor, f64)>, de: &mut Tensor) -> f64 {
    let s = e.shape;
    let (p, ph, pw) = avg_pool(&channel_mean(e), s.n, s.h, s.w, 16);
    if p.is_empty() {
        return 0.0;
    }
    let (target, w_exp) = match source {
        Some((t, w)) => (avg_pool(&channel_mean(t), s.n, s.h, s.w, 16).0, w),
        None => (vec![EXPOSURE; p.len()], W_EXP),
    };
    let m = p.len() as f64;
    let loss: f64 = p.iter().zip(&target).map(|(&v, &t)| ((v - t) as f64).powi(2)).sum::<f64>() / m;
    let dpool: Vec<f32> = p.iter().zip(&target).map(|(&v, &t)| (2.0 * w_exp / m) as f32 * (v - t)).collect();
    unpool_into(de, &dpool, ph, pw, 16);
    w_exp * loss
}

/// Weighted colour-constancy loss and its gradient (added to `de`).
pub fn colour_loss(e: &Tensor, de: &mut Tensor) -> f64 {
    let s = e.shape;
    let p = s.plane() as f64;
    let mut loss = 0.0f64;
    for n in 0..s.n {
        let m: Vec<f64> = (0..3).map(|c| e.plane(n, c).iter().map(|&v| v as f64).sum::<f64>() / p).collect();
        let (drg, drb, dgb) = ((m[0] - m[1]).powi(2), (m[0] - m[2]).powi(2), (m[1] - m[2]).powi(2));
        let k = (drg * drg + drb * drb + dgb * dgb).sqrt();
        loss += k;
        if k > 1e-12 {
            let f = 2.0 / k;
            let dm = [
                f * (drg * (m[0] - m[1]) + drb * (m[0] - m[2])),
                f * (drg * (m[1] - m[0]) + dgb * (m[1] - m[2])),
                f * (drb * (m[2] - m[0]) + dgb * (m[2] - m[1])),
            ];
            for (c, dmc) in dm.iter().enumerate() {
                let g = (W_COL * dmc / (s.n as f64 * p)) as f32;
                de.data[(n * s.c + c) * s.plane()..][..s.plane()].iter_mut().for_each(|v| *v += g);
            }
        }
    }
    W_COL * loss / s.n as f64
}

/// Weighted illumination-smoothness (total variation) loss of the maps and its gradient (added to `da`).
pub fn tv_loss(a: &Tensor, weight: f64, da: &mut Tensor) -> f64 {
    let s = a.shape;
    let (h, w) = (s.h, s.w);
    let ch = ((h.saturating_sub(1)) * w).max(1) as f64;
    let cw = (h * w.saturating_sub(1)).max(1) as f64;
    let (kh, kw) = (2.0 * weight / (ch * s.n as f64), 2.0 * weight / (cw * s.n as f64));
    let (mut htv, mut wtv) = (0.0f64, 0.0f64);
    for p in 0..s.n * s.c {
        let x = &a.data[p * h * w..(p + 1) * h * w];
        let d = &mut da.data[p * h * w..(p + 1) * h * w];
        for i in 0..h {
            for j in 0..w {
                let k = i * w + j;
                if i + 1 < h {
                    let v = x[k + w] - x[k];
                    htv += (v * v) as f64;
                    let g = (kh * 2.0) as f32 * v;
                    d[k + w] += g;
                    d[k] -= g;
                }
                if j + 1 < w {
                    let v = x[k + 1] - x[k];
                    wtv += (v * v) as f64;
                    let g = (kw * 2.0) as f32 * v;
                    d[k + 1] += g;
                    d[k] -= g;
                }
            }
        }
    }
    kh * htv + kw * wtv
}

/// Gradient of the curve maps given the input `x`, the maps and the
/// gradient `de` of the enhanced image: the curve's backward pass, each
/// pixel's iterates recomputed in registers.
pub fn curve_backward(x: &Tensor, a: &Tensor, de: &Tensor, iterations: usize, per_iteration: bool) -> Tensor {
    let s = x.shape;
    let (c, p) = (s.c, s.plane());
    let sets = ZeroDceEnhance { iterations, per_iteration, colour: 3 }.sets();
    let mut da = Tensor::zeros(a.shape);
    // One task per (batch item, map set): each writes its own planes.
    da.data.par_chunks_mut(c * p).enumerate().for_each(|(bs, dplanes)| {
        let (b, set) = (bs / sets, bs % sets);
        for ch in 0..c {
            let xp = x.plane(b, ch);
            let gp = de.plane(b, ch);
            let maps: Vec<&[f32]> =
                (0..iterations).map(|t| a.plane(b, (if per_iteration { t } else { 0 }) * c + ch)).collect();
            let dst = &mut dplanes[ch * p..(ch + 1) * p];
            let mut xs = vec![0.0f32; iterations + 1];
            for k in 0..p {
                xs[0] = xp[k];
                for t in 0..iterations {
                    let v = xs[t];
                    xs[t + 1] = v + maps[t][k] * (v * v - v);
                }
                let mut g = gp[k];
                for t in (0..iterations).rev() {
                    let v = xs[t];
                    if !per_iteration || t == set {
                        dst[k] += g * (v * v - v);
                    }
                    g *= 1.0 + maps[t][k] * (2.0 * v - 1.0);
                }
            }
        }
    });
    da
}

/// The losses of enhancing `x` with maps `a`, and their gradient with
/// respect to `a`; `source`: the exposure loss's targets and weight ([`exposure_loss`]).
pub fn losses_and_map_grad(arch: Arch, x: &Tensor, a: &Tensor, source: Option<(&Tensor, f64)>) -> (Losses, Tensor) {
    let curve = ZeroDceEnhance { iterations: ITERATIONS, per_iteration: arch.per_iteration(), colour: 3 };
    let e = curve.cpu(x, a).expect("maps fit the image");
    let mut de = Tensor::zeros(e.shape);
    let spa = spatial_loss(&e, x, &mut de);
    let exp = exposure_loss(&e, source, &mut de);
    let col = colour_loss(&e, &mut de);
    let mut da = curve_backward(x, a, &de, ITERATIONS, arch.per_iteration());
    let tv = tv_loss(a, w_tv(arch), &mut da);
    (Losses { spa, exp, col, tv }, da)
}

fn relu_mask(d: &mut Tensor, out: &Tensor) {
    d.data.iter_mut().zip(&out.data).for_each(|(g, &y)| {
        if y <= 0.0 {
            *g = 0.0
        }
    });
}

/// Splits a gradient of cat(a, b) into its two halves.
fn split(d: &Tensor, ca: usize) -> (Tensor, Tensor) {
    let s = d.shape;
    let p = s.plane();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for n in 0..s.n {
        let item = &d.data[n * s.c * p..(n + 1) * s.c * p];
        a.extend_from_slice(&item[..ca * p]);
        b.extend_from_slice(&item[ca * p..]);
    }
    (
        Tensor { shape: Shape::new(s.n, ca, s.h, s.w), data: a },
        Tensor { shape: Shape::new(s.n, s.c - ca, s.h, s.w), data: b },
    )
}

fn add(a: &mut Tensor, b: &Tensor) {
    a.data.iter_mut().zip(&b.data).for_each(|(x, y)| *x += y);
}

/// Backward pass of the network: the gradient of every parameter (in
/// [`ZeroDce::flat`]'s order) given the gradient of the maps.
pub fn network_backward(m: &ZeroDce, t: &Trace, dmaps: &Tensor) -> Vec<f32> {
    // Per layer: [depth dw, depth db,] main dw, main db.
    let mut grads: Vec<Vec<Vec<f32>>> = vec![Vec::new(); LAYERS];
    // Gradients flowing into x1..x6 (the ReLU outputs).
    let mut dx: Vec<Option<Tensor>> = vec![None; LAYERS - 1];
    let acc = |dx: &mut Vec<Option<Tensor>>, i: usize, g: Tensor| match &mut dx[i] {
        Some(d) => add(d, &g),
        None => dx[i] = Some(g),
    };
    for i in (0..LAYERS).rev() {
        // Gradient at this layer's pre-activation output.
        let dpre = if i + 1 == LAYERS {
            let mut d = dmaps.clone();
            d.data.iter_mut().zip(&t.outs[i].data).for_each(|(g, &y)| *g *= 1.0 - y * y);
            d
        } else {
            let mut d = dx[i].take().expect("every feature map feeds a later layer");
            relu_mask(&mut d, &t.outs[i]);
            d
        };
        let (dc, mc) = m.arch.convs(i);
        let l = &m.layers[i];
        let need_in = i > 0;
        let main_in = t.mids[i].as_ref().unwrap_or(&t.ins[i]);
        let (dmid, dw, db) = conv2d_backward(&mc, main_in, &l.main.0, &dpre, need_in || dc.is_some());
        let mut g = Vec::new();
        let din = match (dc, &l.depth) {
            (Some(c), Some((w, _))) => {
                let (din, ddw, ddb) = conv2d_backward(&c, &t.ins[i], w, &dmid.expect("asked for"), need_in);
                g.push(ddw);
                g.push(ddb);
                din
            }
            _ => dmid,
        };
        g.push(dw);
        g.push(db);
        grads[i] = g;
        if let Some(din) = din.filter(|_| need_in) {
            // Route the input gradient to the feature maps the input was made of.
            match i {
                1..=3 => acc(&mut dx, i - 1, din),
                _ => {
                    let (first, second) = match i {
                        4 => (2, 3),
                        5 => (1, 4),
                        _ => (0, 5),
                    };
                    let (a, b) = split(&din, WIDTH);
                    acc(&mut dx, first, a);
                    acc(&mut dx, second, b);
                }
            }
        }
    }
    grads.into_iter().flatten().flatten().collect()
}

/// Forward pass, losses and the gradient of every parameter for a batch of
/// dark images `x` (N, 3, H, W); `source` as in [`losses_and_map_grad`].
pub fn loss_and_grad(m: &ZeroDce, x: &Tensor, source: Option<(&Tensor, f64)>) -> Result<(Losses, Vec<f32>)> {
    let t = m.forward_trace(x)?;
    let (losses, da) = losses_and_map_grad(m.arch, x, t.maps(), source);
    Ok((losses, network_backward(m, &t, &da)))
}

pub use crate::data::darken;

/// What to train and how.
#[derive(Debug, Clone)]
pub struct EnhanceTrainConfig {
    /// Which network.
    pub arch: Arch,
    /// Directory of normal photos (searched recursively; every 5th held out).
    pub data: PathBuf,
    /// Optimiser steps.
    pub steps: usize,
    /// Images per step.
    pub batch: usize,
    /// Patch side.
    pub patch: usize,
    /// Photos are first resized so their shorter side is this (the scale the
    /// network sees at test time, after the downscale by s).
    pub side: usize,
    /// Initial learning rate (cosine decay to 1%).
    pub lr: f32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Validate every this many steps.
    pub val_every: usize,
    /// The exposure loss's targets.
    pub exposure: Exposure,
    /// The exposure loss's weight with [`Exposure::Source`] (the fixed
    /// target keeps the reference's [`W_EXP`]).
    pub exposure_weight: f64,
}

impl EnhanceTrainConfig {
    /// The defaults the shipped weights were trained with.
    pub fn defaults(arch: Arch, data: PathBuf) -> Self {
        let (steps, batch, patch) = match arch {
            Arch::ZeroDcePlus => (1000, 8, 96),
            Arch::ZeroDce => (800, 8, 64),
        };
        EnhanceTrainConfig {
            arch,
            data,
            steps,
            batch,
            patch,
            side: 256,
            lr: 2e-3,
            seed: 1,
            val_every: 100,
            exposure: Exposure::Fixed,
            exposure_weight: W_EXP,
        }
    }
}

/// Random patches with a random flip, each darkened independently.
pub fn sample_batch(images: &[Tensor], count: usize, patch: usize, rng: &mut SplitMix) -> (Tensor, Tensor) {
    let mut dark = Tensor::zeros(Shape::new(count, 3, patch, patch));
    let mut clean = Tensor::zeros(dark.shape);
    let pp = patch * patch;
    for n in 0..count {
        let img = &images[rng.below(images.len())];
        let (y0, x0) = (rng.below(img.shape.h - patch + 1), rng.below(img.shape.w - patch + 1));
        let flip = rng.below(2) == 1;
        let mut p = Tensor::zeros(Shape::new(1, 3, patch, patch));
        for c in 0..3 {
            let src = img.plane(0, c);
            for i in 0..patch {
                for j in 0..patch {
                    let jj = if flip { patch - 1 - j } else { j };
                    p.data[c * pp + i * patch + j] = src[(y0 + i) * img.shape.w + x0 + jj];
                }
            }
        }
        let d = darken(&p, rng);
        dark.data[n * 3 * pp..(n + 1) * 3 * pp].copy_from_slice(&d.data);
        clean.data[n * 3 * pp..(n + 1) * 3 * pp].copy_from_slice(&p.data);
    }
    (dark, clean)
}

/// Validation figures on held-out dark patches.
#[derive(Debug, Clone, Copy)]
pub struct Validation {
    /// Mean zero-reference losses.
    pub losses: Losses,
    /// PSNR (dB) of the dark inputs against the photos they were made from.
    pub psnr_dark: f64,
    /// PSNR (dB) of the enhanced images against the same photos.
    pub psnr_enhanced: f64,
    /// Mean brightness of inputs and outputs.
    pub mean_dark: f64,
    /// Mean brightness of the enhanced images.
    pub mean_enhanced: f64,
}

/// Losses (with `cfg`'s exposure targets) and reference PSNRs of the model on a validation batch.
pub fn validate(m: &ZeroDce, dark: &Tensor, clean: &Tensor, cfg: &EnhanceTrainConfig) -> Result<Validation> {
    let maps = m.maps_cpu(dark)?;
    let (losses, _) = losses_and_map_grad(m.arch, dark, &maps, cfg.exposure_target(clean));
    let e =
        ZeroDceEnhance { iterations: ITERATIONS, per_iteration: m.arch.per_iteration(), colour: 3 }.cpu(dark, &maps)?;
    let q = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as f64 / 255.0;
    let per = 3 * dark.shape.plane();
    let (mut pd, mut pe) = (0.0, 0.0);
    for n in 0..dark.shape.n {
        let r: Vec<f64> = clean.data[n * per..(n + 1) * per].iter().map(|&v| v as f64).collect();
        let d: Vec<f64> = dark.data[n * per..(n + 1) * per].iter().map(|&v| q(v)).collect();
        let en: Vec<f64> = e.data[n * per..(n + 1) * per].iter().map(|&v| q(v)).collect();
        pd += crate::metrics::psnr(&d, &r, 1.0);
        pe += crate::metrics::psnr(&en, &r, 1.0);
    }
    let mean = |t: &Tensor| t.data.iter().map(|&v| q(v)).sum::<f64>() / t.data.len() as f64;
    let nb = dark.shape.n as f64;
    Ok(Validation {
        losses,
        psnr_dark: pd / nb,
        psnr_enhanced: pe / nb,
        mean_dark: mean(dark),
        mean_enhanced: mean(&e),
    })
}

/// Trains a model; `log` receives progress lines. Returns the model with the
/// lowest validation loss and its validation figures.
pub fn train(cfg: &EnhanceTrainConfig, mut log: impl FnMut(&str)) -> Result<(ZeroDce, Validation)> {
    if cfg.patch < 16 || cfg.patch > cfg.side {
        return Err(Error::invalid("train", format!("patch {} must be in 16..={}", cfg.patch, cfg.side)));
    }
    let files = training_files(&cfg.data)?;
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, f) in files.iter().enumerate() {
        let img = load_rgb(f)?;
        let short = img.shape.h.min(img.shape.w);
        if short < cfg.patch {
            continue;
        }
        let img = if short > cfg.side {
            let (h, w) = (img.shape.h * cfg.side / short, img.shape.w * cfg.side / short);
            let mut small = resample::imresize(&img, h.max(cfg.side), w.max(cfg.side));
            resample::quantise_u8(&mut small);
            small
        } else {
            img
        };
        if i % 5 == 4 {
            val.push(img)
        } else {
            train.push(img)
        }
    }
    if train.is_empty() || val.is_empty() {
        return Err(Error::invalid(
            "train",
            format!("{}: too few images of at least {} pixels", cfg.data.display(), cfg.patch),
        ));
    }
    log(&format!(
        "data: {} photos ({} training, {} validation), shorter side {}",
        files.len(),
        train.len(),
        val.len(),
        cfg.side
    ));

    let mut rng = SplitMix(cfg.seed);
    let mut model = {
        let mut u = || rng.unit();
        ZeroDce::init(cfg.arch, &mut u)
    };
    let (vdark, vclean) = sample_batch(&val, 32, cfg.patch, &mut SplitMix(cfg.seed ^ 0xABCD));
    let v0 = validate(&model, &vdark, &vclean, cfg)?;
    log(&format!(
        "start: {} parameters; val loss {}, PSNR dark {:.2} dB",
        model.parameter_count(),
        v0.losses,
        v0.psnr_dark
    ));
    let mut params = model.flat();
    // PyTorch's Adam with weight decay 1e-4 (L2 added to the gradient), gradient-norm clip 0.1.
    let mut adam = Adam::new(params.len(), cfg.lr, 0.9, 0.999);
    let mut best = (v0.losses.total(), model.clone(), v0);
    let start = Instant::now();
    let mut avg = 0.0;
    for step in 1..=cfg.steps {
        let t = (step - 1) as f32 / cfg.steps as f32;
        adam.lr = cfg.lr * (0.01 + 0.99 * 0.5 * (1.0 + (std::f32::consts::PI * t).cos()));
        let (dark, clean) = sample_batch(&train, cfg.batch, cfg.patch, &mut rng);
        let (losses, mut g) = loss_and_grad(&model, &dark, cfg.exposure_target(&clean))?;
        g.iter_mut().zip(&params).for_each(|(g, p)| *g += 1e-4 * p);
        let norm = g.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        if norm > 0.1 {
            let f = (0.1 / norm) as f32;
            g.iter_mut().for_each(|v| *v *= f);
        }
        avg = if step == 1 { losses.total() } else { 0.95 * avg + 0.05 * losses.total() };
        adam.step(&mut params, &g);
        model.set_flat(&params);
        if step % cfg.val_every == 0 || step == cfg.steps {
            let v = validate(&model, &vdark, &vclean, cfg)?;
            if v.losses.total() < best.0 {
                best = (v.losses.total(), model.clone(), v);
            }
            log(&format!(
                "step {step}/{}: train loss {avg:.4}, val loss {}, PSNR {:.2} dB (dark {:.2}), mean {:.3} (dark {:.3}), lr {:.1e}, {:.0} s",
                cfg.steps,
                v.losses,
                v.psnr_enhanced,
                v.psnr_dark,
                v.mean_enhanced,
                v.mean_dark,
                adam.lr,
                start.elapsed().as_secs_f64()
            ));
        }
    }
    Ok((best.1, best.2))
}

impl EnhanceTrainConfig {
    /// The exposure loss's `source` argument ([`exposure_loss`]) for a batch
    /// made from the photos `clean`: them and the weight with
    /// [`Exposure::Source`], none with the fixed target.
    pub fn exposure_target<'a>(&self, clean: &'a Tensor) -> Option<(&'a Tensor, f64)> {
        (self.exposure == Exposure::Source).then_some((clean, self.exposure_weight))
    }

    /// The command line that repeats this run, stored in the weights' metadata.
    pub fn recipe(&self) -> String {
        let exposure = match self.exposure {
            Exposure::Fixed => String::new(),
            e if self.exposure_weight == W_EXP => format!(" --exposure {}", e.name()),
            e => format!(" --exposure {} --exposure-weight {}", e.name(), self.exposure_weight),
        };
        format!(
            "gpuimg train enhance --model {} --data {} --steps {} --batch {} --patch {} --lr {} --seed {}{exposure}",
            self.arch.name(),
            self.data.display(),
            self.steps,
            self.batch,
            self.patch,
            self.lr,
            self.seed
        )
    }
}

/// Trains with `cfg` and writes the weights (the reference's tensor names)
/// to `output` with the recipe, the losses, the validation figures and the
/// training time in their metadata. Returns the one-line summary.
pub fn train_to_file(cfg: &EnhanceTrainConfig, output: &Path, log: impl FnMut(&str)) -> Result<String> {
    let started = Instant::now();
    let (m, v) = train(cfg, log)?;
    let mut w = m.to_weights();
    w.metadata.insert("recipe".into(), cfg.recipe());
    w.metadata.insert(
        "losses".into(),
        format!(
            "spatial x1, exposure({target}, 16x16) x{weight}, colour x5, illumination TV x1600 (zero-dce++) / x200 (zero-dce)",
            target = match cfg.exposure {
                Exposure::Fixed => "0.6",
                Exposure::Source => "the source photo's region levels",
            },
            weight = if cfg.exposure == Exposure::Source { cfg.exposure_weight } else { W_EXP },
        ),
    );
    w.metadata.insert(
        "optimiser".into(),
        format!("Adam(0.9, 0.999), lr {} cosine to 1%, weight decay 1e-4, grad-norm clip 0.1", cfg.lr),
    );
    w.metadata.insert("val_loss".into(), format!("{:.4}", v.losses.total()));
    w.metadata.insert("val_psnr_db".into(), format!("{:.2} (dark inputs {:.2})", v.psnr_enhanced, v.psnr_dark));
    w.metadata.insert("val_mean".into(), format!("{:.3} (dark inputs {:.3})", v.mean_enhanced, v.mean_dark));
    w.metadata.insert("train_seconds".into(), format!("{:.0}", started.elapsed().as_secs_f64()));
    w.metadata.insert("threads".into(), rayon::current_num_threads().to_string());
    w.save(output)?;
    Ok(format!(
        "wrote {} ({:.0} s; validation loss {}, PSNR vs the clean photos {:.2} dB, dark inputs {:.2} dB)",
        output.display(),
        started.elapsed().as_secs_f64(),
        v.losses,
        v.psnr_enhanced,
        v.psnr_dark
    ))
}
