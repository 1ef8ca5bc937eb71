#!/usr/bin/env bash
# Ranks benchmark (issue #18): builds gpuimg (release) with the `mpi` feature
# and runs `mpirun -np 1, 2, 3` over a folder and over one large image
# (benches/mpi/ranks.py; its options pass through, e.g. --repeat 5).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
scripts/install-deps.sh --mpi
cargo build --release -q --features mpi --bin gpuimg
exec python3 benches/mpi/ranks.py --gpuimg target/release/gpuimg "$@"
