#!/usr/bin/env bash
# Server decode benchmark on one GPU, TinyLlama-1.1B shape (random weights), bf16, greedy:
#  1. the scheduler in-process (no HTTP) at batch 1/8/32/64 beside static batching
#     (generate_batch), prompt 128, 256 new tokens: tinyllama_serve_bench; then batch 1 and 32
#     again with decode steps run op by op instead of replayed as CUDA graphs, and the
#     decode levers one by one (fused layers off, then LEVERS: environment variables);
#  2. when the binary was built with cpp-httplib: `tinyllama serve --device cuda` under
#     bench/serve_load.py at 32 concurrent streams (the issue's aggregate bar), then 64 and 1;
#     SERVE_ARGS adds options to the server (e.g. "--prefill-tokens 4096").
#   bench/serve_bench.sh        (from the repository root on the GPU machine; BUILD=build)
set -euo pipefail
BUILD=${BUILD:-build}
OUT=${OUT:-/tmp/serve_bench}
mkdir -p "$OUT"
# PREBUILT=1: binaries built on the development machine and carried in $BUILD (with
# .carry/httplib/lib: the cpp-httplib and sentencepiece libraries they were linked against,
# see curve_round.sh) are used as they are.
[ -d .carry/httplib/lib ] && export LD_LIBRARY_PATH="$PWD/.carry/httplib/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -n "${PREBUILT:-}" ] && { [ -n "${HTTP_ONLY:-}" ] || [ -x "$BUILD/tinyllama_serve_bench" ]; } &&
  "$BUILD/tinyllama" --version >/dev/null 2>&1; then
  echo "using the carried binaries in $BUILD"
  http=$(ldd "$BUILD/tinyllama" | grep -c httplib || true)
else
  cmake -S . -B "$BUILD" -DTL_CUDA=ON -DTL_CUDA_ARCHS=90 -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j "$(nproc)" --target tinyllama tinyllama_serve_bench >/dev/null
  http=$(grep -c '^HTTPLIB_FOUND:INTERNAL=1' "$BUILD/CMakeCache.txt" || true)
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# SM clock and power beside every run (these machines vary by several % between calls).
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,utilization.gpu --format=csv,noheader,nounits \
  -lms 500 >"$OUT/smi.csv" 2>/dev/null &
SMI=$!
trap 'kill $SMI 2>/dev/null || true' EXIT
clock() { tail -n 4 "$OUT/smi.csv" | awk -F', ' '{c+=$2; p+=$3; n++} END {if (n) printf "   (SM %.0f MHz, %.0f W over the last 2 s)\n", c/n, p/n}'; }
if [ -z "${HTTP_ONLY:-}" ]; then  # HTTP_ONLY=1: only part 2 (the scheduler figures are in already)
# QUICK=1: batch 1 and 32 only, no profile, no op-by-op and unfused rows (levers still run).
main_rows=(--batches 1,8,32,64 --profile)
[ -z "${QUICK:-}" ] || main_rows=(--batches 1,32)
"$BUILD/tinyllama_serve_bench" --device cuda "${main_rows[@]}" --prompt 128 --new 256 --json "$OUT/scheduler.json"
clock
[ -n "${QUICK:-}" ] || {
echo "-- the same without recorded decode graphs (TL_DECODE_GRAPHS=0), op by op:"
TL_DECODE_GRAPHS=0 "$BUILD/tinyllama_serve_bench" --device cuda --batches 1,32 --prompt 128 --new 256 \
  --json "$OUT/scheduler_no_graphs.json"
clock
# The decode levers one by one, same binary (bench/NOTES.md, "batch-1 decode"): the fused
# layers (decode_linear; the attention is one launch either way) off, then each environment
# lever in LEVERS (space-separated; a lever's variables joined by commas) at batch 1 and 32.
echo "-- without the fused decode layers (TL_DECODE_FUSED_ROWS=0: separate norm/SwiGLU/add, cuBLASLt):"
TL_DECODE_FUSED_ROWS=0 "$BUILD/tinyllama_serve_bench" --device cuda --batches 1 --prompt 128 --new 256 \
  --json "$OUT/scheduler_unfused.json" --profile
clock
}
# The levers against the defaults (greedy steps run one ahead of the host, programmatic
# dependent launch on): each off; decode attention's splits merged in a thread block cluster.
for lever in ${LEVERS:-TL_DECODE_RUN_AHEAD=0 TL_PDL=0 TL_DECODE_ATTN_CLUSTER=1}; do
  echo "-- ${lever//,/ }:"
  env ${lever//,/ } "$BUILD/tinyllama_serve_bench" --device cuda --batches 1,32 --prompt 128 --new 256 \
    --json "$OUT/scheduler_$(echo "$lever" | tr -c 'A-Za-z0-9\n' '_').json"
  clock
done
fi

TOKENIZER=${TOKENIZER:-}
for t in ../shared/data/llama2-tokenizer.model shared/data/llama2-tokenizer.model .carry/data/llama2-tokenizer.model; do
  if [ -z "$TOKENIZER" ] && [ -f "$t" ]; then TOKENIZER=$t; fi
done
if [ -n "${NO_HTTP:-}" ]; then
  echo "NO_HTTP set: HTTP load skipped"
elif [ "$http" = 0 ]; then
  echo "tinyllama was built without cpp-httplib: HTTP load skipped (the scheduler figures above stand)"
elif [ -z "$TOKENIZER" ]; then
  echo "no Llama 2 tokenizer found (set TOKENIZER=...): HTTP load skipped"
else
  "$BUILD/tinyllama" init --preset tinyllama-1.1b --out "$OUT/init.tlck" --device cuda >/dev/null
  "$BUILD/tinyllama" serve --checkpoint "$OUT/init.tlck" --tokenizer "$TOKENIZER" \
      --device cuda --port 8399 --max-batch 64 --max-len 512 ${SERVE_ARGS:-} >"$OUT/server.log" 2>&1 &
  SERVER=$!
  trap 'kill -TERM $SERVER 2>/dev/null || true; kill $SMI 2>/dev/null || true' EXIT
  for _ in $(seq 120); do curl -sf localhost:8399/health >/dev/null 2>&1 && break; sleep 1; done
  # Warm-up at the measured shapes (the decode graphs of the key buckets it reaches get recorded).
  python3 bench/serve_load.py --url http://127.0.0.1:8399 --concurrency 32 --requests 1 --max-tokens 256 >/dev/null
  python3 bench/serve_load.py --url http://127.0.0.1:8399 --concurrency 32 --requests 8 --prompt 128 --max-tokens 256 \
      --json "$OUT/http32.json"
  python3 bench/serve_load.py --url http://127.0.0.1:8399 --concurrency 64 --requests 8 --prompt 128 --max-tokens 256 \
      --json "$OUT/http64.json"
  python3 bench/serve_load.py --url http://127.0.0.1:8399 --concurrency 1 --requests 4 --prompt 128 --max-tokens 256 \
      --json "$OUT/http1.json"
fi
