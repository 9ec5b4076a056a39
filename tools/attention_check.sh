#!/usr/bin/env bash
# Attention on a GPU machine: configure and build for sm_90 with all cores, run the CUDA
# attention tests and the benchmark. Run from the repository root. Logs go to $OUT when set
# (else build/attention_check/); the last lines printed are the benchmark table.
#
# The tests run from tinyllama_tests when the whole test binary links (it needs the rest of the
# CUDA backend); otherwise from tinyllama_attention_tests, which holds only the attention tests.
set -uo pipefail
LOG=${OUT:-build/attention_check}
mkdir -p "$LOG"
JOBS=$(nproc)
status=0

{ nvidia-smi; nvcc --version; } >"$LOG/machine.txt" 2>&1
cmake -S . -B build -DTL_CUDA_ARCHS=90 -DCMAKE_BUILD_TYPE=Release >"$LOG/configure.log" 2>&1 ||
  { echo "configure failed (see $LOG/configure.log)"; tail -20 "$LOG/configure.log"; exit 1; }
cmake --build build -j"$JOBS" --target tinyllama_attention_tests tinyllama_attention_bench >"$LOG/build.log" 2>&1 ||
  { echo "build failed (see $LOG/build.log)"; grep -E "error|Error" "$LOG/build.log" | head -30; exit 1; }

# What the compiler made of the kernels: registers, spills, shared memory per kernel.
obj=$(find build -name 'attention_fa2.cu.o' | head -1)
if [ -n "$obj" ]; then
  cuobjdump -res-usage "$obj" >"$LOG/fa2_resources.txt" 2>&1
  cuobjdump -sass "$obj" 2>/dev/null | grep -c HMMA >"$LOG/fa2_hmma_count.txt"
fi

tests=./build/tinyllama_attention_tests
if cmake --build build -j"$JOBS" --target tinyllama_tests >"$LOG/build_all_tests.log" 2>&1; then
  tests=./build/tinyllama_tests
else
  echo "note: tinyllama_tests does not link yet (see $LOG/build_all_tests.log); using $tests"
fi
echo "== tests: $tests --gtest_filter='CudaAttention*'"
"$tests" --gtest_filter='CudaAttention*' >"$LOG/tests.log" 2>&1 || status=1
grep -E "^\[  (FAILED|PASSED|SKIPPED) |tests ran|Failure|rel_l2 .*non-finite [1-9]" "$LOG/tests.log" | tail -40

echo "== benchmark (full output in $LOG/bench.log)"
./build/tinyllama_attention_bench >"$LOG/bench.log" 2>&1 || status=1
cat "$LOG/bench.log"
exit $status
