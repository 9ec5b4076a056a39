#!/usr/bin/env bash
# A GPU call for the one-launch decode step (decode_layers.cu, TL_DECODE_LAYERS=1) with the
# binaries make_carry.sh packed: its bit-identity tests first, alone and under a short
# timeout (a kernel whose blocks wait on each other hangs rather than fails when wrong), then
# bench/decode_round.sh (the other decode tests, in a process of their own: a kernel fault
# leaves a CUDA context unusable; the serve tests and the scheduler figures) with the lever
# beside the defaults, only if they passed.
#   bench/layers_round.sh        (repository root, GPU machine; OUT=$OUT, BUILD=build-gpu)
set -uo pipefail
bash tools/gpu/unpack_carry.sh
OUT=${OUT:-/tmp/layers_round}
BUILD=${BUILD:-build-gpu}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.carry/httplib/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "== the one-launch step's tests"
timeout "${LAYERS_TIMEOUT:-150}" "$BUILD/tinyllama_tests" --gtest_filter='CudaDecode.LayersInOneLaunch*' \
  >"$OUT/layers_tests.log" 2>&1
rc=$?
echo "layers tests rc $rc"
grep -E "^\[  (PASSED|FAILED|  OK) |^\[  FAILED|Failure|difference|Expected|Which is" "$OUT/layers_tests.log" | head -30
# LAYER_LEVERS: the variants with the one-launch step (run only when its tests passed).
levers=${LEVERS:-TL_DECODE_RUN_AHEAD=0}
[ "$rc" = 0 ] && levers="${LAYER_LEVERS:-TL_DECODE_LAYERS=1} $levers"
QUICK=1 SKIP_GEN=${SKIP_GEN:-1} NO_HTTP=1 VARIANTS="" OPS_ONLY=decode \
  TESTS=${TESTS:-'BackendOps.Cuda:CudaOps.DecodeLinear*:CudaDecode.*-CudaDecode.LayersInOneLaunch*'} \
  LEVERS="$levers" \
  OUT=$OUT BUILD=$BUILD bash bench/decode_round.sh
