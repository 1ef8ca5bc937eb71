// pixel_shuffle: (N, C*r*r, H, W) -> (N, C, H*r, W*r), PyTorch's nn.PixelShuffle.
//
//   y[b, c, i, j] = x[b, c*r*r + (i % r)*r + (j % r), i / r, j / r]
// CPU twin: src/kernels/pixel_shuffle.rs (PixelShuffle::cpu).
//
// bindings: 0 uniform Params | 1 x | 2 y
// dispatch: (ceil(W*r/8), ceil(H*r/8), N*C)

struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    r: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const WG: u32 = 8u;

@compute @workgroup_size(WG, WG, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ow = p.w * p.r;
    let oh = p.h * p.r;
    let j = gid.x;
    let i = gid.y;
    if (j >= ow || i >= oh || gid.z >= p.n * p.c) {
        return;
    }
    let b = gid.z / p.c;
    let c = gid.z % p.c;
    let ic = (b * p.c + c) * p.r * p.r + (i % p.r) * p.r + (j % p.r);
    y[(gid.z * oh + i) * ow + j] = x[(ic * p.h + i / p.r) * p.w + j / p.r];
}
