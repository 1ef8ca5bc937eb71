// tinycompress_enc: one whole TinyCompress encoding block in one dispatch
// (seed 003, ../shared/SCIENCE.md): conv 9x9 3->15, PReLU, conv 1x1 15->3,
// PReLU, pixel unshuffle 2 (3 -> 12), conv 3x3 12->15, PReLU, conv 1x1
// 15->3, PReLU; zero "same" padding at each convolution's own resolution.
//
// A workgroup owns an 8x8 tile of latents (output pixels, half resolution).
// It loads the 28x28 input region its tile reads (halo 4 around the 20x20
// full-resolution region) into workgroup memory, computes layers 1-2 over
// that 20x20 region (zero outside the image: the 3x3 convolution's padding
// after the unshuffle), then each invocation computes layers 3-4 for its
// latent. Weights come from storage (every invocation reads the same one).
//
// Input: f32 planes (3, h, w), h and w even (in_mode 1), or packed
// interleaved u8/u16 RGB samples of an img_w x img_h image read with
// `margin` pixels of edge replication on every side and up to (w, h) on the
// right and bottom: the codec's padding done as it loads (in_mode 0).
// Output: f32 planes (3, h/2, w/2); with `ranges` on (the codec's last
// block), followed by six order-preserving keys of the latents (see
// tinycompress_quant.wgsl), gathered per workgroup in workgroup atomics
// and then with one atomicMax per key into the buffer's tail, which the
// host clears first: the largest key of each channel, then the complement
// of the smallest. The latents are stored through the same atomic words.
// CPU twin: src/kernels/tinycompress_enc.rs (TinyCompressEnc::cpu; the
// model's layer path, models::tinycompress::Net::forward, gives the same).
//
// bindings: 0 uniform Params | 1 input | 2 weights (Net::flatten of one block, 5,427) | 3 latents (and keys)
// dispatch: (ceil(w/16), ceil(h/16), 1)

struct Params {
    w: u32,        // input width (even)
    h: u32,        // input height (even)
    in_mode: u32,  // 0 packed samples, 1 f32 planes
    bits: u32,     // packed: 8 or 16
    channels: u32, // packed: samples per pixel (3, or 4 for RGBA: alpha unread)
    img_w: u32,    // packed: the image's size
    img_h: u32,
    margin: u32,   // packed: edge-replicated pixels before the image
    ranges: u32,   // 1: gather the channel-range keys after the latents
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read> wts: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<atomic<u32>>;

const WG: u32 = 64u;
const T: u32 = 8u;      // latent tile side
const RB: u32 = 20u;    // layer-2 region side: 2 * (T + 2)
const RX: u32 = 28u;    // input region side: RB + 2 * 4
// Offsets of the flat weights.
const W1: u32 = 0u;     // 15 x 3 x 9 x 9
const B1: u32 = 3645u;
const A1: u32 = 3660u;
const W2: u32 = 3675u;  // 3 x 15
const B2: u32 = 3720u;
const A2: u32 = 3723u;
const W3: u32 = 3726u;  // 15 x 12 x 3 x 3
const B3: u32 = 5346u;
const A3: u32 = 5361u;
const W4: u32 = 5376u;  // 3 x 15
const B4: u32 = 5421u;
const A4: u32 = 5424u;

var<workgroup> xs: array<f32, 2352>;  // 3 x 28 x 28
var<workgroup> bs: array<f32, 1200>;  // 3 x 20 x 20
var<workgroup> wkeys: array<atomic<u32>, 6>;

// Order key: unsigned order of keys is the order of the floats.
fn key(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn note(c: u32, v: f32) {
    let k = key(v);
    atomicMax(&wkeys[c], k);
    atomicMax(&wkeys[3u + c], ~k);
}

fn prelu(v: f32, a: f32) -> f32 {
    return select(a * v, v, v >= 0.0);
}

fn sample(c: u32, y: i32, x: i32) -> f32 {
    if (y < 0 || x < 0 || y >= i32(p.h) || x >= i32(p.w)) {
        return 0.0;
    }
    if (p.in_mode == 1u) {
        return bitcast<f32>(src[(c * p.h + u32(y)) * p.w + u32(x)]);
    }
    let sy = u32(clamp(y - i32(p.margin), 0, i32(p.img_h) - 1));
    let sx = u32(clamp(x - i32(p.margin), 0, i32(p.img_w) - 1));
    let s = (sy * p.img_w + sx) * p.channels + c;
    if (p.bits == 8u) {
        return f32((src[s / 4u] >> ((s % 4u) * 8u)) & 0xffu) / 255.0;
    }
    return f32((src[s / 2u] >> ((s % 2u) * 16u)) & 0xffffu) / 65535.0;
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    // Full-resolution origin of the 20x20 layer-2 region: the tile's
    // latents start at 8 * wid, their 3x3 field one latent (2 pixels) before.
    let by0 = i32(wid.y * 2u * T) - 2;
    let bx0 = i32(wid.x * 2u * T) - 2;
    if (li < 6u) {
        atomicStore(&wkeys[li], 0u);
    }
    for (var i = li; i < 3u * RX * RX; i += WG) {
        let c = i / (RX * RX);
        let r = i % (RX * RX);
        xs[i] = sample(c, by0 - 4 + i32(r / RX), bx0 - 4 + i32(r % RX));
    }
    workgroupBarrier();
    // Layers 1-2 over the 20x20 region.
    for (var i = li; i < RB * RB; i += WG) {
        let ry = i / RB;
        let rx = i % RB;
        let gy = by0 + i32(ry);
        let gx = bx0 + i32(rx);
        var b = vec3<f32>(0.0);
        if (gy >= 0 && gx >= 0 && gy < i32(p.h) && gx < i32(p.w)) {
            b = vec3<f32>(wts[B2], wts[B2 + 1u], wts[B2 + 2u]);
            for (var o = 0u; o < 15u; o++) {
                var acc = wts[B1 + o];
                for (var c = 0u; c < 3u; c++) {
                    for (var u = 0u; u < 9u; u++) {
                        let row = c * RX * RX + (ry + u) * RX + rx;
                        let wr = W1 + ((o * 3u + c) * 9u + u) * 9u;
                        for (var v = 0u; v < 9u; v++) {
                            acc += wts[wr + v] * xs[row + v];
                        }
                    }
                }
                let a = prelu(acc, wts[A1 + o]);
                b += vec3<f32>(wts[W2 + o], wts[W2 + 15u + o], wts[W2 + 30u + o]) * a;
            }
            b = vec3<f32>(prelu(b.x, wts[A2]), prelu(b.y, wts[A2 + 1u]), prelu(b.z, wts[A2 + 2u]));
        }
        bs[i] = b.x;
        bs[RB * RB + i] = b.y;
        bs[2u * RB * RB + i] = b.z;
    }
    workgroupBarrier();
    // Layers 3-4 for this invocation's latent: unshuffled channel
    // c * 4 + dy * 2 + dx at latent (i, j) is b[c][2i + dy][2j + dx].
    let ty = li / T;
    let tx = li % T;
    let ly = wid.y * T + ty;
    let lx = wid.x * T + tx;
    let lh = p.h / 2u;
    let lw = p.w / 2u;
    let plane = lh * lw;
    if (ly < lh && lx < lw) {
        var l = vec3<f32>(wts[B4], wts[B4 + 1u], wts[B4 + 2u]);
        for (var o = 0u; o < 15u; o++) {
            var acc = wts[B3 + o];
            for (var ci = 0u; ci < 12u; ci++) {
                let c = ci / 4u;
                let dy = (ci / 2u) % 2u;
                let dx = ci % 2u;
                for (var u = 0u; u < 3u; u++) {
                    for (var v = 0u; v < 3u; v++) {
                        // Latent (ty + u - 1, tx + v - 1) of the tile; region latent ty + u.
                        let by = (ty + u) * 2u + dy;
                        let bx = (tx + v) * 2u + dx;
                        acc += wts[W3 + ((o * 12u + ci) * 3u + u) * 3u + v] * bs[c * RB * RB + by * RB + bx];
                    }
                }
            }
            let d = prelu(acc, wts[A3 + o]);
            l += vec3<f32>(wts[W4 + o], wts[W4 + 15u + o], wts[W4 + 30u + o]) * d;
        }
        let at = ly * lw + lx;
        let l0 = prelu(l.x, wts[A4]);
        let l1 = prelu(l.y, wts[A4 + 1u]);
        let l2 = prelu(l.z, wts[A4 + 2u]);
        atomicStore(&dst[at], bitcast<u32>(l0));
        atomicStore(&dst[plane + at], bitcast<u32>(l1));
        atomicStore(&dst[2u * plane + at], bitcast<u32>(l2));
        if (p.ranges == 1u) {
            note(0u, l0);
            note(1u, l1);
            note(2u, l2);
        }
    }
    if (p.ranges == 1u) {
        workgroupBarrier();
        if (li < 6u) {
            atomicMax(&dst[3u * plane + li], atomicLoad(&wkeys[li]));
        }
    }
}
