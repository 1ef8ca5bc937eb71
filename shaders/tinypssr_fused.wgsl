// tinypssr_fused: one whole TinyPSSR x2 stage in one dispatch (Kim et al.'s
// TinyPSSR, ../shared/SCIENCE.md): conv 5x5 1->16, PReLU, conv 1x1 16->4, PReLU,
// conv 5x5 4->8, PReLU, conv 1x1 8->4, pixel shuffle x2; zero "same" padding.
//
// A workgroup owns an 8x8 tile of input pixels and loops over the colour
// channels. Per channel it loads the 16x16 input tile (halo 4) into workgroup
// memory, computes layers 1-2 for the 12x12 region (halo 2) into workgroup
// memory (zero outside the image: layer 3's padding), then each invocation
// computes layers 3-4 for its pixel and writes its 2x2 output pixels.
// Weights (1,356 floats) are staged in workgroup memory once per workgroup.
//
// Input: packed interleaved u8/u16 samples (in_mode 0) or f32 planes (1).
// Output: packed interleaved samples set with atomicOr into a zeroed buffer
// (out_mode 0; one byte or half-word each, so neighbours never clash), or
// f32 planes (1). x4 runs both stages in one dispatch (tinypssr_x4_fused.wgsl).
// CPU twin: TinyPssr::forward_cpu (src/models/tinypssr.rs), the layer-by-layer path.
//
// bindings: 0 uniform Params | 1 input words | 2 weights (flat, see OFFSETS) | 3 output words (atomic)
// dispatch: (ceil(w/8), ceil(h/8), 1)

struct Params {
    w: u32,           // input width
    h: u32,           // input height
    channels: u32,    // samples per pixel in packed input/output (1-4)
    colour: u32,      // channels to run through the network (first `colour`)
    bits: u32,        // 8 or 16 (packed modes)
    in_mode: u32,     // 0 packed, 1 f32 planes
    out_mode: u32,    // 0 packed, 1 f32 planes
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<atomic<u32>>;

const WG: u32 = 8u;
const TIN: u32 = 16u;   // input tile side: 8 + 2 * 4
const TMID: u32 = 12u;  // layer-2 tile side: 8 + 2 * 2
const NW: u32 = 1356u;
// Offsets of the flat weights.
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

var<workgroup> wts: array<f32, 1356>;
var<workgroup> tin: array<f32, 256>;
var<workgroup> mid: array<f32, 576>;  // 4 channels x 12 x 12

fn prelu(v: f32, a: f32) -> f32 {
    return select(a * v, v, v >= 0.0);
}

fn load(c: u32, y: i32, x: i32) -> f32 {
    if (y < 0 || x < 0 || y >= i32(p.h) || x >= i32(p.w)) {
        return 0.0;
    }
    let pix = u32(y) * p.w + u32(x);
    if (p.in_mode == 1u) {
        return bitcast<f32>(src[c * p.w * p.h + pix]);
    }
    let s = pix * p.channels + c;
    if (p.bits == 8u) {
        return f32((src[s / 4u] >> ((s % 4u) * 8u)) & 0xffu) / 255.0;
    }
    return f32((src[s / 2u] >> ((s % 2u) * 16u)) & 0xffffu) / 65535.0;
}

fn store(c: u32, y: u32, x: u32, v: f32) {
    let ow = p.w * 2u;
    let pix = y * ow + x;
    if (p.out_mode == 1u) {
        atomicStore(&dst[c * ow * p.h * 2u + pix], bitcast<u32>(v));
        return;
    }
    let s = pix * p.channels + c;
    if (p.bits == 8u) {
        let q = u32(floor(clamp(v, 0.0, 1.0) * 255.0 + 0.5));
        atomicOr(&dst[s / 4u], q << ((s % 4u) * 8u));
    } else {
        let q = u32(floor(clamp(v, 0.0, 1.0) * 65535.0 + 0.5));
        atomicOr(&dst[s / 2u], q << ((s % 2u) * 16u));
    }
}

@compute @workgroup_size(WG, WG, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    for (var i = li; i < NW; i += WG * WG) {
        wts[i] = weights[i];
    }
    let ty0 = i32(wid.y * WG);
    let tx0 = i32(wid.x * WG);
    let oy = u32(ty0) + lid.y;
    let ox = u32(tx0) + lid.x;
    for (var c = 0u; c < p.colour; c++) {
        workgroupBarrier();
        // Input tile with a halo of 4.
        for (var i = li; i < TIN * TIN; i += WG * WG) {
            tin[i] = load(c, ty0 - 4 + i32(i / TIN), tx0 - 4 + i32(i % TIN));
        }
        workgroupBarrier();
        // Layers 1-2 over the 12x12 region (halo 2).
        for (var i = li; i < TMID * TMID; i += WG * WG) {
            let my = i / TMID;
            let mx = i % TMID;
            let gy = ty0 - 2 + i32(my);
            let gx = tx0 - 2 + i32(mx);
            var m = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
            if (gy >= 0 && gx >= 0 && gy < i32(p.h) && gx < i32(p.w)) {
                for (var k = 0u; k < 4u; k++) {
                    m[k] = wts[B2 + k];
                }
                for (var o = 0u; o < 16u; o++) {
                    var acc = wts[B1 + o];
                    for (var u = 0u; u < 5u; u++) {
                        for (var v = 0u; v < 5u; v++) {
                            acc += wts[W1 + o * 25u + u * 5u + v] * tin[(my + u) * TIN + mx + v];
                        }
                    }
                    let a = prelu(acc, wts[A1 + o]);
                    for (var k = 0u; k < 4u; k++) {
                        m[k] += wts[W2 + k * 16u + o] * a;
                    }
                }
                for (var k = 0u; k < 4u; k++) {
                    m[k] = prelu(m[k], wts[A2 + k]);
                }
            }
            for (var k = 0u; k < 4u; k++) {
                mid[k * TMID * TMID + i] = m[k];
            }
        }
        workgroupBarrier();
        if (oy < p.h && ox < p.w) {
            // Layers 3-4 for this pixel, then the 2x2 shuffle.
            var z = array<f32, 4>(wts[B4], wts[B4 + 1u], wts[B4 + 2u], wts[B4 + 3u]);
            for (var o = 0u; o < 8u; o++) {
                var acc = wts[B3 + o];
                for (var k = 0u; k < 4u; k++) {
                    for (var u = 0u; u < 5u; u++) {
                        for (var v = 0u; v < 5u; v++) {
                            acc += wts[W3 + (o * 4u + k) * 25u + u * 5u + v] * mid[k * TMID * TMID + (lid.y + u) * TMID + lid.x + v];
                        }
                    }
                }
                let a = prelu(acc, wts[A3 + o]);
                for (var q = 0u; q < 4u; q++) {
                    z[q] += wts[W4 + q * 8u + o] * a;
                }
            }
            for (var q = 0u; q < 4u; q++) {
                store(c, oy * 2u + q / 2u, ox * 2u + q % 2u, z[q]);
            }
        }
    }
}
