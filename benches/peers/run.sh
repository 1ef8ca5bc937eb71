#!/usr/bin/env bash
# The peer harness in one command: builds gpuimg (release), installs the
# Python peers if missing (benches/peers/setup.sh), and prints gpuimg/peer
# ratios from one run. Extra arguments go to peers.py (--threads N,
# --repeat K, --json OUT.json, --smoke).
# Usage: benches/peers/run.sh [--threads 2]
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x target/peersvenv/bin/python ] || benches/peers/setup.sh
cargo build --release -q --bin gpuimg
exec target/peersvenv/bin/python benches/peers/peers.py --gpuimg target/release/gpuimg "$@"
