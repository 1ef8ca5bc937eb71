// resize_bilinear: bilinear resampling of each plane with PyTorch's
// F.interpolate(mode='bilinear') semantics, both align_corners conventions.
//
//   align_corners = true:  src = dst * scale,               scale = (in-1)/(out-1) (0 if out = 1)
//   align_corners = false: src = max((dst + 0.5) * scale - 0.5, 0),
//                          scale = 1/scale_factor if one was given, else in/out
//   i0 = min(floor(src), in-1), l1 = clamp(src - i0, 0, 1), i1 = i0 + (i0 < in-1), l0 = 1 - l1
//   y = l0y * (l0x * x[i0y,i0x] + l1x * x[i0y,i1x]) + l1y * (l0x * x[i1y,i0x] + l1x * x[i1y,i1x])
//   (equal sizes copy the plane).
// The host computes `scale_*` exactly as PyTorch does (f64 then f32).
// Strips: the dispatch may cover output rows out_row0 .. out_row0+out_rows of
// the whole (in_h, out_h) resize, with x holding input rows in_row0 ..
// in_row0+in_rows (every row those taps read); taps use the whole sizes, so a
// strip's rows equal the same rows of the unsplit resize.
// CPU twin: src/kernels/resize_bilinear.rs (ResizeBilinear::cpu).
//
// bindings: 0 uniform Params | 1 x (P,in_rows,in_w) | 2 y (P,out_rows,out_w)
// dispatch: (ceil(out_w/8), ceil(out_rows/8), P)

struct Params {
    planes: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    align_corners: u32,
    scale_h: f32,
    scale_w: f32,
    out_row0: u32,
    out_rows: u32,
    in_row0: u32,
    in_rows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const WG: u32 = 8u;

// Taps: bilinear_tap from shaders/lib/bilinear.wgsl.
fn tap(dst: u32, in_size: u32, out_size: u32, scale: f32) -> Tap {
    return bilinear_tap(dst, in_size, out_size, scale, p.align_corners != 0u);
}

@compute @workgroup_size(WG, WG, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let i = gid.y;
    if (j >= p.out_w || i >= p.out_rows || gid.z >= p.planes) {
        return;
    }
    let ty = tap(i + p.out_row0, p.in_h, p.out_h, p.scale_h);
    let tx = tap(j, p.in_w, p.out_w, p.scale_w);
    let base = gid.z * p.in_rows * p.in_w;
    let r0 = base + (ty.i0 - p.in_row0) * p.in_w;
    let r1 = base + (ty.i1 - p.in_row0) * p.in_w;
    let top = tx.l0 * x[r0 + tx.i0] + tx.l1 * x[r0 + tx.i1];
    let bot = tx.l0 * x[r1 + tx.i0] + tx.l1 * x[r1 + tx.i1];
    y[(gid.z * p.out_rows + i) * p.out_w + j] = ty.l0 * top + ty.l1 * bot;
}
