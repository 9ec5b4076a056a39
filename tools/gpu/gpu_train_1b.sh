#!/usr/bin/env bash
# A real TinyLlama-1.1B training run on one GPU: tinyshakespeare tokenized with the Llama 2
# tokenizer into shards, a few hundred steps with validation and checkpoints, then the report.
#   tools/gpu/gpu_train_1b.sh [STEPS (300)]
# ASYNC=true writes the checkpoints on a background thread (checkpoint.async).
# Needs the shared data ($TL_SHARED_DIR/data). Writes the run to $WORK (default /tmp/tl_1b) and
# copies metrics, report and logs into $OUT/run_1b.tar.
set -euo pipefail
STEPS=${1:-300}
ASYNC=${ASYNC:-false}
OUT=${OUT:-build/gpu_train_1b}
WORK=${WORK:-/tmp/tl_1b}
BUILD=${BUILD:-build}
DATA=${TL_SHARED_DIR:-$(pwd)/../shared}/data
mkdir -p "$OUT"
rm -rf "$WORK" && mkdir -p "$WORK"
BIN=$(readlink -f "$BUILD/tinyllama")
"$BIN" prepare --tokenizer "$DATA/llama2-tokenizer.model" --source shakespeare --out "$WORK/data" \
  --separator '' --val-fraction 0.05 --chunk-size $((2049 * 64)) "$DATA/tinyshakespeare.txt"
cat >"$WORK/config.json" <<JSON
{
  "model": {"preset": "tinyllama-1.1b"},
  "data": {"sources": [{"name": "shakespeare", "paths": ["data/train"], "weight": 1.0}],
           "val": ["data/val"], "seq_len": 2048, "tokenizer": "$DATA/llama2-tokenizer.model"},
  "batch": {"micro_batch": 8, "grad_accum": 1},
  "optim": {"lr": 4e-4, "min_lr": 4e-5, "warmup_steps": 30},
  "train": {"steps": $STEPS, "seed": 3407, "device": "cuda", "recompute": true,
            "run_dir": "run", "log_interval": 10},
  "eval": {"interval": 100, "batches": 4},
  "checkpoint": {"interval": 100, "keep": 1, "async": $ASYNC}
}
JSON
cd "$WORK"
"$BIN" train --config config.json 2>&1 | tee train.log
"$BIN" report run
tar -cf "$OUT/run_1b.tar" train.log config.json run/metrics.jsonl run/report run/events.out.tfevents.* 2>/dev/null ||
  tar -cf "$OUT/run_1b.tar" train.log config.json run/metrics.jsonl run/report
