#!/usr/bin/env bash
# Fuzzes the .tcz decoder and the image decode path with cargo-fuzz
# (libFuzzer): SECONDS each (default 600), one after the other. Any panic, a
# hang over 10 s or a single allocation over 1 GiB counts as a crash and
# stops the run with the input saved under fuzz/artifacts/. Needs a nightly
# toolchain (`rustup toolchain install nightly`); installs cargo-fuzz if it is
# missing. Not part of CI (nightly is not something CI can count on).
# Usage: scripts/fuzz.sh [SECONDS]   (FUZZ_TARGETS="tcz_decode" runs one)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
if ! rustup toolchain list | grep -q nightly; then
  echo "fuzz: not run: no nightly toolchain (rustup toolchain install nightly)"; exit 0
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo build --release -q
g=target/release/gpuimg
# Seeds: every bad .tcz of the test corpus and a good one; small images of every format.
mkdir -p fuzz/corpus/tcz_decode fuzz/corpus/image_decode
cp tests/corpus/tcz/*.tcz fuzz/corpus/tcz_decode/
$g --device cpu -q compress assets/chelsea.png --rate 16 --bitplanes 4 -o fuzz/corpus/tcz_decode/good.tcz --overwrite
for ext in png jpg webp bmp tiff; do
  $g --device cpu -q resize assets/chelsea.png --width 24 --height 16 -o fuzz/corpus/image_decode/small.$ext --overwrite
done
$g --device cpu -q augment assets/chelsea.png --ops "resize:w=20,h=14;grey" -o fuzz/corpus/image_decode --overwrite
targets="${FUZZ_TARGETS:-tcz_decode image_decode}"
for t in $targets; do
  # Build on its own first: a build failure must fail the script, not hide in the filtered log.
  cargo +nightly fuzz build --sanitizer none --release "$t"
  echo "== fuzz $t for $secs s"
  cargo +nightly fuzz run --sanitizer none --release "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -malloc_limit_mb=1024 -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
    2>&1 | grep -E "^(#[0-9]+ *DONE|stat::|==|INFO: Running|Done)|ERROR|panicked|crash|timeout|malloc" || true
  if ls fuzz/artifacts/"$t"/* >/dev/null 2>&1; then
    echo "fuzz: $t found crashes: $(ls fuzz/artifacts/"$t")"; exit 1
  fi
done
echo "fuzz: no crashes, hangs or allocations over 1 GiB"
