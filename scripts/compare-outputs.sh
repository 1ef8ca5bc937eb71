#!/usr/bin/env bash
# Runs a fixed set of CPU-path commands with the binary of a reference commit
# and with the working tree's, and compares every output byte for byte: a
# refactor must change none. The reference is built in a git worktree with
# the same target folder, so only gpuimg itself is compiled again.
# Usage: [KEEP=DIR] scripts/compare-outputs.sh [REF]   (default: origin/main, else HEAD~1)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
ref="${1:-$(git rev-parse -q --verify origin/main || git rev-parse HEAD~1)}"
work=$(mktemp -d)
trap 'git worktree remove --force "$work/tree" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add -q --detach "$work/tree" "$ref"
echo "== building $ref"
(cd "$work/tree" && CARGO_TARGET_DIR="$root/target" cargo build --release -q --bin gpuimg)
cp target/release/gpuimg "$work/gpuimg-ref"
echo "== building the working tree"
# The two builds share one target folder and cargo gives both the same unit
# hash; the reference's build leaves a fingerprint whose relative source
# paths point at this tree's older files, so cargo would call the
# reference's binary fresh and keep it. Newer sources force the rebuild.
find src shaders -type f -exec touch {} +
cargo build --release -q --bin gpuimg
cp target/release/gpuimg "$work/gpuimg-new"
if cmp -s "$work/gpuimg-ref" "$work/gpuimg-new" && ! git diff --quiet "$ref" -- src shaders Cargo.toml; then
  echo "compare-outputs: the working tree's binary is the reference's though the sources differ" >&2
  exit 1
fi
a=assets/chelsea.png
d=assets/chelsea_dark.png
cmds=(
  "resize $a --scale 0.37 -o OUT/r1.png"
  "resize $a --width 640 --height 333 --align-corners -o OUT/r2.png"
  "resize $a --scale 2.5 -o OUT/r3.jpg"
  "sr --scale 2 $a -o OUT/s2.png"
  "sr --scale 4 $d -o OUT/s4.png"
  "enhance $d -o OUT/e1.png"
  "enhance --model zero-dce $d -o OUT/e2.png"
  "compress --rate 4 $a -o OUT/c4.tcz"
  "compress --rate 16 --bitplanes 6 $a -o OUT/c16.tcz"
  "compress --rate 64 $a -o OUT/c64.tcz"
  "decompress OUT/c16.tcz -o OUT/c16.png"
  "augment $a -o OUT/aug --count 3 --seed 7 --ops hflip;rotate:deg=20;jitter:brightness=0.3,hue=0.1;random-resized-crop:size=96"
  "augment $a -o OUT/npy --seed 3 --ops resize:w=64,h=48;normalize"
)
fail=0
for v in ref new; do
  mkdir -p "$work/out-$v"
  for c in "${cmds[@]}"; do
    # shellcheck disable=SC2086
    "$work/gpuimg-$v" --device cpu -q ${c//OUT/$work/out-$v} >/dev/null
  done
  "$work/gpuimg-$v" --device cpu eval sr --scale 2 ../shared/data/CSet5 > "$work/out-$v/eval.txt" 2>/dev/null || true
done
# KEEP=DIR keeps both sets of outputs (DIR/out-ref, DIR/out-new) for a closer look.
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp -r "$work/out-ref" "$work/out-new" "$KEEP"/; fi
n=0
while IFS= read -r f; do
  n=$((n + 1))
  if ! cmp -s "$work/out-ref/$f" "$work/out-new/$f"; then
    echo "DIFFERS: $f"; fail=1
  fi
done < <(cd "$work/out-ref" && find . -type f | sort)
[ "$(cd "$work/out-ref" && find . -type f | sort)" = "$(cd "$work/out-new" && find . -type f | sort)" ] || { echo "different file sets"; fail=1; }
if [ $fail -eq 0 ]; then echo "compare-outputs: $n files byte-identical to $ref"; else exit 1; fi
