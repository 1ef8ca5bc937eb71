//! Measures this machine's peak f32 FMA throughput (GFLOP/s, 2 flops per
//! FMA) on one core and on all cores: the yardstick BENCHMARKS.md compares the
//! CPU path against.
//!
//! cargo run --release --example cpu_peak

use rayon::prelude::*;
use std::time::Instant;

/// 12 independent 8-lane FMA chains: enough to hide FMA latency on two FMA ports.
#[inline(always)]
fn chains(n: usize, seed: f32) -> f32 {
    let mut acc = [[seed; 8]; 12];
    for _ in 0..n {
        for a in acc.iter_mut() {
            for v in a.iter_mut() {
                *v = v.mul_add(0.999_999, 1e-7);
            }
        }
    }
    acc.iter().flatten().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn chains_avx2(n: usize, seed: f32) -> f32 {
    chains(n, seed)
}

fn run(n: usize, seed: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: checked just above.
        return unsafe { chains_avx2(n, seed) };
    }
    chains(n, seed)
}

fn main() {
    let n = 20_000_000;
    let flops = (n * 12 * 8 * 2) as f64;
    run(n / 10, 1.0);
    let t = Instant::now();
    let r = run(n, 1.0);
    let one = flops / t.elapsed().as_secs_f64() / 1e9;
    let threads = rayon::current_num_threads();
    let t = Instant::now();
    let rs: f32 = (0..threads).into_par_iter().map(|i| run(n, 1.0 + i as f32)).sum();
    let all = flops * threads as f64 / t.elapsed().as_secs_f64() / 1e9;
    println!(
        "peak f32 FMA: {one:.1} GFLOP/s on 1 core, {all:.1} GFLOP/s on {threads} threads (checksum {:.1})",
        r + rs
    );
}
