// texel_rows: rows of 32-bit words copied between two row strides, each
// word converted by `mode`: the bridge between a texture copy's buffer (rows
// padded to 256 bytes; BGRA, RGBA or half-float RGBA) and the tightly packed
// RGBA pixels the kernels read and write.
//
//   dst[dst_offset + y * dst_stride + x] = convert(src[src_offset + y * src_stride + x])
//   for y < rows, x < width (in words), where convert is, by mode:
//     0  the word as it is
//     1  bytes 0 and 2 exchanged (8-bit BGRA <-> RGBA)
//     2  two f16 -> two 16-bit unorm: floor(clamp(v, 0, 1) * 65535 + 0.5)
//     3  two 16-bit unorm -> two f16: u / 65535 rounded to the nearest half (ties to even)
// The half conversions are integer bit work, not unpack2x16float /
// pack2x16float, which need the SHADER_FLOAT16_IN_FLOAT32 capability that
// not every device grants (and whose rounding is left to the implementation).
// Words of dst outside those rows and columns are left as they are.
// One invocation per word.
// CPU twin: src/kernels/texel_rows.rs (TexelRows::cpu).
//
// bindings: 0 uniform Params | 1 src (words) | 2 dst (words)
// dispatch: gpu::linear_groups(width * rows, 256)

struct Params {
    width: u32,
    rows: u32,
    src_stride: u32,
    dst_stride: u32,
    src_offset: u32,
    dst_offset: u32,
    mode: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

const WG: u32 = 256u;

// An IEEE half (low 16 bits of h) widened to f32, exactly.
fn half_to_f32(h: u32) -> f32 {
    let sign = (h >> 15u) & 1u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        // Zero or subnormal: m * 2^-24.
        let v = f32(m) * (1.0 / 16777216.0);
        return select(v, -v, sign == 1u);
    }
    var bits = (sign << 31u) | ((e + 112u) << 23u) | (m << 13u);
    if (e == 31u) {
        bits = (sign << 31u) | 0x7f800000u | (m << 13u);
    }
    return bitcast<f32>(bits);
}

// An f32 rounded to the nearest IEEE half (ties to even), as bits.
fn f32_to_half(v: f32) -> u32 {
    let bits = bitcast<u32>(v);
    let sign = (bits >> 16u) & 0x8000u;
    let exp = i32((bits >> 23u) & 0xffu);
    let man = bits & 0x7fffffu;
    if (exp == 255) {
        return sign | 0x7c00u | select(0u, 0x200u, man != 0u);
    }
    let e = exp - 112;
    if (e >= 31) {
        return sign | 0x7c00u;
    }
    if (e <= 0) {
        if (e < -10) {
            return sign;
        }
        let m = man | 0x800000u;
        let shift = u32(14 - e);
        let half = m >> shift;
        let rest = m & ((1u << shift) - 1u);
        let mid = 1u << (shift - 1u);
        let up = rest > mid || (rest == mid && (half & 1u) == 1u);
        return sign | (half + select(0u, 1u, up));
    }
    let half = (u32(e) << 10u) | (man >> 13u);
    let rest = man & 0x1fffu;
    let up = rest > 0x1000u || (rest == 0x1000u && (half & 1u) == 1u);
    // A carry out of the mantissa lands in the exponent, as it should.
    return sign | (half + select(0u, 1u, up));
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg, WG);
    if (i >= p.width * p.rows) {
        return;
    }
    let y = i / p.width;
    let x = i % p.width;
    var t = src[p.src_offset + y * p.src_stride + x];
    if (p.mode == 1u) {
        t = (t & 0xff00ff00u) | ((t & 0xffu) << 16u) | ((t >> 16u) & 0xffu);
    } else if (p.mode == 2u) {
        let v = vec2<f32>(half_to_f32(t & 0xffffu), half_to_f32(t >> 16u));
        let u = vec2<u32>(floor(clamp(v, vec2<f32>(0.0), vec2<f32>(1.0)) * 65535.0 + 0.5));
        t = u.x | (u.y << 16u);
    } else if (p.mode == 3u) {
        t = f32_to_half(f32(t & 0xffffu) / 65535.0) | (f32_to_half(f32(t >> 16u) / 65535.0) << 16u);
    }
    dst[p.dst_offset + y * p.dst_stride + x] = t;
}
