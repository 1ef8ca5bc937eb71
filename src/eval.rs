//! Evaluation under the standard super-resolution protocol: mod-crop the HR
//! image, MATLAB bicubic downscale (quantised to 8 bits), upscale with the
//! model and with bicubic, and compare on Y with `scale` pixels shaved.

use std::path::{Path, PathBuf};

use crate::backend::Backend;
use crate::error::Result;
use crate::metrics::{psnr_y, ssim_y};
use crate::models::TinyPssr;
use crate::resample;
use crate::tensor::{Shape, Tensor};
use crate::train::sr::{image_files, load_rgb};

/// One image's scores.
#[derive(Debug, Clone)]
pub struct SrRow {
    /// The HR image.
    pub path: PathBuf,
    /// Y PSNR of the model's output, dB.
    pub psnr: f64,
    /// Y SSIM of the model's output.
    pub ssim: f64,
    /// Y PSNR of bicubic upscaling, dB.
    pub psnr_bicubic: f64,
    /// Y SSIM of bicubic upscaling.
    pub ssim_bicubic: f64,
}

fn crop(x: &Tensor, h: usize, w: usize) -> Tensor {
    let s = x.shape;
    let mut data = Vec::with_capacity(s.n * s.c * h * w);
    for p in 0..s.n * s.c {
        for i in 0..h {
            let r = p * s.h * s.w + i * s.w;
            data.extend_from_slice(&x.data[r..r + w]);
        }
    }
    Tensor::from_vec(Shape::new(s.n, s.c, h, w), data).expect("crop")
}

/// Upscales (1, 3, h, w) RGB planes with the model (channels as a batch).
pub fn upscale_rgb(model: &TinyPssr, backend: &Backend, lr: &Tensor) -> Result<Tensor> {
    let s = lr.shape;
    let planes = Tensor::from_vec(Shape::new(s.c, 1, s.h, s.w), lr.data.clone())?;
    let out = crate::ops::run_tinypssr(backend, model, &planes)?;
    let f = model.scale();
    Tensor::from_vec(Shape::new(1, s.c, s.h * f, s.w * f), out.data)
}

/// Scores every image of `dir`.
pub fn eval_sr(model: &TinyPssr, backend: &Backend, dir: &Path) -> Result<Vec<SrRow>> {
    let scale = model.scale();
    let mut rows = Vec::new();
    for path in image_files(dir)? {
        let hr = load_rgb(&path)?;
        let (h, w) = (hr.shape.h / scale * scale, hr.shape.w / scale * scale);
        let hr = crop(&hr, h, w);
        let mut lr = resample::downscale(&hr, scale);
        resample::quantise_u8(&mut lr);
        let mut bic = resample::upscale(&lr, scale);
        resample::quantise_u8(&mut bic);
        let mut sr = upscale_rgb(model, backend, &lr)?;
        resample::quantise_u8(&mut sr);
        rows.push(SrRow {
            path,
            psnr: psnr_y(&sr, &hr, scale),
            ssim: ssim_y(&sr, &hr, scale),
            psnr_bicubic: psnr_y(&bic, &hr, scale),
            ssim_bicubic: ssim_y(&bic, &hr, scale),
        });
    }
    Ok(rows)
}
