#!/usr/bin/env bash
# A decode step's kernels as they run in its CUDA graph (#13): tinyllama_serve_bench at batch 1
# (BATCHES to change) with tools/gpu/kernel_timeline.cpp preloaded, then bench/decode_timeline.py
# over the timeline: each kernel's duration and its gap to the one before, where the step's
# time goes. The binaries make_carry.sh packed and the library build_timeline.sh built travel
# in the call: carry [".carry/bin.tgz", ".carry/data", ".carry/httplib", ".carry/timeline"].
#   bench/decode_timeline.sh      (repository root, GPU machine; OUT=$OUT, BUILD=build-gpu)
set -uo pipefail
source tools/gpu/timeline_env.sh decode_timeline
for b in ${BATCHES:-1}; do
  echo "== batch $b, untraced, then traced (the tracing costs ~1 us a kernel)"
  "$BUILD/tinyllama_serve_bench" --device cuda --batches "$b" --prompt 128 --new 256 2>&1 | tail -1
  TL_TIMELINE_OUT=$OUT/timeline_b$b.csv LD_PRELOAD=$TIMELINE \
    "$BUILD/tinyllama_serve_bench" --device cuda --batches "$b" --prompt 128 --new 256 2>&1 | tail -1
  python3 bench/decode_timeline.py "$OUT/timeline_b$b.csv" --positions | tee "$OUT/summary_b$b.txt" | head -40
  gzip -f "$OUT/timeline_b$b.csv"
done
nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader
