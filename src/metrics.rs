//! Image-quality metrics of the standard super-resolution protocol: PSNR and
//! SSIM on the Y channel of YCbCr (ITU-R BT.601, [16, 235]) with a border shaved.

use crate::tensor::Tensor;

/// Y of BT.601 on a 0..255 scale from RGB planes in [0, 1]:
/// `16 + 65.481 R + 128.553 G + 24.966 B`. Grey input is taken as R = G = B.
pub fn luma(x: &Tensor) -> Vec<f64> {
    let s = x.shape;
    let p = s.plane();
    if s.c < 3 {
        return x.data[..p].iter().map(|&v| 16.0 + 219.0 * v as f64).collect();
    }
    (0..p)
        .map(|k| 16.0 + 65.481 * x.data[k] as f64 + 128.553 * x.data[p + k] as f64 + 24.966 * x.data[2 * p + k] as f64)
        .collect()
}

fn shave(y: &[f64], h: usize, w: usize, b: usize) -> (Vec<f64>, usize, usize) {
    let (hh, ww) = (h.saturating_sub(2 * b), w.saturating_sub(2 * b));
    let mut out = Vec::with_capacity(hh * ww);
    for i in b..b + hh {
        out.extend_from_slice(&y[i * w + b..i * w + b + ww]);
    }
    (out, hh, ww)
}

/// PSNR in dB (peak 255) between the Y channels of two images, `border` pixels shaved.
pub fn psnr_y(a: &Tensor, b: &Tensor, border: usize) -> f64 {
    let (h, w) = (a.shape.h, a.shape.w);
    let (ya, _, _) = shave(&luma(a), h, w, border);
    let (yb, _, _) = shave(&luma(b), h, w, border);
    psnr(&ya, &yb, 255.0)
}

/// PSNR in dB of two equal-length signals with the given peak.
pub fn psnr(a: &[f64], b: &[f64], peak: f64) -> f64 {
    let mse = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / a.len().max(1) as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (peak * peak / mse).log10()
    }
}

/// SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03,
/// L 255, valid region only) between the Y channels, `border` pixels shaved.
pub fn ssim_y(a: &Tensor, b: &Tensor, border: usize) -> f64 {
    let (h, w) = (a.shape.h, a.shape.w);
    let (ya, hh, ww) = shave(&luma(a), h, w, border);
    let (yb, _, _) = shave(&luma(b), h, w, border);
    ssim(&ya, &yb, hh, ww)
}

/// SSIM of two single-channel images on a 0..255 scale.
pub fn ssim(a: &[f64], b: &[f64], h: usize, w: usize) -> f64 {
    let (l, cs) = ssim_parts(a, b, h, w);
    // Mean of the product per pixel, as Wang et al.
    l.iter().zip(&cs).map(|(x, y)| x * y).sum::<f64>() / l.len().max(1) as f64
}

/// MS-SSIM (Wang, Simoncelli, Bovik 2003) of two single-channel images on a
/// 0..255 scale: five scales (2x2 average downsampling), weights 0.0448,
/// 0.2856, 0.3001, 0.2363, 0.1333; contrast-structure at every scale,
/// luminance at the last. Fewer scales (weights renormalised) when the image
/// is too small for the 11x11 window at the coarsest one.
pub fn ms_ssim(a: &[f64], b: &[f64], h: usize, w: usize) -> f64 {
    const W: [f64; 5] = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333];
    let scales = (1..=5).take_while(|&k| (h >> (k - 1)) > 10 && (w >> (k - 1)) > 10).count();
    if scales == 0 {
        return f64::NAN;
    }
    let norm: f64 = W[..scales].iter().sum();
    let (mut a, mut b, mut h, mut w) = (a.to_vec(), b.to_vec(), h, w);
    let mut total = 1.0f64;
    for (k, wk) in W[..scales].iter().enumerate() {
        let (l, cs) = ssim_parts(&a, &b, h, w);
        let n = l.len() as f64;
        let cs_mean = cs.iter().sum::<f64>() / n;
        total *= cs_mean.max(0.0).powf(wk / norm);
        if k + 1 == scales {
            total *= (l.iter().sum::<f64>() / n).max(0.0).powf(wk / norm);
        } else {
            let down = |x: &[f64]| -> Vec<f64> {
                let (hh, ww) = (h / 2, w / 2);
                let mut o = Vec::with_capacity(hh * ww);
                for i in 0..hh {
                    for j in 0..ww {
                        o.push(
                            (x[2 * i * w + 2 * j]
                                + x[2 * i * w + 2 * j + 1]
                                + x[(2 * i + 1) * w + 2 * j]
                                + x[(2 * i + 1) * w + 2 * j + 1])
                                / 4.0,
                        );
                    }
                }
                o
            };
            a = down(&a);
            b = down(&b);
            h /= 2;
            w /= 2;
        }
    }
    total
}

/// Per-pixel luminance and contrast-structure terms of SSIM (11x11 Gaussian
/// window, sigma 1.5, K1 0.01, K2 0.03, L 255, valid region).
fn ssim_parts(a: &[f64], b: &[f64], h: usize, w: usize) -> (Vec<f64>, Vec<f64>) {
    const R: usize = 5;
    if h <= 2 * R || w <= 2 * R {
        return (vec![f64::NAN], vec![f64::NAN]);
    }
    let g: Vec<f64> = (0..=2 * R).map(|i| (-((i as f64 - R as f64).powi(2)) / (2.0 * 1.5 * 1.5)).exp()).collect();
    let gs: f64 = g.iter().sum();
    let g: Vec<f64> = g.iter().map(|v| v / gs).collect();
    // Separable valid filtering of a, b, a^2, b^2, ab.
    let filt = |src: &dyn Fn(usize) -> f64| -> Vec<f64> {
        let (oh, ow) = (h - 2 * R, w - 2 * R);
        let mut tmp = vec![0.0; oh * w];
        for i in 0..oh {
            for j in 0..w {
                tmp[i * w + j] = (0..=2 * R).map(|k| g[k] * src((i + k) * w + j)).sum();
            }
        }
        let mut out = vec![0.0; oh * ow];
        for i in 0..oh {
            for j in 0..ow {
                out[i * ow + j] = (0..=2 * R).map(|k| g[k] * tmp[i * w + j + k]).sum();
            }
        }
        out
    };
    let ma = filt(&|k| a[k]);
    let mb = filt(&|k| b[k]);
    let saa = filt(&|k| a[k] * a[k]);
    let sbb = filt(&|k| b[k] * b[k]);
    let sab = filt(&|k| a[k] * b[k]);
    let (c1, c2) = ((0.01 * 255.0f64).powi(2), (0.03 * 255.0f64).powi(2));
    (0..ma.len())
        .map(|i| {
            let (mu_a, mu_b) = (ma[i], mb[i]);
            let va = saa[i] - mu_a * mu_a;
            let vb = sbb[i] - mu_b * mu_b;
            let cov = sab[i] - mu_a * mu_b;
            ((2.0 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1), (2.0 * cov + c2) / (va + vb + c2))
        })
        .unzip()
}
