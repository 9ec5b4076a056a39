#!/usr/bin/env bash
# One device call (~570 s) for commits that have not run on a GPU: the decode kernels' tests,
# the batch-1 decode step's timeline by default and under each decode lever in DECODE_LEVERS
# (default TL_DECODE_ATTN_EARLY_KV=0; a lever's variables joined by commas; the default runs
# first and last, for the drift), scheduler decode tokens/s at batch 1 under each lever
# (SCHED_LEVERS, default DECODE_LEVERS), then by default at batches 1 4 8 32, then the GPU
# suite and bench's bf16 and FP8 (delayed scaling)
# figures (bench/gpu_round.sh) in the time left. Carry
# [".carry/bin.tgz", ".carry/data", ".carry/httplib", ".carry/timeline"]
# (tools/gpu/make_carry.sh, tools/gpu/build_timeline.sh).
#   tools/gpu/verify_round.sh     (repository root, GPU machine; OUT=$OUT)
# Timelines come back as $OUT/tl.tgz (one file: a call returns a limited number of files).
set -uo pipefail
OUT=${OUT:-/tmp/verify_round}
mkdir -p "$OUT"
T0=$(date +%s)
bash tools/gpu/unpack_carry.sh
export LD_LIBRARY_PATH=$PWD/.carry/httplib/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# The decode kernels' own tests first (a minute), so that a call cut short has checked them.
echo "== decode tests: $(timeout 120 build-gpu/tinyllama_tests \
  --gtest_filter='CudaDecode.*:CudaOps.Decode*:BackendOps.Cuda*' 2>&1 |
  grep -E '^\[  (PASSED|FAILED)|FAILED TEST' | tr '\n' ' ')"
i=0
for v in "" ${DECODE_LEVERS-TL_DECODE_ATTN_EARLY_KV=0} ""; do
  i=$((i + 1))
  echo "== $i: decode timeline ${v:-default} at $(( $(date +%s) - T0 )) s"
  env ${v//,/ } OUT="$OUT/tl/$i-${v:-default}" timeout 90 bash bench/decode_timeline.sh 2>&1 |
    grep -E "^\s+1 |^step|between replays|memcpy|memset|decode_attention" | head -16
done
(cd "$OUT" && tar czf tl.tgz tl && rm -rf tl)
for v in ${SCHED_LEVERS-${DECODE_LEVERS-TL_DECODE_ATTN_EARLY_KV=0}}; do
  echo "== scheduler decode at batch 1, $v: $(env ${v//,/ } timeout 60 build-gpu/tinyllama_serve_bench \
    --device cuda --batches 1 --prompt 128 --new 256 2>&1 | tail -1)"
done
for b in 1 4 8 32; do
  echo "== scheduler decode at batch $b: $(timeout 60 build-gpu/tinyllama_serve_bench --device cuda \
    --batches "$b" --prompt 128 --new 256 2>&1 | tail -1)"
done
nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader
# Last, the whole GPU suite and the bench in what is left of ~570 s (gpu_round.sh skips what
# no longer fits). BENCH='' leaves the bench runs out.
DEADLINE=$((T0 + ${BUDGET:-570})) PREBUILT=1 BUILD=build-gpu OUT=$OUT/suite bash bench/gpu_round.sh \
  'tests:*Cuda*:Fp8*:InferRows*:Impl/*:*Gpu*' \
  ${BENCH-ours ours@--precision=fp8,--fp8-scaling=delayed} >"$OUT/suite.log" 2>&1
echo "== suite and bench (rc $?) at $(( $(date +%s) - T0 )) s"
grep -E "^\[  (PASSED|FAILED)|FAILED TEST|tokens/s|^run |^ours|skipped" "$OUT/suite.log" | head -30
echo "== end at $(( $(date +%s) - T0 )) s"
