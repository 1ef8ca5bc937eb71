//! TinyCompress's non-learned stages (issue #5, in progress): latent
//! quantisation (per-channel min-max to u8, then bit-plane reduction), the
//! adaptive arithmetic coder with its neighbour-context model, and the
//! `.tcz` container. The learned transforms, training, weights, the
//! `compress` / `decompress` commands and `eval codec` are not built yet.

pub mod container;
pub mod entropy;

pub use container::Tcz;

/// Quantises planar latents (`channels` planes of `plane` values) to
/// `planes`-bit codes: min-max normalised per channel to 0..=255, then the
/// low `8 - planes` bits dropped (rounding). Returns the codes and each
/// channel's (minimum, maximum).
pub fn quantise(latents: &[f32], channels: usize, planes: u32) -> (Vec<u8>, Vec<(f32, f32)>) {
    let plane = latents.len() / channels.max(1);
    let top = (1u32 << planes) - 1;
    let mut codes = Vec::with_capacity(latents.len());
    let mut ranges = Vec::with_capacity(channels);
    for c in 0..channels {
        let v = &latents[c * plane..(c + 1) * plane];
        let (lo, hi) = v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 0.0) };
        let span = hi - lo;
        for &x in v {
            let u8v = if span > 0.0 { ((x - lo) / span * 255.0).round().clamp(0.0, 255.0) as u32 } else { 0 };
            // Keep the top `planes` bits, rounded.
            let code = ((u8v * top + 127) / 255).min(top);
            codes.push(code as u8);
        }
        ranges.push((lo, hi));
    }
    (codes, ranges)
}

/// Inverts [`quantise`]: codes back to latent values.
pub fn dequantise(codes: &[u8], ranges: &[(f32, f32)], planes: u32) -> Vec<f32> {
    let channels = ranges.len().max(1);
    let plane = codes.len() / channels;
    let top = ((1u32 << planes) - 1) as f32;
    codes
        .iter()
        .enumerate()
        .map(|(i, &q)| {
            let (lo, hi) = ranges[(i / plane.max(1)).min(channels - 1)];
            lo + (hi - lo) * q as f32 / top
        })
        .collect()
}
