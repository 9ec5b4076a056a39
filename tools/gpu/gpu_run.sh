#!/usr/bin/env bash
# One GPU-machine session: build for sm_90, run every test, make the HF golden fixtures and
# run the golden tests on CPU and GPU, then the benchmarks. Logs and results go to $OUT.
#   tools/gpu/gpu_run.sh [all|tests|bench|pytorch]...
# Run from the repository root. Without OUT, logs go to build/gpu_run/.
set -uo pipefail
OUT=${OUT:-build/gpu_run}
mkdir -p "$OUT"
JOBS=$(nproc)
BUILD=${BUILD:-build}
steps=${*:-all}
status=0
has() { [[ " $steps " == *" $1 "* || " $steps " == *" all "* ]]; }

{
  date -u +%FT%TZ
  git rev-parse --short HEAD 2>/dev/null
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  nvcc --version | tail -n 1
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

echo "== build"
t0=$(date +%s)
cmake -S . -B "$BUILD" -DTL_CUDA=ON -DTL_CUDA_ARCHS=90 -DCMAKE_BUILD_TYPE=Release >"$OUT/build.log" 2>&1 &&
  cmake --build "$BUILD" -j "$JOBS" >>"$OUT/build.log" 2>&1 ||
  { echo "build failed"; grep -E "error" "$OUT/build.log" | head -40; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"

if has tests; then
  echo "== golden fixtures (transformers)"
  if [ ! -f tests/fixtures/hf_golden/golden.safetensors ]; then
    PYTHONUNBUFFERED=1 python3 tools/fixtures/make_golden.py --out tests/fixtures/hf_golden >"$OUT/golden.log" 2>&1 ||
      { echo "make_golden failed"; tail -20 "$OUT/golden.log"; status=1; }
    tail -3 "$OUT/golden.log"
    tar -cf "$OUT/hf_golden.tar" -C tests/fixtures hf_golden 2>/dev/null
  fi
  echo "== tests"
  "$BUILD/tinyllama_tests" --gtest_color=no >"$OUT/tests.log" 2>&1 || status=1
  grep -E "^\[  (FAILED|PASSED|SKIPPED) |tests ran|HF parity" "$OUT/tests.log" | tail -40
  grep -B2 -A12 "Failure" "$OUT/tests.log" | head -150
fi

if has bench; then
  echo "== attention bench"
  timeout 120 "$BUILD/tinyllama_attention_bench" >"$OUT/attention_bench.log" 2>&1 || status=1
  tail -15 "$OUT/attention_bench.log"
  echo "== tinyllama bench (1.1B, micro-batch 8 x 2048)"
  for extra in "" "--recompute"; do
    timeout 240 "$BUILD/tinyllama" bench --preset tinyllama-1.1b --micro-batch 8 --steps 10 $extra \
      --json "$OUT/bench${extra//-/_}.json" 2>&1 | tee -a "$OUT/bench.log" || status=1
  done
fi

if has pytorch; then
  echo "== pytorch reference (compiled)"
  PYTHONUNBUFFERED=1 timeout 420 python3 bench/pytorch_reference.py --micro-batch 8 --steps 10 \
    --json "$OUT/pytorch.json" >"$OUT/pytorch.log" 2>&1 || status=1
  tail -3 "$OUT/pytorch.log"
fi
# At most 8 files come back from the device machine: pack the logs into one archive.
(cd "$OUT" && tar -cf logs.tar --remove-files -- *.log *.json machine.txt 2>/dev/null)
exit $status
