//! Seed 001's tiling (`gpuimg::tiling`): every tiling covers the image once,
//! the near-square tiles are of about equal area and cost less overlap than
//! stripes, and an op run tile by tile with a halo of its receptive radius
//! gives the untiled result bit for bit.

mod common;

use gpuimg::tiling::{grid, overhead, plan, run_tiled, tiles, Scheme, Tile, TileMode};

#[test]
fn every_tiling_covers_the_image_once() {
    for (w, h) in [(1usize, 1usize), (7, 3), (3, 7), (640, 480), (480, 640), (4000, 3000), (101, 4999)] {
        for n in [1usize, 2, 3, 5, 8, 13, 32, 100, 256] {
            for scheme in [Scheme::NearSquare, Scheme::Stripes] {
                let Ok(t) = tiles(scheme, w, h, n) else {
                    // Only when the image has too few pixels for the tiles.
                    assert!(n > w || n > h, "{scheme:?} {n} of {w}x{h}");
                    continue;
                };
                assert_eq!(t.len(), n, "{scheme:?} {n} of {w}x{h}");
                let mut seen = vec![0u8; w * h];
                for tile in &t {
                    assert!(tile.w > 0 && tile.h > 0 && tile.x + tile.w <= w && tile.y + tile.h <= h, "{tile:?}");
                    for y in tile.y..tile.y + tile.h {
                        for x in tile.x..tile.x + tile.w {
                            seen[y * w + x] += 1;
                        }
                    }
                }
                assert!(seen.iter().all(|&s| s == 1), "{scheme:?} {n} of {w}x{h}: a pixel covered other than once");
            }
        }
    }
    assert!(tiles(Scheme::NearSquare, 10, 10, 0).is_err());
    assert!(tiles(Scheme::Stripes, 10, 10, 11).is_err());
}

#[test]
fn near_square_tiles_are_even_and_cheaper_than_stripes() {
    let (w, h, halo) = (4000, 3000, 8);
    for n in [4usize, 6, 9, 16, 32, 64, 128, 256] {
        let t = tiles(Scheme::NearSquare, w, h, n).unwrap();
        let areas: Vec<usize> = t.iter().map(|t| t.w * t.h).collect();
        let (lo, hi) = (*areas.iter().min().unwrap() as f64, *areas.iter().max().unwrap() as f64);
        assert!(hi / lo < 1.25, "{n} tiles: areas {lo}..{hi}");
        let aspect = t.iter().map(|t| (t.w.max(t.h) as f64) / (t.w.min(t.h) as f64)).fold(0.0, f64::max);
        assert!(aspect < 2.5, "{n} tiles: a tile {aspect:.2} times as long as wide");
        let s = tiles(Scheme::Stripes, w, h, n).unwrap();
        let (a, b) = (overhead(&t, halo, w, h), overhead(&s, halo, w, h));
        eprintln!("{n} tiles: overhead {:.2}% near-square, {:.2}% stripes", a * 100.0, b * 100.0);
        assert!(a < b, "{n} tiles: near-square {a} against stripes {b}");
    }
    assert_eq!(overhead(&tiles(Scheme::NearSquare, w, h, 1).unwrap(), halo, w, h), 0.0);
}

#[test]
fn tiled_super_resolution_equals_untiled_on_the_cpu() {
    use gpuimg::models::tinypssr::TinyPssr;
    let mut rng = common::Rng::for_test("tiled_super_resolution_equals_untiled_on_the_cpu");
    let (w, h) = (97usize, 61usize);
    let img = gpuimg::image_io::Image::new(
        w as u32,
        h as u32,
        3,
        gpuimg::Samples::U8((0..w * h * 3).map(|_| rng.below(256) as u8).collect()),
    )
    .unwrap();
    // Receptive radius in input pixels: 4 per x2 stage, halved by each earlier one.
    for (scale, halo) in [(2usize, 4usize), (4, 6)] {
        let m = TinyPssr::bundled(scale).unwrap();
        assert_eq!(m.receptive_radius(), halo);
        let sr = |i: &gpuimg::image_io::Image| gpuimg::ops::super_resolve(&gpuimg::Backend::Cpu, &m, i);
        let whole = sr(&img).unwrap();
        for (scheme, n) in [(Scheme::NearSquare, 6), (Scheme::Stripes, 5), (Scheme::NearSquare, 1)] {
            let t = tiles(scheme, w, h, n).unwrap();
            let tiled = run_tiled(&img, &t, halo, scale, sr).unwrap();
            assert_eq!((tiled.width, tiled.height), (whole.width, whole.height));
            assert!(tiled.samples == whole.samples, "x{scale} {scheme:?} {n}: tiled differs from untiled");
        }
        // A halo short of the receptive radius shows at the seams: the check can fail.
        let t = tiles(Scheme::NearSquare, w, h, 6).unwrap();
        let short = run_tiled(&img, &t, halo - 2, scale, sr).unwrap();
        assert!(short.samples != whole.samples, "x{scale}: a short halo should change the seams");
    }
}

fn covered_once(t: &[Tile], w: usize, h: usize) -> bool {
    let mut seen = vec![0u8; w * h];
    for tile in t {
        for y in tile.y..tile.y + tile.h {
            for x in tile.x..tile.x + tile.w {
                seen[y * w + x] += 1;
            }
        }
    }
    seen.iter().all(|&s| s == 1)
}

#[test]
fn grid_tiles_are_at_most_the_size_asked_and_cover_once() {
    for (w, h) in [(1usize, 1usize), (7, 3), (451, 300), (1000, 1000), (1001, 999)] {
        for (tw, th) in [(16usize, 16usize), (100, 80), (1000, 1000), (5000, 3)] {
            let t = grid(w, h, tw, th).unwrap();
            assert!(covered_once(&t, w, h), "{tw}x{th} of {w}x{h}");
            assert!(t.iter().all(|t| t.w <= tw && t.h <= th && t.w > 0 && t.h > 0), "{tw}x{th} of {w}x{h}");
            // As few as the size allows.
            assert_eq!(t.len(), w.div_ceil(tw) * h.div_ceil(th));
        }
    }
    assert!(grid(10, 10, 0, 5).is_err());
}

#[test]
fn tile_plans_follow_the_mode_and_the_budget() {
    let (w, h, halo) = (4000usize, 3000usize, 6usize);
    let peak = |w: usize, h: usize| (w * h * 100) as u64; // 100 bytes a pixel
    let whole = peak(w, h);
    // Auto: whole while the budget holds it; else the fewest tiles that fit.
    assert_eq!(plan(TileMode::Auto, w, h, halo, whole, 0, peak).unwrap(), None);
    let fixed = 100_000_000;
    let budget = fixed + whole / 5;
    let t = plan(TileMode::Auto, w, h, halo, budget, fixed, peak).unwrap().expect("tiles");
    assert!(covered_once(&t, w, h));
    let worst = |t: &[Tile]| t.iter().map(|t| t.with_halo(halo, w, h)).map(|g| peak(g.w, g.h)).max().unwrap();
    assert!(fixed + worst(&t) <= budget);
    assert_eq!(t.len(), 8, "the fewest power-of-two count that fits");
    let half = tiles(Scheme::NearSquare, w, h, t.len() / 2).unwrap();
    assert!(fixed + worst(&half) > budget);
    // Nothing fits: None (the caller's memory check refuses the image).
    assert_eq!(plan(TileMode::Auto, w, h, halo, fixed, fixed, peak).unwrap(), None);
    // Off never tiles; a fixed size tiles only an image larger than it.
    assert_eq!(plan(TileMode::Off, w, h, halo, 0, 0, peak).unwrap(), None);
    assert_eq!(plan(TileMode::Fixed(w, h), w, h, halo, 0, 0, peak).unwrap(), None);
    assert_eq!(plan(TileMode::Fixed(1024, 1024), w, h, halo, 0, 0, peak).unwrap().unwrap().len(), 12);
    // The option's syntax.
    assert_eq!("auto".parse::<TileMode>().unwrap(), TileMode::Auto);
    assert_eq!("off".parse::<TileMode>().unwrap(), TileMode::Off);
    assert_eq!("512x256".parse::<TileMode>().unwrap(), TileMode::Fixed(512, 256));
    for bad in ["", "8x8", "512", "x", "axb", "-1x5"] {
        assert!(bad.parse::<TileMode>().is_err(), "{bad:?}");
    }
}

#[test]
fn enhancement_at_full_resolution_tiles_bit_for_bit_on_the_cpu() {
    use gpuimg::models::zero_dce::{Arch, ZeroDce};
    use gpuimg::ops::{EnhanceOp, ENHANCE_S1_HALO, ENHANCE_S1_TILE};
    use gpuimg::stream::StreamOp;
    let mut rng = common::Rng::for_test("enhancement_at_full_resolution_tiles_bit_for_bit_on_the_cpu");
    // Wider than one tile, so the CPU path runs two tiles with their halos.
    let img = common::random_image(&mut rng, ENHANCE_S1_TILE as u32 + 17, 61, 3, 8);
    for arch in Arch::ALL {
        let model = ZeroDce::bundled(arch).unwrap();
        let whole = gpuimg::ops::enhance(&gpuimg::Backend::Cpu, &model, &img, 1, 8).unwrap();
        let op = EnhanceOp::new(model.clone(), Some(1), 8).unwrap();
        let t = op.cpu_tiles(&img).unwrap().expect("tiles");
        assert_eq!(t.len(), 2);
        let tiled = op.cpu(0, &img).unwrap();
        assert!(tiled.samples == whole.samples, "{arch:?}: tiled differs from whole");
        // A halo far short of the network's 7 layers shows at the seam (a
        // few pixels short can stay below one level): the check can fail.
        let sr = |i: &gpuimg::image_io::Image| gpuimg::ops::enhance(&gpuimg::Backend::Cpu, &model, i, 1, 8);
        let short = run_tiled(&img, &t, ENHANCE_S1_HALO - 6, 1, sr).unwrap();
        assert!(short.samples != whole.samples, "{arch:?}: a short halo should change the seam");
        // Above s = 1 the maps depend on the whole image: no tiles.
        assert!(EnhanceOp::new(model, Some(2), 8).unwrap().cpu_tiles(&img).unwrap().is_none());
    }
}

#[test]
fn the_enhancement_network_in_row_bands_gives_the_same_maps() {
    use gpuimg::models::zero_dce::{Arch, ZeroDce};
    let mut rng = common::Rng::for_test("the_enhancement_network_in_row_bands_gives_the_same_maps");
    // The downscaled image the network sees; bands of 9 rows with the
    // network's 7-row halo each side.
    let small = rng.tensor(gpuimg::Shape::new(1, 3, 47, 29), 0.0, 1.0);
    for arch in Arch::ALL {
        let model = ZeroDce::bundled(arch).unwrap();
        let whole = model.maps_cpu(&small).unwrap();
        for rows in [9, 13, 30] {
            let banded = gpuimg::ops::maps_cpu_in_bands(&model, &small, rows).unwrap();
            assert_eq!(banded.shape, whole.shape);
            assert!(banded.data == whole.data, "{arch:?}, bands of {rows}: maps differ");
        }
    }
}
