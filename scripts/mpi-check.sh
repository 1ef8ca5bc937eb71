#!/usr/bin/env bash
# The `mpi` feature end to end (scripts/test.sh runs it last): builds gpuimg
# with --features mpi, runs 3 ranks on this machine (mpirun --oversubscribe:
# more ranks than cores) over a folder that holds a corrupt file, and checks
#  - every output is the single-process run's bytes (sr, and augment, whose
#    samples keep their seeds whichever rank draws them);
#  - the corrupt file is reported by name as often as by one process (not
#    once per rank), and the run exits non-zero;
#  - the master's --report counts the jobs of every worker rank;
#  - one image split into tiles across the ranks merges to the single
#    process's bytes, and a corrupt one is refused with its name;
#  - a build without the feature, and a command that is not a batch, refuse
#    to run as several ranks instead of each doing the whole batch.
# Prints that it was not run, and why, when Open MPI or libclang cannot be
# installed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
if ! scripts/install-deps.sh --mpi; then
  echo "mpi check: NOT RUN: Open MPI and libclang could not be installed (scripts/install-deps.sh --mpi)"
  exit 0
fi
work=target/mpi-check
rm -rf "$work"
mkdir -p "$work/in"
fail() { echo "mpi check: FAILED: $*"; exit 1; }

# The build without the feature first (the tests' binary), then the one with it.
cargo build -q --bin gpuimg
cp target/debug/gpuimg "$work/gpuimg-plain"
cargo build -q --features mpi --bin gpuimg
cp target/debug/gpuimg "$work/gpuimg-mpi"
cargo clippy -q --features mpi --lib --bins -- -D warnings
bin="$work/gpuimg-mpi"

mpirun=(mpirun --oversubscribe)
if [ "$(id -u)" -eq 0 ]; then mpirun+=(--allow-run-as-root); fi

# Six small inputs of different sizes (so the ranks finish at different
# times and ask again) and one corrupt PNG.
for w in 64 90 120 47 100 75; do
  "$bin" -q --device cpu resize --width "$w" --height $((w * 3 / 4)) assets/chelsea.png -o "$work/in/c$w.png"
done
head -c 300 assets/chelsea.png > "$work/in/broken.png"

check_run() { # name, failed inputs, jobs (outputs planned), then the command after gpuimg
  local name=$1 failed=$2 jobs=$3
  shift 3
  set +e
  "$bin" -q --device cpu "$@" -o "$work/$name-single" --report "$work/$name-single.json" 2> "$work/$name-single.err"
  local rc_single=$?
  "${mpirun[@]}" -np 3 "$bin" -q --device cpu "$@" -o "$work/$name-ranks" --report "$work/$name-ranks.json" \
    > "$work/$name-ranks.out" 2> "$work/$name-ranks.err"
  local rc_ranks=$?
  set -e
  [ "$rc_single" -ne 0 ] || fail "$name: the single process exited 0 with a corrupt input"
  [ "$rc_ranks" -ne 0 ] || fail "$name: mpirun exited 0 with a corrupt input"
  local n_single n_ranks
  n_single=$(ls "$work/$name-single" | wc -l)
  n_ranks=$(ls "$work/$name-ranks" | wc -l)
  [ "$n_single" -gt 0 ] && [ "$n_single" -eq "$n_ranks" ] || fail "$name: $n_ranks outputs under mpirun, $n_single from one process"
  for f in "$work/$name-single"/*; do
    cmp -s "$f" "$work/$name-ranks/$(basename "$f")" || fail "$name: $(basename "$f") differs from the single-process output"
  done
  grep -q "\"failed\": $failed," "$work/$name-ranks.json" || fail "$name: the report does not count $failed failure(s)"
  grep -q 'broken.png' "$work/$name-ranks.json" || fail "$name: the report does not name broken.png"
  [ "$(grep -c 'broken.png' "$work/$name-ranks.err")" -eq "$(grep -c 'broken.png' "$work/$name-single.err")" ] \
    || fail "$name: broken.png is not reported as often as by the single process"
  python3 - "$work/$name-ranks.json" "$jobs" <<'EOF' || fail "$name: jobs per rank do not add up to $jobs"
import json, sys
r = json.load(open(sys.argv[1]))
per = r["tasks_per_rank"]
assert len(per) == 3 and per[0] == 0, per
assert sum(per) == int(sys.argv[2]), per
EOF
  echo "mpi check: $name: 3 ranks wrote the single process's $n_ranks outputs byte for byte; jobs per rank $(python3 -c "import json;print(json.load(open('$work/$name-ranks.json'))['tasks_per_rank'])"); broken.png reported"
}

check_run sr 1 7 sr --scale 2 "$work/in"
check_run augment 1 14 augment "$work/in" --count 2 --seed 7 --ops 'hflip:p=0.5;rotate:deg=10;jitter:brightness=0.2;crop:w=40,h=30'

# One image split into seed-001 tiles across the worker ranks: the master
# merges them and writes the single process's bytes (x2 whole; x4 with
# --tile 64x64, so more tiles than workers, handed out as they ask).
"$bin" -q --device cpu resize --width 301 --height 203 assets/chelsea.png -o "$work/one.png"
for args in "--scale 2" "--scale 4 --tile 64x64"; do
  rm -f "$work/one-single.png" "$work/one-ranks.png" "$work/one-ranks.json"
  # shellcheck disable=SC2086
  "$bin" -q --device cpu sr $args "$work/one.png" -o "$work/one-single.png"
  # shellcheck disable=SC2086
  "${mpirun[@]}" -np 3 "$bin" -q --device cpu sr $args "$work/one.png" -o "$work/one-ranks.png" \
    --report "$work/one-ranks.json" > /dev/null 2> "$work/one-ranks.err" || fail "sr $args of one image under mpirun: $(head -3 "$work/one-ranks.err")"
  cmp -s "$work/one-single.png" "$work/one-ranks.png" || fail "sr $args: the merged tiles differ from the single-process output"
  tiles=$(python3 -c "import json;r=json.load(open('$work/one-ranks.json'));assert r['tiles']>=2 and sum(r['tasks_per_rank'])==r['tiles'];print(r['tiles'], r['tasks_per_rank'])") \
    || fail "sr $args: the report does not show the tiles"
  echo "mpi check: sr $args of one 301x203 image: tiles $tiles merged to the single process's bytes"
done
# enhance at full resolution (s = 1) splits the same way: the network's halo.
rm -f "$work/enh-single.png" "$work/enh-ranks.png"
"$bin" -q --device cpu enhance --scale-factor 1 "$work/one.png" -o "$work/enh-single.png"
"${mpirun[@]}" -np 3 "$bin" -q --device cpu enhance --scale-factor 1 "$work/one.png" -o "$work/enh-ranks.png" \
  > /dev/null 2> "$work/enh-ranks.err" || fail "enhance of one image under mpirun: $(head -3 "$work/enh-ranks.err")"
cmp -s "$work/enh-single.png" "$work/enh-ranks.png" || fail "enhance --scale-factor 1: the merged tiles differ from the single-process output"
echo "mpi check: enhance --scale-factor 1 of one 301x203 image: tiles merged to the single process's bytes"
set +e
"${mpirun[@]}" -np 3 "$bin" -q --device cpu sr --scale 2 "$work/in/broken.png" -o "$work/one-broken.png" > /dev/null 2> "$work/one-broken.err"
rc=$?
set -e
[ "$rc" -ne 0 ] && grep -q "broken.png" "$work/one-broken.err" && [ ! -e "$work/one-broken.png" ] \
  || fail "a corrupt single image under mpirun was not refused cleanly"

# Refusals: no rank runs the whole batch by itself.
set +e
"${mpirun[@]}" -np 2 "$work/gpuimg-plain" -q --device cpu sr --scale 2 "$work/in" -o "$work/plain" > /dev/null 2> "$work/plain.err"
rc=$?
"${mpirun[@]}" -np 2 "$bin" -q --device cpu bench --quick > /dev/null 2> "$work/bench.err"
rc_bench=$?
set -e
[ "$rc" -ne 0 ] && grep -q "built without the \`mpi\` feature" "$work/plain.err" || fail "a build without the feature ran under mpirun"
[ ! -e "$work/plain" ] || [ -z "$(ls "$work/plain")" ] || fail "a build without the feature wrote outputs under mpirun"
[ "$rc_bench" -ne 0 ] && grep -q "under mpirun only" "$work/bench.err" || fail "bench ran under mpirun"
echo "mpi check: a build without the feature and a non-batch command refuse to run as several ranks"
echo "mpi check: passed"
