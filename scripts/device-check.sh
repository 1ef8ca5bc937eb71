#!/usr/bin/env bash
# One short run on a lent hardware GPU (see BENCHMARKS.md, "How the figures
# were taken"): the release binary and two release test binaries, built here
# and stripped into .dev/, with the Vulkan loader's .debs in .gl/. Prints the
# adapter, runs every kernel's parity cases and the strip tests on the
# hardware, the model bench cases (their JSON rows carry dispatches and bytes
# per image), and the ring-depth comparison of the streaming
# engine. Writes everything under $OUT (the device tool's output folder).
# Prepare here:
#   cargo build --release && cargo test --release --no-run --test parity --test gpu_engine
#   mkdir -p .dev && cp target/release/gpuimg .dev/ && strip .dev/gpuimg
#   cp "$(ls -t target/release/deps/parity-* | grep -v '\.d$' | head -1)" .dev/parity
#   cp "$(ls -t target/release/deps/gpu_engine-* | grep -v '\.d$' | head -1)" .dev/gpu_engine && strip .dev/parity .dev/gpu_engine
set -uo pipefail
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
B=.dev/gpuimg
export GPUIMG_REQUIRE_GPU=1
{ $B info; nproc; } 2>&1 | tee "$OUT/info.txt"
echo "== parity and strips on the hardware"
.dev/parity 2>&1 | tail -6 | tee "$OUT/tests.txt"
.dev/gpu_engine 2>&1 | tail -4 | tee -a "$OUT/tests.txt"
echo "== bench"
$B --device gpu bench --only tinycompress_4_encode,tinycompress_4_decode,tinycompress_enc,tinycompress_quant,tinycompress_dec,resize_bilinear,zero_dce_net,zero_dce_pp,zero_dce,tinypssr_x2,tinypssr_x4,tinypssr_x4_fused \
  --sizes 768x512,1200x900,1920x1080 --threads "$(nproc)" --json "$OUT/bench.json" --overwrite 2>&1 | tee "$OUT/bench.txt"
echo "== ring depth"
mkdir -p /tmp/in /tmp/o
$B -q --device cpu resize assets/chelsea.png --width 1280 --height 854 -o /tmp/p.jpg --overwrite
for i in $(seq -w 1 64); do cp /tmp/p.jpg /tmp/in/p$i.jpg; done
for op in "resize --scale 0.5" "enhance" "sr --scale 2" "compress --rate 4"; do
  name=$(echo "$op" | cut -d' ' -f1)
  for s in 1 2 3; do
    $B --device gpu -q $op /tmp/in -o /tmp/o/$name --overwrite --slots "$s" --report "$OUT/ring-$name-s$s.json"
    python3 - "$OUT/ring-$name-s$s.json" "$name" "$s" <<'PY' 2>/dev/null || grep -E '"(wall_s|images_per_s|gpu_utilization)"' "$OUT/ring-$name-s$s.json"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]} slots {sys.argv[3]}: {r['images']} images, wall {r['wall_s']:.2f} s, {r['images_per_s']:.1f}/s, gpu busy {r['gpu_busy_s']}, util {r['gpu_utilization']}, fallbacks {r['cpu_fallbacks']}")
PY
  done
done 2>&1 | tee "$OUT/ring.txt"
