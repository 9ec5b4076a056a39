#!/usr/bin/env bash
# The curve comparison (#15 §2, #16) split into device calls that each fit 10 minutes, with
# binaries built on the development machine (same nvcc, sm_90) and carried in build-gpu/:
#   ours     prep + our 1,000-step bf16 run, then the GPU tests of TESTS with what time is left,
#            then `bench` in bf16 and fp8 at the same shape (the train/bench throughput ratio)
#   ref:N    prep + the PyTorch reference from init N, then the summary; the earlier calls'
#            metrics come back in through .carry/results (run_ours.jsonl, bench*.json)
#   both     prep + ours + ref:1 (side by side where the card holds both), the summary, then
#            the tests and the FP8 bench with what time is left
#   auto     `both` on a card that holds both runs, else tests + benches first, then ours
#   fp8      prep + our 1,000-step fp8 run, then the summary
#   long     the 5,000-step fp8 run, ~450 s a call; call again on the warm machine to go on
# Carry: .carry/data .carry/curve .carry/httplib build-gpu/tinyllama (+ build-gpu/tinyllama_tests and
# build-gpu/tinyllama_fp8_gemm_bench for ours,
# + .carry/results for ref:N and fp8). SM clock and power go to $OUT/smi.csv.
set -uo pipefail
bash tools/gpu/unpack_carry.sh  # the binaries make_carry.sh packed, if carried
OUT=${OUT:-build/curve_round}
LIMIT=${LIMIT:-585}  # seconds this call may take
TESTS=${TESTS:-BackendOps.Cuda:CudaDecode*:CudaOps*:CudaModel*:Fp8*}
mkdir -p "$OUT" /work && ln -sfn "$PWD" /work/main  # the test binary's compiled-in source path
# The binary built here links Debian 12's cpp-httplib, which the GPU machine lacks, and its
# sentencepiece 0.1.97, whose ABI the GPU machine's own libsentencepiece.so.0 does not match
# (likely why `tinyllama serve`, which loads one first, died at start-up there on the CPU
# and the GPU alike, 2026-12-06): carry .carry/httplib, whose
# lib/ holds those libraries (libcpp-httplib, brotli, libsentencepiece{,_train}).
[ -d .carry/httplib/lib ] && export LD_LIBRARY_PATH="$PWD/.carry/httplib/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
build-gpu/tinyllama --version >/dev/null 2>&1 || { echo "build-gpu/tinyllama does not start:"; build-gpu/tinyllama --version 2>&1 | head -3; }
T0=$(date +%s)
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,utilization.gpu,temperature.gpu \
  --format=csv,noheader,nounits -lms 500 >"$OUT/smi.csv" 2>/dev/null &
smi=$!
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
curve() { env PREBUILT=1 BUILD=build-gpu OUT="$OUT/curve" timeout "$1" bash bench/curve_compare.sh "${@:2}"; }
# Metrics of earlier calls, where the summary needs them.
restore() {
  mkdir -p build/curve/run_ours build/curve/run_ours_fp8 "$OUT/curve"
  for r in run_ours run_ours_fp8; do
    [ -f ".carry/results/$r.jsonl" ] && cp ".carry/results/$r.jsonl" "build/curve/$r/metrics.jsonl"
  done
  for f in ref1 ref2; do [ -f ".carry/results/$f.jsonl" ] && cp ".carry/results/$f.jsonl" build/curve/; done
  cp .carry/results/bench*.json "$OUT/curve/" 2>/dev/null
  return 0
}
case "${1:-}" in
  ours)
    SEEDS=1 curve 430 prep ours
    echo "== curve done at $(( $(date +%s) - T0 )) s"
    TL_SHARED_DIR=$PWD/.carry timeout $(( $(left) - 75 )) build-gpu/tinyllama_tests \
      --gtest_filter="$TESTS" --gtest_color=no >"$OUT/tests.log" 2>&1
    echo "tests rc $? at $(( $(date +%s) - T0 )) s"
    grep -E "^\[  (FAILED|PASSED|SKIPPED) |tests ran|tokens/s" "$OUT/tests.log" | tail -25
    grep -B3 -A10 "Failure" "$OUT/tests.log" | head -50
    curve "$(( $(left) - 50 ))" bench bench:fp8 bench:fp8d summary
    # FP8 against bf16 GEMM by GEMM, with the backend's cast kernels (#16), if time is left.
    (( $(left) > 45 )) && timeout "$(left)" build-gpu/tinyllama_fp8_gemm_bench >"$OUT/fp8gemm.log" 2>&1
    grep -E "per layer|speed-up|both layouts" "$OUT/fp8gemm.log"
    ;;
  both)
    # Our run and the reference from init 1 in one call. On a card with room for both
    # (> 100 GB: H200) they share the GPU, so the reference's compile and our checkpoint
    # overlap the other's steps; else one after the other, and a reference cut short by the
    # time limit still gives the validation steps it reached. Then the GPU tests and FP8
    # bench with what time is left.
    SEEDS=1 curve 150 prep
    mem=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)
    if (( mem > 100000 )); then
      echo "== ours and ref:1 side by side ($mem MiB)"
      NOTAR=1 curve $(( $(left) - 40 )) ref:1 >"$OUT/ref_side.txt" 2>&1 &
      ref=$!
      NOTAR=1 curve $(( $(left) - 40 )) ours
      wait $ref; cat "$OUT/ref_side.txt"
    else
      NOTAR=1 curve 300 ours
      NOTAR=1 curve $(( $(left) - 25 )) ref:1
    fi
    [ -f build/curve/ref1.jsonl ] || cp build/curve/ref1.jsonl.tmp build/curve/ref1.jsonl 2>/dev/null
    cp build/curve/ref1.jsonl "$OUT/curve/" 2>/dev/null
    NOTAR=1 curve 20 summary
    echo "== curve done at $(( $(left) )) s left"
    if (( $(left) > 60 )); then
      TL_SHARED_DIR=$PWD/.carry timeout $(( $(left) - 40 )) build-gpu/tinyllama_tests \
        --gtest_filter="$TESTS" --gtest_color=no >"$OUT/tests.log" 2>&1
      echo "tests rc $?"; grep -E "^\[  (FAILED|PASSED|SKIPPED) |tests ran" "$OUT/tests.log" | tail -20
    fi
    (( $(left) > 35 )) && NOTAR=1 curve $(( $(left) - 5 )) bench:fp8d
    (cd "$OUT/curve" && tar -cf logs.tar --remove-files -- *.log 2>/dev/null)
    ;;
  auto)
    # By the card: one that holds ours and the reference side by side (H200) does `both`;
    # else the GPU tests, bench in bf16 / fp8 / fp8 delayed and fp8_gemm_bench first, then
    # our curve run if ~320 s are left (its reference then comes in a later call).
    mem=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)
    if (( mem > 100000 && $(left) >= 520 )); then exec env LIMIT=$(left) bash "$0" both; fi
    TL_SHARED_DIR=$PWD/.carry timeout 150 build-gpu/tinyllama_tests --gtest_filter="$TESTS" \
      --gtest_color=no >"$OUT/tests.log" 2>&1
    echo "tests rc $? at $(( $(date +%s) - T0 )) s"
    grep -E "^\[  (FAILED|PASSED|SKIPPED) |tests ran" "$OUT/tests.log" | tail -20
    grep -B3 -A10 "Failure" "$OUT/tests.log" | head -40
    NOTAR=1 curve 170 bench bench:fp8 bench:fp8d
    if [ "${FP8GEMM:-1}" = 1 ]; then  # FP8GEMM=0: the GEMM table is measured already
      timeout 60 build-gpu/tinyllama_fp8_gemm_bench >"$OUT/fp8gemm.log" 2>&1
      grep -E "per layer|speed-up|both layouts" "$OUT/fp8gemm.log"
    fi
    if (( $(left) > 320 )); then
      SEEDS=1 NOTAR=1 curve $(( $(left) - 10 )) prep ours summary
    else
      echo "== our curve run skipped: $(left) s left"
    fi
    (cd "$OUT/curve" && tar -cf logs.tar --remove-files -- *.log 2>/dev/null)
    ;;
  ref:*)
    restore
    SEEDS=${1#ref:} curve "$(left)" prep "$1" summary
    ;;
  fp8)
    restore
    SEEDS=1 curve "$(left)" prep ours:fp8 summary
    ;;
  long)
    # #16's 5,000-step FP8 run over consecutive calls on one warm machine: the first prepares
    # and starts it, each call trains until its time is nearly up (the trainer saves on
    # SIGTERM), the next continues it. $OUT/curve/run_long_fp8.jsonl holds its metrics so far.
    steps=(long:fp8) margin=120  # s left for the save on SIGTERM, the copy and the return
    [ -f build/curve/config.json ] || { steps=(prep long:fp8); margin=210; }  # prep: ~60-90 s
    SEEDS=1 LONG_SECONDS=$(( $(left) - margin )) curve "$(( $(left) - 10 ))" "${steps[@]}"
    ;;
  *) echo "usage: bench/curve_round.sh ours|both|auto|ref:N|fp8|long"; exit 2 ;;
esac
echo "== end at $(( $(date +%s) - T0 )) s"
kill $smi 2>/dev/null
