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
//     3  two 16-bit unorm -> two f16: u / 65535 rounded to half (pack2x16float)
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
        let v = unpack2x16float(t);
        let u = vec2<u32>(floor(clamp(v, vec2<f32>(0.0), vec2<f32>(1.0)) * 65535.0 + 0.5));
        t = u.x | (u.y << 16u);
    } else if (p.mode == 3u) {
        t = pack2x16float(vec2<f32>(f32(t & 0xffffu), f32(t >> 16u)) / 65535.0);
    }
    dst[p.dst_offset + y * p.dst_stride + x] = t;
}
