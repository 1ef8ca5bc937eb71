// activation: elementwise ReLU, tanh or sigmoid.
//
//   mode 0: y = max(x, 0)    mode 1: y = tanh(x)    mode 2: y = 1 / (1 + exp(-x))
// CPU twin: src/kernels/activation.rs (Activation::cpu).
//
// bindings: 0 uniform Params | 1 x (len) | 2 y (len)
// dispatch: gpu::linear_groups(len, 256); index = linear_index (shaders/lib/linear_index.wgsl)

struct Params {
    len: u32,
    mode: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = linear_index(gid, nwg, WG);
    if (idx >= p.len) {
        return;
    }
    let v = x[idx];
    var r: f32;
    switch p.mode {
        case 0u: { r = max(v, 0.0); }
        case 1u: { r = tanh(v); }
        default: { r = 1.0 / (1.0 + exp(-v)); }
    }
    y[idx] = r;
}
