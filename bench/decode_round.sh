#!/usr/bin/env bash
# One GPU call for the decode path (#13), with binaries built on the development machine and
# carried (tools/gpu/make_carry.sh): the decode tests, then bench/serve_bench.sh (scheduler
# rows with the levers one by one, SM clock and power beside them, then the HTTP load), then
# transformers' strongest generate beside ours (bench/generate_bench.sh) in the same call.
# NCU=1 adds bench/decode_ncu.sh (a batch-1 step kernel by kernel); SKIP_SERVE=1, SKIP_GEN=1
# and NO_HTTP=1 leave parts out.
#   bench/decode_round.sh        (repository root, GPU machine; OUT=$OUT, BUILD=build-gpu)
set -uo pipefail
bash tools/gpu/unpack_carry.sh  # the binaries make_carry.sh packed, if carried
OUT=${OUT:-/tmp/decode_round}
BUILD=${BUILD:-build-gpu}
mkdir -p "$OUT"
export TL_SHARED_DIR=$PWD/.carry LD_LIBRARY_PATH=$PWD/.carry/httplib/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader
git rev-parse --short HEAD 2>/dev/null
echo "== tests"
TL_BACKEND_OPS_ONLY=${OPS_ONLY:-decode,prefetch} timeout ${TESTS_TIMEOUT:-300} "$BUILD/tinyllama_tests" \
  --gtest_filter="${TESTS:-BackendOps.Cuda:CudaOps.DecodeLinear*:CudaDecode.*:CudaModel.*}" \
  >"$OUT/tests.log" 2>&1
echo "tests rc $?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED|Failure|tok/s|tokens/s" "$OUT/tests.log" | head -30
timeout 200 "$BUILD/tinyllama_serve_tests" --gtest_filter='*Cuda*:ServeScheduler.*' \
  >"$OUT/serve_tests.log" 2>&1
echo "serve tests rc $?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED|Failure" "$OUT/serve_tests.log" | head -10
# The levers the decode tests do not switch themselves (read once a process), against the CPU
# twin too: programmatic dependent launch off; decode attention in one split with
# decode_linear's chunks in 4 shared-memory slots.
# VARIANTS (space-separated, a variant's variables joined by commas) replaces the list; "" skips.
for v in ${VARIANTS-TL_DECODE_ATTN_CLUSTER=1 TL_PDL=0 TL_DECODE_ATTN_SPLITS=1,TL_DECODE_STAGES=4}; do
  env ${v//,/ } TL_BACKEND_OPS_ONLY=decode timeout 120 "$BUILD/tinyllama_tests" \
    --gtest_filter='BackendOps.Cuda:CudaDecode.*' >"$OUT/tests_variants.log" 2>&1
  echo "variant tests (${v//,/ }) rc $?"
  grep -E "^\[  (PASSED|FAILED) |Failure" "$OUT/tests_variants.log" | head -10
done
[ -n "${SKIP_SERVE:-}" ] || {
  echo "== serve_bench"
  PREBUILT=1 BUILD=$BUILD OUT=$OUT/serve timeout 400 bash bench/serve_bench.sh 2>&1 | tee "$OUT/serve.log" |
    grep -vE "^\s+slowest:"
}
[ -n "${SKIP_GEN:-}" ] || {
  echo "== generate vs transformers (static cache, compiled)"
  PREBUILT=1 BUILD=$BUILD WORK=$OUT/gen timeout 300 bash bench/generate_bench.sh --batches 1 32 --new 256 \
    >"$OUT/gen.log" 2>&1
  echo "gen rc $?"
  tail -12 "$OUT/gen.log"
  rm -rf "$OUT/gen"/*.tlck "$OUT/gen"/*.safetensors 2>/dev/null
}
rm -f "$OUT"/serve/*.tlck
[ -z "${NCU:-}" ] || {  # NCU=1: a batch-1 step kernel by kernel (bench/decode_ncu.sh)
  echo "== decode step under Nsight Compute"
  BUILD=$BUILD OUT=$OUT/ncu timeout 240 bash bench/decode_ncu.sh 2>&1 | grep -v "^cuda:" | head -40
}
