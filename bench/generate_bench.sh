#!/usr/bin/env bash
# Generation benchmark on one GPU: tinyllama generate vs transformers' generate at batch 1 and
# 32, prompt 128, 512 new tokens, TinyLlama-1.1B shape (random weights), bf16, greedy.
#   bench/generate_bench.sh [extra args for bench/generate_bench.py]
# Builds into $BUILD (default build) first, unless PREBUILT=1 and $BUILD/tinyllama runs.
# Run from the repository root on the GPU machine; paste the printed table into
# bench/RESULTS.md.
set -euo pipefail
BUILD=${BUILD:-build}
WORK=${WORK:-/tmp/gen_bench}
# PREBUILT=1: the binary was built on the development machine and carried (serve_bench.sh).
[ -d .carry/httplib/lib ] && export LD_LIBRARY_PATH="$PWD/.carry/httplib/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -z "${PREBUILT:-}" ] || ! "$BUILD/tinyllama" --version >/dev/null 2>&1; then
  cmake -S . -B "$BUILD" -DTL_CUDA=ON -DTL_CUDA_ARCHS=90 -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j "$(nproc)" --target tinyllama >/dev/null
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
PYTHONUNBUFFERED=1 python3 bench/generate_bench.py --binary "$BUILD/tinyllama" --work "$WORK" "$@"
