//! MATLAB-compatible bicubic `imresize` (Keys cubic, a = -0.5, antialiased
//! when downscaling, symmetric border): the degradation the standard
//! super-resolution protocol uses, the bicubic baseline, and alpha upscaling.
//! CPU only; it runs once per image, not per pixel of a network.

use rayon::prelude::*;

use crate::tensor::{Shape, Tensor};

/// The Keys cubic kernel with a = -0.5.
pub(crate) fn cubic(x: f64) -> f64 {
    let a = x.abs();
    let (a2, a3) = (a * a, a * a * a);
    if a <= 1.0 {
        1.5 * a3 - 2.5 * a2 + 1.0
    } else if a <= 2.0 {
        -0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0
    } else {
        0.0
    }
}

/// Taps of one output index: (first source index per tap, weights).
#[derive(Debug, Clone)]
struct Taps {
    index: Vec<usize>,
    weight: Vec<f32>,
}

/// MATLAB's `contributions()`: for each output index, the source indices
/// (mirrored at the borders) and normalised weights.
fn contributions(in_len: usize, out_len: usize, scale: f64) -> Vec<Taps> {
    let aa = scale < 1.0;
    let width = if aa { 4.0 / scale } else { 4.0 };
    (0..out_len)
        .map(|i| {
            // 1-based MATLAB: u = x/scale + 0.5*(1 - 1/scale).
            let u = (i as f64 + 1.0) / scale + 0.5 * (1.0 - 1.0 / scale);
            let left = (u - width / 2.0).floor();
            let p = width.ceil() as i64 + 2;
            let mut index = Vec::with_capacity(p as usize);
            let mut weight = Vec::with_capacity(p as usize);
            for k in 0..p {
                let j = left + k as f64; // 1-based source index
                let d = u - j;
                let w = if aa { scale * cubic(scale * d) } else { cubic(d) };
                if w == 0.0 {
                    continue;
                }
                // Symmetric padding: 0 -> 1, -1 -> 2, n+1 -> n, ...
                let n = in_len as i64;
                let mut s = j as i64 - 1;
                let period = 2 * n;
                s = s.rem_euclid(period);
                if s >= n {
                    s = period - 1 - s;
                }
                index.push(s as usize);
                weight.push(w);
            }
            let sum: f64 = weight.iter().sum();
            Taps { index, weight: weight.iter().map(|w| (w / sum) as f32).collect() }
        })
        .collect()
}

/// Resizes every plane of `x` to `out_h x out_w` like MATLAB's
/// `imresize(x, [out_h out_w], 'bicubic')` (rows first, then columns; values
/// are not clamped or rounded).
pub fn imresize(x: &Tensor, out_h: usize, out_w: usize) -> Tensor {
    let s = x.shape;
    let sh = out_h as f64 / s.h as f64;
    let sw = out_w as f64 / s.w as f64;
    imresize_scale(x, out_h, out_w, sh, sw)
}

/// As [`imresize`] with an explicit scale (MATLAB's `imresize(x, scale)`
/// computes the output size as `ceil(in * scale)` and keeps the given scale).
pub fn imresize_scale(x: &Tensor, out_h: usize, out_w: usize, sh: f64, sw: f64) -> Tensor {
    let s = x.shape;
    let rows = contributions(s.h, out_h, sh);
    let cols = contributions(s.w, out_w, sw);
    // Pass 1: along rows (height).
    let mid_shape = Shape::new(s.n, s.c, out_h, s.w);
    let mut mid = Tensor::zeros(mid_shape);
    mid.data.par_chunks_mut(s.w).enumerate().for_each(|(r, out)| {
        let (plane, i) = (r / out_h, r % out_h);
        let src = &x.data[plane * s.h * s.w..(plane + 1) * s.h * s.w];
        let t = &rows[i];
        for (&idx, &w) in t.index.iter().zip(&t.weight) {
            let row = &src[idx * s.w..(idx + 1) * s.w];
            out.iter_mut().zip(row).for_each(|(o, v)| *o += w * v);
        }
    });
    // Pass 2: along columns (width).
    let mut y = Tensor::zeros(Shape::new(s.n, s.c, out_h, out_w));
    y.data.par_chunks_mut(out_w).enumerate().for_each(|(r, out)| {
        let row = &mid.data[r * s.w..(r + 1) * s.w];
        for (o, t) in out.iter_mut().zip(&cols) {
            *o = t.index.iter().zip(&t.weight).map(|(&i, &w)| w * row[i]).sum();
        }
    });
    y
}

/// `imresize(x, 1/factor)` for an integer factor: the standard LR degradation.
pub fn downscale(x: &Tensor, factor: usize) -> Tensor {
    let s = x.shape;
    let f = 1.0 / factor as f64;
    imresize_scale(x, s.h / factor, s.w / factor, f, f)
}

/// `imresize(x, factor)` for an integer factor: the bicubic baseline.
pub fn upscale(x: &Tensor, factor: usize) -> Tensor {
    let s = x.shape;
    imresize_scale(x, s.h * factor, s.w * factor, factor as f64, factor as f64)
}

/// Rounds values to the 8-bit grid of [0, 1] (as saving to an 8-bit file would).
pub fn quantise_u8(x: &mut Tensor) {
    x.data.iter_mut().for_each(|v| *v = (v.clamp(0.0, 1.0) * 255.0).round() / 255.0);
}
