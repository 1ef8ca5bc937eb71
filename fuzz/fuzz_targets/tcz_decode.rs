//! `cargo +nightly fuzz run tcz_decode`: any bytes through the .tcz parser
//! and, when they parse, the latent decoder. Must never panic, hang or
//! allocate without bound. Crashes found go into tests/corpus/tcz/, which
//! `tests/codec.rs` replays in CI.
//!
//! Most mutations break the file's CRC, which the parser checks first; so
//! inputs whose last byte is even are also tried with their last four bytes
//! replaced by the CRC of the rest,
//! and the fuzzer reaches the header checks and the range decoder behind it.
#![no_main]

use gpuimg::codec::{entropy, Tcz};
use libfuzzer_sys::fuzz_target;

fn decode(data: &[u8]) {
    if let Ok(t) = Tcz::parse(data) {
        let (w, h) = t.latent_size();
        let _ = entropy::decode_payload(t.version, &t.payload, 3, w, h, t.bitplanes as u32);
    }
}

fuzz_target!(|data: &[u8]| {
    decode(data);
    if data.len() > 4 && data[data.len() - 1] & 1 == 0 {
        let mut fixed = data.to_vec();
        let n = fixed.len() - 4;
        let crc = gpuimg::fsutil::crc32(&fixed[..n]);
        fixed[n..].copy_from_slice(&crc.to_le_bytes());
        decode(&fixed);
    }
});
