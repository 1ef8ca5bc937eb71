// tinypssr_x4_fused: both TinyPSSR x2 stages of the x4 model in one dispatch, the
// stage-1 result kept in workgroup memory (the layers are tinypssr_fused's:
// conv 5x5 1->16, PReLU, conv 1x1 16->4, PReLU, conv 5x5 4->8, PReLU,
// conv 1x1 8->4, pixel shuffle x2; zero "same" padding at each stage's
// resolution).
//
// A workgroup owns an 8x8 tile of input pixels (32x32 output pixels) and
// loops over the colour channels. Per channel:
//   A. the 20x20 input region (halo 6) into workgroup memory;
//   B. stage 1 layers 1-2 over the 16x16 inputs around the tile (halo 4);
//   C. stage 1 layers 3-4 and the shuffle for the 12x12 inputs (halo 2):
//      the 24x24 intermediate pixels stage 2 reads (zero outside the
//      intermediate image: stage 2's padding), never written to global memory;
//   D. stage 2 layers 1-2 over the 20x20 intermediate pixels (halo 2);
//   E. stage 2 layers 3-4 for the tile's 16x16 intermediate pixels, four per
//      invocation, each giving 2x2 output pixels.
// Weights: both stages' flat weights (2 x 1,356) read from storage.
//
// Input: packed interleaved u8/u16 samples. Output: packed samples set with
// atomicOr into a zeroed buffer (one byte or half-word each).
// CPU twin: src/kernels/tinypssr_x4_fused.rs (TinyPssrX4: tinypssr_fused's
// stage_cpu twice).
//
// bindings: 0 uniform Params | 1 input words | 2 weights | 3 output words (atomic)
// dispatch: (ceil(w/8), ceil(h/8), 1)

struct Params {
    w: u32,           // input width
    h: u32,           // input height
    channels: u32,    // samples per pixel (1-4)
    colour: u32,      // channels run through the network (the first `colour`)
    bits: u32,        // 8 or 16
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read> wts: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<atomic<u32>>;

const WG: u32 = 8u;
const NW: u32 = 1356u;
const RIN: u32 = 20u;   // A: input region side (tile + 2 * 6)
const RM1: u32 = 16u;   // B: stage-1 layer-2 region side (tile + 2 * 4)
const RI: u32 = 24u;    // C: intermediate region side (2 * (tile + 2 * 2))
const RM2: u32 = 20u;   // D: stage-2 layer-2 region side (2 * tile + 2 * 2)
// Offsets within one stage's flat weights.
const W1: u32 = 0u;
const B1: u32 = 400u;
const A1: u32 = 416u;
const W2: u32 = 432u;
const B2: u32 = 496u;
const A2: u32 = 500u;
const W3: u32 = 504u;
const B3: u32 = 1304u;
const A3: u32 = 1312u;
const W4: u32 = 1320u;
const B4: u32 = 1352u;

var<workgroup> tin: array<f32, 400>;    // 20 x 20
var<workgroup> mid1: array<f32, 1024>;  // 4 x 16 x 16
var<workgroup> inter: array<f32, 576>;  // 24 x 24
var<workgroup> mid2: array<f32, 1600>;  // 4 x 20 x 20

fn prelu(v: f32, a: f32) -> f32 {
    return select(a * v, v, v >= 0.0);
}

fn load(c: u32, y: i32, x: i32) -> f32 {
    if (y < 0 || x < 0 || y >= i32(p.h) || x >= i32(p.w)) {
        return 0.0;
    }
    let s = (u32(y) * p.w + u32(x)) * p.channels + c;
    if (p.bits == 8u) {
        return f32((src[s / 4u] >> ((s % 4u) * 8u)) & 0xffu) / 255.0;
    }
    return f32((src[s / 2u] >> ((s % 2u) * 16u)) & 0xffffu) / 65535.0;
}

fn store(c: u32, y: u32, x: u32, v: f32) {
    let s = (y * p.w * 4u + x) * p.channels + c;
    if (p.bits == 8u) {
        let q = u32(floor(clamp(v, 0.0, 1.0) * 255.0 + 0.5));
        atomicOr(&dst[s / 4u], q << ((s % 4u) * 8u));
    } else {
        let q = u32(floor(clamp(v, 0.0, 1.0) * 65535.0 + 0.5));
        atomicOr(&dst[s / 2u], q << ((s % 2u) * 16u));
    }
}

// Layers 1-2 of a stage (weights at `o`) at the centre of a 5x5 window
// whose top-left value is `at` in tin (stage 1) or inter (stage 2).
fn layers12(o: u32, stage2: bool, at: u32, side: u32) -> vec4<f32> {
    var m = vec4<f32>(wts[o + B2], wts[o + B2 + 1u], wts[o + B2 + 2u], wts[o + B2 + 3u]);
    for (var k = 0u; k < 16u; k++) {
        var acc = wts[o + B1 + k];
        for (var u = 0u; u < 5u; u++) {
            for (var v = 0u; v < 5u; v++) {
                let i = at + u * side + v;
                var x: f32;
                if (stage2) {
                    x = inter[i];
                } else {
                    x = tin[i];
                }
                acc += wts[o + W1 + k * 25u + u * 5u + v] * x;
            }
        }
        let a = prelu(acc, wts[o + A1 + k]);
        m += vec4<f32>(wts[o + W2 + k], wts[o + W2 + 16u + k], wts[o + W2 + 32u + k], wts[o + W2 + 48u + k]) * a;
    }
    return vec4<f32>(prelu(m.x, wts[o + A2]), prelu(m.y, wts[o + A2 + 1u]), prelu(m.z, wts[o + A2 + 2u]), prelu(m.w, wts[o + A2 + 3u]));
}

// Layers 3-4 of a stage at the centre of a 5x5 window of its 4-channel
// layer-2 region (top-left `at`, plane `plane`, row `side`): the 2x2
// shuffled outputs (row-major).
fn layers34(o: u32, stage2: bool, at: u32, side: u32, plane: u32) -> vec4<f32> {
    var z = vec4<f32>(wts[o + B4], wts[o + B4 + 1u], wts[o + B4 + 2u], wts[o + B4 + 3u]);
    for (var k = 0u; k < 8u; k++) {
        var acc = wts[o + B3 + k];
        for (var ch = 0u; ch < 4u; ch++) {
            for (var u = 0u; u < 5u; u++) {
                for (var v = 0u; v < 5u; v++) {
                    let i = ch * plane + at + u * side + v;
                    var x: f32;
                    if (stage2) {
                        x = mid2[i];
                    } else {
                        x = mid1[i];
                    }
                    acc += wts[o + W3 + (k * 4u + ch) * 25u + u * 5u + v] * x;
                }
            }
        }
        let a = prelu(acc, wts[o + A3 + k]);
        z += vec4<f32>(wts[o + W4 + k], wts[o + W4 + 8u + k], wts[o + W4 + 16u + k], wts[o + W4 + 24u + k]) * a;
    }
    return z;
}

@compute @workgroup_size(WG, WG, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let ty0 = i32(wid.y * WG);
    let tx0 = i32(wid.x * WG);
    let ih = i32(p.h) * 2;   // intermediate image
    let iw = i32(p.w) * 2;
    for (var c = 0u; c < p.colour; c++) {
        workgroupBarrier();
        // A. Input rows ty0-6 .. ty0+13.
        for (var i = li; i < RIN * RIN; i += WG * WG) {
            tin[i] = load(c, ty0 - 6 + i32(i / RIN), tx0 - 6 + i32(i % RIN));
        }
        workgroupBarrier();
        // B. Stage 1 layers 1-2 at inputs ty0-4 .. ty0+11.
        for (var i = li; i < RM1 * RM1; i += WG * WG) {
            let my = i / RM1;
            let mx = i % RM1;
            let gy = ty0 - 4 + i32(my);
            let gx = tx0 - 4 + i32(mx);
            var m = vec4<f32>(0.0);
            if (gy >= 0 && gx >= 0 && gy < i32(p.h) && gx < i32(p.w)) {
                m = layers12(0u, false, my * RIN + mx, RIN);
            }
            mid1[i] = m.x;
            mid1[256u + i] = m.y;
            mid1[512u + i] = m.z;
            mid1[768u + i] = m.w;
        }
        workgroupBarrier();
        // C. Stage 1 layers 3-4 at inputs ty0-2 .. ty0+9: intermediate
        // pixels 2 * (ty0 - 2) .. 2 * (ty0 + 10) - 1.
        for (var i = li; i < 144u; i += WG * WG) {
            let ry = i / 12u;
            let rx = i % 12u;
            let gy = ty0 - 2 + i32(ry);
            let gx = tx0 - 2 + i32(rx);
            var z = vec4<f32>(0.0);
            if (gy >= 0 && gx >= 0 && gy < i32(p.h) && gx < i32(p.w)) {
                z = layers34(0u, false, ry * RM1 + rx, RM1, 256u);
            }
            let at = ry * 2u * RI + rx * 2u;
            inter[at] = z.x;
            inter[at + 1u] = z.y;
            inter[at + RI] = z.z;
            inter[at + RI + 1u] = z.w;
        }
        workgroupBarrier();
        // D. Stage 2 layers 1-2 at intermediate pixels 2*ty0-2 .. 2*ty0+17.
        for (var i = li; i < RM2 * RM2; i += WG * WG) {
            let my = i / RM2;
            let mx = i % RM2;
            let gy = 2 * ty0 - 2 + i32(my);
            let gx = 2 * tx0 - 2 + i32(mx);
            var m = vec4<f32>(0.0);
            if (gy >= 0 && gx >= 0 && gy < ih && gx < iw) {
                m = layers12(NW, true, my * RI + mx, RI);
            }
            mid2[i] = m.x;
            mid2[400u + i] = m.y;
            mid2[800u + i] = m.z;
            mid2[1200u + i] = m.w;
        }
        workgroupBarrier();
        // E. Stage 2 layers 3-4 for the tile's intermediate pixels.
        for (var i = li; i < 256u; i += WG * WG) {
            let ry = i / 16u;
            let rx = i % 16u;
            let gy = 2u * u32(ty0) + ry;
            let gx = 2u * u32(tx0) + rx;
            if (gy < u32(ih) && gx < u32(iw)) {
                let z = layers34(NW, true, ry * RM2 + rx, RM2, 400u);
                store(c, gy * 2u, gx * 2u, z.x);
                store(c, gy * 2u, gx * 2u + 1u, z.y);
                store(c, gy * 2u + 1u, gx * 2u, z.z);
                store(c, gy * 2u + 1u, gx * 2u + 1u, z.w);
            }
        }
    }
}
