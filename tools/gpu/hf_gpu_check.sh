#!/usr/bin/env bash
# Issue #7 on the GPU machine: build, the KV-cache/HF tests, the transformers round trip
# (tools/gpu/hf_check.py) and the generation benchmark (bench/generate_bench.py).
#   tools/gpu/hf_gpu_check.sh [tests] [hf] [hf-1b] [bench]   (default: all four)
# (hf = the tiny trained model, hf-1b = the random TinyLlama-1.1B; each step fits in 10 min)
# Run from the repository root. Logs and result JSON go to $OUT (default build/hf_gpu); the
# models and exports (several GB) to $WORK (default /tmp/hf_gpu_work). Each step's summary
# is printed. Exit status 1 if any step failed.
set -uo pipefail
OUT=${OUT:-build/hf_gpu}
WORK=${WORK:-/tmp/hf_gpu_work}
BUILD=${BUILD:-build}
mkdir -p "$OUT"
steps=${*:-tests hf hf-1b bench}
has() { [[ " $steps " == *" $1 "* ]]; }
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/machine.txt"
git rev-parse --short HEAD 2>/dev/null | tee -a "$OUT/machine.txt"

echo "== build"
cmake -S . -B "$BUILD" -DTL_CUDA=ON -DTL_CUDA_ARCHS=90 -DCMAKE_BUILD_TYPE=Release >"$OUT/build.log" 2>&1 &&
  cmake --build "$BUILD" -j "$(nproc)" >>"$OUT/build.log" 2>&1 ||
  { echo "build failed"; grep -E "error" "$OUT/build.log" | head -40; exit 1; }

if has tests; then
  echo "== tests: KV cache (CPU and CUDA), HF import/export/CLI, golden parity"
  "$BUILD/tinyllama_tests" --gtest_color=no \
    --gtest_filter='CudaDecode.*:Decode.*:Hf*.*:Sampling.*:Safetensors.*' >"$OUT/tests.log" 2>&1 || status=1
  grep -E "^\[  (FAILED|PASSED|SKIPPED) |tests ran|tinyllama-1.1b, batch|HF parity" "$OUT/tests.log"
  grep -B2 -A12 "Failure" "$OUT/tests.log" | head -100
fi

for m in tiny 1.1b; do
  step=$([ $m = tiny ] && echo hf || echo hf-1b)
  has $step || continue
  echo "== tools/gpu/hf_check.py --models $m (transformers round trip)"
  PYTHONUNBUFFERED=1 timeout 1800 python3 tools/gpu/hf_check.py --binary "$BUILD/tinyllama" \
    --models $m --work "$WORK/hf_check" >"$OUT/hf_check_$m.log" 2>&1 || status=1
  cp "$WORK/hf_check/results_$m.json" "$OUT/" 2>/dev/null
  grep -E "^\[(PASS|FAIL)\]|checks passed|Error|error|Traceback" "$OUT/hf_check_$m.log" | tail -30
done

if has bench; then
  echo "== bench/generate_bench.py (batch 1 and 32, prompt 128, 512 new tokens)"
  PYTHONUNBUFFERED=1 timeout 1800 python3 bench/generate_bench.py --binary "$BUILD/tinyllama" \
    --work "$WORK/gen_bench" >"$OUT/generate_bench.log" 2>&1 || status=1
  cp "$WORK/gen_bench/generate_bench.json" "$OUT/" 2>/dev/null
  grep -E "^\||^\[cuda|H100|H200" "$OUT/generate_bench.log" | tail -20
fi
exit $status
