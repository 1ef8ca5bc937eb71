// unpack_pixels: interleaved u8 or u16 samples -> planar f32 in [0, 1].
//
//   y[b, c, k] = s[(b*P + k)*C + c] / (2^bits - 1)      (P pixels per image, N images back to back)
// Samples travel across the bus packed (4 u8 or 2 little-endian u16 per u32 word)
// and are unpacked here: never f32 planes over the bus.
// CPU twin: src/kernels/unpack_pixels.rs (UnpackPixels::cpu).
//
// bindings: 0 uniform Params | 1 s (packed words) | 2 y (N, C, pixels)
// dispatch: gpu::linear_groups(N * pixels, 256)

struct Params {
    pixels: u32,
    channels: u32,
    bits: u32,
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> s: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;

fn sample(k: u32) -> f32 {
    if (p.bits == 8u) {
        return f32((s[k / 4u] >> ((k % 4u) * 8u)) & 0xffu) / 255.0;
    }
    return f32((s[k / 2u] >> ((k % 2u) * 16u)) & 0xffffu) / 65535.0;
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_index(gid, nwg, WG);
    if (k >= p.n * p.pixels) {
        return;
    }
    let b = k / p.pixels;
    let kk = k % p.pixels;
    for (var c = 0u; c < p.channels; c++) {
        y[(b * p.channels + c) * p.pixels + kk] = sample(k * p.channels + c);
    }
}
