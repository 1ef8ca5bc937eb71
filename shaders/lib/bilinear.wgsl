// Shared snippet `bilinear`, composed before the shaders that name it in their
// descriptor (resize_bilinear, zero_dce_enhance): the bilinear tap of one axis
// with PyTorch's F.interpolate(mode='bilinear') semantics.
//
//   align_corners = true:  src = dst * scale
//   align_corners = false: src = max((dst + 0.5) * scale - 0.5, 0)
//   i0 = min(floor(src), in-1), l1 = clamp(src - i0, 0, 1), i1 = i0 + (i0 < in-1), l0 = 1 - l1
//   (equal sizes: i0 = i1 = dst, l0 = 1, l1 = 0)
// CPU twin: src/kernels/resize_bilinear.rs (Axis::tap).

struct Tap {
    i0: u32,
    i1: u32,
    l0: f32,
    l1: f32,
}

fn bilinear_tap(dst: u32, in_size: u32, out_size: u32, scale: f32, align_corners: bool) -> Tap {
    var t: Tap;
    if (in_size == out_size) {
        t.i0 = dst;
        t.i1 = dst;
        t.l0 = 1.0;
        t.l1 = 0.0;
        return t;
    }
    var src: f32;
    if (align_corners) {
        src = scale * f32(dst);
    } else {
        src = max(scale * (f32(dst) + 0.5) - 0.5, 0.0);
    }
    t.i0 = min(u32(floor(src)), in_size - 1u);
    t.l1 = clamp(src - f32(t.i0), 0.0, 1.0);
    t.l0 = 1.0 - t.l1;
    t.i1 = t.i0 + select(0u, 1u, t.i0 < in_size - 1u);
    return t;
}

