//! Training TinyCompress: the autoencoder end to end with MSE on random
//! patches of the training photos (the latents unquantised: 8-bit min-max
//! quantisation adds at most 1/510 of each channel's range), Adam with
//! cosine decay; every 5th photo held out, the weights with the best
//! held-out PSNR kept. The loss skips a margin of [`margin`] pixels at the
//! patch borders: there the convolutions' zero padding stands in for image
//! content that a whole image has, and fitting it would bend the codec
//! towards patch edges (a third of a 64 x 64 patch lies within 6 pixels of
//! its border). Training starts from [`TinyCompress::init_linear`] (a
//! working bicubic codec), or from given weights, repeated into more blocks
//! where the rate asks for them ([`TinyCompress::deepened`]).

use std::path::{Path, PathBuf};

use crate::data::{load_rgb, training_files};
use crate::error::Result;
use crate::kernels::PixelShuffle;
use crate::models::tinycompress::{Layer, Net, TinyCompress};
use crate::rng::SplitMix;
use crate::tensor::{Shape, Tensor};
use crate::train::Adam;

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
    /// The defaults: 2000 steps of 8 patches of 64 x 64 (-4) or 96 x 96
    /// (-16, -64), lr 5e-4 (the paper's).
    pub fn defaults(rate: usize, data: PathBuf) -> Self {
        let patch = if rate > 4 { 96 } else { 64 };
        CodecTrainConfig { rate, data, steps: 2000, batch: 8, patch, lr: 5e-4, seed: 1, init: None }
    }
}

/// Border pixels left out of the loss: 8 per block.
pub fn margin(rate: usize) -> usize {
    8 * rate.trailing_zeros() as usize / 2
}

/// Squared-error gradient scale and mask: `(y - x) * 2 / n` inside the
/// margin `m`, 0 outside; returns the gradient and the interior MSE.
fn masked(x: &Tensor, y: &Tensor, m: usize) -> (Tensor, f64) {
    let (h, w) = (x.shape.h, x.shape.w);
    let inside = |i: usize| {
        let (py, px) = ((i / w) % h, i % w);
        py >= m && py + m < h && px >= m && px + m < w
    };
    let n = (x.shape.n * x.shape.c * h.saturating_sub(2 * m) * w.saturating_sub(2 * m)).max(1);
    let scale = 2.0 / n as f32;
    let mut sse = 0.0f64;
    let data = y
        .data
        .iter()
        .zip(&x.data)
        .enumerate()
        .map(|(i, (a, b))| {
            if inside(i) {
                sse += ((a - b) as f64).powi(2);
                (a - b) * scale
            } else {
                0.0
            }
        })
        .collect();
    (Tensor { shape: y.shape, data }, sse / n as f64)
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

/// PSNR (dB) of the codec's reconstruction of `x` (no quantisation),
/// leaving out a border of `margin` pixels.
pub fn psnr(m: &TinyCompress, x: &Tensor, margin: usize) -> Result<f64> {
    let y = m.dec.forward(&m.enc.forward(x, None)?, None)?;
    let mse = masked(x, &y, margin).1;
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
        Some(m) => m.deepened(cfg.rate)?,
        None => {
            let mut m = TinyCompress::new(cfg.rate)?;
            let mut r = SplitMix(cfg.seed ^ 0xC0DEC);
            m.init_linear(&mut || r.unit());
            m
        }
    };
    let margin = margin(cfg.rate);
    if cfg.patch <= 2 * margin + 8 {
        return Err(crate::Error::invalid(
            "train codec",
            format!("patch {} leaves too little inside the {margin}-pixel margin", cfg.patch),
        ));
    }
    let val = patches(&val_imgs, 32, cfg.patch, &mut SplitMix(cfg.seed ^ 0x5A1));
    let n_enc = m.enc.param_count();
    let mut params = [m.enc.flatten(), m.dec.flatten()].concat();
    let mut adam = Adam::new(params.len(), cfg.lr, 0.9, 0.999);
    let mut best = (psnr(&m, &val, margin)?, m.clone());
    log(&format!("step 0: held-out PSNR {:.2} dB", best.0));
    for step in 1..=cfg.steps {
        let x = patches(&train_imgs, cfg.batch, cfg.patch, &mut rng);
        let mut enc_in = Vec::new();
        let mut dec_in = Vec::new();
        let lat = m.enc.forward(&x, Some(&mut enc_in))?;
        let y = m.dec.forward(&lat, Some(&mut dec_in))?;
        let dy = masked(&x, &y, margin).0;
        let (gd, dlat) = net_backward(&m.dec, &dec_in, &y, &dy, true);
        let (ge, _) = net_backward(&m.enc, &enc_in, &lat, &dlat.expect("asked for"), false);
        let g = [ge, gd].concat();
        let t = step as f32 / cfg.steps as f32;
        adam.lr = cfg.lr * (0.01 + 0.99 * 0.5 * (1.0 + (std::f32::consts::PI * t).cos()));
        adam.step(&mut params, &g);
        m.enc.unflatten(&params[..n_enc]);
        m.dec.unflatten(&params[n_enc..]);
        if step % 100 == 0 || step == cfg.steps {
            let p = psnr(&m, &val, margin)?;
            if p > best.0 {
                best = (p, m.clone());
            }
            log(&format!("step {step}: held-out PSNR {p:.2} dB (best {:.2})", best.0));
        }
    }
    Ok((best.1, best.0))
}

/// Gradients of all of a TinyCompress [`Net`]'s parameters ([`Net::flatten`] layout) and of the
/// input, from the kept layer inputs, the output and its gradient.
pub fn net_backward(
    net: &Net,
    inputs: &[Tensor],
    out: &Tensor,
    dy: &Tensor,
    need_dx: bool,
) -> (Vec<f32>, Option<Tensor>) {
    use crate::train::grad::{conv2d_backward, pixel_shuffle_backward, prelu_backward};
    let mut grads: Vec<Vec<f32>> = vec![Vec::new(); net.layers.len()];
    let mut d = dy.clone();
    let mut next_out = out.clone();
    for (i, l) in net.layers.iter().enumerate().rev() {
        let x = &inputs[i];
        let first = i == 0;
        match l {
            Layer::Conv { conv, w, .. } => {
                let (dx, dw, db) = conv2d_backward(conv, x, w, &d, !first || need_dx);
                let mut g = dw;
                g.extend(db);
                grads[i] = g;
                match dx {
                    Some(dx) => d = dx,
                    None => break,
                }
            }
            Layer::Prelu(a) => {
                let (dx, da) = prelu_backward(x, a, &d);
                grads[i] = da;
                d = dx;
            }
            Layer::Unshuffle => d = PixelShuffle { r: 2 }.cpu(&d).expect("unshuffled shape"),
            Layer::Shuffle => d = pixel_shuffle_backward(2, &d),
            Layer::Sigmoid => {
                d.data.iter_mut().zip(&next_out.data).for_each(|(g, s)| *g *= s * (1.0 - s));
            }
        }
        next_out = x.clone();
    }
    (grads.concat(), need_dx.then_some(d))
}

impl CodecTrainConfig {
    /// The command line that repeats this run (`init`: where the starting
    /// weights came from), stored in the weights' metadata.
    pub fn recipe(&self, init: Option<&Path>) -> String {
        format!(
            "gpuimg train codec --rate {} --data {} --steps {} --batch {} --patch {} --lr {} --seed {}{}",
            self.rate,
            self.data.display(),
            self.steps,
            self.batch,
            self.patch,
            self.lr,
            self.seed,
            init.map(|p| format!(" --init {}", p.display())).unwrap_or_default()
        )
    }
}

/// Trains with `cfg` (starting from the weights at `init` if given: a lower
/// rate's blocks are repeated) and writes the weights to `output` with the
/// recipe, the loss and the held-out PSNR in their metadata. Returns the
/// one-line summary.
pub fn train_to_file(
    cfg: &CodecTrainConfig,
    init: Option<&Path>,
    output: &Path,
    log: impl FnMut(&str),
) -> Result<String> {
    let mut cfg = cfg.clone();
    if cfg.patch == 0 || !cfg.patch.is_multiple_of(8) {
        return Err(crate::error::Error::invalid("--patch", format!("{} is not a positive multiple of 8", cfg.patch)));
    }
    if let Some(p) = init {
        let w = crate::weights::Weights::load(p)?;
        let m = TinyCompress::from_weights(&w)
            .map_err(|e| crate::error::Error::invalid("--init", format!("{}: {e}", p.display())))?;
        if m.rate() > cfg.rate {
            return Err(crate::error::Error::invalid(
                "--init",
                format!("{}: these weights are for rate {}, more than {}", p.display(), m.rate(), cfg.rate),
            ));
        }
        cfg.init = Some(m);
    }
    let started = std::time::Instant::now();
    let (m, psnr) = train(&cfg, log)?;
    let mut w = m.to_weights();
    w.metadata.insert("recipe".into(), cfg.recipe(init));
    w.metadata.insert(
        "loss".into(),
        format!("MSE inside a {}-pixel patch margin; Adam(0.9, 0.999), cosine decay to 1%", margin(cfg.rate)),
    );
    w.metadata.insert("val_psnr_db".into(), format!("{psnr:.2} (unquantised latents, held-out patches)"));
    w.metadata.insert("train_seconds".into(), format!("{:.0}", started.elapsed().as_secs_f64()));
    w.save(output)?;
    Ok(format!("wrote {} ({:.0} s, held-out PSNR {psnr:.2} dB)", output.display(), started.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_leaves_the_margin_out() {
        let shape = Shape::new(2, 3, 9, 11);
        let x = Tensor { shape, data: (0..shape.len()).map(|i| (i % 7) as f32 / 7.0).collect() };
        let mut y = x.clone();
        // An error of 0.5 at one inside pixel of each plane, and of 1 in the margin everywhere.
        for (i, v) in y.data.iter_mut().enumerate() {
            let (py, px) = ((i / 11) % 9, i % 11);
            if !(2..7).contains(&py) || !(2..9).contains(&px) {
                *v += 1.0;
            } else if (py, px) == (4, 5) {
                *v += 0.5;
            }
        }
        let (g, mse) = masked(&x, &y, 2);
        let n = 2 * 3 * 5 * 7;
        assert!((mse - 6.0 * 0.25 / n as f64).abs() < 1e-9, "{mse}");
        for (i, d) in g.data.iter().enumerate() {
            let (py, px) = ((i / 11) % 9, i % 11);
            let want = if (py, px) == (4, 5) { 2.0 * 0.5 / n as f32 } else { 0.0 };
            assert!((d - want).abs() < 1e-7, "pixel {py},{px}: {d} vs {want}");
        }
        assert_eq!((margin(4), margin(16), margin(64)), (8, 16, 24));
    }
}
