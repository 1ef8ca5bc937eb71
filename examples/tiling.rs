//! Seed 001's figures for our tiler (`gpuimg::tiling`): the overlap
//! overhead of the near-square tiles against vertical stripes, and the time
//! to compute a tiling, for 2 to 256 tiles.
//!
//! `cargo run --release --example tiling [WIDTH HEIGHT HALO]` (default: a
//! 4000x3000 image, a halo of 8 pixels).

use std::time::Instant;

use gpuimg::tiling::{overhead, tiles, Scheme};

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (w, h, halo) = match args[..] {
        [w, h, halo] => (w, h, halo),
        _ => (4000, 3000, 8),
    };
    println!("{w}x{h}, halo {halo} pixels: extra pixels processed, and the time to compute the tiling");
    println!("| tiles | near-square overhead | stripes overhead | near-square time | stripes time |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for n in [2usize, 4, 8, 16, 32, 64, 128, 256] {
        let time = |scheme: Scheme| {
            // The median of many runs: a tiling takes well under a microsecond to a few.
            let mut ts: Vec<f64> = (0..201)
                .map(|_| {
                    let t0 = Instant::now();
                    let t = std::hint::black_box(tiles(scheme, w, h, n).expect("tiling"));
                    let dt = t0.elapsed().as_secs_f64();
                    drop(t);
                    dt
                })
                .collect();
            ts.sort_by(f64::total_cmp);
            ts[ts.len() / 2]
        };
        let (a, b) = (tiles(Scheme::NearSquare, w, h, n).unwrap(), tiles(Scheme::Stripes, w, h, n).unwrap());
        println!(
            "| {n} | {:.2}% | {:.2}% | {:.2} us | {:.2} us |",
            overhead(&a, halo, w, h) * 100.0,
            overhead(&b, halo, w, h) * 100.0,
            time(Scheme::NearSquare) * 1e6,
            time(Scheme::Stripes) * 1e6
        );
    }
}
