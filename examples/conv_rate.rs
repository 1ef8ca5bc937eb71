//! The CPU convolution's throughput on the layer shapes of the bundled
//! models: GFLOP/s (2 flops per multiply-add) per shape, the best of a few
//! runs, to set beside `cpu_peak`'s figure. Threads: RAYON_NUM_THREADS.
//!
//! cargo run --release --example conv_rate [-- WxH [NAME-FILTER]]

use std::time::Instant;

use gpuimg::kernels::Conv2d;
use gpuimg::{Shape, Tensor};

fn main() {
    let size = std::env::args().nth(1).unwrap_or_else(|| "320x240".into());
    let (w, h) = size.split_once('x').and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?))).expect("WxH");
    let filter = std::env::args().nth(2).unwrap_or_default();
    let shapes = [
        ("zero-dce 3x3 32->32", Conv2d::new(32, 32, 3)),
        ("zero-dce 3x3 64->32", Conv2d::new(64, 32, 3)),
        ("zero-dce++ dw 3x3 x32", Conv2d::depthwise(32, 3)),
        ("zero-dce++ pw 32->32", Conv2d::pointwise(32, 32)),
        ("zero-dce++ pw 64->3", Conv2d::pointwise(64, 3)),
        ("tinypssr 5x5 1->16", Conv2d::new(1, 16, 5)),
        ("tinycompress 9x9 3->15", Conv2d::new(3, 15, 9)),
    ];
    println!("{w}x{h}, {} threads, level {}", rayon::current_num_threads(), gpuimg::cpu::level().name());
    for (name, conv) in shapes.into_iter().filter(|(n, _)| n.contains(filter.as_str())) {
        let x = Tensor::from_vec(
            Shape::new(1, conv.cin, h, w),
            (0..conv.cin * h * w).map(|i| (i % 251) as f32 / 251.0).collect(),
        )
        .unwrap();
        let wt: Vec<f32> = (0..conv.weight_len()).map(|i| ((i % 17) as f32 - 8.0) / 64.0).collect();
        let b = vec![0.01; conv.cout];
        let mut best = f64::INFINITY;
        for _ in 0..if filter.is_empty() { 5 } else { 100 } {
            let t = Instant::now();
            std::hint::black_box(conv.cpu(&x, &wt, &b).unwrap());
            best = best.min(t.elapsed().as_secs_f64());
        }
        let flops = 2.0 * (conv.macs_per_pixel() * w * h) as f64;
        println!("{name:<24} {:>8.3} ms {:>7.1} GFLOP/s", best * 1e3, flops / best / 1e9);
    }
}
