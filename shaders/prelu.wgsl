// prelu: parametric ReLU with one slope per channel.
//
//   y[b,c,i,j] = x >= 0 ? x : a[c] * x
// CPU twin: src/kernels/prelu.rs (Prelu::cpu).
//
// bindings: 0 uniform Params | 1 x (N,C,H,W) | 2 a (C) | 3 y (N,C,H,W)
// dispatch: gpu::linear_groups(N*C*H*W, 256)

struct Params {
    len: u32,
    channels: u32,
    plane: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = linear_index(gid, nwg, WG);
    if (idx >= p.len) {
        return;
    }
    let v = x[idx];
    let c = (idx / p.plane) % p.channels;
    y[idx] = select(a[c] * v, v, v >= 0.0);
}
