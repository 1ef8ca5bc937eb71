//! Training TinyCompress: the autoencoder end to end with MSE on random
//! patches of the training photos (the latents unquantised: 8-bit min-max
//! quantisation adds at most 1/510 of each channel's range), Adam with
//! cosine decay; every 5th photo held out, the weights with the best
//! held-out PSNR kept.

use std::path::PathBuf;

use crate::error::Result;
use crate::models::tinycompress::TinyCompress;
use crate::tensor::{Shape, Tensor};
use crate::train::sr::{load_rgb, training_files};
use crate::train::{Adam, SplitMix};

/// What to train and how.
#[derive(Debug, Clone)]
pub struct CodecTrainConfig {
    /// 4, 16 or 64.
    pub rate: usize,
    /// Directory of photos.
    pub data: PathBuf,
    /// Optimiser steps.
    pub steps: usize,
    /// Patches per step.
    pub batch: usize,
    /// Patch side (a multiple of 8).
    pub patch: usize,
    /// Initial learning rate.
    pub lr: f32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Start from these weights.
    pub init: Option<TinyCompress>,
}

impl CodecTrainConfig {
    /// The defaults: 2000 steps of 8 patches of 64 x 64, lr 2e-3.
    pub fn defaults(rate: usize, data: PathBuf) -> Self {
        CodecTrainConfig { rate, data, steps: 2000, batch: 8, patch: 64, lr: 2e-3, seed: 1, init: None }
    }
}

fn patches(images: &[Tensor], n: usize, p: usize, rng: &mut SplitMix) -> Tensor {
    let mut data = Vec::with_capacity(n * 3 * p * p);
    for _ in 0..n {
        let img = &images[rng.below(images.len())];
        let (h, w) = (img.shape.h, img.shape.w);
        let (y0, x0) = (rng.below(h - p + 1), rng.below(w - p + 1));
        for c in 0..3 {
            let plane = img.plane(0, c);
            for y in y0..y0 + p {
                data.extend_from_slice(&plane[y * w + x0..y * w + x0 + p]);
            }
        }
    }
    Tensor { shape: Shape::new(n, 3, p, p), data }
}

/// PSNR (dB) of the codec's reconstruction of `x` (no quantisation).
pub fn psnr(m: &TinyCompress, x: &Tensor) -> Result<f64> {
    let y = m.dec.forward(&m.enc.forward(x, None)?, None)?;
    let mse = y.data.iter().zip(&x.data).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / x.data.len() as f64;
    Ok(10.0 * (1.0 / mse.max(1e-12)).log10())
}

/// Trains; `log` gets a line per validation. Returns the best codec and its held-out PSNR.
pub fn train(cfg: &CodecTrainConfig, mut log: impl FnMut(&str)) -> Result<(TinyCompress, f64)> {
    let files = training_files(&cfg.data)?;
    let mut train_imgs = Vec::new();
    let mut val_imgs = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let x = load_rgb(f)?;
        if x.shape.h < cfg.patch || x.shape.w < cfg.patch {
            continue;
        }
        if i % 5 == 4 {
            val_imgs.push(x);
        } else {
            train_imgs.push(x);
        }
    }
    if train_imgs.is_empty() || val_imgs.is_empty() {
        return Err(crate::Error::invalid(
            "train codec",
            format!("need photos of at least {0}x{0} for training and validation", cfg.patch),
        ));
    }
    let mut rng = SplitMix(cfg.seed);
    let mut m = match &cfg.init {
        Some(m) => m.clone(),
        None => {
            let mut m = TinyCompress::new(cfg.rate)?;
            let mut r = SplitMix(cfg.seed ^ 0xC0DEC);
            m.init_structured(&mut || r.unit());
            m
        }
    };
    let val = patches(&val_imgs, 32, cfg.patch, &mut SplitMix(cfg.seed ^ 0x5A1));
    let n_enc = m.enc.param_count();
    let mut params = [m.enc.flatten(), m.dec.flatten()].concat();
    let mut adam = Adam::new(params.len(), cfg.lr, 0.9, 0.999);
    let mut best = (psnr(&m, &val)?, m.clone());
    log(&format!("step 0: held-out PSNR {:.2} dB", best.0));
    for step in 1..=cfg.steps {
        let x = patches(&train_imgs, cfg.batch, cfg.patch, &mut rng);
        let mut enc_in = Vec::new();
        let mut dec_in = Vec::new();
        let lat = m.enc.forward(&x, Some(&mut enc_in))?;
        let y = m.dec.forward(&lat, Some(&mut dec_in))?;
        let scale = 2.0 / x.data.len() as f32;
        let dy = Tensor { shape: y.shape, data: y.data.iter().zip(&x.data).map(|(a, b)| (a - b) * scale).collect() };
        let (gd, dlat) = m.dec.backward(&dec_in, &y, &dy, true);
        let (ge, _) = m.enc.backward(&enc_in, &lat, &dlat.expect("asked for"), false);
        let g = [ge, gd].concat();
        let t = step as f32 / cfg.steps as f32;
        adam.lr = cfg.lr * (0.01 + 0.99 * 0.5 * (1.0 + (std::f32::consts::PI * t).cos()));
        adam.step(&mut params, &g);
        m.enc.unflatten(&params[..n_enc]);
        m.dec.unflatten(&params[n_enc..]);
        if step % 100 == 0 || step == cfg.steps {
            let p = psnr(&m, &val)?;
            if p > best.0 {
                best = (p, m.clone());
            }
            log(&format!("step {step}: held-out PSNR {p:.2} dB (best {:.2})", best.0));
        }
    }
    Ok((best.1, best.0))
}
