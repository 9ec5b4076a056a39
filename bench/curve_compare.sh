#!/usr/bin/env bash
# The 1,000-step curve comparison of issue #15 on one GPU: TinyLlama-1.1B trained by
# `tinyllama train` and by the PyTorch reference trainer (bench/pytorch_trainer.py) from the
# same initialization on the same token stream, plus the reference from a second
# initialization for the seed-to-seed spread. Steps can run in separate device calls on a warm
# machine (build/ and build/curve/ stay there between calls):
#   bench/curve_compare.sh prep ours          # build, prepare the corpus, inits, our run
#   bench/curve_compare.sh prep ours:fp8      # the same in train.precision fp8 (#16)
#   bench/curve_compare.sh ref:1              # the reference from init seed 1 (ours' init)
#   bench/curve_compare.sh ref:2 summary      # the reference from init seed 2, the table
#   bench/curve_compare.sh prep long:fp8      # #16's 5,000-step FP8 run, ~500 s a call:
#   bench/curve_compare.sh long:fp8           #   call again on the warm machine to go on
# The corpus comes from bench/curve_corpus.py, run on the Debian machine:
#   python3 bench/curve_corpus.py --out .carry/curve       (then carry .carry)
# Hyperparameters (TinyLlama's, with a short warmup for a 1,000-step run): micro-batch 8 x 2048,
# one optimizer step per micro-batch, AdamW 0.9/0.95, eps 1e-8, weight decay 0.1 on every
# parameter, lr 4e-4 -> 4e-5 cosine over 1,000 steps after 100 warmup steps, clipping 1.0,
# data seed 3407; validation: 20 micro-batches of held-out blocks at steps 250, 500, 750, 1000.
set -uo pipefail
OUT=${OUT:-build/curve_out}
BUILD=${BUILD:-build}
W=build/curve
CORPUS=${CORPUS:-.carry/curve}
TOK=${TOK:-.carry/data/llama2-tokenizer.model}
STEPS=${STEPS:-1000}
mkdir -p "$OUT" "$W"
status=0
BIN="$BUILD/tinyllama"

for step in "$@"; do
  case "$step" in
    prep)
      nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader | tee "$OUT/machine.txt"
      # PREBUILT=1: a tinyllama built elsewhere for sm_90 and carried in $BUILD is used as it
      # is when it runs here (saves the build's device minutes); else it is built.
      if [ -n "${PREBUILT:-}" ] && "$BIN" --version >"$OUT/build.log" 2>&1; then
        echo "using the carried $BIN ($(cat "$OUT/build.log"))"
      else
        cmake -S . -B "$BUILD" -DTL_CUDA=ON -DTL_CUDA_ARCHS=90 -DCMAKE_BUILD_TYPE=Release >"$OUT/build.log" 2>&1 &&
          cmake --build "$BUILD" -j "$(nproc)" --target tinyllama >>"$OUT/build.log" 2>&1 ||
          { echo "build failed"; tail -30 "$OUT/build.log"; exit 1; }
      fi
      for src in prose code; do
        "$BIN" prepare --tokenizer "$TOK" --source "$src" --out "$W/data/$src" --val-fraction 0.01 \
          --overwrite --quiet "$CORPUS/$src.jsonl.zst" || exit 1
      done
      python3 - "$W/data" <<'EOF' | tee "$OUT/corpus.txt"
import json, sys
for s in ("prose", "code"):
    m = json.load(open(f"{sys.argv[1]}/{s}/manifest.json"))["sources"][s]
    print(s, "documents", m.get("documents"), "tokens", m.get("tokens"),
          "train shards", len(m["train"]["shards"]), "val shards", len(m["val"]["shards"]))
EOF
      # Initializations on the CPU: the same bytes on any machine, so steps run in separate
      # calls (SEEDS="1" for ours and ref:1, "2" for ref:2) start from the same weights; the
      # checksum in inits.txt shows it.
      for seed in ${SEEDS:-1 2}; do
        "$BIN" init --preset tinyllama-1.1b --seed $seed --device cpu --out "$W/init$seed.tlck" >/dev/null &&
          "$BIN" export --checkpoint "$W/init$seed.tlck" --format hf --out "$W/hf$seed" >/dev/null || exit 1
        echo "init seed $seed: $(md5sum <"$W/init$seed.tlck" | cut -c1-32)" | tee -a "$OUT/inits.txt"
      done
      # Absolute paths: the trainer resolves a config's relative paths against its folder.
      A=$(realpath "$W") T=$(realpath "$TOK")
      cat >"$W/config.json" <<EOF
{
  "model": {"preset": "tinyllama-1.1b"},
  "data": {
    "sources": [
      {"name": "prose", "paths": ["$A/data/prose/train"], "weight": 0.6},
      {"name": "code", "paths": ["$A/data/code/train"], "weight": 0.4}
    ],
    "val": ["$A/data/prose/val", "$A/data/code/val"],
    "seq_len": 2048,
    "tokenizer": "$T"
  },
  "batch": {"micro_batch": 8, "grad_accum": 1},
  "optim": {"lr": 4e-4, "min_lr": 4e-5, "warmup_steps": 100, "beta1": 0.9, "beta2": 0.95,
            "eps": 1e-8, "weight_decay": 0.1, "grad_clip": 1.0},
  "train": {"steps": $STEPS, "seed": 3407, "device": "cuda", "recompute": false,
            "run_dir": "$A/run_ours", "log_interval": 10},
  "eval": {"interval": 250, "batches": 20},
  "checkpoint": {"interval": 100000, "keep": 1}
}
EOF
      ;;
    bench|bench:fp8|bench:fp8d)
      # The same binary's `bench` at the run's shape, so the summary can set the real train
      # run's throughput beside it (#15: the trainer within 2% of bench); fp8d: delayed scaling.
      extra=()
      [ "$step" = bench:fp8 ] && extra=(--precision fp8)
      [ "$step" = bench:fp8d ] && extra=(--precision fp8 --fp8-scaling delayed)
      "$BIN" bench --preset tinyllama-1.1b --micro-batch 8 --steps 10 "${extra[@]}" \
        --json "$OUT/${step/:/_}.json" >"$OUT/${step/:/_}.log" 2>&1 || status=1
      grep -E "tokens/s|step  " "$OUT/${step/:/_}.log"
      ;;
    ours|ours:fp8)
      # ours: bf16 (the default); ours:fp8: train.precision fp8, the same init and data (#16).
      run=run_ours; extra=()
      # FP8_SET: more settings for the fp8 run (e.g. "train.fp8_scaling=delayed"); levers such
      # as TL_FP8_FAST_ACCUM come through the environment.
      [ "$step" = ours:fp8 ] && run=run_ours_fp8 && extra=(--set train.precision=fp8) &&
        for kv in ${FP8_SET:-}; do extra+=(--set "$kv"); done
      rm -rf "$W/$run"
      "$BIN" train --config "$W/config.json" --init-from "$W/init1.tlck" \
        --set "train.run_dir=$W/$run" "${extra[@]}" >"$OUT/$run.log" 2>&1 ||
        { status=1; echo "$run failed:"; tail -5 "$OUT/$run.log"; }
      grep -E "validation loss|tokens/s" "$OUT/$run.log" | tail -6
      cp "$W/$run/metrics.jsonl" "$OUT/$run.jsonl" 2>/dev/null
      ;;
    long:fp8)
      # #16's long FP8 run: LONG_STEPS (5000) steps in train.precision fp8 from init 1, the
      # cosine over all of them, evaluations every 500. LONG_SECONDS (500) bounds this call:
      # SIGTERM then makes the trainer save and exit, and the next call on the same warm
      # machine continues the run from that checkpoint (--resume auto).
      run=run_long_fp8
      args=(--set train.precision=fp8 --set "train.steps=${LONG_STEPS:-5000}" --set eval.interval=500
            --set "train.run_dir=$W/$run")
      if compgen -G "$W/$run/checkpoints/step_*" >/dev/null; then
        start=(--resume auto)
      else
        rm -rf "$W/$run"
        start=(--init-from "$W/init1.tlck")
      fi
      timeout -s TERM -k 90 "${LONG_SECONDS:-500}" "$BIN" train --config "$W/config.json" \
        "${start[@]}" "${args[@]}" >>"$OUT/$run.log" 2>&1
      rc=$?
      # 124: stopped by the time limit after saving (the run goes on in the next call).
      [ $rc = 0 ] || [ $rc = 124 ] || { status=1; echo "$run failed (rc $rc):"; tail -5 "$OUT/$run.log"; }
      grep -E "validation loss|stop requested|trained" "$OUT/$run.log" | tail -4
      cp "$W/$run/metrics.jsonl" "$OUT/$run.jsonl" 2>/dev/null
      ;;
    ref:*)
      seed=${step#ref:}
      PYTHONUNBUFFERED=1 python3 bench/pytorch_trainer.py --hf "$W/hf$seed" \
        --source "prose=0.6:$W/data/prose/train" --source "code=0.4:$W/data/code/train" \
        --val "$W/data/prose/val" --val "$W/data/code/val" --steps "$STEPS" --warmup 100 \
        --seed 3407 --eval-interval 250 --eval-batches 20 --out "$W/ref$seed.jsonl" \
        >"$OUT/ref$seed.log" 2>&1 || { status=1; echo "ref:$seed failed:"; tail -5 "$OUT/ref$seed.log"; }
      grep -E "validation loss|step .*00:" "$OUT/ref$seed.log" | tail -6
      # A run cut short (time limit) leaves its records in .tmp: keep the steps it reached.
      [ -f "$W/ref$seed.jsonl" ] || cp "$W/ref$seed.jsonl.tmp" "$W/ref$seed.jsonl" 2>/dev/null
      cp "$W/ref$seed.jsonl" "$OUT/" 2>/dev/null
      ;;
    summary)
      OUT="$OUT" python3 - "$W" <<'EOF' | tee "$OUT/summary.txt"
import json, os, sys
w = sys.argv[1]
def val(path):
    out = {}
    if os.path.exists(path):
        for line in open(path):
            r = json.loads(line)
            if "val_loss" in r:
                out[r["step"]] = r["val_loss"]
    return out
runs = {"ours bf16": val(f"{w}/run_ours/metrics.jsonl"),
        "ours fp8": val(f"{w}/run_ours_fp8/metrics.jsonl")}
a, b = val(f"{w}/ref1.jsonl"), val(f"{w}/ref2.jsonl")
# The band: the reference's seed-to-seed spread, or 1% around its mean where that is larger.
# With one reference run the band is the 1% one (a second run can only widen it).
def band(s):
    refs = [r[s] for r in (a, b) if s in r]
    lo, hi = min(refs), max(refs)
    mid = (lo + hi) / 2
    return min(lo, mid * 0.99), max(hi, mid * 1.01)
steps = sorted(s for s in a if any(s in r for r in runs.values()))
print("reference runs:", "init 1" + (", init 2" if b else " only (band = 1%)"))
print("step  ref(init 1) ref(init 2) band              " + "".join(f"{n:>22}" for n in runs))
verdict = {n: True for n in runs}
for s in steps:
    lo, hi = band(s)
    cells = []
    for n, r in runs.items():
        if s not in r:
            cells.append(f"{'-':>22}")
            continue
        good = lo <= r[s] <= hi
        if s in (250, 500, 1000):
            verdict[n] &= good
        cells.append(f"{r[s]:>14.4f} {'ok' if good else 'OUTSIDE':>7}")
    rb = f"{b[s]:.4f}" if s in b else "  -   "
    print(f"{s:5d} {a[s]:.4f}      {rb}      [{lo:.4f}, {hi:.4f}]" + "".join(cells))
# Throughput: the median tokens/s of the logged training steps (eval and checkpoint steps
# excluded: they are the off-interval work), against `bench` from the same call.
import statistics
for n, (run, bj) in {"ours bf16": ("run_ours", "bench.json"), "ours fp8": ("run_ours_fp8", "bench_fp8.json")}.items():
    path = f"{w}/{run}/metrics.jsonl"
    if not os.path.exists(path):
        continue
    recs = [json.loads(l) for l in open(path)]
    special = {r["step"] for r in recs if "val_loss" in r or r.get("event") == "checkpoint"}
    tps = [r["tokens_per_s"] for r in recs if "tokens_per_s" in r and r.get("step") not in special and r.get("step", 0) > 20]
    out = os.environ.get("OUT", "")
    line = f"throughput {n}: train median {statistics.median(tps):,.0f} tokens/s over {len(tps)} logged steps" if tps else f"throughput {n}: no steps"
    bpath = os.path.join(out, bj)
    if tps and os.path.exists(bpath):
        b = json.load(open(bpath)).get("tokens_per_s", 0)
        line += f"; bench {b:,.0f}; train/bench {statistics.median(tps) / b:.3f}"
    print(line)
for n, r in runs.items():
    if r:
        done = all(s in r and s in a for s in (250, 500, 1000))
        print(f"verdict {n}:", "within the band at steps 250/500/1000" if verdict[n] and done
              else "OUTSIDE the band" if done else "incomplete (steps 250/500/1000 missing)")
EOF
      # The plot: our bf16 curve with the reference drawn over it (tinyllama report).
      if [ -f "$W/run_ours/metrics.jsonl" ] && [ -f "$W/ref1.jsonl" ]; then
        "$BIN" report "$W/run_ours" --reference "$W/ref1.jsonl" \
          --reference-label "PyTorch (init 1)" >"$OUT/report.log" 2>&1 &&
          cp -r "$W/run_ours/report" "$OUT/report" || echo "report failed: $(tail -2 "$OUT/report.log")"
      fi
      ;;
    *) echo "unknown step $step"; status=2 ;;
  esac
done
# NOTAR=1: another instance writes into $OUT at the same time; its caller packs the logs.
[ -n "${NOTAR:-}" ] || (cd "$OUT" && tar -cf logs.tar --remove-files -- *.log 2>/dev/null)
exit $status
