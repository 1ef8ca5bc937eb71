//! `cargo +nightly fuzz run tcz_decode`: any bytes through the .tcz parser
//! and, when they parse, the latent decoder. Must never panic, hang or
//! allocate without bound. Crashes found go into tests/corpus/tcz/, which
//! `tests/codec.rs` replays in CI.
#![no_main]

use gpuimg::codec::{entropy, Tcz};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tcz::parse(data) {
        let (w, h) = t.latent_size();
        let _ = entropy::decode_latents(&t.payload, 3, w, h, t.planes as u32);
    }
});
