#!/usr/bin/env bash
# The test command: installs what is missing, then runs every test with a GPU
# adapter required (the software one where there is no GPU), the embedding
# examples (embed also on the newest wgpu 30.x; host_app), the library on
# wasm32 (webgpu feature) and on aarch64 (checked, not run), clippy, and a
# 3-rank mpirun job (the mpi feature).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# Each step's header says how long the run has taken so far (CI's budget).
step() { echo "== $1 [$((SECONDS / 60)) min $((SECONDS % 60)) s]"; }
scripts/install-deps.sh
# GPU tests fail instead of skipping when no adapter opens.
export GPUIMG_REQUIRE_GPU=1
cargo build --all-targets
step "adapters"
cargo run -q --bin gpuimg -- info
step "tests"
cargo test --no-fail-fast
step "gpuimg bench --quick (every kernel and model on the GPU adapter and the CPU)"
cargo run -q --bin gpuimg -- --device gpu bench --quick --json target/bench-quick.json --chart target/bench-quick.svg --overwrite
step "peer harness smoke (tiny sizes; peers not installed here are reported as not run)"
python3 benches/peers/peers.py --smoke --threads 1 --gpuimg target/debug/gpuimg
step "example: embedding in a host application"
cargo run -q --example embed
step "example: a host application's frame through SuperResolver, Enhancer and Codec"
cargo run -q --example host_app -- target/host_app
step "the newest wgpu 30.x (scripts/wgpu-newest.sh)"
bash scripts/wgpu-newest.sh
step "the library on wasm32 with the WebGPU backend (scripts/wasm-check.sh)"
bash scripts/wasm-check.sh
step "the library and the CLI on aarch64 (scripts/arm-check.sh)"
bash scripts/arm-check.sh
step "clippy (and the library without default features: no CLI, no JPEG/WebP/BMP)"
cargo clippy -q --all-targets -- -D warnings
cargo clippy -q --lib --no-default-features -- -D warnings
step "docs (broken links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc -q --no-deps
step "mpi: 3 ranks on this machine, the mpi feature (scripts/mpi-check.sh)"
bash scripts/mpi-check.sh
step "done"
