//! Evaluation under the standard super-resolution protocol: mod-crop the HR
//! image, MATLAB bicubic downscale (quantised to 8 bits), upscale with the
//! model and with bicubic, and compare on Y with `scale` pixels shaved.

use std::path::{Path, PathBuf};

use crate::backend::Backend;
use crate::data::{image_files, load_rgb};
use crate::error::Result;
use crate::metrics::{psnr_y, ssim_y};
use crate::models::TinyPssr;
use crate::resample;
use crate::tensor::{Shape, Tensor};

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

/// Upscales (1, 3, h, w) RGB planes (8-bit values) with the model through
/// the product path, [`crate::ops::super_resolve`]: what `gpuimg sr` runs on
/// this backend (the fused kernel on a GPU), on 8-bit pixels in and out.
pub fn upscale_rgb(model: &TinyPssr, backend: &Backend, lr: &Tensor) -> Result<Tensor> {
    let s = lr.shape;
    let l = crate::pixel::PixelLayout { n: 1, height: s.h, width: s.w, channels: 3, bits: 8 };
    let img = crate::pixel::Image::new(s.w as u32, s.h as u32, 3, crate::kernels::PackPixels(l).cpu(lr)?)?;
    let up = crate::ops::super_resolve(backend, model, &img)?;
    crate::kernels::UnpackPixels(up.layout()).cpu(&up.samples)
}

/// Images an evaluation left out, and why (unreadable, or too small for the protocol).
pub type Skipped = Vec<(PathBuf, String)>;

/// The smallest side an HR image may have for `eval sr` at `scale`: after
/// the mod-crop and the `scale`-pixel shave, SSIM's 11x11 window must fit.
pub fn eval_sr_min_side(scale: usize) -> usize {
    2 * scale + 11
}

/// Scores every image of `dir`; images that cannot be read or are too small
/// for the protocol are left out and listed with the reason.
pub fn eval_sr(model: &TinyPssr, backend: &Backend, dir: &Path) -> Result<(Vec<SrRow>, Skipped)> {
    let scale = model.scale();
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    for path in image_files(dir)? {
        let hr = match load_rgb(&path) {
            Ok(x) => x,
            Err(e) => {
                skipped.push((path, e.to_string()));
                continue;
            }
        };
        let (h, w) = (hr.shape.h / scale * scale, hr.shape.w / scale * scale);
        let min = eval_sr_min_side(scale);
        if h < min || w < min {
            skipped.push((
                path,
                format!(
                    "{}x{} is too small for the protocol at x{scale} (sides of at least {min} after cropping to a multiple of {scale})",
                    hr.shape.w, hr.shape.h
                ),
            ));
            continue;
        }
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
    Ok((rows, skipped))
}

/// One (image, codec setting) of `gpuimg eval codec`, next to JPEG at the same rate.
#[derive(Debug, Clone)]
pub struct CodecRow {
    /// The image.
    pub path: PathBuf,
    /// TinyCompress rate (4, 16, 64).
    pub rate: usize,
    /// Bit planes kept.
    pub bitplanes: u32,
    /// Bits per pixel of the .tcz file (header included).
    pub bpp: f64,
    /// PSNR over R, G, B (8-bit), dB.
    pub psnr_rgb: f64,
    /// PSNR of Y (BT.601), dB.
    pub psnr_y: f64,
    /// MS-SSIM of Y.
    pub ms_ssim: f64,
    /// JPEG quality whose bpp is nearest.
    pub jpeg_quality: u8,
    /// That JPEG's bits per pixel.
    pub jpeg_bpp: f64,
    /// Its RGB PSNR.
    pub jpeg_psnr_rgb: f64,
    /// Its Y MS-SSIM.
    pub jpeg_ms_ssim: f64,
}

fn rgb8_tensor(img: &crate::image_io::Image) -> Result<Tensor> {
    crate::kernels::UnpackPixels(img.layout()).cpu(&img.samples)
}

fn scores(a: &Tensor, b: &Tensor) -> (f64, f64, f64) {
    let to255 = |t: &Tensor| t.data.iter().map(|v| (*v as f64 * 255.0).round()).collect::<Vec<f64>>();
    let rgb = crate::metrics::psnr(&to255(a), &to255(b), 255.0);
    let y = psnr_y(a, b, 0);
    let ms = crate::metrics::ms_ssim(&crate::metrics::luma(a), &crate::metrics::luma(b), a.shape.h, a.shape.w);
    (rgb, y, ms)
}

fn jpeg(img: &crate::image_io::Image, q: u8) -> Result<(usize, crate::image_io::Image)> {
    use image::ImageEncoder;
    let dynimg = crate::image_io::to_dynamic(img)?.to_rgb8();
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, q)
        .write_image(dynimg.as_raw(), img.width, img.height, image::ExtendedColorType::Rgb8)
        .map_err(|e| crate::Error::invalid("jpeg", e.to_string()))?;
    let back = image::load_from_memory(&buf).map_err(|e| crate::Error::invalid("jpeg", e.to_string()))?;
    Ok((buf.len(), crate::image_io::from_dynamic(back)?))
}

/// Every RGB image of `dir` through every codec and bit-plane setting, with
/// JPEG (the image crate's encoder) at the quality whose size is nearest.
pub fn eval_codec(
    models: &[crate::models::tinycompress::TinyCompress],
    bitplanes: &[u32],
    backend: &Backend,
    dir: &Path,
) -> Result<(Vec<CodecRow>, Skipped)> {
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    for path in image_files(dir)? {
        let img = match crate::image_io::load(&path) {
            Ok(i) => i,
            Err(e) => {
                skipped.push((path, e.to_string()));
                continue;
            }
        };
        if img.channels != 3 {
            skipped.push((path, format!("{} channels: the codec takes RGB", img.channels)));
            continue;
        }
        // MS-SSIM's 11x11 window needs more than 10 pixels a side.
        if img.width < 11 || img.height < 11 {
            skipped.push((path, format!("{}x{} is too small for MS-SSIM (11x11 at least)", img.width, img.height)));
            continue;
        }
        let img = crate::image_io::from_dynamic(crate::image_io::to_dynamic(&img)?.to_rgb8().into())?;
        let x = rgb8_tensor(&img)?;
        let pixels = (img.width * img.height) as f64;
        for m in models {
            for &p in bitplanes {
                let t = crate::codec::compress(backend, m, &img, p)?;
                let bytes = t.to_bytes().len();
                let out = crate::codec::decompress(backend, m, &t)?;
                let (psnr_rgb, psnr_y, ms_ssim) = scores(&rgb8_tensor(&out)?, &x);
                let bpp = bytes as f64 * 8.0 / pixels;
                // Binary search of the quality whose size is nearest (size grows
                // with quality); each quality is encoded once.
                let mut encoded: std::collections::HashMap<u8, (usize, crate::image_io::Image)> = Default::default();
                let mut jpeg_bpp = |q: u8| -> Result<f64> {
                    if let std::collections::hash_map::Entry::Vacant(e) = encoded.entry(q) {
                        e.insert(jpeg(&img, q)?);
                    }
                    Ok(encoded[&q].0 as f64 * 8.0 / pixels)
                };
                let (mut lo, mut hi) = (1u8, 100u8);
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    if jpeg_bpp(mid)? < bpp {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                // The lower of the two on a tie.
                let below = lo.saturating_sub(1).max(1);
                let q = if (jpeg_bpp(below)? - bpp).abs() <= (jpeg_bpp(lo)? - bpp).abs() { below } else { lo };
                let (jbytes, jimg) = encoded.remove(&q).expect("encoded above");
                let (jrgb, _, jms) = scores(&rgb8_tensor(&jimg)?, &x);
                rows.push(CodecRow {
                    path: path.clone(),
                    rate: m.rate(),
                    bitplanes: p,
                    bpp,
                    psnr_rgb,
                    psnr_y,
                    ms_ssim,
                    jpeg_quality: q,
                    jpeg_bpp: jbytes as f64 * 8.0 / pixels,
                    jpeg_psnr_rgb: jrgb,
                    jpeg_ms_ssim: jms,
                });
            }
        }
    }
    Ok((rows, skipped))
}
