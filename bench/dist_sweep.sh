#!/usr/bin/env bash
# FSDP bench under different settings, on one multi-GPU machine (run from the repo root,
# after tools/gpu/dist_check.sh build). Each setting is one space-separated list of VAR=VALUE
# (environment) and --flag=value (bench options: --strategy=shard_grad_op, --reduce-dtype=bf16,
# --all-gather=copy_engines;
# the strategy defaults to full_shard), or "-" for the defaults; every run is TinyLlama-1.1B,
# micro-batch 8x2048 per GPU.
#   bench/dist_sweep.sh [-n GPUS] [-a GRAD_ACCUM] [-s STEPS] SETTING...
#   e.g. bench/dist_sweep.sh -n 4 - "NCCL_MAX_CTAS=8" "--reduce-dtype=bf16" \
#          "--all-gather=copy_engines --reduce-dtype=bf16"
#        bench/dist_sweep.sh -n 4 -a 32 - --strategy=shard_grad_op   (TinyLlama's 2M-token step)
# Prints one line per setting (tokens/s per GPU, step, exposed comm, memory) and the plain
# one-GPU run of the same call first, so the efficiencies compare figures of one machine.
set -uo pipefail
cd "$(dirname "$0")/.."
N=4 ACC=1 STEPS=12
while getopts "n:a:s:" o; do
  case $o in n) N=$OPTARG ;; a) ACC=$OPTARG ;; s) STEPS=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
BIN=${BIN:-build/tinyllama}
OUT=${OUT:-build/dist_sweep}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$(( $(nproc) / N ))
B="--preset tinyllama-1.1b --micro-batch 8 --grad-accum $ACC --steps $STEPS --warmup 2"
source tools/gpu/dist_ranks.sh
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r.get(sys.argv[2], 0))" "$1" "$2"; }

"$BIN" bench $B --json "$OUT/plain.json" >"$OUT/plain.log" 2>&1 || { tail "$OUT/plain.log"; exit 1; }
plain=$(field "$OUT/plain.json" tokens_per_s)
printf "plain 1 GPU, grad accum %s: %.0f tokens/s, %s\n" "$ACC" "$plain" "$(grep 'peak memory' "$OUT/plain.log")"
grep '^phase' "$OUT/plain.log" | sed 's/^/    /'
i=0
for setting in "$@"; do
  i=$((i + 1))
  env_args=() bench_args=() words=()
  [ "$setting" != "-" ] && read -ra words <<<"$setting"
  for w in "${words[@]}"; do
    case $w in --*) bench_args+=("$w") ;; *) env_args+=("$w") ;; esac
  done
  [[ " ${bench_args[*]} " == *" --strategy="* ]] || bench_args+=(--strategy=full_shard)
  start_ranks "$N" "$OUT/s$i" env "${env_args[@]}" "$BIN" bench $B "${bench_args[@]}" \
    --json "$OUT/s$i.json"
  wait_ranks 300; rc=$?
  if [ $rc -ne 0 ] || [ ! -f "$OUT/s$i.json" ]; then echo "[$setting] failed (rc $rc)"; tail -5 "$OUT/s$i.rank0.log"; continue; fi
  tps=$(field "$OUT/s$i.json" tokens_per_s_per_gpu)
  printf "[%s] x%s: %.0f tokens/s per GPU (%.1f%% of plain), %s, %s, %s\n" "$setting" "$N" \
    "$tps" "$(python3 -c "print(100*$tps/$plain)")" "$(grep -m1 '^step' "$OUT/s$i.rank0.log" | tr -s ' ')" \
    "$(grep -m1 'comm wait' "$OUT/s$i.rank0.log" | tr -s ' ' | cut -d: -f1 | sed 's/comm wait //')" \
    "$(grep -m1 'peak memory' "$OUT/s$i.rank0.log" | tr -s ' ')"
  grep '^phase' "$OUT/s$i.rank0.log" | sed 's/^/    /'
done
