#!/usr/bin/env bash
# The library on wasm32-unknown-unknown with wgpu's WebGPU backend (the
# `webgpu` feature, no CLI): `cargo check`, warnings as errors. Nothing runs
# here (no browser); it keeps the embedding API compiling for the web.
# Prints that it was not run, and why, where the rustup target cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
target=wasm32-unknown-unknown
source scripts/rustup-target.sh
have_target wasm-check "$target" || exit 0
RUSTFLAGS="-D warnings" cargo check -q --lib --target "$target" --no-default-features --features webgpu
echo "wasm-check: the library compiles for $target with the webgpu backend"
