#!/usr/bin/env bash
# The library on wasm32-unknown-unknown with wgpu's WebGPU backend (the
# `webgpu` feature, no CLI): `cargo check`, warnings as errors. Nothing runs
# here (no browser); it keeps the embedding API compiling for the web.
# Prints that it was not run, and why, where the rustup target cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
target=wasm32-unknown-unknown
if ! command -v rustup >/dev/null 2>&1; then
    echo "wasm-check: NOT RUN: no rustup to install the $target target"
    exit 0
fi
if ! rustup target list --installed | grep -qx "$target"; then
    if ! timeout 300 rustup target add "$target" >/dev/null 2>&1; then
        echo "wasm-check: NOT RUN: the $target target is not installed and rustup could not add it (offline?)"
        exit 0
    fi
fi
RUSTFLAGS="-D warnings" cargo check -q --lib --target "$target" --no-default-features --features webgpu
echo "wasm-check: the library compiles for $target with the webgpu backend"
