//! Backward passes (vector-Jacobian products) of conv2d, PReLU and pixel
//! shuffle, on the CPU with rayon. `tests/grad.rs` checks each against
//! finite differences.

use rayon::prelude::*;

use crate::kernels::{rows_per_task, Conv2d, PixelUnshuffle};
use crate::tensor::Tensor;

/// Gradients of a convolution given its input `x`, weights `w` and the
/// gradient `dy` of its output: `(dx, dw, db)`; `dx` only when asked for.
pub fn conv2d_backward(
    conv: &Conv2d,
    x: &Tensor,
    w: &[f32],
    dy: &Tensor,
    need_dx: bool,
) -> (Option<Tensor>, Vec<f32>, Vec<f32>) {
    let s = x.shape;
    let (h, wd, k) = (s.h, s.w, conv.k);
    let cin_g = conv.cin / conv.groups;
    let cout_g = conv.cout / conv.groups;
    let pad = (k - 1) / 2;
    // Output columns j (and input columns j + v - pad) valid for tap v.
    let span = |v: usize| {
        let j0 = pad.saturating_sub(v);
        let j1 = (wd + pad).saturating_sub(v).min(wd);
        (j0, j1)
    };

    // dw and db: one task per output channel.
    let per_o = cin_g * k * k;
    let mut dw = vec![0.0f32; conv.cout * per_o];
    let mut db = vec![0.0f32; conv.cout];
    dw.par_chunks_mut(per_o).zip(db.par_iter_mut()).enumerate().for_each(|(o, (dwo, dbo))| {
        let g = o / cout_g;
        let mut bsum = 0.0f64;
        for b in 0..s.n {
            let dyp = dy.plane(b, o);
            bsum += dyp.iter().map(|&v| v as f64).sum::<f64>();
            for c in 0..cin_g {
                let xp = x.plane(b, g * cin_g + c);
                for u in 0..k {
                    for i in 0..h {
                        let ii = i as isize + u as isize - pad as isize;
                        if ii < 0 || ii >= h as isize {
                            continue;
                        }
                        let dyr = &dyp[i * wd..(i + 1) * wd];
                        let xr = &xp[ii as usize * wd..(ii as usize + 1) * wd];
                        for v in 0..k {
                            let (j0, j1) = span(v);
                            if j0 >= j1 {
                                continue;
                            }
                            let xs = &xr[j0 + v - pad..j1 + v - pad];
                            let dot: f32 = dyr[j0..j1].iter().zip(xs).map(|(a, b)| a * b).sum();
                            dwo[(c * k + u) * k + v] += dot;
                        }
                    }
                }
            }
        }
        *dbo = bsum as f32;
    });

    // dx: one task per group of input rows.
    let dx = need_dx.then(|| {
        let mut dx = Tensor::zeros(s);
        dx.data.par_chunks_mut(wd).with_min_len(rows_per_task(wd)).enumerate().for_each(|(row, dxr)| {
            let ii = row % h;
            let plane = row / h;
            let (b, ic) = (plane / conv.cin, plane % conv.cin);
            let (g, c) = (ic / cin_g, ic % cin_g);
            for o in g * cout_g..(g + 1) * cout_g {
                let dyp = dy.plane(b, o);
                for u in 0..k {
                    // y row i = ii - u + pad reads this input row with tap u.
                    let i = ii as isize - u as isize + pad as isize;
                    if i < 0 || i >= h as isize {
                        continue;
                    }
                    let dyr = &dyp[i as usize * wd..(i as usize + 1) * wd];
                    for v in 0..k {
                        let wv = w[((o * cin_g + c) * k + u) * k + v];
                        let (j0, j1) = span(v);
                        if j0 >= j1 {
                            continue;
                        }
                        // dx[j + v - pad] += w * dy[j] for j in j0..j1.
                        let dst = &mut dxr[j0 + v - pad..j1 + v - pad];
                        dst.iter_mut().zip(&dyr[j0..j1]).for_each(|(d, &g)| *d += wv * g);
                    }
                }
            }
        });
        dx
    });
    (dx, dw, db)
}

/// Gradients of PReLU given its input `x`, slopes `a` and output gradient `dy`: `(dx, da)`.
pub fn prelu_backward(x: &Tensor, a: &[f32], dy: &Tensor) -> (Tensor, Vec<f32>) {
    let s = x.shape;
    let p = s.plane();
    let mut dx = dy.clone();
    let partial: Vec<(usize, f64)> = dx
        .data
        .par_chunks_mut(p.max(1))
        .enumerate()
        .map(|(bc, d)| {
            let c = bc % s.c;
            let xp = &x.data[bc * p..(bc + 1) * p];
            let mut da = 0.0f64;
            for (dv, &xv) in d.iter_mut().zip(xp) {
                if xv < 0.0 {
                    da += (*dv * xv) as f64;
                    *dv *= a[c];
                }
            }
            (c, da)
        })
        .collect();
    let mut da = vec![0.0f64; s.c];
    for (c, v) in partial {
        da[c] += v;
    }
    (dx, da.into_iter().map(|v| v as f32).collect())
}

/// Gradient of pixel shuffle: the unshuffle of the output gradient.
pub fn pixel_shuffle_backward(r: usize, dy: &Tensor) -> Tensor {
    PixelUnshuffle { r }.cpu(dy).expect("shuffle output is divisible by r")
}
