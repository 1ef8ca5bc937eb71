// zero_dce_curve: the Zero-DCE light-enhancement curve, iterated.
//
//   repeat n times:  x <- x + r_t * (x*x - x)        (Guo et al., Zero-DCE, CVPR 2020)
// r = -alpha of the paper's LE(x) = x + alpha x (1 - x). With one map set per
// iteration (Zero-DCE, 3n maps) iteration t uses maps [t*C, t*C + C); with a
// shared set (Zero-DCE++, C maps) every iteration uses maps [0, C).
// CPU twin: src/kernels/zero_dce_curve.rs (ZeroDceCurve::cpu).
//
// bindings: 0 uniform Params | 1 x (N,C,H,W) | 2 r (N,C*sets,H,W) | 3 y (N,C,H,W)
// dispatch: gpu::linear_groups(N*C*H*W, 256)

struct Params {
    len: u32,
    channels: u32,
    plane: u32,
    iterations: u32,
    per_iteration: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> r: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= p.len) {
        return;
    }
    let pix = idx % p.plane;
    let bc = idx / p.plane;
    let b = bc / p.channels;
    let c = bc % p.channels;
    let sets = select(1u, p.iterations, p.per_iteration != 0u);
    let rbase = b * p.channels * sets;
    var v = x[idx];
    for (var t = 0u; t < p.iterations; t++) {
        let map_set = select(0u, t, p.per_iteration != 0u);
        let a = r[(rbase + map_set * p.channels + c) * p.plane + pix];
        v = v + a * (v * v - v);
    }
    y[idx] = v;
}
