//! The CPU path against hand-computed cases and against plain reference loops.

mod common;

use common::{assert_close, Rng};
use gpuimg::kernels::unpack_pixels::PixelLayout;
use gpuimg::kernels::*;
use gpuimg::{Error, Samples, Shape, Tensor};

fn t(shape: Shape, v: &[f32]) -> Tensor {
    Tensor::from_vec(shape, v.to_vec()).unwrap()
}

#[test]
fn conv2d_hand_cases() {
    // 3x3 box filter on a 3x3 image of ones with zero padding: corners see 4, edges 6, centre 9.
    let x = t(Shape::new(1, 1, 3, 3), &[1.0; 9]);
    let y = Conv2d::new(1, 1, 3).cpu(&x, &[1.0; 9], &[0.0]).unwrap();
    assert_eq!(y.data, vec![4.0, 6.0, 4.0, 6.0, 9.0, 6.0, 4.0, 6.0, 4.0]);
    // Pointwise 2 -> 1: 2a + 3b + 1.
    let x = t(Shape::new(1, 2, 1, 2), &[1.0, 2.0, 10.0, 20.0]);
    let y = Conv2d::pointwise(2, 1).cpu(&x, &[2.0, 3.0], &[1.0]).unwrap();
    assert_eq!(y.data, vec![33.0, 65.0]);
    // Depthwise: channel 0 scaled by 2, channel 1 by -1, each with its own bias.
    let x = t(Shape::new(1, 2, 1, 2), &[1.0, 2.0, 3.0, 4.0]);
    let y = Conv2d::depthwise(2, 1).cpu(&x, &[2.0, -1.0], &[0.5, 0.0]).unwrap();
    assert_eq!(y.data, vec![2.5, 4.5, -3.0, -4.0]);
    // Even kernel (k = 2): PyTorch 'same' pads 0 before and 1 after.
    let x = t(Shape::new(1, 1, 1, 3), &[1.0, 2.0, 3.0]);
    let y = Conv2d::new(1, 1, 2).cpu(&x, &[1.0, 10.0, 0.0, 0.0], &[0.0]).unwrap();
    assert_eq!(y.data, vec![21.0, 32.0, 3.0]);
}

#[test]
fn conv2d_fast_path_matches_direct_loop() {
    let mut rng = Rng::for_test("conv2d_fast_path_matches_direct_loop");
    for conv in [
        Conv2d::new(3, 4, 3),
        Conv2d::new(1, 16, 5),
        Conv2d::depthwise(5, 3),
        Conv2d::pointwise(6, 2),
        Conv2d { cin: 4, cout: 6, k: 5, groups: 2 },
        Conv2d::new(2, 2, 4),
        Conv2d::new(2, 3, 7),  // kernel wider than the 5-pixel image below
        Conv2d::new(3, 15, 9), // TinyCompress's encoder
        Conv2d::new(9, 6, 3),  // output channels in a block and a half of 4
    ] {
        // Widths that take tiles of 64 and 16 and leave a remainder (151); for
        // even k, one where a tile would reach one column past the row (18)
        // and one where it ends flush with the last column (19).
        // 300: more than one column chunk (256) with a ragged end.
        for (w, h) in [(1, 1), (5, 3), (37, 23), (151, 9), (18, 4), (19, 4), (300, 3)] {
            let x = rng.tensor(Shape::new(2, conv.cin, h, w), -1.0, 1.0);
            let wt = rng.vec(conv.weight_len(), -1.0, 1.0);
            let b = rng.vec(conv.cout, -1.0, 1.0);
            let fast = conv.cpu(&x, &wt, &b).unwrap();
            let slow = conv2d::reference(&conv, &x, &wt, &b).unwrap();
            assert_close(&format!("{conv:?} {w}x{h}"), &fast.data, &slow.data, 1e-5, 1e-5);
        }
    }
}

#[test]
fn conv2d_cat_with_activation_is_concat_conv_activation() {
    // cpu_cat reads its inputs as one tensor concatenated along channels and
    // applies the activation as it stores: the same bits as doing each step.
    let mut rng = Rng::for_test("conv2d_cat");
    for conv in [Conv2d::new(7, 5, 3), Conv2d::pointwise(7, 3), Conv2d::depthwise(7, 3)] {
        let a = rng.tensor(Shape::new(2, 3, 13, 29), -1.0, 1.0);
        let b = rng.tensor(Shape::new(2, 4, 13, 29), -1.0, 1.0);
        let mut cat = Tensor::zeros(Shape::new(2, 7, 13, 29));
        for n in 0..2 {
            let (pa, pb) = (a.plane(n, 0).len() * 3, b.plane(n, 0).len() * 4);
            let at = n * (pa + pb);
            cat.data[at..at + pa].copy_from_slice(&a.data[n * pa..(n + 1) * pa]);
            cat.data[at + pa..at + pa + pb].copy_from_slice(&b.data[n * pb..(n + 1) * pb]);
        }
        let wt = rng.vec(conv.weight_len(), -0.5, 0.5);
        let bias = rng.vec(conv.cout, -0.1, 0.1);
        for act in [None, Some(ActivationKind::Relu), Some(ActivationKind::Tanh)] {
            let fused = conv.cpu_cat(&[&a, &b], &wt, &bias, act).unwrap();
            let mut plain = conv.cpu(&cat, &wt, &bias).unwrap();
            if let Some(f) = act {
                f.apply_all(&mut plain.data);
            }
            assert!(fused.data == plain.data, "{conv:?} {act:?}");
        }
    }
    let x = Tensor::zeros(Shape::new(1, 2, 4, 4));
    let y = Tensor::zeros(Shape::new(1, 1, 4, 5));
    let e = Conv2d::new(3, 1, 3).cpu_cat(&[&x, &y], &[0.0; 27], &[0.0], None).unwrap_err();
    assert!(e.to_string().contains("differ in batch or size"), "{e}");
    let e = Conv2d::new(3, 1, 3).cpu_cat(&[], &[0.0; 27], &[0.0], None).unwrap_err();
    assert!(e.to_string().contains("no input"), "{e}");
}

#[test]
fn conv2d_rejects_bad_arguments() {
    let x = Tensor::zeros(Shape::new(1, 3, 4, 4));
    let e = Conv2d::new(3, 2, 3).cpu(&x, &[0.0; 5], &[0.0; 2]).unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { .. }) && e.to_string().contains("weight has 5 values, expected 54"),
        "{e}"
    );
    let e = Conv2d::new(4, 2, 3).cpu(&x, &[0.0; 72], &[0.0; 2]).unwrap_err();
    assert!(e.to_string().contains("3 channels, conv expects 4"), "{e}");
    let e = Conv2d { cin: 3, cout: 2, k: 3, groups: 2 }.cpu(&x, &[], &[]).unwrap_err();
    assert!(e.to_string().contains("groups 2 must divide"), "{e}");
}

#[test]
fn activations_hand_cases() {
    let x = t(Shape::new(1, 1, 1, 3), &[-1.0, 0.0, 2.0]);
    assert_eq!(Activation(ActivationKind::Relu).cpu(&x).data, vec![0.0, 0.0, 2.0]);
    let s = Activation(ActivationKind::Sigmoid).cpu(&x).data;
    assert_eq!(s[1], 0.5);
    assert!((s[0] - 0.268_941_4).abs() < 1e-6);
    let th = Activation(ActivationKind::Tanh).cpu(&x).data;
    assert_eq!(th[1], 0.0);
    assert!((th[2] - 0.964_027_6).abs() < 1e-6);
    let p = Prelu.cpu(&t(Shape::new(1, 2, 1, 2), &[-2.0, 3.0, -4.0, 0.0]), &[0.25, -1.0]).unwrap();
    assert_eq!(p.data, vec![-0.5, 3.0, 4.0, 0.0]);
    assert!(Prelu.cpu(&x, &[0.1, 0.2]).is_err());
}

#[test]
fn shuffle_hand_case_and_inverses() {
    // 4 channels of 1x1 -> one 2x2 channel in row-major order of the channels.
    let x = t(Shape::new(1, 4, 1, 1), &[1.0, 2.0, 3.0, 4.0]);
    let y = PixelShuffle { r: 2 }.cpu(&x).unwrap();
    assert_eq!((y.shape, y.data.clone()), (Shape::new(1, 1, 2, 2), vec![1.0, 2.0, 3.0, 4.0]));
    let mut rng = Rng::for_test("shuffle_inverses");
    for r in [2, 3] {
        let x = rng.tensor(Shape::new(2, 3 * r * r, 5, 7), -1.0, 1.0);
        let up = PixelShuffle { r }.cpu(&x).unwrap();
        assert_eq!(PixelUnshuffle { r }.cpu(&up).unwrap(), x, "unshuffle(shuffle(x)) != x for r = {r}");
        let x = rng.tensor(Shape::new(1, 2, 5 * r, 7 * r), -1.0, 1.0);
        let down = PixelUnshuffle { r }.cpu(&x).unwrap();
        assert_eq!(PixelShuffle { r }.cpu(&down).unwrap(), x, "shuffle(unshuffle(x)) != x for r = {r}");
    }
    assert!(PixelUnshuffle { r: 2 }.cpu(&Tensor::zeros(Shape::new(1, 1, 3, 4))).is_err());
    assert!(PixelShuffle { r: 2 }.cpu(&Tensor::zeros(Shape::new(1, 3, 3, 4))).is_err());
}

#[test]
fn resize_matches_pytorch_values() {
    // torch.nn.functional.interpolate(torch.tensor([[[[0.,1.],[2.,3.]]]]), size=(4,4), mode='bilinear')
    let x = t(Shape::new(1, 1, 2, 2), &[0.0, 1.0, 2.0, 3.0]);
    let y = ResizeBilinear::to_size(4, 4, false).cpu(&x).unwrap();
    #[rustfmt::skip]
    let want = [0.0, 0.25, 0.75, 1.0,  0.5, 0.75, 1.25, 1.5,  1.5, 1.75, 2.25, 2.5,  2.0, 2.25, 2.75, 3.0];
    assert_close("align_corners=False 2->4", &y.data, &want, 1e-6, 0.0);
    // ... align_corners=True, size (3, 3)
    let y = ResizeBilinear::to_size(3, 3, true).cpu(&x).unwrap();
    assert_close("align_corners=True 2->3", &y.data, &[0.0, 0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 2.5, 3.0], 1e-6, 0.0);
    // scale_factor = 1/12 on 24 columns: output 2, sources (d + 0.5) * 12 - 0.5 = 5.5 and 17.5.
    let ramp: Vec<f32> = (0..24).map(|v| v as f32).collect();
    let x = t(Shape::new(1, 1, 1, 24), &ramp);
    let op = ResizeBilinear {
        target: resize_bilinear::ResizeTarget::Factor { h: 1.0, w: 1.0 / 12.0 },
        align_corners: false,
    };
    let y = op.cpu(&x).unwrap();
    assert_eq!(y.shape, Shape::new(1, 1, 1, 2));
    assert_close("scale 1/12", &y.data, &[5.5, 17.5], 1e-5, 0.0);
    // Output size for a scale factor is floor(in * f); 25 columns at 1/12 is still 2.
    assert_eq!(op.out_shape(Shape::new(1, 1, 1, 25)).unwrap().w, 2);
    assert!(ResizeBilinear::by_factor(1.0 / 12.0, false).cpu(&Tensor::zeros(Shape::new(1, 1, 5, 5))).is_err());
}

#[test]
fn curve_hand_cases() {
    let mut rng = Rng::for_test("curve_identity");
    for per_iteration in [true, false] {
        let op = ZeroDceEnhance { iterations: 8, per_iteration, colour: 3 };
        let x = rng.tensor(Shape::new(1, 3, 4, 5), 0.0, 1.0);
        let sets = if per_iteration { 8 } else { 1 };
        let zero = Tensor::zeros(Shape::new(1, 3 * sets, 4, 5));
        assert_eq!(op.cpu(&x, &zero).unwrap(), x, "zero maps must leave the image unchanged");
    }
    // One iteration, r = -1 (alpha = 1): 0.5 -> 0.5 + 0.5 * 0.5 = 0.75; r = 1 darkens to 0.25.
    let op = ZeroDceEnhance { iterations: 1, per_iteration: false, colour: 2 };
    let x = t(Shape::new(1, 2, 1, 1), &[0.5, 0.5]);
    let r = t(Shape::new(1, 2, 1, 1), &[-1.0, 1.0]);
    assert_eq!(op.cpu(&x, &r).unwrap().data, vec![0.75, 0.25]);
    // Per-iteration maps: iteration 0 uses r = -1 (0.5 -> 0.75), iteration 1 uses 0 (stays).
    let op = ZeroDceEnhance { iterations: 2, per_iteration: true, colour: 1 };
    let x = t(Shape::new(1, 1, 1, 1), &[0.5]);
    let r = t(Shape::new(1, 2, 1, 1), &[-1.0, 0.0]);
    assert_eq!(op.cpu(&x, &r).unwrap().data, vec![0.75]);
    assert!(op.cpu(&x, &t(Shape::new(1, 1, 1, 1), &[0.0])).is_err());
}

#[test]
fn pack_unpack_round_trip_and_rounding() {
    for bits in [8u32, 16] {
        let maxv = if bits == 8 { 255usize } else { 65535 };
        let n = maxv + 1; // every value once, as 1 x n grey pixels
        let l = PixelLayout { n: 1, height: 1, width: n, channels: 1, bits };
        let s = if bits == 8 {
            Samples::U8((0..n).map(|v| v as u8).collect())
        } else {
            Samples::U16((0..n).map(|v| v as u16).collect())
        };
        let x = UnpackPixels(l).cpu(&s).unwrap();
        assert_eq!(x.data[maxv], 1.0);
        assert_eq!(PackPixels(l).cpu(&x).unwrap(), s, "{bits}-bit round trip");
    }
    // Interleaved RGB: planes come out separated.
    let l = PixelLayout { n: 1, height: 1, width: 2, channels: 3, bits: 8 };
    let x = UnpackPixels(l).cpu(&Samples::U8(vec![255, 0, 51, 0, 255, 102])).unwrap();
    assert_close("planar", &x.data, &[1.0, 0.0, 0.0, 1.0, 0.2, 0.4], 1e-7, 0.0);
    // Clamping and rounding.
    let l = PixelLayout { n: 1, height: 1, width: 4, channels: 1, bits: 8 };
    let p = PackPixels(l).cpu(&t(Shape::new(1, 1, 1, 4), &[-0.3, 1.7, 0.2, 0.5])).unwrap();
    assert_eq!(p, Samples::U8(vec![0, 255, 51, 128]));
    assert!(UnpackPixels(PixelLayout { channels: 5, ..l }).cpu(&Samples::U8(vec![0; 20])).is_err());
}

#[test]
fn fused_packed_resize_gives_the_bytes_of_unpack_resize_pack() {
    // The CPU path of `gpuimg resize` fuses unpack, resize and pack per row;
    // it must give exactly the bytes of the three steps one after another.
    use gpuimg::kernels::resize_bilinear::ResizeTarget;
    use gpuimg::ops::{resize_layout, resize_packed_cpu, resize_packed_reference};
    let mut rng = Rng::for_test("fused_packed_resize");
    for (w, h) in [(1, 1), (37, 23), (256, 131)] {
        for (channels, bits) in [(1, 8), (2, 16), (3, 8), (4, 8), (3, 16)] {
            let img = common::random_image(&mut rng, w, h, channels, bits);
            for op in [
                ResizeBilinear::to_size(h as usize * 2 + 1, w as usize * 3, false),
                ResizeBilinear::to_size((h as usize).div_ceil(4), (w as usize).div_ceil(4), true),
                ResizeBilinear { target: ResizeTarget::Factor { h: 0.37, w: 0.37 }, align_corners: false },
                ResizeBilinear::to_size(h as usize, w as usize, false),
            ] {
                let Ok(outl) = resize_layout(img.layout(), &op) else { continue }; // 0.37 of 1 px is empty
                let got = resize_packed_cpu(&img, &op, outl).unwrap();
                let want = resize_packed_reference(&img, &op, outl).unwrap();
                assert!(got == want, "{op:?} on {w}x{h}x{channels} {bits}-bit: the fused path differs");
            }
        }
    }
}

#[test]
fn enhance_is_the_curve_on_bilinearly_upsampled_maps_bit_for_bit() {
    // The CPU twin samples each map row once and runs the iterations over the
    // whole row; it must equal, bit for bit, the maps upsampled by
    // resize_bilinear (align_corners) and the curve applied one pixel at a time.
    let mut rng = Rng::for_test("enhance_reference");
    for per_iteration in [false, true] {
        let op = ZeroDceEnhance::rgb(per_iteration);
        for (w, h, mw, mh) in [(53, 29, 5, 3), (40, 31, 40, 31), (7, 9, 1, 1)] {
            let x = rng.tensor(Shape::new(2, 4, h, w), 0.0, 1.0);
            let maps = rng.tensor(Shape::new(2, 3 * op.sets(), mh, mw), -1.0, 1.0);
            let up = ResizeBilinear::to_size(h, w, true).cpu(&maps).unwrap();
            let mut want = x.clone();
            for n in 0..2 {
                for c in 0..3 {
                    for k in 0..h * w {
                        let mut s = x.plane(n, c)[k];
                        for t in 0..8 {
                            let set = if per_iteration { t } else { 0 };
                            let r = up.plane(n, set * 3 + c)[k];
                            s += r * (s * s - s);
                        }
                        want.data[(n * 4 + c) * h * w + k] = s;
                    }
                }
            }
            let got = op.cpu(&x, &maps).unwrap();
            assert!(got == want, "per_iteration {per_iteration}, {w}x{h} maps {mw}x{mh}: differs");
        }
    }
}
