// conv2d: 2-D convolution, k x k, stride 1, zero "same" padding, bias, groups.
//
//   y[b,o,i,j] = bias[o] + sum_{c<Cin/G, u<k, v<k} w[o,c,u,v] * x[b, g*Cin/G + c, i+u-p, j+v-p]
//   with g = o / (Cout/G) and p = (k-1)/2 (PyTorch padding='same').
// groups = Cin = Cout gives a depthwise conv, k = 1 a pointwise one.
// CPU twin: src/kernels/conv2d.rs (Conv2d::cpu, conv2d::reference).
//
// bindings: 0 uniform Params | 1 x (N,Cin,H,W) | 2 w (Cout,Cin/G,k,k) | 3 bias (Cout) | 4 y (N,Cout,H,W)
// dispatch: (ceil(W/8), ceil(H/8), N*Cout)

struct Params {
    n: u32,
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    k: u32,
    groups: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const WG: u32 = 8u;

@compute @workgroup_size(WG, WG, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let i = gid.y;
    if (j >= p.w || i >= p.h || gid.z >= p.n * p.cout) {
        return;
    }
    let b = gid.z / p.cout;
    let o = gid.z % p.cout;
    let cin_g = p.cin / p.groups;
    let g = o / (p.cout / p.groups);
    let pad = i32((p.k - 1u) / 2u);
    let plane = p.h * p.w;
    var acc = bias[o];
    for (var c = 0u; c < cin_g; c++) {
        let xbase = (b * p.cin + g * cin_g + c) * plane;
        let wbase = (o * cin_g + c) * p.k * p.k;
        for (var u = 0u; u < p.k; u++) {
            let ii = i32(i) + i32(u) - pad;
            if (ii < 0 || ii >= i32(p.h)) {
                continue;
            }
            let row = xbase + u32(ii) * p.w;
            for (var v = 0u; v < p.k; v++) {
                let jj = i32(j) + i32(v) - pad;
                if (jj < 0 || jj >= i32(p.w)) {
                    continue;
                }
                acc += wt[wbase + u * p.k + v] * x[row + u32(jj)];
            }
        }
    }
    y[gid.z * plane + i * p.w + j] = acc;
}
