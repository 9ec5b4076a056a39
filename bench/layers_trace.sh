#!/usr/bin/env bash
# Where the one-launch decode step's time goes (decode_layers.cu, TL_DECODE_LAYERS=1), with the
# binaries make_carry.sh packed: its bit-identity tests, then batch-1 steps traced phase by
# phase (TL_DECODE_LAYERS_TRACE: each phase's wait at the grid barrier, input, rows, and the
# barrier's latency; the producer's waits for free slots) for each ring size in SLOTS, then
# batch-1 figures with the step on and off (same binary and call).
#   bench/layers_trace.sh        (repository root, GPU machine; OUT=$OUT, BUILD=build-gpu)
set -uo pipefail
bash tools/gpu/unpack_carry.sh
OUT=${OUT:-/tmp/layers_trace}
BUILD=${BUILD:-build-gpu}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.carry/httplib/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit --format=csv,noheader
git log -1 --format=%h 2>/dev/null || true
timeout "${LAYERS_TIMEOUT:-150}" "$BUILD/tinyllama_tests" --gtest_filter='CudaDecode.LayersInOneLaunch*' \
  >"$OUT/layers_tests.log" 2>&1
rc=$?
echo "layers tests rc $rc"
grep -E "^\[  (PASSED|FAILED) |Failure" "$OUT/layers_tests.log" | head -10
[ "$rc" = 0 ] || exit 1
bench() { "$BUILD/tinyllama_serve_bench" --device cuda --batches 1 --prompt 128 --new 256 "$@" 2>&1 |
  grep -vE '^cuda:|batch +scheduler'; }
for slots in ${SLOTS:-0 16}; do
  echo "-- traced, TL_DECODE_LAYERS_SLOTS=$slots (0: as many as fit), op by op (no graphs):"
  TL_DECODE_LAYERS=1 TL_DECODE_LAYERS_TRACE=64 TL_DECODE_GRAPHS=0 TL_DECODE_LAYERS_SLOTS=$slots bench
done
for lever in ${LEVERS:-TL_DECODE_LAYERS=1 TL_DECODE_LAYERS=0}; do
  echo "-- ${lever//,/ } (batch 1: scheduler decode, overall, static decode, overall):"
  env ${lever//,/ } bench
done
nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader
