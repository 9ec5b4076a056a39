#!/usr/bin/env bash
# Generation benchmark on one GPU: tinyllama generate vs transformers' generate at batch 1 and
# 32, prompt 128, 512 new tokens, TinyLlama-1.1B shape (random weights), bf16, greedy.
#   bench/generate_bench.sh [extra args for bench/generate_bench.py]
# Builds into $BUILD (default build) first. Run from the repository root on the GPU machine;
# paste the printed table into bench/RESULTS.md.
set -euo pipefail
BUILD=${BUILD:-build}
WORK=${WORK:-/tmp/gen_bench}
cmake -S . -B "$BUILD" -DTL_CUDA=ON -DTL_CUDA_ARCHS=90 -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target tinyllama >/dev/null
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
PYTHONUNBUFFERED=1 python3 bench/generate_bench.py --binary "$BUILD/tinyllama" --work "$WORK" "$@"
