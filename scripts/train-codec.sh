#!/usr/bin/env bash
# Trains the bundled TinyCompress weights from scratch (about 35 minutes on a
# 2-core VM, CPU only): -4 from the bicubic start in two runs, then -16 from
# -4 and -64 from -16 (their blocks repeated). The photos come from
# scripts/get-data.sh. Training is deterministic: the same commands give the
# same weights (compare `codec id` in `gpuimg -v compress`, or the files).
# Usage: scripts/train-codec.sh [OUTDIR]   (default assets/)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-assets}"
mkdir -p "$out"
[ -d data/train ] || scripts/get-data.sh
cargo build --release -q
g=target/release/gpuimg
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$g train codec --rate 4 --data data/train --steps 2000 --lr 5e-4 -o "$tmp/c4-start.safetensors"
$g train codec --rate 4 --data data/train --steps 4000 --lr 3e-4 --batch 16 --init "$tmp/c4-start.safetensors" -o "$out/tinycompress_4.safetensors" --overwrite
$g train codec --rate 16 --data data/train --steps 3000 --lr 5e-4 --init "$out/tinycompress_4.safetensors" -o "$out/tinycompress_16.safetensors" --overwrite
$g train codec --rate 64 --data data/train --steps 2000 --patch 128 --lr 3e-4 --init "$out/tinycompress_16.safetensors" -o "$out/tinycompress_64.safetensors" --overwrite
