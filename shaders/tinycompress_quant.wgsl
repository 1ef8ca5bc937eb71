// tinycompress_quant: the codec's latent quantisation on the GPU (seed 003,
// ../shared/SCIENCE.md; codec::quantise on the CPU): per channel, the
// latents min-max normalised to 0..=255 and rounded, then cut to `bits`
// bit planes: code = min((u * top + 127) / 255, top), top = 2^bits - 1.
//
// The channel ranges come from the codec's last encoding block
// (tinycompress_enc with ranges on), which leaves after the 3 latent
// planes six order-preserving keys gathered with atomicMax: the key of
// each channel's largest value, then the complement of the key of each
// channel's smallest (so one atomicMax serves both). This kernel turns them
// back into floats.
//
// Input: the latents (3 planes of `plane` f32) followed by the six keys.
// Output: bytes, 4 to a word: the six ranges as f32 (lo0, hi0, lo1, hi1,
// lo2, hi2), then the 3 * plane codes in planar order, the tail zero. One
// invocation writes one word.
// CPU twin: src/kernels/tinycompress_quant.rs (TinyCompressQuant::cpu,
// the arithmetic of codec::quantise).
//
// bindings: 0 uniform Params | 1 latents and keys | 2 ranges and codes
// dispatch: gpu::linear_groups(words, 256)

struct Params {
    plane: u32,  // latents per channel
    top: u32,    // 2^bits - 1
    words: u32,  // output words: 6 + ceil(3 * plane / 4)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

const WG: u32 = 256u;

// The float whose order key (tinycompress_enc's `key`) is `k`.
fn unkey(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

fn finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

// Channel c's (minimum, maximum); (0, 0) unless both are finite.
fn range(c: u32) -> vec2<f32> {
    let r = vec2<f32>(unkey(~src[3u * p.plane + 3u + c]), unkey(src[3u * p.plane + c]));
    return select(vec2<f32>(0.0), r, finite(r.x) && finite(r.y));
}

fn code(k: u32) -> u32 {
    if (k >= 3u * p.plane) {
        return 0u;
    }
    let r = range(k / p.plane);
    let l = r.x;
    let span = r.y - l;
    if (!(span > 0.0)) {
        return 0u;
    }
    let x = bitcast<f32>(src[k]);
    let u = u32(clamp(floor((x - l) / span * 255.0 + 0.5), 0.0, 255.0));
    return min((u * p.top + 127u) / 255u, p.top);
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let wi = linear_index(gid, nwg, WG);
    if (wi >= p.words) {
        return;
    }
    if (wi < 6u) {
        let r = range(wi / 2u);
        dst[wi] = bitcast<u32>(select(r.y, r.x, wi % 2u == 0u));
        return;
    }
    let k = (wi - 6u) * 4u;
    dst[wi] = code(k) | (code(k + 1u) << 8u) | (code(k + 2u) << 16u) | (code(k + 3u) << 24u);
}
