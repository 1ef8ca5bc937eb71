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
if ! command -v rustup >/dev/null 2>&1; then
    echo "arm-check: NOT RUN: no rustup to install the $target target"
    exit 0
fi
if ! rustup target list --installed | grep -qx "$target"; then
    if ! timeout 300 rustup target add "$target" >/dev/null 2>&1; then
        echo "arm-check: NOT RUN: the $target target is not installed and rustup could not add it (offline?)"
        exit 0
    fi
fi
RUSTFLAGS="-D warnings" cargo check -q --lib --bins --target "$target"
echo "arm-check: the library and the CLI compile for $target"
