#!/usr/bin/env bash
# Multi-GPU checks and benchmarks for FSDP (issue #5), on one machine with 2 or 4 GPUs.
# Run from the repository root:
#   tools/gpu/dist_check.sh [build] [nccl] [parity] [ckpt] [fail] [bench]     (default: all)
# Stages (each prints PASS/FAIL lines; all lines also go to $OUT/summary.txt):
#   build   cmake -DTL_CUDA_ARCHS=90, build tinyllama                          (~2-3 min)
#   nccl    comm-check: every collective FSDP uses, exact values, on all GPUs, on hybrid
#           groups of 2, and under mpirun if present; bus bandwidth at one 1.1B layer
#   parity  N GPUs vs 1 GPU, same global batch and seed, 50 steps of a 12M model, for
#           every strategy: losses within bf16 tolerance, parameters close (HF export)
#   ckpt    save on N GPUs (full_shard), resume on N/2 and on 1 (plain trainer): the
#           reloaded parameters equal the saved ones bitwise; continued losses match
#   fail    kill -9 one rank mid-run: the others exit within the timeout naming it;
#           SIGSTOP one rank: the others exit after the timeout naming it
#   bench   TinyLlama-1.1B, micro-batch 8x2048 per GPU: plain 1 GPU, full_shard on 1/2/4/8
#           (up to the GPUs present), hybrid_shard on all of them as 2 simulated nodes;
#           per-GPU tokens/s, efficiency, exposed comm, memory
# Measured on the 4-GPU machine: build 49 s, nccl+parity+ckpt+fail 115 s, bench 70 s; split
# them over calls if needed
# (e.g. "build nccl parity ckpt fail" then "bench"; the build is kept between calls).
# Logs: $OUT/{summary.txt,build.log,nccl.log,parity.log,ckpt.log,fail.log,bench.log,bench.json}
# (OUT defaults to build/dist_check). NVLink SHARP stays off: NCCL_NVLS_ENABLE=0.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-build/dist_check}
BUILD=${BUILD:-build}
BIN="$BUILD/tinyllama"
PY=${PY:-python3}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/dist_check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export NCCL_NVLS_ENABLE=0 NCCL_DEBUG=${NCCL_DEBUG:-WARN} OMP_WAIT_POLICY=PASSIVE
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
NGPU=${NGPU:-0}
# DIST_GPUS=n: use only the first n GPUs (e.g. the 2-GPU checks on a 4-GPU machine).
if [ -n "${DIST_GPUS:-}" ] && [ "$DIST_GPUS" -lt "$NGPU" ]; then
  NGPU=$DIST_GPUS
  export CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((NGPU - 1)))
fi
export OMP_NUM_THREADS=$(( $(nproc) / (NGPU > 0 ? NGPU : 1) ))
steps=${*:-all}
has() { [[ " $steps " == *" $1 "* || " $steps " == *" all "* ]]; }
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
status=0
verdict() {  # verdict NAME RC [detail]
  if [ "$2" -eq 0 ]; then say "PASS $1 ${3:-}"; else say "FAIL $1 ${3:-}"; status=1; fi
}

# ---- launching N local ranks (start_ranks, wait_ranks) ----
source tools/gpu/dist_ranks.sh
launch() {  # launch N LOGPREFIX SECONDS cmd...: runs N ranks; shows rank 0's log and the others' errors
  local n=$1 prefix=$2 secs=$3; shift 3
  start_ranks "$n" "$prefix" "$@"
  wait_ranks "$secs"; local rc=$?
  cat "$prefix.rank0.log"
  for ((r = 1; r < n; r++)); do grep -iE "error|fail" "$prefix.rank$r.log" | sed "s/^/[rank $r] /" | head -5; done
  [ $rc -ne 0 ] && echo "(exit code $rc)"
  return $rc
}

{
  echo "== $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null) on $(hostname): $NGPU GPU(s)"
  nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader 2>/dev/null
  nvidia-smi topo -m 2>/dev/null | head -8
} | tee -a "$SUMMARY"

if has build; then
  t0=$(date +%s)
  { cmake -S . -B "$BUILD" -DTL_CUDA=ON -DTL_CUDA_ARCHS=90 -DCMAKE_BUILD_TYPE=Release &&
    cmake --build "$BUILD" -j "$(nproc)" --target tinyllama; } >"$OUT/build.log" 2>&1
  rc=$?
  grep -E "NCCL|CUDA backend" "$OUT/build.log" | head -3
  [ $rc -ne 0 ] && grep -E "error" "$OUT/build.log" | head -30
  verdict build $rc "($(( $(date +%s) - t0 )) s)"
  [ $rc -ne 0 ] && exit 1
  # Without NCCL the build succeeds but every multi-GPU stage would fail: say so once, here.
  grep -q "tinyllama: NCCL ON" "$OUT/build.log" ||
    { verdict nccl-found 1 "(CMake found no NCCL: set NCCL_HOME or install libnccl-dev)"; exit 1; }
fi
[ -x "$BIN" ] || { say "FAIL no $BIN (run the build stage)"; exit 1; }
[ "$NGPU" -ge 2 ] || say "note: $NGPU GPU(s): multi-GPU stages need 2 or more"

# Training config for parity/ckpt/fail: a 12M model (uneven unit sizes, so padding is used).
make_config() {  # make_config FILE RUN_DIR STEPS GRAD_ACCUM [STRATEGY] [extra JSON for "dist"]
  local strategy=${5:-} dist=""
  [ -n "$strategy" ] && dist=", \"dist\": {\"strategy\": \"$strategy\", \"timeout_seconds\": 60 ${6:-}}"
  cat >"$1" <<EOF
{"model": {"vocab_size": 2048, "dim": 384, "n_layers": 6, "n_heads": 6, "n_kv_heads": 2,
           "ffn_dim": 1000, "max_seq_len": 256},
 "data": {"sources": [{"name": "markov", "paths": ["$WORK/data"]}], "seq_len": 256},
 "batch": {"micro_batch": 4, "grad_accum": $4},
 "optim": {"lr": 2e-3, "min_lr": 2e-4, "warmup_steps": 5},
 "train": {"steps": $3, "seed": 7, "device": "cuda", "run_dir": "$2", "log_interval": 10},
 "checkpoint": {"interval": 10, "keep": 10}$dist}
EOF
}
need_data() {
  [ -d "$WORK/data" ] || $PY tools/gpu/dist_compare.py make-data "$WORK/data" --tokens 4000000 --vocab 2048 >/dev/null
}
export_f32() { "$BIN" export --checkpoint "$1" --out "$2" --dtype f32 >/dev/null; }

if has nccl && [ "$NGPU" -ge 2 ]; then
  {
    echo "== comm-check on $NGPU GPUs (torchrun-style variables), hybrid groups of 2"
    launch "$NGPU" "$WORK/cc" 180 "$BIN" comm-check --hybrid-group 2; rc=$?
    verdict "nccl: comm-check on $NGPU GPUs" $rc
    if [ "$NGPU" -gt 2 ]; then
      launch 2 "$WORK/cc2" 120 "$BIN" comm-check --elements 0; rc=$?
      verdict "nccl: comm-check on 2 GPUs" $rc
    fi
    if command -v mpirun >/dev/null; then
      echo "== comm-check under mpirun (OpenMPI variables)"
      timeout 180 mpirun --allow-run-as-root --bind-to none -np "$NGPU" -x NCCL_NVLS_ENABLE \
        -x OMP_NUM_THREADS -x NCCL_DEBUG "$BIN" comm-check --elements 0 2>&1 | tail -12
      verdict "nccl: comm-check under mpirun" "${PIPESTATUS[0]}"
    else
      echo "mpirun not found: skipped"
    fi
  } 2>&1 | tee "$OUT/nccl.log" | grep -E "^(PASS|FAIL)|bandwidth|error" 
fi

if has parity && [ "$NGPU" -ge 2 ]; then
  {
    need_data
    N=$NGPU K=2  # N GPUs with accumulation K vs 1 GPU with accumulation N*K: same global batch
    echo "== reference: 1 GPU, plain trainer, grad_accum $((N * K)), 50 steps"
    make_config "$WORK/ref.json" "$WORK/ref" 50 $((N * K))
    timeout 300 "$BIN" train --config "$WORK/ref.json" 2>&1 | tail -3
    verdict "parity: 1-GPU reference" "${PIPESTATUS[0]}"
    export_f32 "$WORK/ref/checkpoints/step_00000050.tlck" "$WORK/ref_hf"
    # NAME[:hybrid group][+bf16|+ce]: +bf16 reduce-scatters gradients in bf16
    # (dist.reduce_dtype), +ce all-gathers the weights on the copy engines (dist.all_gather)
    for s in full_shard shard_grad_op no_shard "hybrid_shard:2" "full_shard+bf16" \
      "shard_grad_op+bf16" "full_shard+ce" "shard_grad_op+ce"; do
      name=${s/+/_} opt="" extra=""
      [[ $s == *+* ]] && opt=${s#*+}
      s=${s%%+*} run=${name//:/_}
      [ "$opt" = bf16 ] && extra=", \"reduce_dtype\": \"bf16\""
      [ "$opt" = ce ] && extra=", \"all_gather\": \"copy_engines\""
      strat=${s%%:*}
      [ "$s" != "$strat" ] && extra="$extra, \"hybrid_group_size\": ${s#*:}"
      [ "$strat" = hybrid_shard ] && [ "$N" -lt 4 ] && extra=", \"hybrid_group_size\": 1"
      echo "== $strat on $N GPUs, grad_accum $K ${extra:+($extra)}"
      make_config "$WORK/$run.json" "$WORK/$run" 50 $K "$strat" "$extra"
      launch "$N" "$WORK/$run" 300 "$BIN" train --config "$WORK/$run.json" | tail -4
      rc=${PIPESTATUS[0]}
      if [ "$rc" -eq 0 ]; then
        $PY tools/gpu/dist_compare.py losses "$WORK/ref" "$WORK/$run" --tol 0.03; rc=$?
        export_f32 "$WORK/$run/checkpoints/step_00000050" "$WORK/${run}_hf" &&
          $PY tools/gpu/dist_compare.py params "$WORK/ref_hf" "$WORK/${run}_hf" --tol 0.02 || rc=1
      fi
      verdict "parity: $name on $N GPUs vs 1 GPU" "$rc"
    done
  } 2>&1 | tee "$OUT/parity.log" | grep -E "^(PASS|FAIL)|^losses|^params"
fi

if has ckpt && [ "$NGPU" -ge 2 ]; then
  {
    need_data
    N=$NGPU H=$((NGPU / 2))  # save on N, resume on H and on 1; global batch 16 sequences
    echo "== save: full_shard on $N GPUs, 20 steps, checkpoints at 10 and 20"
    make_config "$WORK/save.json" "$WORK/save" 20 $((4 / N)) full_shard
    launch "$N" "$WORK/save" 300 "$BIN" train --config "$WORK/save.json" | tail -3
    verdict "ckpt: train and save on $N GPUs" "${PIPESTATUS[0]}"
    ls "$WORK/save/checkpoints/step_00000010"
    export_f32 "$WORK/save/checkpoints/step_00000010" "$WORK/save10_hf"
    export_f32 "$WORK/save/checkpoints/step_00000020" "$WORK/save20_hf"
    if [ "$H" -ge 2 ]; then
      echo "== reload on $H GPUs (steps = 10: load, then save at once under $H shards)"
      make_config "$WORK/re.json" "$WORK/reload" 10 $((4 / H)) full_shard
      launch "$H" "$WORK/reload" 200 "$BIN" train --config "$WORK/re.json" \
        --resume "$WORK/save/checkpoints/step_00000010" | tail -2
      # Resuming another run's last step saves it again in this run's folder (trainer.cpp).
      grep -h "resume: each rank read" "$WORK/reload.rank0.log"
      rc=1
      [ -f "$WORK/reload/checkpoints/step_00000010/meta.json" ] &&
        export_f32 "$WORK/reload/checkpoints/step_00000010" "$WORK/reload_hf" &&
        $PY tools/gpu/dist_compare.py params "$WORK/save10_hf" "$WORK/reload_hf" --tol 0 && rc=0
      verdict "ckpt: $N-GPU set reloaded on $H GPUs and saved again is bitwise the same" $rc
      echo "== resume on $H GPUs (shard_grad_op), steps 11-20"
      make_config "$WORK/half.json" "$WORK/half" 20 $((4 / H)) shard_grad_op
      launch "$H" "$WORK/half" 300 "$BIN" train --config "$WORK/half.json" \
        --resume "$WORK/save/checkpoints/step_00000010" | tail -2
      rc=${PIPESTATUS[0]}
      [ "$rc" -eq 0 ] && { $PY tools/gpu/dist_compare.py losses "$WORK/save" "$WORK/half" --tol 0.03 &&
        export_f32 "$WORK/half/checkpoints/step_00000020" "$WORK/half_hf" &&
        $PY tools/gpu/dist_compare.py params "$WORK/save20_hf" "$WORK/half_hf" --tol 0.02; rc=$?; }
      verdict "ckpt: resumed on $H GPUs" "$rc"
    fi
    echo "== resume on 1 GPU (plain trainer reads the sharded folder), steps 11-20"
    make_config "$WORK/one.json" "$WORK/one" 20 4
    timeout 300 "$BIN" train --config "$WORK/one.json" --resume "$WORK/save/checkpoints/step_00000010" 2>&1 | tail -2
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] && { $PY tools/gpu/dist_compare.py losses "$WORK/save" "$WORK/one" --tol 0.03 &&
      export_f32 "$WORK/one/checkpoints/step_00000020.tlck" "$WORK/one_hf" &&
      $PY tools/gpu/dist_compare.py params "$WORK/save20_hf" "$WORK/one_hf" --tol 0.02; rc=$?; }
    verdict "ckpt: resumed on 1 GPU" "$rc"
    rm -f "$WORK/save/checkpoints/step_00000020/meta.json"
    timeout 120 "$BIN" train --config "$WORK/save.json" --resume auto >"$WORK/auto.log" 2>&1
    grep -E "resumed from|skipping" "$WORK/auto.log"
    grep -q "resumed from .*step_00000010" "$WORK/auto.log"
    verdict "ckpt: a folder without meta.json is skipped (resume auto takes step 10)" $?
  } 2>&1 | tee "$OUT/ckpt.log" | grep -E "^(PASS|FAIL)|^losses|^params"
fi

if has fail && [ "$NGPU" -ge 2 ]; then
  {
    need_data
    T=20
    make_config "$WORK/long.json" "$WORK/long" 100000 1 full_shard
    sed -i "s/\"timeout_seconds\": 60/\"timeout_seconds\": $T/" "$WORK/long.json"
    for mode in kill stop; do
      rm -rf "$WORK/long"
      victim=$((NGPU - 1)); [ $mode = stop ] && victim=1
      echo "== $mode: rank $victim of $NGPU, dist.timeout_seconds $T"
      start_ranks "$NGPU" "$WORK/$mode" "$BIN" train --config "$WORK/long.json"
      for _ in $(seq 1 300); do grep -q "step 20/" "$WORK/$mode.rank0.log" 2>/dev/null && break; sleep 0.2; done
      ms() { echo $(( $(date +%s%N) / 1000000 )); }
      t0=$(ms)
      if [ $mode = kill ]; then kill -9 "${PIDS[$victim]}"; else kill -STOP "${PIDS[$victim]}"; fi
      limit=$((T * 1000)); [ $mode = stop ] && limit=$(((T + 15) * 1000))  # a hang: T, then exit grace
      rc=0 names=1 worst=0
      for ((r = 0; r < NGPU; r++)); do
        [ $r -eq $victim ] && continue
        p=${PIDS[$r]}
        while kill -0 "$p" 2>/dev/null && [ $(( $(ms) - t0 )) -lt $((limit + 10000)) ]; do sleep 0.1; done
        if kill -0 "$p" 2>/dev/null; then rc=1; echo "rank $r still running"; kill -9 "$p"; fi
        wait "$p"; c=$?
        dt=$(( $(ms) - t0 )); [ $dt -gt $worst ] && worst=$dt
        [ $c -eq 0 ] && { rc=1; echo "rank $r exited 0"; }
        grep -q "rank $victim\|rank(s) $victim" "$WORK/$mode.rank$r.log" || { names=0; echo "rank $r's log does not name rank $victim"; }
        echo "rank $r: exit $c after $((dt / 1000)).$(( (dt % 1000) / 100 )) s: $(grep -m1 -E '^error' "$WORK/$mode.rank$r.log")"
      done
      kill -CONT "${PIDS[$victim]}" 2>/dev/null; kill -9 "${PIDS[$victim]}" 2>/dev/null; wait "${PIDS[$victim]}" 2>/dev/null
      [ $worst -le $limit ] || rc=1
      [ $names -eq 1 ] || rc=1
      verdict "fail: $mode rank $victim -> all others stopped in $((worst / 1000)).$(( (worst % 1000) / 100 )) s (limit $((limit / 1000)) s), naming it" $rc
    done
  } 2>&1 | tee "$OUT/fail.log" | grep -E "^(PASS|FAIL)|^rank"
fi

if has bench; then
  {
    B="--preset tinyllama-1.1b --micro-batch 8 --steps 8 --warmup 2"
    echo "== plain 1 GPU (no FSDP)"
    timeout 240 "$BIN" bench $B --json "$WORK/b_plain.json" | tail -12
    for n in 1 2 4 8; do
      [ "$n" -le "$NGPU" ] || continue
      echo "== full_shard on $n GPU(s)"
      launch "$n" "$WORK/b_fs$n" 300 "$BIN" bench $B --strategy full_shard --json "$WORK/b_fs$n.json" | tail -10
    done
    if [ "$NGPU" -ge 4 ]; then  # all GPUs as 2 simulated nodes
      echo "== hybrid_shard on $NGPU GPUs as 2 nodes of $((NGPU / 2))"
      launch "$NGPU" "$WORK/b_hy" 300 "$BIN" bench $B --strategy hybrid_shard --hybrid-group $((NGPU / 2)) \
        --json "$WORK/b_hy.json" | tail -10
    fi
    $PY - "$WORK" "$NGPU" <<'EOF'
import json, os, sys
w, ngpu = sys.argv[1], int(sys.argv[2])
def load(n):
    p = os.path.join(w, n)
    return json.load(open(p)) if os.path.exists(p) else None
plain, fs1 = load("b_plain.json"), load("b_fs1.json")
rows = [("plain (no FSDP)", 1, plain)] + [(f"full_shard", n, load(f"b_fs{n}.json")) for n in (1, 2, 4, 8)] + \
       [(f"hybrid_shard 2x{ngpu // 2}", ngpu, load("b_hy.json"))]
print("| setup | GPUs | tokens/s per GPU | tokens/s total | efficiency vs plain 1 GPU | vs full_shard 1 GPU | MFU | exposed comm per step | peak memory per GPU |")
print("|---|---|---|---|---|---|---|---|---|")
out = {}
for name, n, r in rows:
    if not r: continue
    tps = r["tokens_per_s_per_gpu"] if "tokens_per_s_per_gpu" in r else r["tokens_per_s"]
    eff = tps / plain["tokens_per_s"] if plain else float("nan")
    eff1 = tps / fs1["tokens_per_s_per_gpu"] if fs1 else float("nan")
    wait = r.get("comm_wait_mean_s")
    comm = f'{wait*1e3:.1f} ms ({100*wait/r["step_seconds"]:.1f}%), max {r["comm_wait_max_s"]*1e3:.1f} ms' if wait is not None else "-"
    mem = r.get("peak_memory_bytes", 0) / 2**30
    print(f"| {name} | {n} | {tps:,.0f} | {tps*n:,.0f} | {100*eff:.1f}% | {100*eff1:.1f}% | {100*r['mfu']:.1f}% | {comm} | {mem:.1f} GiB |")
    out[f"{name} x{n}"] = r
json.dump(out, open(os.path.join(w, "bench_all.json"), "w"), indent=1)
for n in (4, 8):  # the bars: >= 95% of the plain one-GPU run per GPU
    fs = load(f"b_fs{n}.json")
    if fs and plain:
        eff = fs["tokens_per_s_per_gpu"] / plain["tokens_per_s"]
        print(("PASS" if eff >= 0.95 else "FAIL") + f" bench: full_shard scaling efficiency at {n} GPUs {100*eff:.1f}% (bar 95%)")
EOF
    cp "$WORK/bench_all.json" "$OUT/bench.json" 2>/dev/null
  } 2>&1 | tee "$OUT/bench.log" | grep -E "^\||^(PASS|FAIL)|error" | tee -a "$SUMMARY"
fi

grep -cE "^FAIL" "$SUMMARY" >/dev/null && status=1
say "== done: $(grep -c '^PASS' "$SUMMARY") passed, $(grep -c '^FAIL' "$SUMMARY") failed (summary: $SUMMARY)"
exit $status
