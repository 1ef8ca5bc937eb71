#!/usr/bin/env bash
# gpuimg takes any wgpu 30 from 30.0.1 (Cargo.toml); Cargo.lock holds that
# lowest version, which every other check builds. This builds a scratch copy
# of the tracked files against the newest wgpu 30.x the registry has and
# runs the embedding example on it (a host application's device, gpuimg's
# kernels in its encoder). Without the registry it says it was not run.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
source "$src/scripts/env.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$src" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$tmp"
cd "$tmp"
lowest=$(grep -A1 '^name = "wgpu"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
if ! timeout 300 cargo update -q -p wgpu 2>/dev/null; then
    echo "wgpu-newest: NOT RUN: the crates.io index could not be reached to find the newest wgpu 30.x (locked: $lowest)"
    exit 0
fi
newest=$(grep -A1 '^name = "wgpu"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
echo "wgpu-newest: locked $lowest, newest allowed $newest"
if [ "$newest" = "$lowest" ]; then
    echo "wgpu-newest: the locked version is the newest; the other checks covered it"
    exit 0
fi
# The dependencies other than wgpu's are shared with the main build.
CARGO_TARGET_DIR="$src/target" cargo run -q --example embed
echo "wgpu-newest: the embedding example passed on wgpu $newest"
