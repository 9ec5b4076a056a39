#!/usr/bin/env bash
# Zero-shot eval benchmark on one GPU: `tinyllama eval --task hellaswag` over a synthetic
# HellaSwag validation split (10,042 documents x 4 endings, text with HellaSwag's length
# profile), TinyLlama-1.1B shape (random weights), bf16 - beside a transformers scoring
# loop batched the way lm-evaluation-harness's HF backend batches (bench/eval_reference.py).
#   bench/eval_bench.sh TOKENIZER_MODEL [extra args for bench/eval_reference.py]
# Builds into $BUILD (default build) first. Run from the repository root on the GPU machine.
set -euo pipefail
TOK=${1:?usage: bench/eval_bench.sh path/to/llama2-tokenizer.model [args]}
shift
BUILD=${BUILD:-build}
WORK=${WORK:-/tmp/eval_bench}
cmake -S . -B "$BUILD" -DTL_CUDA=ON -DTL_CUDA_ARCHS=90 -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target tinyllama >/dev/null
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
PYTHONUNBUFFERED=1 python3 bench/eval_reference.py --binary "$BUILD/tinyllama" --tokenizer "$TOK" \
  --work "$WORK" "$@"
