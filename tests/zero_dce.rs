//! Zero-DCE / Zero-DCE++: the model against a straightforward f64 rendering of
//! the reference implementation's arithmetic, reference tensor names,
//! any image size, and the GPU paths against the CPU.

mod common;

use common::{gpu, gpu_backend, Rng};
use gpuimg::image_io::Image;
use gpuimg::models::zero_dce::{default_scale_factor, Arch, ZeroDce};
use gpuimg::weights::Weights;
use gpuimg::{Backend, Samples, Shape};

/// Planes of one image, f64.
type Planes = Vec<Vec<f64>>;

/// nn.Conv2d(k=3, padding=1, groups) or k=1, as the reference's layers use them.
#[allow(clippy::too_many_arguments)]
fn conv(x: &Planes, h: usize, w: usize, wt: &[f32], b: &[f32], cout: usize, k: usize, groups: usize) -> Planes {
    let cin = x.len();
    let (cin_g, cout_g) = (cin / groups, cout / groups);
    let pad = (k / 2) as isize;
    (0..cout)
        .map(|o| {
            let g = o / cout_g;
            let mut y = vec![b[o] as f64; h * w];
            for i in 0..h as isize {
                for j in 0..w as isize {
                    let mut acc = 0.0;
                    for c in 0..cin_g {
                        for u in 0..k as isize {
                            for v in 0..k as isize {
                                let (ii, jj) = (i + u - pad, j + v - pad);
                                if ii >= 0 && jj >= 0 && ii < h as isize && jj < w as isize {
                                    let wv = wt[((o * cin_g + c) * k + u as usize) * k + v as usize] as f64;
                                    acc += wv * x[g * cin_g + c][(ii * w as isize + jj) as usize];
                                }
                            }
                        }
                    }
                    y[(i * w as isize + j) as usize] += acc;
                }
            }
            y
        })
        .collect()
}

/// F.interpolate(mode='bilinear') for one plane: align_corners false with a
/// given scale factor, or true (UpsamplingBilinear2d).
fn bilinear(x: &[f64], h: usize, w: usize, oh: usize, ow: usize, align: bool, factor: f64) -> Vec<f64> {
    let src = |dst: usize, n: usize, on: usize| -> f64 {
        if align {
            if on > 1 {
                dst as f64 * (n as f64 - 1.0) / (on as f64 - 1.0)
            } else {
                0.0
            }
        } else {
            ((dst as f64 + 0.5) / factor - 0.5).max(0.0)
        }
    };
    let mut y = vec![0.0; oh * ow];
    for i in 0..oh {
        let sy = src(i, h, oh);
        let y0 = (sy.floor() as usize).min(h - 1);
        let y1 = (y0 + 1).min(h - 1);
        let ly = (sy - y0 as f64).clamp(0.0, 1.0);
        for j in 0..ow {
            let sx = src(j, w, ow);
            let x0 = (sx.floor() as usize).min(w - 1);
            let x1 = (x0 + 1).min(w - 1);
            let lx = (sx - x0 as f64).clamp(0.0, 1.0);
            let top = (1.0 - lx) * x[y0 * w + x0] + lx * x[y0 * w + x1];
            let bot = (1.0 - lx) * x[y1 * w + x0] + lx * x[y1 * w + x1];
            y[i * ow + j] = (1.0 - ly) * top + ly * bot;
        }
    }
    y
}

/// The reference's forward pass (enhance_net_nopool of Zero-DCE and
/// Zero-DCE++) on an image whose sides are multiples of s.
fn reference(m: &ZeroDce, img: &Planes, h: usize, w: usize, s: usize) -> Planes {
    let (sh, sw) = (h / s, w / s);
    let x_down: Planes = if s == 1 {
        img.clone()
    } else {
        img.iter().map(|p| bilinear(p, h, w, sh, sw, false, 1.0 / s as f64)).collect()
    };
    let layer = |i: usize, x: &Planes| -> Planes {
        let l = &m.layers[i];
        let cout = l.main.1.len();
        match &l.depth {
            Some((dw, db)) => {
                let mid = conv(x, sh, sw, dw, db, x.len(), 3, x.len());
                conv(&mid, sh, sw, &l.main.0, &l.main.1, cout, 1, 1)
            }
            None => conv(x, sh, sw, &l.main.0, &l.main.1, cout, 3, 1),
        }
    };
    let relu = |p: Planes| -> Planes { p.into_iter().map(|c| c.into_iter().map(|v| v.max(0.0)).collect()).collect() };
    let cat = |a: &Planes, b: &Planes| -> Planes { a.iter().chain(b).cloned().collect() };
    let x1 = relu(layer(0, &x_down));
    let x2 = relu(layer(1, &x1));
    let x3 = relu(layer(2, &x2));
    let x4 = relu(layer(3, &x3));
    let x5 = relu(layer(4, &cat(&x3, &x4)));
    let x6 = relu(layer(5, &cat(&x2, &x5)));
    let mut r: Planes = layer(6, &cat(&x1, &x6)).into_iter().map(|c| c.into_iter().map(f64::tanh).collect()).collect();
    if s != 1 {
        r = r.iter().map(|p| bilinear(p, sh, sw, sh * s, sw * s, true, s as f64)).collect();
    }
    let mut x = img.clone();
    for t in 0..8 {
        for (c, plane) in x.iter_mut().enumerate() {
            let map = &r[if m.arch == Arch::ZeroDce { 3 * t + c } else { c }];
            for (v, a) in plane.iter_mut().zip(map) {
                *v += a * (*v * *v - *v);
            }
        }
    }
    x
}

fn random_rgb(rng: &mut Rng, w: usize, h: usize, channels: usize) -> Image {
    // A dark image: values 0..96.
    let s = (0..w * h * channels).map(|_| rng.below(96) as u8).collect();
    Image::new(w as u32, h as u32, channels, Samples::U8(s)).unwrap()
}

/// Models to test: the bundled weights, and random weights scaled up so that
/// every map is far from 0.
fn models(rng: &mut Rng) -> Vec<(String, ZeroDce)> {
    let mut out = Vec::new();
    for arch in Arch::ALL {
        out.push((format!("{} bundled", arch.name()), ZeroDce::bundled(arch).unwrap()));
        let mut u = || rng.uniform(0.0, 1.0);
        let mut m = ZeroDce::init(arch, &mut u);
        let p: Vec<f32> = m.flat().iter().map(|v| v * 6.0).collect();
        m.set_flat(&p);
        out.push((format!("{} random", arch.name()), m));
    }
    out
}

fn max_diff(a: &Samples, b: &Samples) -> i64 {
    match (a, b) {
        (Samples::U8(a), Samples::U8(b)) => a.iter().zip(b).map(|(x, y)| (*x as i64 - *y as i64).abs()).max().unwrap(),
        (Samples::U16(a), Samples::U16(b)) => {
            a.iter().zip(b).map(|(x, y)| (*x as i64 - *y as i64).abs()).max().unwrap()
        }
        _ => panic!("bit depths differ"),
    }
}

#[test]
fn enhance_equals_the_reference_arithmetic_within_one_level() {
    let mut rng = Rng::for_test("zero_dce_reference");
    let mut backends = vec![Backend::Cpu];
    backends.extend(gpu_backend());
    for (name, m) in models(&mut rng) {
        for (s, w, h) in [(12, 48, 36), (4, 44, 28), (1, 13, 9)] {
            if m.arch == Arch::ZeroDce && s != 1 {
                continue; // Zero-DCE has no scale factor in the reference
            }
            let img = random_rgb(&mut rng, w, h, 3);
            let Samples::U8(px) = &img.samples else { unreachable!() };
            let planes: Planes = (0..3).map(|c| (0..w * h).map(|k| px[k * 3 + c] as f64 / 255.0).collect()).collect();
            let want = reference(&m, &planes, h, w, s);
            let mut changed = 0;
            for b in &backends {
                let got = gpuimg::ops::enhance(b, &m, &img, s, 8).unwrap();
                let Samples::U8(g) = &got.samples else { panic!("8-bit in, 8-bit out") };
                let mut worst = 0.0f64;
                for k in 0..w * h {
                    for c in 0..3 {
                        let r = want[c][k].clamp(0.0, 1.0) * 255.0;
                        worst = worst.max((g[k * 3 + c] as f64 - r).abs());
                    }
                }
                assert!(worst <= 1.0, "{name} s={s} {w}x{h} on {}: {worst:.3} levels from the reference", b.name());
                changed = g.iter().zip(px).filter(|(a, b)| a != b).count();
            }
            assert!(changed > w * h, "{name} s={s}: the enhancement left the image almost unchanged");
        }
    }
}

#[test]
fn any_size_and_layout_works_on_both_paths() {
    let mut rng = Rng::for_test("zero_dce_any_size");
    let m = ZeroDce::bundled(Arch::ZeroDcePlus).unwrap();
    let (gpu, backend) = (gpu(), gpu_backend());
    for (w, h, channels, bits) in [(1, 1, 3, 8), (37, 23, 4, 8), (131, 67, 1, 16), (29, 50, 2, 8), (256, 256, 3, 16)] {
        let n = w * h * channels;
        let samples = if bits == 8 {
            Samples::U8((0..n).map(|_| rng.below(80) as u8).collect())
        } else {
            Samples::U16((0..n).map(|_| rng.below(20000) as u16).collect())
        };
        let img = Image::new(w as u32, h as u32, channels, samples).unwrap();
        let s = default_scale_factor(h, w);
        let cpu = gpuimg::ops::enhance(&Backend::Cpu, &m, &img, s, 8).unwrap();
        assert_eq!((cpu.width, cpu.height, cpu.channels, cpu.samples.bits()), (w as u32, h as u32, channels, bits));
        if channels % 2 == 0 {
            // Alpha passes through untouched.
            let alpha = |i: &Image| match &i.samples {
                Samples::U8(v) => v.iter().skip(channels - 1).step_by(channels).map(|&x| x as u32).collect::<Vec<_>>(),
                Samples::U16(v) => v.iter().skip(channels - 1).step_by(channels).map(|&x| x as u32).collect(),
            };
            assert_eq!(alpha(&cpu), alpha(&img));
        }
        if let (Some(g), Some(b)) = (gpu, &backend) {
            let got = gpuimg::ops::enhance(b, &m, &img, s, 8).unwrap();
            // The same arithmetic in another order on another device, then rounding.
            let tol = if bits == 8 { 1 } else { 257 };
            let d = max_diff(&got.samples, &cpu.samples);
            assert!(d <= tol, "{w}x{h} {channels}ch {bits}bit s={s}: GPU differs from CPU by {d}");
            // The strip path (forced with a tiny bound) gives the same image as one pass.
            let l = img.layout();
            if channels >= 3 && h > 1 {
                let whole = gpuimg::ops::enhance_gpu(g, &m, &img, s, 8, usize::MAX).unwrap();
                let strips = gpuimg::ops::enhance_gpu(g, &m, &img, s, 8, l.shape().bytes() as usize / 5).unwrap();
                let d = max_diff(&strips.samples, &whole.samples);
                assert!(d <= tol, "{w}x{h}: strips differ from one pass by {d}");
            }
        }
    }
}

#[test]
fn default_scale_factor_keeps_the_network_input_at_64_pixels() {
    assert_eq!(default_scale_factor(900, 1200), 12);
    assert_eq!(default_scale_factor(300, 451), 4);
    assert_eq!(default_scale_factor(100, 4000), 1);
    assert_eq!(default_scale_factor(1, 1), 1);
    assert_eq!(default_scale_factor(4320, 7680), 12);
}

#[test]
fn parameter_counts_and_reference_tensor_names() {
    let mut rng = Rng::for_test("zero_dce_names");
    for (arch, count) in [(Arch::ZeroDcePlus, 10_561), (Arch::ZeroDce, 79_416)] {
        let mut u = || rng.uniform(0.0, 1.0);
        let m = ZeroDce::init(arch, &mut u);
        assert_eq!(m.parameter_count(), count);
        let w = m.to_weights();
        assert_eq!(w.parameter_count(), count);
        let names: Vec<&str> = w.tensors.keys().map(String::as_str).collect();
        match arch {
            Arch::ZeroDcePlus => {
                assert!(names.contains(&"e_conv1.depth_conv.weight") && names.contains(&"e_conv7.point_conv.bias"));
                assert_eq!(w.tensors["e_conv5.depth_conv.weight"].0, vec![64, 1, 3, 3]);
                assert_eq!(w.tensors["e_conv7.point_conv.weight"].0, vec![3, 64, 1, 1]);
            }
            Arch::ZeroDce => {
                assert!(names.contains(&"e_conv1.weight") && names.contains(&"e_conv7.bias"));
                assert_eq!(w.tensors["e_conv7.weight"].0, vec![24, 64, 3, 3]);
            }
        }
        // Round trip through safetensors bytes; the architecture comes from the names.
        let back = ZeroDce::from_weights(&Weights::from_bytes(&w.to_bytes().unwrap(), "x".as_ref()).unwrap()).unwrap();
        assert_eq!(back, m);
        // A missing and a misshapen tensor are named.
        let mut bad = w.clone();
        let victim = if arch == Arch::ZeroDce { "e_conv3.weight" } else { "e_conv3.point_conv.weight" };
        bad.tensors.remove(victim);
        let e = ZeroDce::from_weights(&bad).unwrap_err().to_string();
        assert!(e.contains(victim) && e.contains("missing"), "{e}");
        let mut bad = w.clone();
        bad.tensors.get_mut(victim).unwrap().0 = vec![32, 32, 5, 5];
        let e = ZeroDce::from_weights(&bad).unwrap_err().to_string();
        assert!(e.contains(victim) && e.contains("shape"), "{e}");
    }
    let e = ZeroDce::from_weights(&Weights::default()).unwrap_err().to_string();
    assert!(e.contains("not Zero-DCE weights"), "{e}");
}

#[test]
fn bundled_weights_brighten_a_dark_photo_without_a_cast() {
    // The sample photo darkened (gain 0.12, gamma 1.6), enhanced by each bundled model.
    let img = gpuimg::image_io::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/chelsea.png")))
        .unwrap();
    let Samples::U8(px) = &img.samples else { panic!() };
    let dark: Vec<u8> = px.iter().map(|&v| ((v as f64 / 255.0).powf(1.6) * 0.12 * 255.0).round() as u8).collect();
    let dark = Image::new(img.width, img.height, 3, Samples::U8(dark)).unwrap();
    let mean = |s: &[u8], c: usize| s.iter().skip(c).step_by(3).map(|&v| v as f64).sum::<f64>() / (s.len() / 3) as f64;
    for arch in Arch::ALL {
        let m = ZeroDce::bundled(arch).unwrap();
        let out = gpuimg::ops::enhance(&Backend::Cpu, &m, &dark, default_scale_factor(300, 451), 8).unwrap();
        let Samples::U8(o) = &out.samples else { panic!() };
        let (d, e): (Vec<f64>, Vec<f64>) = (
            (0..3)
                .map(|c| {
                    mean(
                        match &dark.samples {
                            Samples::U8(v) => v,
                            _ => unreachable!(),
                        },
                        c,
                    )
                })
                .collect(),
            (0..3).map(|c| mean(o, c)).collect(),
        );
        let (dm, em) = (d.iter().sum::<f64>() / 3.0, e.iter().sum::<f64>() / 3.0);
        assert!(em > 4.0 * dm && em > 90.0 && em < 200.0, "{}: mean {dm:.1} -> {em:.1}", arch.name());
        // No channel more than 25% off the grey mean, and few blown highlights.
        assert!(e.iter().all(|&c| (c - em).abs() < 0.25 * em), "{}: channel means {e:?}", arch.name());
        let blown = o.iter().filter(|&&v| v == 255).count() as f64 / o.len() as f64;
        assert!(blown < 0.02, "{}: {:.1}% of samples clipped at 255", arch.name(), 100.0 * blown);
    }
}

#[test]
fn inference_maps_equal_the_training_forward_pass() {
    // maps_cpu (activations fused into the convolutions, skip connections
    // read in place) against forward_trace (concatenation copies, activation
    // passes): the same sums in the same order, so the same bits.
    let mut rng = Rng::for_test("zero_dce_maps_cpu");
    for (name, m) in models(&mut rng) {
        for (w, h) in [(1, 1), (37, 23), (100, 75)] {
            let x = rng.tensor(Shape::new(1, 3, h, w), 0.0, 1.0);
            let fast = m.maps_cpu(&x).unwrap();
            let traced = m.forward_trace(&x).unwrap().outs.pop().unwrap();
            assert_eq!(fast.shape, traced.shape, "{name} {w}x{h}");
            assert!(fast.data == traced.data, "{name} {w}x{h}: maps_cpu differs from forward_trace");
        }
    }
}

#[test]
fn fused_cpu_enhance_gives_the_unfused_bytes() {
    // enhance_packed_cpu (downscale from packed rows, curve per row) against
    // unpack -> enhance_cpu -> pack: the same arithmetic in the same order.
    let mut rng = Rng::for_test("zero_dce_fused_cpu");
    for (name, m) in models(&mut rng) {
        for (w, h, channels, s) in [(1, 1, 3, 1), (37, 23, 4, 3), (130, 97, 3, 12), (64, 65, 3, 1), (151, 70, 4, 5)] {
            let mut img = random_rgb(&mut rng, w, h, channels);
            for bits in [8, 16] {
                if bits == 16 {
                    let Samples::U8(v) = &img.samples else { unreachable!() };
                    let wide = v.iter().map(|&x| x as u16 * 257 + (x as u16 % 7)).collect();
                    img = Image::new(img.width, img.height, img.channels, Samples::U16(wide)).unwrap();
                }
                let fused = gpuimg::ops::enhance_packed_cpu(&m, &img, s, 8).unwrap();
                let plain = gpuimg::ops::enhance_unfused_cpu(&m, &img, s, 8).unwrap();
                assert!(fused == plain, "{name} {w}x{h}x{channels} {bits}-bit s={s}: fused CPU enhance differs");
            }
        }
    }
}
