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

/// One image of `gpuimg eval enhance`: the exposure, clipping and colour
/// balance of the enhanced output, next to the input's; with synthetic
/// pairs, also against the photo the dark input was made from.
#[derive(Debug, Clone)]
pub struct EnhanceRow {
    /// The image (a low-light photo, or the normal photo darkened).
    pub path: PathBuf,
    /// The low-light input's levels.
    pub input: Levels,
    /// The enhanced output's levels.
    pub output: Levels,
    /// Colour cast: the largest change of a channel's share of the mean
    /// colour (its chromaticity, R / (R + G + B) and so on), in percentage
    /// points, from the original photo to the output with synthetic pairs,
    /// else from the input to the output.
    pub cast_shift: f64,
    /// Synthetic pairs: the original photo's levels, and Y PSNR (dB) and
    /// SSIM of the output against it.
    pub original: Option<(Levels, f64, f64)>,
}

/// Exposure statistics of an 8-bit RGB image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    /// Mean of every R, G and B sample, 0 to 1.
    pub mean: f64,
    /// Share of pixels with a channel at 255, in percent.
    pub clipped: f64,
    /// Mean of each channel, 0 to 1.
    pub channels: [f64; 3],
}

impl Levels {
    /// The levels of 8-bit RGB samples (interleaved).
    pub fn of(rgb: &[u8]) -> Levels {
        let n = (rgb.len() / 3).max(1) as f64;
        let (mut sums, mut clipped) = ([0u64; 3], 0usize);
        for p in rgb.chunks_exact(3) {
            for c in 0..3 {
                sums[c] += p[c] as u64;
            }
            clipped += usize::from(p.contains(&255));
        }
        let channels = sums.map(|s| s as f64 / n / 255.0);
        Levels { mean: channels.iter().sum::<f64>() / 3.0, clipped: 100.0 * clipped as f64 / n, channels }
    }

    /// Each channel's share of the mean colour (a third each for grey).
    pub fn chromaticity(&self) -> [f64; 3] {
        let sum = 3.0 * self.mean;
        self.channels.map(|c| if sum > 0.0 { c / sum } else { 1.0 / 3.0 })
    }
}

/// What `gpuimg eval enhance` runs.
#[derive(Debug, Clone, Copy)]
pub struct EnhanceEval {
    /// Downscale factor of the network (`None`: the CLI's default per image).
    pub scale_factor: Option<usize>,
    /// Curve iterations.
    pub iterations: usize,
    /// `Some(seed)`: the images are normal photos, each darkened as the
    /// training inputs are ([`crate::data::darken`], seeded by `seed` and
    /// the image's place in the sorted list) and scored against itself.
    pub synthetic: Option<u64>,
}

/// Every image of `dir` (sorted, searched recursively) through the model
/// on `backend` as `gpuimg enhance` runs it (8-bit RGB in and out).
pub fn eval_enhance(
    model: &crate::models::zero_dce::ZeroDce,
    backend: &Backend,
    dir: &Path,
    opts: EnhanceEval,
) -> Result<(Vec<EnhanceRow>, Skipped)> {
    use crate::image_io::{from_dynamic, load, to_dynamic, Image};
    use crate::tensor::Samples;
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    let levels = |img: &Image| match &img.samples {
        Samples::U8(v) => Ok(Levels::of(v)),
        Samples::U16(_) => Err(crate::Error::invalid("eval enhance", "16-bit samples where 8-bit RGB was made")),
    };
    for (i, path) in image_files(dir)?.into_iter().enumerate() {
        let img = match load(&path).and_then(|img| from_dynamic(to_dynamic(&img)?.to_rgb8().into())) {
            Ok(img) => img,
            Err(e) => {
                skipped.push((path, e.to_string()));
                continue;
            }
        };
        let (w, h) = (img.width as usize, img.height as usize);
        // SSIM's 11x11 window, against the original.
        if opts.synthetic.is_some() && (w < 11 || h < 11) {
            skipped.push((path, format!("{w}x{h} is too small for SSIM (11x11 at least)")));
            continue;
        }
        let (dark, original) = match opts.synthetic {
            None => (img, None),
            Some(seed) => {
                let x = rgb8_tensor(&img)?;
                let mut rng = crate::rng::SplitMix(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let d = crate::data::darken(&x, &mut rng);
                let samples = crate::kernels::PackPixels(img.layout()).cpu(&d)?;
                (Image::new(img.width, img.height, 3, samples)?, Some((img, x)))
            }
        };
        let s = opts.scale_factor.unwrap_or_else(|| crate::models::zero_dce::default_scale_factor(h, w));
        let out = crate::ops::enhance(backend, model, &dark, s, opts.iterations)?;
        let (input, output) = (levels(&dark)?, levels(&out)?);
        let original = match original {
            None => None,
            Some((img, x)) => {
                let y = rgb8_tensor(&out)?;
                Some((levels(&img)?, psnr_y(&y, &x, 0), ssim_y(&y, &x, 0)))
            }
        };
        let (r, o) = (original.map_or(input, |o| o.0).chromaticity(), output.chromaticity());
        let cast_shift = 100.0 * (0..3).map(|c| (o[c] - r[c]).abs()).fold(0.0, f64::max);
        rows.push(EnhanceRow { path, input, output, cast_shift, original });
    }
    Ok((rows, skipped))
}

#[cfg(test)]
mod tests {
    use super::Levels;

    #[test]
    fn levels_count_means_and_clipped_pixels() {
        // Two pixels: one with a channel at 255, one not.
        let l = Levels::of(&[255, 0, 51, 102, 102, 102]);
        assert_eq!(l.clipped, 50.0);
        assert!((l.channels[0] - (357.0 / 2.0 / 255.0)).abs() < 1e-12);
        assert!((l.mean - (612.0 / 6.0 / 255.0)).abs() < 1e-12);
        let grey = Levels::of(&[10, 10, 10, 200, 200, 200]);
        assert_eq!(grey.chromaticity(), [1.0 / 3.0; 3]);
        let red = Levels::of(&[200, 100, 100]);
        assert!((red.chromaticity()[0] - 0.5).abs() < 1e-12);
        assert_eq!(grey.clipped, 0.0);
    }
}
