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

mod zero_dce {
    use super::*;
    use gpuimg::kernels::ZeroDceEnhance;
    use gpuimg::models::zero_dce::{Arch, ZeroDce};
    use gpuimg::train::enhance::{
        colour_loss, curve_backward, exposure_loss, loss_and_grad, losses_and_map_grad, network_backward, spatial_loss,
        tv_loss, w_tv,
    };

    /// Central differences of `f` at every `step`-th value of `x` against `analytic`.
    fn check_tensor(
        what: &str,
        x: &Tensor,
        analytic: &Tensor,
        step: usize,
        eps: f32,
        tol: f64,
        f: impl Fn(&Tensor) -> f64,
    ) {
        for i in (0..x.data.len()).step_by(step) {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp.data[i] += eps;
            xm.data[i] -= eps;
            check(&format!("{what}[{i}]"), analytic.data[i], (f(&xp) - f(&xm)) / (2.0 * eps as f64), tol);
        }
    }

    #[test]
    fn zero_reference_losses_match_finite_differences() {
        let mut rng = Rng::for_test("zero_dce_losses");
        // 35 x 37: pools of 4 and 16 leave remainders that get no gradient.
        let e = rng.tensor(Shape::new(2, 3, 35, 37), 0.0, 1.0);
        let org = rng.tensor(e.shape, 0.0, 0.5);
        let eps = 1e-2f32;
        type Loss = fn(&Tensor, &Tensor, &mut Tensor) -> f64;
        let cases: [(&str, Loss); 4] = [
            ("spatial", |e, o, d| spatial_loss(e, o, d)),
            ("exposure", |e, _, d| exposure_loss(e, None, d)),
            // Towards the levels of a source image (here `org`).
            ("exposure to a source", |e, o, d| exposure_loss(e, Some((o, 25.0)), d)),
            ("colour", |e, _, d| colour_loss(e, d)),
        ];
        for (name, loss) in cases {
            let mut d = Tensor::zeros(e.shape);
            let l = loss(&e, &org, &mut d);
            assert!(l > 0.0, "{name} loss {l}");
            assert!(d.data.iter().any(|&v| v != 0.0), "{name}: zero gradient");
            check_tensor(name, &e, &d, 7, eps, 2e-3, |e| loss(e, &org, &mut Tensor::zeros(e.shape)));
        }
        let a = rng.tensor(Shape::new(2, 3, 9, 11), -1.0, 1.0);
        let mut da = Tensor::zeros(a.shape);
        tv_loss(&a, w_tv(Arch::ZeroDcePlus), &mut da);
        check_tensor("tv", &a, &da, 3, eps, 2e-3, |a| tv_loss(a, w_tv(Arch::ZeroDcePlus), &mut Tensor::zeros(a.shape)));
    }

    #[test]
    fn curve_backward_matches_finite_differences() {
        let mut rng = Rng::for_test("zero_dce_curve_backward");
        let x = rng.tensor(Shape::new(2, 3, 5, 7), 0.0, 1.0);
        for (per_iteration, sets) in [(false, 1), (true, 8)] {
            let a = rng.tensor(Shape::new(2, 3 * sets, 5, 7), -1.0, 1.0);
            let r = rng.tensor(x.shape, -1.0, 1.0);
            let curve = ZeroDceEnhance { iterations: 8, per_iteration, colour: 3 };
            let da = curve_backward(&x, &a, &r, 8, per_iteration);
            check_tensor(&format!("curve da (per_iteration {per_iteration})"), &a, &da, 5, 1e-3, 1e-3, |a| {
                dot(&curve.cpu(&x, a).unwrap(), &r)
            });
        }
    }

    /// (offset, length) of every weight and bias tensor in `ZeroDce::flat`'s order.
    fn tensor_ranges(m: &ZeroDce) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut k = 0;
        for l in &m.layers {
            for (w, b) in l.depth.iter().chain([&l.main]) {
                for n in [w.len(), b.len()] {
                    out.push((k, n));
                    k += n;
                }
            }
        }
        out
    }

    /// Which ReLUs of the network are open for parameters `p` on input `x`.
    fn relu_masks(m: &ZeroDce, p: &[f32], x: &Tensor) -> Vec<bool> {
        let mut m = m.clone();
        m.set_flat(p);
        let t = m.forward_trace(x).unwrap();
        t.outs[..t.outs.len() - 1].iter().flat_map(|o| o.data.iter().map(|&v| v > 0.0)).collect()
    }

    /// For every weight and bias tensor: the derivative of `f` along a random
    /// sparse direction in that tensor (up to 16 entries), by central
    /// differences, against `g . d`. Finite differences are only meaningful
    /// where no ReLU opens or closes between p - eps d and p + eps d, so the
    /// largest step of 1e-3, 3e-4, 1e-4, 3e-5 that crosses no kink is used (the
    /// function is smooth there); at least 3 in 4 tensors must find one.
    fn check_directions(what: &str, m: &ZeroDce, x: &Tensor, g: &[f32], rng: &mut Rng, f: impl Fn(&[f32]) -> f64) {
        let p = m.flat();
        let base = relu_masks(m, &p, x);
        let ranges = tensor_ranges(m);
        let mut checked = 0;
        for (t, &(off, len)) in ranges.iter().enumerate() {
            let mut d = vec![0.0f32; len];
            for _ in 0..16.min(len) {
                d[rng.below(len as u64) as usize] = rng.uniform(-1.0, 1.0);
            }
            let analytic: f64 = g[off..off + len].iter().zip(&d).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
            for eps in [1e-3f32, 3e-4, 1e-4, 3e-5] {
                let (mut pp, mut pm) = (p.clone(), p.clone());
                for (k, dv) in d.iter().enumerate() {
                    pp[off + k] += eps * dv;
                    pm[off + k] -= eps * dv;
                }
                if relu_masks(m, &pp, x) != base || relu_masks(m, &pm, x) != base {
                    continue;
                }
                let num = (f(&pp) - f(&pm)) / (2.0 * eps as f64);
                // f32 rounding of f itself, about 1e-7 of it, over 2 eps.
                let floor = 1e-6 / eps as f64;
                assert!(
                    (analytic - num).abs() <= 2e-2 * analytic.abs().max(num.abs()) + floor,
                    "{what} tensor {t} ({len} values): analytic {analytic} vs numeric {num} (step {eps})"
                );
                checked += 1;
                break;
            }
        }
        assert!(4 * checked >= 3 * ranges.len(), "{what}: only {checked} of {} tensors could be checked", ranges.len());
    }

    /// Weights larger than the training start, so every layer matters.
    fn spread(m: &mut ZeroDce) {
        let p: Vec<f32> = m.flat().iter().map(|v| v * 2.0).collect();
        m.set_flat(&p);
    }

    #[test]
    fn zero_dce_network_backward_matches_finite_differences() {
        let mut rng = Rng::for_test("zero_dce_network_backward");
        for arch in Arch::ALL {
            let mut u = || rng.uniform(0.0, 1.0);
            let mut model = ZeroDce::init(arch, &mut u);
            spread(&mut model);
            let x = rng.tensor(Shape::new(1, 3, 5, 4), 0.0, 1.0);
            let t = model.forward_trace(&x).unwrap();
            let r = rng.tensor(t.maps().shape, -1.0, 1.0);
            let g = network_backward(&model, &t, &r);
            assert_eq!(g.len(), model.parameter_count());
            check_directions(arch.name(), &model, &x, &g, &mut rng, |p| {
                let mut m = model.clone();
                m.set_flat(p);
                dot(&m.maps_cpu(&x).unwrap(), &r)
            });
        }
    }

    /// The whole objective's gradient with respect to the curve maps (curve
    /// and the four losses together; smooth, so plain central differences),
    /// and `loss_and_grad` as that gradient pushed through the network
    /// backward pass checked above.
    #[test]
    fn zero_dce_loss_gradient_matches_finite_differences() {
        let mut rng = Rng::for_test("zero_dce_grad");
        for arch in Arch::ALL {
            let x = rng.tensor(Shape::new(2, 3, 17, 18), 0.0, 0.6);
            let a = rng.tensor(Shape::new(2, arch.maps(), 17, 18), -0.9, 0.3);
            let src = rng.tensor(x.shape, 0.2, 0.9);
            for source in [None, Some((&src, 10.0))] {
                let what = format!("{} d loss / d maps (source {})", arch.name(), source.is_some());
                let (_, da) = losses_and_map_grad(arch, &x, &a, source);
                check_tensor(&what, &a, &da, 29, 1e-3, 2e-3, |a| losses_and_map_grad(arch, &x, a, source).0.total());
            }
            let mut u = || rng.uniform(0.0, 1.0);
            let model = ZeroDce::init(arch, &mut u);
            let (losses, g) = loss_and_grad(&model, &x, Some((&src, 10.0))).unwrap();
            let t = model.forward_trace(&x).unwrap();
            let (l2, da) = losses_and_map_grad(arch, &x, t.maps(), Some((&src, 10.0)));
            assert_eq!(losses, l2);
            assert_eq!(g, network_backward(&model, &t, &da));
        }
    }
}
