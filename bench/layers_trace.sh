#!/usr/bin/env bash
# Where the one-launch decode step's time goes (decode_layers.cu, TL_DECODE_LAYERS=1), with the
# binaries make_carry.sh packed: its bit-identity tests, then batch-1 steps traced phase by
# phase (TL_DECODE_LAYERS_TRACE: each phase's wait at the grid barrier, input, rows, and the
# barrier's latency; the producer's waits for free slots) for each variant in TRACED, then
# batch-1 figures for each variant in LEVERS (same binary and call).
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
# The ops whose device code the step shares (decode_linear.cuh, decode_attention.cuh), in a
# process of their own.
timeout 300 "$BUILD/tinyllama_tests" --gtest_filter="${TESTS:-BackendOps.Cuda*:CudaOps.Decode*:CudaDecode.*-CudaDecode.LayersInOneLaunch*}" \
  >"$OUT/op_tests.log" 2>&1
echo "op tests rc $?"
grep -E "^\[  (PASSED|FAILED) |Failure" "$OUT/op_tests.log" | head -10
[ "$rc" = 0 ] || exit 1
bench() { "$BUILD/tinyllama_serve_bench" --device cuda --batches 1 --prompt 128 --new 256 "$@" 2>&1 |
  grep -vE '^cuda:|batch +scheduler'; }
# TRACED: the traced variants (a variant's variables joined by commas).
for lever in ${TRACED:-TL_DECODE_LAYERS_SLOTS=0 TL_DECODE_LAYERS_SLOTS=16}; do
  echo "-- traced, ${lever//,/ }, op by op (no graphs):"
  (export TL_DECODE_LAYERS=1 TL_DECODE_LAYERS_TRACE=64 TL_DECODE_GRAPHS=0 ${lever//,/ }; bench)
done
for lever in ${LEVERS:-TL_DECODE_LAYERS=1 TL_DECODE_LAYERS=0}; do
  echo "-- ${lever//,/ } (batch 1: scheduler decode, overall, static decode, overall):"
  (export ${lever//,/ }; bench)
done
nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader
