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
    const R: usize = 5;
    if h <= 2 * R || w <= 2 * R {
        return f64::NAN;
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
    let n = ma.len();
    (0..n)
        .map(|i| {
            let (mu_a, mu_b) = (ma[i], mb[i]);
            let va = saa[i] - mu_a * mu_a;
            let vb = sbb[i] - mu_b * mu_b;
            let cov = sab[i] - mu_a * mu_b;
            ((2.0 * mu_a * mu_b + c1) * (2.0 * cov + c2)) / ((mu_a * mu_a + mu_b * mu_b + c1) * (va + vb + c2))
        })
        .sum::<f64>()
        / n as f64
}
