#!/usr/bin/env bash
# Builds the CUDA backend for Hopper and runs its tests: the backend-ops table (BackendOps*:
# every op against the CPU backend, each attention implementation; BackendOpsPerf.Table: the
# per-op timings at the 1.1B shapes that bench/NOTES.md quotes) and Cuda* (memory,
# conversion, determinism, profiling, attention kernels, decoding, the whole model).
# Run from the repository root on the GPU machine:  tools/gpu/gpu_check.sh [extra gtest args]
# With OUT set, the log goes to $OUT/cuda_tests.log as well as to the terminal.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
JOBS=$(nproc)
LOG=${OUT:+$OUT/cuda_tests.log}
LOG=${LOG:-/dev/null}
[ -n "${OUT:-}" ] && mkdir -p "$OUT"

{
  echo "== $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null) on $(hostname)"
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv,noheader || true
  cmake -S . -B "$BUILD" -DTL_CUDA=ON -DTL_CUDA_ARCHS=90 -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
  cmake --build "$BUILD" -j "$JOBS" --target tinyllama_tests 2>&1 | tail -n 30
  [ "${PIPESTATUS[0]}" -eq 0 ] || exit 1
  BIN="$BUILD/tinyllama_tests"
  "$BIN" --gtest_filter='BackendOps*:*BackendOpsAttention*:Cuda*' --gtest_color=no "$@"
  rc=$?
  echo "== exit code $rc"
  exit $rc
} 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
