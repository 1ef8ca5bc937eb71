// pixel_unshuffle: (N, C, H*r, W*r) -> (N, C*r*r, H, W), PyTorch's nn.PixelUnshuffle.
//
//   y[b, c*r*r + u*r + v, i, j] = x[b, c, i*r + u, j*r + v]
// CPU twin: src/kernels/pixel_unshuffle.rs (PixelUnshuffle::cpu).
//
// bindings: 0 uniform Params | 1 x | 2 y
// dispatch: (ceil(W/8), ceil(H/8), N*C*r*r); H and W are the output (small) sides

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
    let rr = p.r * p.r;
    let j = gid.x;
    let i = gid.y;
    if (j >= p.w || i >= p.h || gid.z >= p.n * p.c * rr) {
        return;
    }
    let oc = gid.z;                 // b * C*r*r + c*r*r + u*r + v
    let bc = oc / rr;               // b * C + c
    let u = (oc % rr) / p.r;
    let v = oc % p.r;
    let iw = p.w * p.r;
    let ih = p.h * p.r;
    y[(oc * p.h + i) * p.w + j] = x[(bc * ih + i * p.r + u) * iw + j * p.r + v];
}
