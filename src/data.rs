//! Data sets on disk for training and evaluation: image files found under a
//! folder, and images as RGB planes.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::image_io;
use crate::kernels::UnpackPixels;
use crate::tensor::{Shape, Tensor};

/// Every image under `dir` (recursively), sorted.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| Error::io(d.clone(), e))?;
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if image_io::is_image_path(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The images under `dir` for training: at least 2 (every 5th is held out).
pub fn training_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let files = image_files(dir)?;
    if files.len() < 2 {
        return Err(Error::invalid(
            "train",
            format!("{}: need at least 2 images, found {}", dir.display(), files.len()),
        ));
    }
    Ok(files)
}

/// An image as (1, 3, H, W) planes in [0, 1] (grey replicated, alpha dropped).
pub fn load_rgb(path: &Path) -> Result<Tensor> {
    let img = image_io::load(path)?;
    let x = UnpackPixels(img.layout()).cpu(&img.samples)?;
    let (h, w) = (img.height as usize, img.width as usize);
    let p = h * w;
    let mut data = Vec::with_capacity(3 * p);
    for c in 0..3 {
        let src = if img.channels >= 3 { c } else { 0 };
        data.extend_from_slice(&x.data[src * p..(src + 1) * p]);
    }
    Tensor::from_vec(Shape::new(1, 3, h, w), data)
}

/// A dark version of a normal image `x` (1, 3, H, W): exposure gain 2^U(-4.5, 0)
/// and gamma U(1, 2.2) on every channel, then shot and read noise, quantised to 8 bits:
/// the training inputs of `gpuimg train enhance`, and `eval enhance --synthetic`'s.
pub fn darken(x: &Tensor, rng: &mut crate::rng::SplitMix) -> Tensor {
    let gain = (2.0f32).powf(-4.5 * rng.unit());
    let gamma = 1.0 + 1.2 * rng.unit();
    let shot = 0.02 * rng.unit();
    let read = 0.01 * rng.unit();
    let mut y = x.clone();
    for v in &mut y.data {
        let d = gain * v.max(0.0).powf(gamma);
        // Box-Muller from two uniforms.
        let (u1, u2) = (rng.unit().max(1e-7), rng.unit());
        let g = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos();
        let n = d + g * (shot * d.sqrt() + read);
        *v = (n.clamp(0.0, 1.0) * 255.0).round() / 255.0;
    }
    y
}
