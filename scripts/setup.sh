#!/usr/bin/env bash
# Sets gpuimg up on a fresh Debian/Ubuntu machine that has the Rust toolchain,
# builds it, and runs the main job on the sample image in assets/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/install-deps.sh
cargo build --release
./target/release/gpuimg info
mkdir -p target/demo
# --device gpu: run the kernels on the GPU adapter even when it is the software one.
./target/release/gpuimg --device gpu -v resize assets/chelsea.png --scale 2 -o target/demo/chelsea_x2_gpu.png --overwrite
./target/release/gpuimg --device cpu -v resize assets/chelsea.png --scale 2 -o target/demo/chelsea_x2_cpu.png --overwrite
echo "setup: done; outputs in target/demo/"
