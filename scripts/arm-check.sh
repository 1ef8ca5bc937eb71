#!/usr/bin/env bash
# The library and the CLI on aarch64 (Linux on ARM; macOS on Apple silicon
# shares the code paths): `cargo check`, warnings as errors. The x86-64
# AVX2 kernels sit behind `target_arch` gates, so this proves every kernel
# has its portable twin there (NEON is aarch64's baseline, which the
# portable code compiles to). Nothing runs (no ARM machine or emulator
# here); the portable code itself is tested on x86-64 at the baseline CPU
# level (tests/cpu_levels.rs). Prints that it was not run, and why, where
# the rustup target cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
source scripts/rustup-target.sh
have_target arm-check "$target" || exit 0
RUSTFLAGS="-D warnings" cargo check -q --lib --bins --target "$target"
echo "arm-check: the library and the CLI compile for $target"
