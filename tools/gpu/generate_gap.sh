#!/usr/bin/env bash
# Why `tinyllama generate` decodes slower at batch 1 than generate_batch inside
# tinyllama_serve_bench (2026-12-07 23:3x UTC, H100: 986 against 1,019 tokens/s, the same
# loop): the CLI timed as bench/generate_bench.py runs it (stdout a pipe, one warm-up), then
# with stdout to /dev/null, with three warm-ups, with steps not run ahead, and serve_bench's
# static row beside them (ROUNDS times, default 1). Carry [".carry/bin.tgz", ".carry/httplib"]
# (tools/gpu/make_carry.sh). Outcome (2026-12-08 00:1x UTC, H100, a42e32e): the CLI at 1,033
# every way, serve_bench's static row 1,034 (bench/RESULTS.md).
#   OUT=$OUT bash tools/gpu/generate_gap.sh        (repository root, GPU machine)
set -uo pipefail
OUT=${OUT:-/tmp/generate_gap}
BIN=${BUILD:-build-gpu}
mkdir -p "$OUT"
bash tools/gpu/unpack_carry.sh
export LD_LIBRARY_PATH=$PWD/.carry/httplib/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
W=/tmp/generate_gap
mkdir -p "$W"
[ -f "$W/ck.tlck" ] || "$BIN/tinyllama" init --preset tinyllama-1.1b --seed 0 --device cuda \
  --out "$W/ck.tlck" >"$OUT/init.log" 2>&1 || { echo "init failed"; tail -3 "$OUT/init.log"; exit 1; }
python3 -c 'import random; r = random.Random(0); print(" ".join(str(r.randrange(3, 32000)) for _ in range(128)))' \
  >"$W/prompt.txt"
# gen NAME pipe|null [VAR=VALUE] ARGS...: one CLI run's decode tokens/s, stdout into a pipe
# (as bench/generate_bench.py reads it) or /dev/null.
gen() {
  local name=$1 sink=$2 var=$3
  shift 3
  local cmd=(env "$var" "$BIN/tinyllama" generate --checkpoint "$W/ck.tlck" --device cuda --ids
    --prompts-file "$W/prompt.txt" --max-new 256 --temperature 0 --ignore-eos
    --json "$W/$name.json" "$@")
  if [ "$sink" = pipe ]; then "${cmd[@]}" 2>"$OUT/$name.err" | cat >/dev/null
  else "${cmd[@]}" 2>"$OUT/$name.err" >/dev/null; fi
  printf '%-20s %8s   %s\n' "$name" "$(python3 -c 'import json, sys
print(round(json.load(open(sys.argv[1]))["decode_tokens_per_s"], 1))' "$W/$name.json" 2>/dev/null)" \
    "$(nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader)"
}
for r in $(seq "${ROUNDS:-1}"); do
  gen "pipe-$r" pipe TL_NONE=1 --warmup 1
  gen "devnull-$r" null TL_NONE=1 --warmup 1
  gen "warmup3-$r" null TL_NONE=1 --warmup 3
  gen "no-run-ahead-$r" null TL_DECODE_RUN_AHEAD=0 --warmup 1
  echo "serve_bench-$r $(timeout 60 "$BIN/tinyllama_serve_bench" --device cuda --batches 1 \
    --prompt 128 --new 256 2>&1 | tail -1)"
done
tail -n 2 "$OUT/pipe-1.err"
