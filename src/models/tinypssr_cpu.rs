//! The fast CPU path of TinyPSSR: one x2 stage fused per strip of rows, on
//! all cores. Layers 1-2 run over the strip plus a 2-row halo into a small
//! 4-channel buffer (zero outside the image: layer 3's padding); layers 3-4
//! and the pixel shuffle run from there. Pixels go in blocks of 8 with every
//! channel's accumulator in registers, so the compiler vectorises across
//! pixels; on x86-64 an AVX2+FMA build of the hot loop is chosen at run time.
//! `TinyPssr::forward_cpu` (layer by layer) is the reference it is tested against.

// Index loops over fixed-size register blocks are the point here: they mirror the
// shader and let the compiler keep every accumulator in a vector register.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

use super::tinypssr::{Stage, TinyPssr};
use crate::tensor::{Shape, Tensor};

/// Output rows (in stage-input pixels) per parallel task.
const STRIP: usize = 16;
/// Pixels per register block.
const L: usize = 8;

/// One stage's weights, laid out for the inner loops.
struct Packed {
    w1: [[f32; 25]; 16],
    b1: [f32; 16],
    a1: [f32; 16],
    w2: [[f32; 16]; 4],
    b2: [f32; 4],
    a2: [f32; 4],
    w3: [[[f32; 25]; 4]; 8],
    b3: [f32; 8],
    a3: [f32; 8],
    w4: [[f32; 8]; 4],
    b4: [f32; 4],
}

impl Packed {
    fn new(s: &Stage) -> Packed {
        let mut p = Packed {
            w1: [[0.0; 25]; 16],
            b1: [0.0; 16],
            a1: [0.0; 16],
            w2: [[0.0; 16]; 4],
            b2: [0.0; 4],
            a2: [0.0; 4],
            w3: [[[0.0; 25]; 4]; 8],
            b3: [0.0; 8],
            a3: [0.0; 8],
            w4: [[0.0; 8]; 4],
            b4: [0.0; 4],
        };
        for o in 0..16 {
            p.w1[o].copy_from_slice(&s.conv[0].0[o * 25..(o + 1) * 25]);
        }
        p.b1.copy_from_slice(&s.conv[0].1);
        p.a1.copy_from_slice(&s.prelu[0]);
        for k in 0..4 {
            p.w2[k].copy_from_slice(&s.conv[1].0[k * 16..(k + 1) * 16]);
        }
        p.b2.copy_from_slice(&s.conv[1].1);
        p.a2.copy_from_slice(&s.prelu[1]);
        for o in 0..8 {
            for k in 0..4 {
                p.w3[o][k].copy_from_slice(&s.conv[2].0[(o * 4 + k) * 25..(o * 4 + k + 1) * 25]);
            }
        }
        p.b3.copy_from_slice(&s.conv[2].1);
        p.a3.copy_from_slice(&s.prelu[2]);
        for q in 0..4 {
            p.w4[q].copy_from_slice(&s.conv[3].0[q * 8..(q + 1) * 8]);
        }
        p.b4.copy_from_slice(&s.conv[3].1);
        p
    }
}

#[inline(always)]
fn prelu(v: f32, a: f32) -> f32 {
    if v >= 0.0 {
        v
    } else {
        a * v
    }
}

/// One strip: input rows `y0..y1` of a plane (`src`, h x w) to output rows
/// `2*y0..2*y1` (`dst`, the strip's part of the 2h x 2w plane).
#[inline(always)]
fn strip(p: &Packed, src: &[f32], h: usize, w: usize, y0: usize, y1: usize, dst: &mut [f32]) {
    // Padded width: 4 zero columns each side, rounded up to whole blocks.
    let wb = w.div_ceil(L) * L;
    let pw = wb + 8;
    // Input rows y0-4 .. y1+4, zero outside the image.
    let rin = y1 - y0 + 8;
    let mut inp = vec![0.0f32; rin * pw];
    for r in 0..rin {
        let y = y0 as isize - 4 + r as isize;
        if y >= 0 && (y as usize) < h {
            inp[r * pw + 4..r * pw + 4 + w].copy_from_slice(&src[y as usize * w..(y as usize + 1) * w]);
        }
    }
    // Layer-2 output for rows y0-2 .. y1+2 with 2 zero columns each side.
    let rmid = y1 - y0 + 4;
    let mw = wb + 4;
    let mut mid = vec![0.0f32; 4 * rmid * mw];
    for r in 0..rmid {
        let y = y0 as isize - 2 + r as isize;
        if y < 0 || y as usize >= h {
            continue; // stays zero: layer 3's padding
        }
        for x0 in (0..wb).step_by(L) {
            let mut a = [[0.0f32; L]; 16];
            for o in 0..16 {
                a[o] = [p.b1[o]; L];
            }
            for u in 0..5 {
                let row = &inp[(r + u) * pw + x0 + 2..];
                for v in 0..5 {
                    let xs: [f32; L] = row[v..v + L].try_into().expect("block");
                    for o in 0..16 {
                        let wv = p.w1[o][u * 5 + v];
                        for l in 0..L {
                            a[o][l] += wv * xs[l];
                        }
                    }
                }
            }
            let mut m = [[0.0f32; L]; 4];
            for k in 0..4 {
                m[k] = [p.b2[k]; L];
            }
            for o in 0..16 {
                for l in 0..L {
                    let v = prelu(a[o][l], p.a1[o]);
                    for k in 0..4 {
                        m[k][l] += p.w2[k][o] * v;
                    }
                }
            }
            for k in 0..4 {
                let dst = &mut mid[(k * rmid + r) * mw + 2 + x0..][..L];
                for l in 0..L {
                    // Columns past the image are layer 3's zero padding.
                    dst[l] = if x0 + l < w { prelu(m[k][l], p.a2[k]) } else { 0.0 };
                }
            }
        }
    }
    // Layers 3-4 and the shuffle.
    let ow = 2 * w;
    for r in 0..y1 - y0 {
        for x0 in (0..wb).step_by(L) {
            let mut z = [[0.0f32; L]; 8];
            for o in 0..8 {
                z[o] = [p.b3[o]; L];
            }
            for k in 0..4 {
                for u in 0..5 {
                    let row = &mid[(k * rmid + r + u) * mw + x0..];
                    for v in 0..5 {
                        let xs: [f32; L] = row[v..v + L].try_into().expect("block");
                        for o in 0..8 {
                            let wv = p.w3[o][k][u * 5 + v];
                            for l in 0..L {
                                z[o][l] += wv * xs[l];
                            }
                        }
                    }
                }
            }
            let mut q = [[0.0f32; L]; 4];
            for i in 0..4 {
                q[i] = [p.b4[i]; L];
            }
            for o in 0..8 {
                for l in 0..L {
                    let v = prelu(z[o][l], p.a3[o]);
                    for i in 0..4 {
                        q[i][l] += p.w4[i][o] * v;
                    }
                }
            }
            for l in 0..L.min(w.saturating_sub(x0)) {
                let x = x0 + l;
                for i in 0..4 {
                    dst[(2 * r + i / 2) * ow + 2 * x + i % 2] = q[i][l];
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn strip_avx2(p: &Packed, src: &[f32], h: usize, w: usize, y0: usize, y1: usize, dst: &mut [f32]) {
    strip(p, src, h, w, y0, y1, dst)
}

fn run_strip(p: &Packed, src: &[f32], h: usize, w: usize, y0: usize, y1: usize, dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::level() == crate::cpu::Level::Avx2Fma {
        // SAFETY: the chosen level is never above what the CPU supports.
        return unsafe { strip_avx2(p, src, h, w, y0, y1, dst) };
    }
    strip(p, src, h, w, y0, y1, dst)
}

/// One x2 stage on (N, 1, H, W) planes.
pub fn stage_forward(s: &Stage, x: &Tensor) -> Tensor {
    let p = Packed::new(s);
    let sh = x.shape;
    let (h, w) = (sh.h, sh.w);
    let mut y = Tensor::zeros(Shape::new(sh.n, 1, 2 * h, 2 * w));
    if h == 0 || w == 0 {
        return y;
    }
    // Planes, then strips of output rows: each task owns its rows.
    y.data.par_chunks_mut(4 * h * w).enumerate().for_each(|(n, plane)| {
        let src = &x.data[n * h * w..(n + 1) * h * w];
        plane.par_chunks_mut(2 * STRIP * 2 * w).enumerate().for_each(|(i, dst)| {
            let y0 = i * STRIP;
            run_strip(&p, src, h, w, y0, (y0 + STRIP).min(h), dst);
        });
    });
    y
}

impl TinyPssr {
    /// The fast CPU forward pass: (N, 1, H, W) to (N, 1, H*s, W*s).
    pub fn forward_fast(&self, x: &Tensor) -> Tensor {
        let mut cur = stage_forward(&self.stages[0], x);
        for s in &self.stages[1..] {
            cur = stage_forward(s, &cur);
        }
        cur
    }
}
