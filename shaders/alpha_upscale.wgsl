// alpha_upscale: the alpha channel of packed pixels upscaled by an integer
// factor f with MATLAB's bicubic imresize (Keys cubic, a = -0.5, symmetric
// border: resample::upscale), written into the alpha samples of an upscaled
// packed image whose colour samples are already there (the fused
// super-resolution kernels leave alpha zero).
//
//   c(i)  = (i + 0.5) / f - 0.5                        (source centre of output index i,
//           computed as i / f + ((i mod f) + 0.5) / f - 0.5)
//   a'[y, x] = sum_{j,k} cubic(c(y) - j) cubic(c(x) - k) a[mirror(j), mirror(k)]
//              over the 4 x 4 source taps floor(c) - 1 .. floor(c) + 2,
//              each weight axis normalised to sum 1, then
//   s = floor(clamp(a', 0, 1) * (2^bits - 1) + 0.5)
// One invocation owns one u32 word of the output (4 u8 or 2 u16 samples) and
// rewrites only the alpha samples in it, so no two invocations touch a word.
// CPU twin: src/kernels/alpha_upscale.rs (AlphaUpscale::cpu).
//
// bindings: 0 uniform Params | 1 src (packed input words) | 2 dst (packed output words, read and written)
// dispatch: gpu::linear_groups(words, 256)

struct Params {
    w: u32,        // input width
    h: u32,        // input height
    channels: u32, // 2 or 4 (alpha last)
    bits: u32,     // 8 or 16
    f: u32,        // factor
    words: u32,    // output words
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

const WG: u32 = 256u;

fn cubic(x: f32) -> f32 {
    let a = abs(x);
    let a2 = a * a;
    let a3 = a2 * a;
    if (a <= 1.0) {
        return 1.5 * a3 - 2.5 * a2 + 1.0;
    }
    if (a <= 2.0) {
        return -0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0;
    }
    return 0.0;
}

fn mirror(j: i32, n: i32) -> u32 {
    let period = 2 * n;
    var s = ((j % period) + period) % period;
    if (s >= n) {
        s = period - 1 - s;
    }
    return u32(s);
}

// Sample `k` (an index into the interleaved input samples) as a value in [0, 1].
fn sample(k: u32) -> f32 {
    if (p.bits == 8u) {
        return f32((src[k >> 2u] >> ((k & 3u) * 8u)) & 0xffu) / 255.0;
    }
    return f32((src[k >> 1u] >> ((k & 1u) * 16u)) & 0xffffu) / 65535.0;
}

struct Taps {
    index: vec4<u32>,
    weight: vec4<f32>,
}

// The four source taps of output index `i`. The weights depend only on
// i mod f (the position inside the source pixel), so a strip of rows that
// starts on a source row gives the same weights as the whole image.
fn taps(i: u32, n: u32) -> Taps {
    let t = (f32(i % p.f) + 0.5) / f32(p.f) - 0.5;
    let base = floor(t);
    let frac = t - base;
    let left = i32(i / p.f) + i32(base) - 1;
    var t4: Taps;
    var sum = 0.0;
    for (var q = 0; q < 4; q++) {
        let wq = cubic(frac + 1.0 - f32(q));
        t4.index[q] = mirror(left + q, i32(n));
        t4.weight[q] = wq;
        sum += wq;
    }
    t4.weight = t4.weight / sum;
    return t4;
}

// The upscaled alpha of output pixel `pix`, quantised.
fn alpha(pix: u32, maxv: f32) -> u32 {
    let ow = p.w * p.f;
    let ty = taps(pix / ow, p.h);
    let tx = taps(pix % ow, p.w);
    var v = 0.0;
    for (var r = 0; r < 4; r++) {
        let row = ty.index[r] * p.w;
        var acc = 0.0;
        for (var q = 0; q < 4; q++) {
            acc += tx.weight[q] * sample((row + tx.index[q]) * p.channels + p.channels - 1u);
        }
        v += ty.weight[r] * acc;
    }
    return u32(floor(clamp(v, 0.0, 1.0) * maxv + 0.5));
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let wi = linear_index(gid, nwg, WG);
    if (wi >= p.words) {
        return;
    }
    let samples = p.w * p.f * p.h * p.f * p.channels;
    let per = 32u / p.bits;
    let mask = (1u << p.bits) - 1u; // bits 8: 0xff; bits 16: 0xffff
    let maxv = f32(mask);
    var word = dst[wi];
    var changed = false;
    for (var q = 0u; q < per; q++) {
        let k = wi * per + q;
        if (k < samples && k % p.channels == p.channels - 1u) {
            let shift = q * p.bits;
            word = (word & ~(mask << shift)) | (alpha(k / p.channels, maxv) << shift);
            changed = true;
        }
    }
    if (changed) {
        dst[wi] = word;
    }
}
