// augment: a chain of geometric ops and a chain of colour ops in one pass.
//
// Coordinates are continuous, pixel centres at i + 0.5. Geometric stage k
// maps its output point to its input point with an affine map
//   (x, y) <- (a x + b y + c, d x + e y + f)
// on an input canvas w x h. For each output pixel the stages run last to
// first; a point that leaves a stage's canvas takes that stage's border:
//   0 constant: the pixel is the stage's fill colour (done),
//   1 edge: the coordinate outside clamped to the nearest pixel centre,
//   2 reflect: the coordinate outside mirrored about the edge pixels (torch 'reflect'),
//   3 none: not checked (ops that cannot leave their input).
// The final point samples the input (N = 1, C planes) with a separable filter
// (0 nearest, 1 triangle = bilinear, 2 Keys cubic a = -0.5 = bicubic) whose
// support is widened by fx / fy (>= 1) along the input axes when
// antialiasing a downscale; taps outside the image read the edge pixel.
// Colour stage j then runs on R, G, B (alpha untouched) unless the pixel is a
// fill colour made by a geometric op written after it (order):
//   0 affine:  rgb <- M rgb + t
//   1 gamma:   v <- max(v, 0)^g
//   2 noise:   v <- v + sigma * N(0, 1), N from a hash of (seed, pixel, channel)
// Output mode: 0 raw, 1 clamped to [0, 1], 2 clamped then (v - mean) / std on R, G, B.
// The result goes to plane c of batch item `item` of y (out_h x out_w).
// CPU twin: src/kernels/augment.rs (Augment::cpu).
//
// Each dispatch's record lives in `prog` from word `u.base` on (a buffer may
// hold many records, one per batch item and pass, so that a batch recorded
// again binds the same buffers with the same uniform): a header of 16 words
// (the Params below), then the program (f32 bits).
//
// bindings: 0 uniform Record | 1 x (1,C,in_h,in_w) | 2 prog (u32[base + RECORD_LEN]) | 3 y (items,C,out_h,out_w)
// dispatch: (ceil(out_w/8), ceil(out_h/8), 1)

struct Record {
    base: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

struct Params {
    in_w: u32,
    in_h: u32,
    out_w: u32,
    out_h: u32,
    channels: u32,
    n_geo: u32,
    n_col: u32,
    filt: u32,
    fx: f32,
    fy: f32,
    out_mode: u32,
    seed: u32,
    item: u32,
}

@group(0) @binding(0) var<uniform> u: Record;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> prog: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// This invocation's header, read from its record.
var<private> p: Params;

const GEO: u32 = 16u;     // 8 stages x 16: a b c d e f w h border fill_rgba order _ _
const COL: u32 = 144u;    // 8 stages x 16: kind order m00 m01 m02 t0 m10 m11 m12 t1 m20 m21 m22 t2 p0 _
const NORM: u32 = 272u;   // mean rgb, std rgb
const MAX_TAPS: i32 = 66;

fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// A standard normal from (seed, pixel, channel, stage): Box-Muller on two hashes.
fn normal(seed: u32, pixel: u32, c: u32, stage: u32) -> f32 {
    let h1 = pcg(seed ^ pcg(pixel * 16u + c * 4u + stage));
    let h2 = pcg(h1 ^ 0x9e3779b9u);
    let u1 = (f32(h1 >> 8u) + 0.5) / 16777216.0;
    let u2 = f32(h2 >> 8u) / 16777216.0;
    return sqrt(-2.0 * log(u1)) * cos(6.28318530718 * u2);
}

// Word `i` of the program as the f32 it holds.
fn pf(i: u32) -> f32 {
    return bitcast<f32>(prog[u.base + i]);
}

fn kernel_weight(t: f32) -> f32 {
    let a = abs(t);
    if (p.filt == 1u) {
        return max(0.0, 1.0 - a);
    }
    // Keys cubic, a = -0.5
    if (a < 1.0) {
        return (1.5 * a - 2.5) * a * a + 1.0;
    }
    if (a < 2.0) {
        return ((-0.5 * a + 2.5) * a - 4.0) * a + 2.0;
    }
    return 0.0;
}

fn reflect_index(u: f32, n: f32) -> f32 {
    if (n <= 1.0) {
        return 0.0;
    }
    let period = 2.0 * (n - 1.0);
    var v = u - period * floor(u / period);
    if (v > n - 1.0) {
        v = period - v;
    }
    return v;
}

fn sample(c: u32, px: f32, py: f32) -> f32 {
    let w = i32(p.in_w);
    let h = i32(p.in_h);
    let base = c * p.in_w * p.in_h;
    if (p.filt == 0u) {
        let i = clamp(i32(floor(px)), 0, w - 1);
        let j = clamp(i32(floor(py)), 0, h - 1);
        return x[base + u32(j) * p.in_w + u32(i)];
    }
    let radius = select(2.0, 1.0, p.filt == 1u);
    let ux = px - 0.5;
    let uy = py - 0.5;
    let x0 = i32(ceil(ux - radius * p.fx));
    let x1 = min(i32(floor(ux + radius * p.fx)), x0 + MAX_TAPS - 1);
    let y0 = i32(ceil(uy - radius * p.fy));
    let y1 = min(i32(floor(uy + radius * p.fy)), y0 + MAX_TAPS - 1);
    var sx = 0.0;
    for (var i = x0; i <= x1; i++) {
        sx += kernel_weight((f32(i) - ux) / p.fx);
    }
    var acc = 0.0;
    var sy = 0.0;
    for (var j = y0; j <= y1; j++) {
        let wy = kernel_weight((f32(j) - uy) / p.fy);
        if (wy == 0.0) {
            continue;
        }
        sy += wy;
        let row = base + u32(clamp(j, 0, h - 1)) * p.in_w;
        var r = 0.0;
        for (var i = x0; i <= x1; i++) {
            let wx = kernel_weight((f32(i) - ux) / p.fx);
            r += wx * x[row + u32(clamp(i, 0, w - 1))];
        }
        acc += wy * r;
    }
    return acc / (sx * sy);
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = u.base;
    p = Params(
        prog[b], prog[b + 1u], prog[b + 2u], prog[b + 3u], prog[b + 4u], prog[b + 5u], prog[b + 6u],
        prog[b + 7u], bitcast<f32>(prog[b + 8u]), bitcast<f32>(prog[b + 9u]), prog[b + 10u], prog[b + 11u],
        prog[b + 12u],
    );
    if (gid.x >= p.out_w || gid.y >= p.out_h) {
        return;
    }
    var px = f32(gid.x) + 0.5;
    var py = f32(gid.y) + 0.5;
    var fill_stage = -1;
    for (var k = i32(p.n_geo) - 1; k >= 0; k--) {
        let o = GEO + u32(k) * 16u;
        let nx = pf(o) * px + pf(o + 1u) * py + pf(o + 2u);
        let ny = pf(o + 3u) * px + pf(o + 4u) * py + pf(o + 5u);
        px = nx;
        py = ny;
        let w = pf(o + 6u);
        let h = pf(o + 7u);
        let border = u32(pf(o + 8u));
        if (border != 3u && (px < 0.0 || py < 0.0 || px >= w || py >= h)) {
            if (border == 0u) {
                fill_stage = k;
                break;
            }
            // Each coordinate is moved only if it is the one outside.
            let out_x = px < 0.0 || px >= w;
            let out_y = py < 0.0 || py >= h;
            if (border == 1u) {
                px = select(px, clamp(px, 0.5, w - 0.5), out_x);
                py = select(py, clamp(py, 0.5, h - 0.5), out_y);
            } else {
                px = select(px, reflect_index(px - 0.5, w) + 0.5, out_x);
                py = select(py, reflect_index(py - 0.5, h) + 0.5, out_y);
            }
        }
    }
    var v = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    var fill_order = -1.0;
    let nc = min(p.channels, 4u);
    if (fill_stage >= 0) {
        let o = GEO + u32(fill_stage) * 16u;
        for (var c = 0u; c < nc; c++) {
            v[c] = pf(o + 9u + c);
        }
        fill_order = pf(o + 13u);
    } else {
        for (var c = 0u; c < nc; c++) {
            v[c] = sample(c, px, py);
        }
    }
    let pixel = gid.y * p.out_w + gid.x;
    if (nc >= 3u) {
        for (var j = 0u; j < p.n_col; j++) {
            let o = COL + j * 16u;
            if (pf(o + 1u) <= fill_order) {
                continue;
            }
            let kind = u32(pf(o));
            if (kind == 0u) {
                let r = v[0];
                let g = v[1];
                let b = v[2];
                v[0] = pf(o + 2u) * r + pf(o + 3u) * g + pf(o + 4u) * b + pf(o + 5u);
                v[1] = pf(o + 6u) * r + pf(o + 7u) * g + pf(o + 8u) * b + pf(o + 9u);
                v[2] = pf(o + 10u) * r + pf(o + 11u) * g + pf(o + 12u) * b + pf(o + 13u);
            } else if (kind == 1u) {
                for (var c = 0u; c < 3u; c++) {
                    v[c] = pow(max(v[c], 0.0), pf(o + 14u));
                }
            } else {
                for (var c = 0u; c < 3u; c++) {
                    v[c] += pf(o + 14u) * normal(p.seed, pixel, c, 0u);
                }
            }
        }
    }
    let plane = p.out_w * p.out_h;
    let out_base = p.item * p.channels * plane + pixel;
    for (var c = 0u; c < nc; c++) {
        var o = v[c];
        if (p.out_mode >= 1u) {
            o = clamp(o, 0.0, 1.0);
        }
        if (p.out_mode == 2u && c < 3u) {
            o = (o - pf(NORM + c)) / pf(NORM + 3u + c);
        }
        y[out_base + c * plane] = o;
    }
}
