//! TinyCompress's backward pass against finite differences.
//!
//! Finite differences across PReLU kinks are unreliable in f32 (a nudge to
//! the weights moves thousands of PReLU inputs across zero, and loss
//! differences drown in rounding below eps ~ 1e-4), so the whole-network
//! check runs with every PReLU slope at 1: the network is then smooth
//! (convolutions, shuffles, sigmoid) and central differences are accurate,
//! which checks the chain of layers, the shuffles and the slope gradients'
//! plumbing. PReLU's own backward pass is checked in tests/grad.rs; the 9x9
//! convolution here through a linear functional, where they are exact.

mod common;

use common::Rng;
use gpuimg::kernels::Conv2d;
use gpuimg::models::tinycompress::{Layer, TinyCompress};
use gpuimg::{Shape, Tensor};

fn loss(m: &TinyCompress, x: &Tensor) -> f64 {
    let y = m.dec.forward(&m.enc.forward(x, None).unwrap(), None).unwrap();
    y.data.iter().zip(&x.data).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / x.data.len() as f64
}

#[test]
fn large_kernel_conv_gradients_are_exact() {
    let mut rng = Rng::for_test("large_kernel_conv_gradients_are_exact");
    for (k, hw) in [(9usize, 16usize), (9, 21), (5, 13)] {
        let conv = Conv2d::new(3, 15, k);
        let x = rng.tensor(Shape::new(2, 3, hw, hw), 0.0, 1.0);
        let w: Vec<f32> = (0..conv.weight_len()).map(|_| rng.uniform(-0.1, 0.1)).collect();
        let b = vec![0.0f32; 15];
        let r = rng.tensor(Shape::new(2, 15, hw, hw), -1.0, 1.0);
        let (dx, dw, _) = gpuimg::train::grad::conv2d_backward(&conv, &x, &w, &r, true);
        // <conv(x; w), r> is linear in w and in x: central differences are exact up to rounding.
        let f = |ww: &[f32], xx: &Tensor| {
            conv.cpu(xx, ww, &b).unwrap().data.iter().zip(&r.data).map(|(a, b)| (*a as f64) * (*b as f64)).sum::<f64>()
        };
        let dir: Vec<f32> = (0..w.len()).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let analytic: f64 = dw.iter().zip(&dir).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
        let shift = |t: f32| w.iter().zip(&dir).map(|(a, d)| a + t * d).collect::<Vec<f32>>();
        let numeric = (f(&shift(0.01), &x) - f(&shift(-0.01), &x)) / 0.02;
        assert!((analytic - numeric).abs() <= 1e-3 * numeric.abs().max(1.0), "k {k}: dw {analytic} vs {numeric}");
        let dx = dx.unwrap();
        let xd = rng.tensor(x.shape, -1.0, 1.0);
        let analytic: f64 = dx.data.iter().zip(&xd.data).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
        let xs =
            |t: f32| Tensor { shape: x.shape, data: x.data.iter().zip(&xd.data).map(|(a, d)| a + t * d).collect() };
        let numeric = (f(&w, &xs(0.01)) - f(&w, &xs(-0.01))) / 0.02;
        assert!((analytic - numeric).abs() <= 1e-3 * numeric.abs().max(1.0), "k {k}: dx {analytic} vs {numeric}");
    }
}

#[test]
fn codec_gradients_match_finite_differences() {
    let mut rng = Rng::for_test("codec_gradients_match_finite_differences");
    for rate in [4, 16] {
        let mut m = TinyCompress::new(rate).unwrap();
        m.init(&mut || rng.uniform(0.0, 1.0));
        for l in m.enc.layers.iter_mut().chain(m.dec.layers.iter_mut()) {
            if let Layer::Prelu(a) = l {
                a.iter_mut().for_each(|v| *v = 1.0);
            }
        }
        let x = rng.tensor(Shape::new(2, 3, 16, 16), 0.0, 1.0);
        let (mut ei, mut di) = (Vec::new(), Vec::new());
        let lat = m.enc.forward(&x, Some(&mut ei)).unwrap();
        let y = m.dec.forward(&lat, Some(&mut di)).unwrap();
        let scale = 2.0 / x.data.len() as f32;
        let dy = Tensor { shape: y.shape, data: y.data.iter().zip(&x.data).map(|(a, b)| (a - b) * scale).collect() };
        let (gd, dlat) = gpuimg::train::codec::net_backward(&m.dec, &di, &y, &dy, true);
        let (ge, _) = gpuimg::train::codec::net_backward(&m.enc, &ei, &lat, &dlat.unwrap(), false);
        let g = [ge, gd].concat();
        let p0 = [m.enc.flatten(), m.dec.flatten()].concat();
        let ne = m.enc.param_count();
        // Parameter ranges of every layer with parameters.
        let mut ranges = Vec::new();
        let mut off = 0;
        for (name, net) in [("enc", &m.enc), ("dec", &m.dec)] {
            for (i, l) in net.layers.iter().enumerate() {
                let n = match l {
                    Layer::Conv { w, b, .. } => w.len() + b.len(),
                    Layer::Prelu(a) => a.len(),
                    _ => 0,
                };
                if n > 0 {
                    ranges.push((format!("{name}.{i}"), off, off + n));
                }
                off += n;
            }
        }
        for (name, a, b) in ranges {
            let dir: Vec<f32> =
                (0..p0.len()).map(|k| if (a..b).contains(&k) { rng.uniform(-1.0, 1.0) } else { 0.0 }).collect();
            let analytic: f64 = g.iter().zip(&dir).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
            let eps = 1e-3f32;
            let at = |t: f32| {
                let p: Vec<f32> = p0.iter().zip(&dir).map(|(a, d)| a + t * d).collect();
                let mut mm = m.clone();
                mm.enc.unflatten(&p[..ne]);
                mm.dec.unflatten(&p[ne..]);
                loss(&mm, &x)
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps as f64);
            let err = (analytic - numeric).abs();
            assert!(
                err <= 0.02 * numeric.abs() + 1e-6,
                "rate {rate} {name}: analytic {analytic:.6e}, numeric {numeric:.6e}"
            );
        }
    }
}
