#!/usr/bin/env bash
# Attention on a GPU machine: configure and build for sm_90 with all cores, run the attention
# tests (the kernels against a float64 reference, each implementation through the Backend
# interface against the CPU, the whole model on the HF golden fixture) and the benchmark.
# Run from the repository root. Logs go to $OUT when set (else build/attention_check/); the
# last lines printed are the benchmark table.
set -uo pipefail
LOG=${OUT:-build/attention_check}
mkdir -p "$LOG"
JOBS=$(nproc)
status=0

{ nvidia-smi; nvcc --version; } >"$LOG/machine.txt" 2>&1
cmake -S . -B build -DTL_CUDA_ARCHS=90 -DCMAKE_BUILD_TYPE=Release >"$LOG/configure.log" 2>&1 ||
  { echo "configure failed (see $LOG/configure.log)"; tail -20 "$LOG/configure.log"; exit 1; }
cmake --build build -j"$JOBS" --target tinyllama_tests tinyllama_attention_bench >"$LOG/build.log" 2>&1 ||
  { echo "build failed (see $LOG/build.log)"; grep -E "error|Error" "$LOG/build.log" | head -30; exit 1; }

# What the compiler made of the kernels: registers, spills, shared memory per kernel.
obj=$(find build -name 'attention_fa2.cu.o' | head -1)
if [ -n "$obj" ]; then
  cuobjdump -res-usage "$obj" >"$LOG/fa2_resources.txt" 2>&1
  cuobjdump -sass "$obj" 2>/dev/null | grep -c HMMA >"$LOG/fa2_hmma_count.txt"
fi
obj=$(find build -name 'attention_generic.cu.o' | head -1)
[ -n "$obj" ] && cuobjdump -res-usage "$obj" >"$LOG/generic_resources.txt" 2>&1

tests=./build/tinyllama_tests
echo "== tests: $tests --gtest_filter='CudaAttention*:Impl/BackendOpsAttention*'"
"$tests" --gtest_filter='CudaAttention*:Impl/BackendOpsAttention*' >"$LOG/tests.log" 2>&1 || status=1
grep -E "^\[  (FAILED|PASSED|SKIPPED) |tests ran|Failure|rel_l2 .*non-finite [1-9]|rejects|no cuDNN engine|FAIL" "$LOG/tests.log" | tail -60
echo "== tests: $tests --gtest_filter='HfGolden.Cuda*' (whole model, head dim 16: generic attention)"
"$tests" --gtest_filter='HfGolden.Cuda*' >"$LOG/tests_golden.log" 2>&1 || status=1
grep -E "^\[  (FAILED|PASSED|SKIPPED) |tests ran|Failure" "$LOG/tests_golden.log" | tail -20

# The TinyLlama shape (the table that matters), then head dims 128 (fa2, cuDNN, generic), 32
# (the tiny preset's, generic only) and 256 (generic, two chunks).
echo "== benchmark (full output in $LOG/bench*.log)"
./build/tinyllama_attention_bench >"$LOG/bench.log" 2>&1 || status=1
cat "$LOG/bench.log"
for shape in "B=8 T=2048 H=16 K=4 D=128" "B=8 T=2048 H=64 K=16 D=32" "B=4 T=2048 H=8 K=2 D=256"; do
  name=$(echo "$shape" | tr -d ' =')
  echo "== benchmark $shape"
  # shellcheck disable=SC2086
  ./build/tinyllama_attention_bench $shape reps=10 >"$LOG/bench_$name.log" 2>&1 || status=1
  grep -vE "^(attention bench|timing:|shape )" "$LOG/bench_$name.log"
done
exit $status
