//! The backward passes against central finite differences.

mod common;

use common::Rng;
use gpuimg::kernels::{Conv2d, PixelShuffle, Prelu};
use gpuimg::models::tinypssr::{Stage, TinyPssr};
use gpuimg::train::grad::{conv2d_backward, pixel_shuffle_backward, prelu_backward};
use gpuimg::train::sr::{flatten, loss_and_grad, unflatten};
use gpuimg::{Shape, Tensor};

/// sum(y * r): its gradient with respect to y is r.
fn dot(y: &Tensor, r: &Tensor) -> f64 {
    y.data.iter().zip(&r.data).map(|(a, b)| (*a as f64) * (*b as f64)).sum()
}

fn check(what: &str, analytic: f32, numeric: f64, tol: f64) {
    let err = (analytic as f64 - numeric).abs();
    assert!(err <= tol * (1.0 + numeric.abs()), "{what}: analytic {analytic} vs numeric {numeric} (err {err})");
}

#[test]
fn conv2d_backward_matches_finite_differences() {
    let mut rng = Rng::for_test("conv2d_backward");
    for conv in [
        Conv2d::new(3, 4, 3),
        Conv2d::new(2, 3, 5),
        Conv2d::pointwise(4, 2),
        Conv2d { cin: 4, cout: 6, k: 3, groups: 2 },
        Conv2d::depthwise(3, 3),
        Conv2d::new(1, 2, 4),
    ] {
        let x = rng.tensor(Shape::new(2, conv.cin, 5, 6), -1.0, 1.0);
        let w = rng.vec(conv.weight_len(), -1.0, 1.0);
        let b = rng.vec(conv.cout, -1.0, 1.0);
        let y = conv.cpu(&x, &w, &b).unwrap();
        let r = rng.tensor(y.shape, -1.0, 1.0);
        let (dx, dw, db) = conv2d_backward(&conv, &x, &w, &r, true);
        let dx = dx.unwrap();
        let eps = 1e-2f32;
        let f = |x: &Tensor, w: &[f32], b: &[f32]| dot(&conv.cpu(x, w, b).unwrap(), &r);
        for i in 0..w.len() {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[i] += eps;
            wm[i] -= eps;
            check(&format!("{conv:?} dw[{i}]"), dw[i], (f(&x, &wp, &b) - f(&x, &wm, &b)) / (2.0 * eps as f64), 1e-3);
        }
        for i in 0..b.len() {
            let (mut bp, mut bm) = (b.clone(), b.clone());
            bp[i] += eps;
            bm[i] -= eps;
            check(&format!("{conv:?} db[{i}]"), db[i], (f(&x, &w, &bp) - f(&x, &w, &bm)) / (2.0 * eps as f64), 1e-3);
        }
        for i in (0..x.data.len()).step_by(3) {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp.data[i] += eps;
            xm.data[i] -= eps;
            check(
                &format!("{conv:?} dx[{i}]"),
                dx.data[i],
                (f(&xp, &w, &b) - f(&xm, &w, &b)) / (2.0 * eps as f64),
                1e-3,
            );
        }
    }
}

#[test]
fn prelu_and_shuffle_backward_match_finite_differences() {
    let mut rng = Rng::for_test("prelu_shuffle_backward");
    // Keep inputs away from the kink at 0.
    let mut x = rng.tensor(Shape::new(2, 3, 4, 5), -1.0, 1.0);
    x.data.iter_mut().for_each(|v| *v = if v.abs() < 0.05 { 0.3 } else { *v });
    let a = rng.vec(3, -0.5, 0.5);
    let r = rng.tensor(x.shape, -1.0, 1.0);
    let (dx, da) = prelu_backward(&x, &a, &r);
    let eps = 1e-3f32;
    let f = |x: &Tensor, a: &[f32]| dot(&Prelu.cpu(x, a).unwrap(), &r);
    for i in 0..x.data.len() {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp.data[i] += eps;
        xm.data[i] -= eps;
        check(&format!("prelu dx[{i}]"), dx.data[i], (f(&xp, &a) - f(&xm, &a)) / (2.0 * eps as f64), 1e-3);
    }
    for c in 0..3 {
        let (mut ap, mut am) = (a.clone(), a.clone());
        ap[c] += eps;
        am[c] -= eps;
        check(&format!("prelu da[{c}]"), da[c], (f(&x, &ap) - f(&x, &am)) / (2.0 * eps as f64), 1e-3);
    }
    let x = rng.tensor(Shape::new(2, 8, 3, 4), -1.0, 1.0);
    let y = PixelShuffle { r: 2 }.cpu(&x).unwrap();
    let r = rng.tensor(y.shape, -1.0, 1.0);
    let dx = pixel_shuffle_backward(2, &r);
    let f = |x: &Tensor| dot(&PixelShuffle { r: 2 }.cpu(x).unwrap(), &r);
    for i in 0..x.data.len() {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp.data[i] += eps;
        xm.data[i] -= eps;
        check(&format!("shuffle dx[{i}]"), dx.data[i], (f(&xp) - f(&xm)) / (2.0 * eps as f64), 1e-3);
    }
}

#[test]
fn tinypssr_loss_gradient_matches_finite_differences() {
    let mut rng = Rng::for_test("tinypssr_grad");
    for stages in [1, 2] {
        let mut u = || rng.uniform(0.0, 1.0);
        let model = TinyPssr { stages: (0..stages).map(|_| Stage::init(&mut u)).collect() };
        let f = 1 << stages;
        let lr = rng.tensor(Shape::new(2, 1, 6, 5), 0.0, 1.0);
        let hr = rng.tensor(Shape::new(2, 1, 6 * f, 5 * f), 0.0, 1.0);
        let (_, g) = loss_and_grad(&model, &lr, &hr, 1);
        let (p, gf) = (flatten(&model), flatten(&g));
        let loss = |p: &[f32]| {
            let mut m = model.clone();
            unflatten(&mut m, p);
            let (l, _) = loss_and_grad(&m, &lr, &hr, 1);
            l
        };
        let eps = 1e-3f32;
        // A spread of parameters across every layer of every stage.
        for i in (0..p.len()).step_by(37) {
            let (mut pp, mut pm) = (p.clone(), p.clone());
            pp[i] += eps;
            pm[i] -= eps;
            let num = (loss(&pp) - loss(&pm)) / (2.0 * eps as f64);
            // L1 is piecewise linear: a few outputs may cross a kink within eps.
            check(&format!("{stages} stage(s) param {i}"), gf[i], num, 2e-2);
        }
    }
}
