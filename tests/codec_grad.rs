//! TinyCompress's backward pass against finite differences (f64 sums of f32
//! forwards, directional derivatives along random directions).

mod common;

use common::Rng;
use gpuimg::models::tinycompress::TinyCompress;
use gpuimg::{Shape, Tensor};

fn loss(m: &TinyCompress, x: &Tensor) -> f64 {
    let y = m.dec.forward(&m.enc.forward(x, None).unwrap(), None).unwrap();
    y.data.iter().zip(&x.data).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / x.data.len() as f64
}

#[test]
fn codec_gradients_match_finite_differences() {
    let mut rng = Rng::for_test("codec_gradients_match_finite_differences");
    for rate in [4, 16] {
        let mut m = TinyCompress::new(rate).unwrap();
        m.init(&mut || rng.uniform(0.0, 1.0));
        let x = rng.tensor(Shape::new(2, 3, 16, 16), 0.0, 1.0);
        let (mut ei, mut di) = (Vec::new(), Vec::new());
        let lat = m.enc.forward(&x, Some(&mut ei)).unwrap();
        let y = m.dec.forward(&lat, Some(&mut di)).unwrap();
        let scale = 2.0 / x.data.len() as f32;
        let dy = Tensor { shape: y.shape, data: y.data.iter().zip(&x.data).map(|(a, b)| (a - b) * scale).collect() };
        let (gd, dlat) = m.dec.backward(&di, &y, &dy, true);
        let (ge, _) = m.enc.backward(&ei, &lat, &dlat.unwrap(), false);
        let g = [ge, gd].concat();
        let p0 = [m.enc.flatten(), m.dec.flatten()].concat();
        let ne = m.enc.param_count();
        for _ in 0..3 {
            let dir: Vec<f32> = (0..p0.len()).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let analytic: f64 = g.iter().zip(&dir).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
            let eps = 3e-5f32;
            let at = |t: f32| {
                let p: Vec<f32> = p0.iter().zip(&dir).map(|(a, d)| a + t * d).collect();
                let mut mm = m.clone();
                mm.enc.unflatten(&p[..ne]);
                mm.dec.unflatten(&p[ne..]);
                loss(&mm, &x)
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps as f64);
            let rel = (analytic - numeric).abs() / numeric.abs().max(1e-6);
            assert!(rel < 0.05, "rate {rate}: analytic {analytic:.6e}, numeric {numeric:.6e}");
        }
    }
}
