// texel_rows: rows of 32-bit texels copied between two row strides, with red
// and blue optionally swapped: the bridge between a texture copy's buffer
// (rows padded to 256 bytes, BGRA or RGBA) and the tightly packed RGBA
// pixels the kernels read and write.
//
//   dst[dst_offset + y * dst_stride + x] = swap(src[src_offset + y * src_stride + x])
//   for y < rows, x < width; swap exchanges bytes 0 and 2 when swap_rb = 1.
// Words of dst outside those rows and columns are left as they are.
// One invocation per texel.
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
    swap_rb: u32,
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
    if (p.swap_rb == 1u) {
        t = (t & 0xff00ff00u) | ((t & 0xffu) << 16u) | ((t >> 16u) & 0xffu);
    }
    dst[p.dst_offset + y * p.dst_stride + x] = t;
}
