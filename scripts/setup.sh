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
# The main job: x4 super-resolution of the sample, on the best device (auto) ...
./target/release/gpuimg -v sr --scale 4 assets/chelsea.png -o target/demo/chelsea_x4.png --overwrite
# ... and on the GPU adapter even when it is the software one.
./target/release/gpuimg --device gpu -v sr --scale 2 assets/chelsea.png -o target/demo/chelsea_x2_gpu.png --overwrite
./target/release/gpuimg -v resize assets/chelsea.png --scale 0.5 -o target/demo/chelsea_half.png --overwrite
# Low-light enhancement of the darkened sample (Zero-DCE++, then Zero-DCE).
./target/release/gpuimg -v enhance assets/chelsea_dark.png -o target/demo/chelsea_dark_enhanced.png --overwrite
./target/release/gpuimg -v enhance --model zero-dce assets/chelsea_dark.png -o target/demo/chelsea_dark_enhanced_zero_dce.png --overwrite
# Four augmented samples of the sample photo (seed-004 style chain).
./target/release/gpuimg -v augment assets/chelsea.png -o target/demo/augment --count 4 --seed 1 --overwrite \
  --ops 'hflip:p=0.5;rotate:deg=15;jitter:brightness=0.2,contrast=0.2,saturation=0.2,hue=0.05;random-resized-crop:size=224'
./target/release/gpuimg -v compress assets/chelsea.png --rate 16 --bitplanes 6 -o target/demo/chelsea_16.tcz --overwrite
./target/release/gpuimg -v decompress target/demo/chelsea_16.tcz -o target/demo/chelsea_16.png --overwrite
echo "setup: done; outputs in target/demo/"
