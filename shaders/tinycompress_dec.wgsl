// tinycompress_dec: one whole TinyCompress decoding block in one dispatch
// (seed 003, ../shared/SCIENCE.md): conv 3x3 3->12, PReLU, pixel shuffle 2
// (12 -> 3), conv 5x5 3->9, PReLU, conv 1x1 9->3, sigmoid; zero "same"
// padding at each convolution's own resolution.
//
// A workgroup owns a 16x16 tile of output pixels (8x8 inputs). It loads the
// 12x12 input region (halo 1 around the 10x10 inputs whose shuffled pixels
// the 5x5 convolution reads) into workgroup memory, computes layer 1 over
// the 10x10 inputs (zero outside the image: the 5x5 convolution's padding
// after the shuffle), then each invocation computes layers 2-3 for a 2x2
// block of output pixels.
//
// Input: f32 planes (3, h, w) (in_mode 1), or, for the codec's first
// block, the latent codes themselves (in_mode 0): planar u8 codes, 4 to a
// word, dequantised as they load: lo[c] + (hi[c] - lo[c]) * q / top
// (codec::dequantise). Output: f32 planes (3, 2h, 2w) (out_mode 1),
// or, for the codec's last block, the image itself (out_mode 0): the pixels
// `margin`..`margin + img_h` x `margin`..`margin + img_w` as packed 8-bit
// RGB, set with atomicOr into a zeroed buffer (one byte each); or (out_mode
// 2) those pixels as packed RGBA of `out_bits` (8 or 16) bits a sample with
// alpha opaque, the texels of embed::Codec's destination.
// CPU twin: src/kernels/tinycompress_dec.rs (TinyCompressDec::cpu).
//
// bindings: 0 uniform Params | 1 input planes or codes | 2 weights (Net::flatten of one block, 1,071) | 3 output (atomic words)
// dispatch: (ceil(w/8), ceil(h/8), 1)

struct Params {
    w: u32,        // input width
    h: u32,        // input height
    out_mode: u32, // 0 packed 8-bit RGB (cropped), 1 f32 planes, 2 packed RGBA (cropped)
    margin: u32,   // packed: pixels cropped before the image
    img_w: u32,    // packed: the image's size
    img_h: u32,
    in_mode: u32,  // 0 u8 codes, 1 f32 planes
    top: f32,      // codes: 2^bits - 1
    lo0: f32,      // codes: each channel's range
    hi0: f32,
    lo1: f32,
    hi1: f32,
    lo2: f32,
    hi2: f32,
    out_bits: u32, // out_mode 2: bits per sample, 8 or 16
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read> wts: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<atomic<u32>>;

const WG: u32 = 64u;
const T: u32 = 8u;      // input tile side
const RE: u32 = 10u;    // layer-1 region side: T + 2
const RL: u32 = 12u;    // input region side: RE + 2
// Offsets of the flat weights.
const W1: u32 = 0u;     // 12 x 3 x 3 x 3
const B1: u32 = 324u;
const A1: u32 = 336u;
const W2: u32 = 348u;   // 9 x 3 x 5 x 5
const B2: u32 = 1023u;
const A2: u32 = 1032u;
const W3: u32 = 1041u;  // 3 x 9
const B3: u32 = 1068u;

var<workgroup> ls: array<f32, 432>;   // 3 x 12 x 12
var<workgroup> es: array<f32, 1200>;  // 12 x 10 x 10

// Input value c at (y, x), inside the latents.
fn load(c: u32, y: u32, x: u32) -> f32 {
    let k = (c * p.h + y) * p.w + x;
    if (p.in_mode == 1u) {
        return bitcast<f32>(src[k]);
    }
    let q = f32((src[k / 4u] >> ((k % 4u) * 8u)) & 0xffu);
    var lo = p.lo0;
    var hi = p.hi0;
    if (c == 1u) {
        lo = p.lo1;
        hi = p.hi1;
    } else if (c == 2u) {
        lo = p.lo2;
        hi = p.hi2;
    }
    return lo + (hi - lo) * q / p.top;
}

fn prelu(v: f32, a: f32) -> f32 {
    return select(a * v, v, v >= 0.0);
}

// Shuffled channel c at full-resolution region position (sy, sx) (the
// region starts one input, two pixels, before the tile).
fn shuffled(c: u32, sy: u32, sx: u32) -> f32 {
    return es[((c * 4u + (sy % 2u) * 2u + sx % 2u) * RE + sy / 2u) * RE + sx / 2u];
}

fn store(c: u32, y: u32, x: u32, v: f32) {
    let ow = p.w * 2u;
    if (p.out_mode == 1u) {
        atomicStore(&dst[(c * p.h * 2u + y) * ow + x], bitcast<u32>(v));
        return;
    }
    if (y < p.margin || x < p.margin || y >= p.margin + p.img_h || x >= p.margin + p.img_w) {
        return;
    }
    let px = (y - p.margin) * p.img_w + x - p.margin;
    if (p.out_mode == 2u) {
        // RGBA: sample 4 px + c of out_bits bits; channel 0's store also sets alpha.
        let top = select(255.0, 65535.0, p.out_bits == 16u);
        let per = 32u / p.out_bits;
        let s = px * 4u + c;
        let q = u32(floor(clamp(v, 0.0, 1.0) * top + 0.5));
        atomicOr(&dst[s / per], q << ((s % per) * p.out_bits));
        if (c == 0u) {
            let a = px * 4u + 3u;
            atomicOr(&dst[a / per], u32(top) << ((a % per) * p.out_bits));
        }
        return;
    }
    let s = px * 3u + c;
    let q = u32(floor(clamp(v, 0.0, 1.0) * 255.0 + 0.5));
    atomicOr(&dst[s / 4u], q << ((s % 4u) * 8u));
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let ty0 = i32(wid.y * T);
    let tx0 = i32(wid.x * T);
    for (var i = li; i < 3u * RL * RL; i += WG) {
        let c = i / (RL * RL);
        let r = i % (RL * RL);
        let y = ty0 - 2 + i32(r / RL);
        let x = tx0 - 2 + i32(r % RL);
        var v = 0.0;
        if (y >= 0 && x >= 0 && y < i32(p.h) && x < i32(p.w)) {
            v = load(c, u32(y), u32(x));
        }
        ls[i] = v;
    }
    workgroupBarrier();
    // Layer 1 over the 10x10 inputs from ty0 - 1.
    for (var i = li; i < RE * RE; i += WG) {
        let ry = i / RE;
        let rx = i % RE;
        let gy = ty0 - 1 + i32(ry);
        let gx = tx0 - 1 + i32(rx);
        let inside = gy >= 0 && gx >= 0 && gy < i32(p.h) && gx < i32(p.w);
        for (var o = 0u; o < 12u; o++) {
            var e = 0.0;
            if (inside) {
                var acc = wts[B1 + o];
                for (var c = 0u; c < 3u; c++) {
                    for (var u = 0u; u < 3u; u++) {
                        for (var v = 0u; v < 3u; v++) {
                            acc += wts[W1 + ((o * 3u + c) * 3u + u) * 3u + v] * ls[(c * RL + ry + u) * RL + rx + v];
                        }
                    }
                }
                e = prelu(acc, wts[A1 + o]);
            }
            es[o * RE * RE + i] = e;
        }
    }
    workgroupBarrier();
    // Layers 2-3 for the 2x2 output pixels of input (ty0 + li / 8, tx0 + li % 8).
    let iy = u32(ty0) + li / T;
    let ix = u32(tx0) + li % T;
    if (iy >= p.h || ix >= p.w) {
        return;
    }
    for (var q = 0u; q < 4u; q++) {
        // Output pixel in the tile, and in the region (2 pixels of halo).
        let oy = (li / T) * 2u + q / 2u;
        let ox = (li % T) * 2u + q % 2u;
        var out = vec3<f32>(wts[B3], wts[B3 + 1u], wts[B3 + 2u]);
        for (var o = 0u; o < 9u; o++) {
            var acc = wts[B2 + o];
            for (var c = 0u; c < 3u; c++) {
                for (var u = 0u; u < 5u; u++) {
                    for (var v = 0u; v < 5u; v++) {
                        acc += wts[W2 + ((o * 3u + c) * 5u + u) * 5u + v] * shuffled(c, oy + u, ox + v);
                    }
                }
            }
            let f = prelu(acc, wts[A2 + o]);
            out += vec3<f32>(wts[W3 + o], wts[W3 + 9u + o], wts[W3 + 18u + o]) * f;
        }
        let y = iy * 2u + q / 2u;
        let x = ix * 2u + q % 2u;
        store(0u, y, x, 1.0 / (1.0 + exp(-out.x)));
        store(1u, y, x, 1.0 / (1.0 + exp(-out.y)));
        store(2u, y, x, 1.0 / (1.0 + exp(-out.z)));
    }
}
