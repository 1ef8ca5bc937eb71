// zero_dce_net: the whole DCE-Net (Zero-DCE or Zero-DCE++, ../shared/SCIENCE.md)
// from packed pixels to curve maps, each layer's convolutions and activation
// fused: Zero-DCE++'s depthwise 3x3 feeds its pointwise 1x1 in registers,
// Zero-DCE's dense 3x3 keeps 32 output channels per invocation.
//
//   layer l: x_{l+1} = relu(conv_l(in_l)) (l < 6), maps = tanh(conv_6(in_6))
//   in_0 = the image downscaled to h x w (bilinear, align_corners = false,
//   read straight from the packed samples; or f32 planes already at h x w),
//   in_1..3 = x_1..x_3, in_4 = cat(x_3, x_4), in_5 = cat(x_2, x_5),
//   in_6 = cat(x_1, x_6); zero "same" padding at the image border.
//
// Two modes over the same per-pixel layer code:
// - fused (p.fused = 1): ONE dispatch for all seven layers. A workgroup owns
//   a TILE x TILE tile of maps and recomputes its receptive field: layer l
//   runs over the tile grown by 6 - l pixels (halo recomputed), its x_{l+1}
//   kept in the workgroup's own region of `feat` (6 sets x 32 planes of
//   (TILE + 12)^2 values, L2-resident on a GPU), storageBarrier between layers.
//   For small networks (Zero-DCE++ runs at about 100x75).
// - layered (p.fused = 0): one dispatch per layer (p.layer) over the whole
//   image, `feat` holding x_1..x_6 as full planes. For large networks.
//
// Weights: ZeroDce::flat's order, per layer [depthwise w (cin x 9), b (cin),]
// main w (cout x cin x k x k), b (cout).
// CPU twin: ZeroDce::maps_cpu after the unpack and downscale
// (src/kernels/zero_dce_net.rs, ZeroDceNet::cpu).
//
// bindings: 0 uniform Params | 1 input (packed words, or f32 planes 3 x h x w) | 2 weights | 3 feat (scratch) | 4 maps (maps x h x w)
// dispatch: (ceil(w / TILE), ceil(h / TILE), 1), TILE = p.tile

struct Params {
    h: u32,          // network height (the maps')
    w: u32,          // network width
    plus: u32,       // 1 Zero-DCE++ (depthwise + pointwise), 0 Zero-DCE (dense 3x3)
    maps: u32,       // output channels of the last layer (3 or 24)
    in_mode: u32,    // 0 packed samples of the full image, 1 f32 planes at h x w
    img_h: u32,      // packed: full image size
    img_w: u32,
    channels: u32,   // packed: samples per pixel (3 or 4; the first 3 are read)
    bits: u32,       // packed: 8 or 16
    scale_h: f32,    // packed: downscale scales (img / net), align_corners = false
    scale_w: f32,
    fused: u32,      // 1: all layers, halo recomputed; 0: layer `layer` only
    layer: u32,
    tile: u32,       // tile side (fused: region side tile + 12)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read> wts: array<f32>;
@group(0) @binding(3) var<storage, read_write> feat: array<f32>;
@group(0) @binding(4) var<storage, read_write> maps: array<f32>;

const WG: u32 = 64u;
const WIDTH: u32 = 32u;
const HALO: u32 = 6u;

// Where this workgroup's features live: origin of the stored region in image
// coordinates, its side (row stride), and the first value.
var<private> origin_y: i32;
var<private> origin_x: i32;
var<private> rw: u32;
var<private> rh: u32;
var<private> base: u32;

fn cin(l: u32) -> u32 {
    if (l == 0u) {
        return 3u;
    }
    if (l < 4u) {
        return WIDTH;
    }
    return 2u * WIDTH;
}

fn cout(l: u32) -> u32 {
    return select(WIDTH, p.maps, l == 6u);
}

fn layer_len(l: u32) -> u32 {
    let ci = cin(l);
    let co = cout(l);
    if (p.plus == 1u) {
        return ci * 9u + ci + co * ci + co;
    }
    return co * ci * 9u + co;
}

fn weight_offset(l: u32) -> u32 {
    var o = 0u;
    for (var k = 0u; k < l; k++) {
        o += layer_len(k);
    }
    return o;
}

// One sample of the packed image, in [0, 1].
fn packed(c: u32, y: u32, x: u32) -> f32 {
    let s = (y * p.img_w + x) * p.channels + c;
    if (p.bits == 8u) {
        return f32((src[s / 4u] >> ((s % 4u) * 8u)) & 0xffu) / 255.0;
    }
    return f32((src[s / 2u] >> ((s % 2u) * 16u)) & 0xffffu) / 65535.0;
}

// in_0 at network pixel (y, x), inside the image.
fn image(c: u32, y: u32, x: u32) -> f32 {
    if (p.in_mode == 1u) {
        return bitcast<f32>(src[(c * p.h + y) * p.w + x]);
    }
    let ty = bilinear_tap(y, p.img_h, p.h, p.scale_h, false);
    let tx = bilinear_tap(x, p.img_w, p.w, p.scale_w, false);
    let top = tx.l0 * packed(c, ty.i0, tx.i0) + tx.l1 * packed(c, ty.i0, tx.i1);
    let bot = tx.l0 * packed(c, ty.i1, tx.i0) + tx.l1 * packed(c, ty.i1, tx.i1);
    return ty.l0 * top + ty.l1 * bot;
}

fn feat_index(fset: u32, c: u32, y: i32, x: i32) -> u32 {
    return base + ((fset * WIDTH + c) * rh + u32(y - origin_y)) * rw + u32(x - origin_x);
}

// Input channel c of layer l at (y, x); zero outside the image.
fn input(l: u32, c: u32, y: i32, x: i32) -> f32 {
    if (y < 0 || x < 0 || y >= i32(p.h) || x >= i32(p.w)) {
        return 0.0;
    }
    if (l == 0u) {
        return image(c, u32(y), u32(x));
    }
    // The feature fset (x_{fset+1}) channel c reads.
    var fset = l - 1u;
    var cc = c;
    if (l >= 4u) {
        let second = c >= WIDTH;
        cc = c % WIDTH;
        if (l == 4u) {
            fset = select(2u, 3u, second);
        } else if (l == 5u) {
            fset = select(1u, 4u, second);
        } else {
            fset = select(0u, 5u, second);
        }
    }
    return feat[feat_index(fset, cc, y, x)];
}

// Weights of outputs o..o+3 at wts[at + o * stride], zero past `co`.
fn w4(at: u32, stride: u32, o: u32, co: u32) -> vec4<f32> {
    if (o + 4u <= co) {
        return vec4<f32>(wts[at + o * stride], wts[at + (o + 1u) * stride], wts[at + (o + 2u) * stride], wts[at + (o + 3u) * stride]);
    }
    var r = vec4<f32>(0.0);
    for (var q = 0u; q < 4u; q++) {
        if (o + q < co) {
            r[q] = wts[at + (o + q) * stride];
        }
    }
    return r;
}

// Layer l at (y, x) inside the image: stores x_{l+1} or the maps. The 32
// output sums live in eight vec4 registers (a0..a7), never in an array.
fn layer_pixel(l: u32, y: i32, x: i32) {
    let ci = cin(l);
    let co = cout(l);
    let wo = weight_offset(l);
    // Bias, then per input the weights of all outputs: at, stride.
    var bias_at: u32;
    var stride: u32;
    if (p.plus == 1u) {
        bias_at = wo + ci * 10u + co * ci;
        stride = ci;
    } else {
        bias_at = wo + co * ci * 9u;
        stride = ci * 9u;
    }
    var a0 = w4(bias_at, 1u, 0u, co);
    var a1 = w4(bias_at, 1u, 4u, co);
    var a2 = w4(bias_at, 1u, 8u, co);
    var a3 = w4(bias_at, 1u, 12u, co);
    var a4 = w4(bias_at, 1u, 16u, co);
    var a5 = w4(bias_at, 1u, 20u, co);
    var a6 = w4(bias_at, 1u, 24u, co);
    var a7 = w4(bias_at, 1u, 28u, co);
    // Per input channel: Zero-DCE++ one depthwise value, Zero-DCE nine taps.
    let steps = select(9u, 1u, p.plus == 1u);
    for (var c = 0u; c < ci; c++) {
        for (var k = 0u; k < steps; k++) {
            var v: f32;
            var at: u32;
            if (p.plus == 1u) {
                // Depthwise 3x3 of channel c, straight into the pointwise sums.
                v = wts[wo + ci * 9u + c];
                for (var t = 0u; t < 9u; t++) {
                    v += wts[wo + c * 9u + t] * input(l, c, y + i32(t / 3u) - 1, x + i32(t % 3u) - 1);
                }
                at = wo + ci * 10u + c;
            } else {
                v = input(l, c, y + i32(k / 3u) - 1, x + i32(k % 3u) - 1);
                at = wo + c * 9u + k;
            }
            a0 += w4(at, stride, 0u, co) * v;
            a1 += w4(at, stride, 4u, co) * v;
            a2 += w4(at, stride, 8u, co) * v;
            a3 += w4(at, stride, 12u, co) * v;
            a4 += w4(at, stride, 16u, co) * v;
            a5 += w4(at, stride, 20u, co) * v;
            a6 += w4(at, stride, 24u, co) * v;
            a7 += w4(at, stride, 28u, co) * v;
        }
    }
    let acc = array<vec4<f32>, 8>(a0, a1, a2, a3, a4, a5, a6, a7);
    if (l == 6u) {
        let plane = p.h * p.w;
        let px = u32(y) * p.w + u32(x);
        for (var o = 0u; o < co; o++) {
            maps[o * plane + px] = tanh(acc[o / 4u][o % 4u]);
        }
    } else {
        for (var o = 0u; o < co; o++) {
            feat[feat_index(l, o, y, x)] = max(acc[o / 4u][o % 4u], 0.0);
        }
    }
}

// Layer l over the tile at (ty0, tx0) grown by `grow` pixels, clipped to the image.
fn layer_region(l: u32, li: u32, ty0: i32, tx0: i32, grow: i32) {
    let y0 = max(ty0 - grow, 0);
    let x0 = max(tx0 - grow, 0);
    let y1 = min(ty0 + i32(p.tile) + grow, i32(p.h));
    let x1 = min(tx0 + i32(p.tile) + grow, i32(p.w));
    if (y1 <= y0 || x1 <= x0) {
        return;
    }
    let cols = u32(x1 - x0);
    let n = u32(y1 - y0) * cols;
    for (var i = li; i < n; i += WG) {
        layer_pixel(l, y0 + i32(i / cols), x0 + i32(i % cols));
    }
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let ty0 = i32(wid.y * p.tile);
    let tx0 = i32(wid.x * p.tile);
    if (p.fused == 1u) {
        rw = p.tile + 2u * HALO;
        rh = rw;
        origin_y = ty0 - i32(HALO);
        origin_x = tx0 - i32(HALO);
        base = (wid.y * nwg.x + wid.x) * 6u * WIDTH * rw * rh;
        layer_region(0u, li, ty0, tx0, 6);
        storageBarrier();
        layer_region(1u, li, ty0, tx0, 5);
        storageBarrier();
        layer_region(2u, li, ty0, tx0, 4);
        storageBarrier();
        layer_region(3u, li, ty0, tx0, 3);
        storageBarrier();
        layer_region(4u, li, ty0, tx0, 2);
        storageBarrier();
        layer_region(5u, li, ty0, tx0, 1);
        storageBarrier();
        layer_region(6u, li, ty0, tx0, 0);
    } else {
        rw = p.w;
        rh = p.h;
        origin_y = 0;
        origin_x = 0;
        base = 0u;
        layer_region(p.layer, li, ty0, tx0, 0);
    }
}
