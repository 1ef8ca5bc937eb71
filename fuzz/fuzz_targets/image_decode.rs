//! `cargo +nightly fuzz run image_decode`: any bytes through gpuimg's image
//! decode path (format sniffing, header and size limits, truncated-JPEG
//! check, EXIF orientation, ICC, conversion). Must never panic, hang or
//! allocate over the limits (run with `-malloc_limit_mb=1024`).
#![no_main]

use gpuimg::image_io::{decode_bytes, DecodeLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_bytes(data, "fuzz", DecodeLimits::default());
});
