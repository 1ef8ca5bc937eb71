// pack_pixels: planar f32 -> interleaved u8 or u16 samples, rounded and clamped.
//
//   s[(b*P + k)*C + c] = floor(clamp(x[b, c, k], 0, 1) * (2^bits - 1) + 0.5)   (P pixels per image)
// One invocation writes one u32 word (4 u8 or 2 u16 samples), so no two
// invocations touch the same word. Words past the last sample are zero.
// CPU twin: src/kernels/pack_pixels.rs (PackPixels::cpu).
//
// bindings: 0 uniform Params | 1 x (N, C, pixels) | 2 s (packed words)
// dispatch: gpu::linear_groups(words, 256)

struct Params {
    pixels: u32,
    channels: u32,
    bits: u32,
    words: u32,
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> s: array<u32>;

const WG: u32 = 256u;

fn quantise(k: u32, maxv: f32) -> u32 {
    if (k >= p.n * p.pixels * p.channels) {
        return 0u;
    }
    let pix = k / p.channels;
    let v = x[((pix / p.pixels) * p.channels + k % p.channels) * p.pixels + pix % p.pixels];
    return u32(floor(clamp(v, 0.0, 1.0) * maxv + 0.5));
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let wi = linear_index(gid, nwg, WG);
    if (wi >= p.words) {
        return;
    }
    var word = 0u;
    if (p.bits == 8u) {
        for (var q = 0u; q < 4u; q++) {
            word |= quantise(wi * 4u + q, 255.0) << (q * 8u);
        }
    } else {
        for (var q = 0u; q < 2u; q++) {
            word |= quantise(wi * 2u + q, 65535.0) << (q * 16u);
        }
    }
    s[wi] = word;
}
