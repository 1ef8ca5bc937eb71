// zero_dce_enhance: Zero-DCE's map upsampling and curve iterations in one pass.
//
// The curve maps come from the network at low resolution (mh x mw). Each output
// pixel samples them bilinearly with align_corners = true (PyTorch's
// UpsamplingBilinear2d, sizes given: scale = (m-1)/(out-1), 0 if out = 1;
// equal sizes copy), then iterates the curve
//   repeat n times:  v <- v + r_t * (v*v - v)
// without ever writing the full-resolution maps. Iteration t uses map set t
// (channels [t*colour, t*colour + colour), Zero-DCE) or set 0 (Zero-DCE++).
// Channels from `colour` up (alpha) are copied unchanged. The image may be a
// strip of rows: row i of x is row row0 + i of an image full_h rows high.
// Packed mode (packed = 1): x holds interleaved u8/u16 samples (N = 1) and y
// gets them back, each sample set with atomicOr into a zeroed buffer (one
// byte or half-word each, so neighbours never clash): packed pixels in,
// packed pixels out, nothing else in global memory.
// CPU twin: src/kernels/zero_dce_enhance.rs (ZeroDceEnhance::cpu; packed:
// ZeroDceEnhance::cpu_packed).
//
// bindings: 0 uniform Params | 1 x (N,C,H,W) or packed words | 2 maps (N,colour*sets,mh,mw) | 3 y (N,C,H,W) or packed words
// dispatch: (ceil(W/8), ceil(H/8), N)

struct Params {
    n: u32,
    channels: u32,
    colour: u32,
    h: u32,
    w: u32,
    mh: u32,
    mw: u32,
    iterations: u32,
    per_iteration: u32,
    scale_h: f32,
    scale_w: f32,
    row0: u32,
    full_h: u32,
    packed: u32,     // 0 f32 planes, 1 packed samples in and out
    bits: u32,       // packed: 8 or 16
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> maps: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<atomic<u32>>;

const WG: u32 = 8u;

// align_corners = true taps: bilinear_tap from shaders/lib/bilinear.wgsl, as resize_bilinear computes them.
fn tap(dst: u32, in_size: u32, out_size: u32, scale: f32) -> Tap {
    return bilinear_tap(dst, in_size, out_size, scale, true);
}

fn load(idx: u32, s: u32) -> f32 {
    if (p.packed == 0u) {
        return bitcast<f32>(x[idx]);
    }
    if (p.bits == 8u) {
        return f32((x[s / 4u] >> ((s % 4u) * 8u)) & 0xffu) / 255.0;
    }
    return f32((x[s / 2u] >> ((s % 2u) * 16u)) & 0xffffu) / 65535.0;
}

fn store(idx: u32, s: u32, v: f32) {
    if (p.packed == 0u) {
        atomicStore(&y[idx], bitcast<u32>(v));
    } else if (p.bits == 8u) {
        let q = u32(floor(clamp(v, 0.0, 1.0) * 255.0 + 0.5));
        atomicOr(&y[s / 4u], q << ((s % 4u) * 8u));
    } else {
        let q = u32(floor(clamp(v, 0.0, 1.0) * 65535.0 + 0.5));
        atomicOr(&y[s / 2u], q << ((s % 2u) * 16u));
    }
}

@compute @workgroup_size(WG, WG, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let i = gid.y;
    let b = gid.z;
    if (j >= p.w || i >= p.h || b >= p.n) {
        return;
    }
    let ty = tap(p.row0 + i, p.mh, p.full_h, p.scale_h);
    let tx = tap(j, p.mw, p.w, p.scale_w);
    let plane = p.h * p.w;
    let mplane = p.mh * p.mw;
    let sets = select(1u, p.iterations, p.per_iteration != 0u);
    let r0 = ty.i0 * p.mw;
    let r1 = ty.i1 * p.mw;
    for (var c = 0u; c < p.channels; c++) {
        let idx = (b * p.channels + c) * plane + i * p.w + j;
        let s = (i * p.w + j) * p.channels + c;
        var v = load(idx, s);
        if (c < p.colour) {
            var r = 0.0;
            for (var t = 0u; t < p.iterations; t++) {
                // Zero-DCE++'s one shared map set is sampled once.
                if (t == 0u || p.per_iteration != 0u) {
                    let map_set = select(0u, t, p.per_iteration != 0u);
                    let m = (b * p.colour * sets + map_set * p.colour + c) * mplane;
                    let top = tx.l0 * maps[m + r0 + tx.i0] + tx.l1 * maps[m + r0 + tx.i1];
                    let bot = tx.l0 * maps[m + r1 + tx.i0] + tx.l1 * maps[m + r1 + tx.i1];
                    r = ty.l0 * top + ty.l1 * bot;
                }
                v = v + r * (v * v - v);
            }
        }
        store(idx, s, v);
    }
}
