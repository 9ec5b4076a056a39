#!/usr/bin/env bash
# The demo: a tokenizer, packed shards and a `tiny` model trained from a small real corpus
# that Debian ships (fortune cookies as prose, the Python standard library as code, mixed
# 7:3 like SlimPajama:Starcoderdata), then validation, zero-shot accuracy on held-out
# fortunes (also during training), a sample and a checkpoint.
set -euo pipefail
BUILD=${1:-build}
BIN=$(readlink -f "$BUILD/tinyllama")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${DEMO_DIR:-$ROOT/runs/demo}
STEPS=${DEMO_STEPS:-500}
start=$(date +%s)

rm -rf "$WORK"
mkdir -p "$WORK/corpus/prose" "$WORK/corpus/code"
cd "$WORK"

echo "== corpus"
# Prose: every fortune file minus every 20th fortune, held out as a zero-shot task the model
# never sees (HellaSwag's schema: context, four endings; scored with HellaSwag's rules).
python3 "$ROOT/scripts/demo_cloze.py" --fortunes /usr/share/games/fortunes --corpus corpus/prose \
  --task cloze/validation.jsonl
# Code: the Python standard library, one file a document (tests left out).
find /usr/lib/python3.11 -name '*.py' -not -path '*/test/*' -not -path '*/tests/*' -size -200k \
  | sort | while read -r f; do
      rel=${f#/usr/lib/python3.11/}
      cp "$f" "corpus/code/${rel//\//__}.txt"
    done
echo "prose: $(ls corpus/prose | wc -l) files, $(du -sh corpus/prose | cut -f1); code: $(ls corpus/code | wc -l) files, $(du -sh corpus/code | cut -f1)"

echo "== tokenizer (BPE, 4096 pieces, Llama settings)"
"$BIN" tokenizer-train --out tokenizer --vocab-size 4096 --max-sentences 300000 \
  corpus/prose corpus/code

echo "== shards"
"$BIN" prepare --tokenizer tokenizer.model --source prose --out data/prose --separator '%' \
  --val-fraction 0.03 --chunk-size 65792 corpus/prose
"$BIN" prepare --tokenizer tokenizer.model --source code --out data/code --allow-duplicates \
  --val-fraction 0.03 --chunk-size 65792 corpus/code

echo "== training"
cp "$ROOT/configs/demo.json" config.json
"$BIN" train --config config.json --set train.steps="$STEPS" | tee train.log

echo "== report"
"$BIN" report run | tail -n 1

echo "== validation"
CK=$(ls run/checkpoints/*.tlck | tail -n 1)
"$BIN" eval --checkpoint "$CK" --data data/prose/val data/code/val --seq-len 256 | tee eval.log

echo "== zero-shot: held-out fortunes, 4-way completion (chance 25%)"
"$BIN" eval --checkpoint "$CK" --tokenizer tokenizer.model --task hellaswag=cloze/validation.jsonl \
  --json zero_shot.json | tail -n 2

echo "== sample"
"$BIN" generate --checkpoint "$CK" --tokenizer tokenizer.model --prompt "The meaning of life is" \
  --max-new 60 --temperature 0.8 --top-p 0.95 --seed 1
"$BIN" generate --checkpoint "$CK" --tokenizer tokenizer.model --prompt "def " \
  --max-new 60 --temperature 0.8 --top-p 0.95 --seed 1

end=$(date +%s)
first=$(grep -o '"val_loss":[0-9.]*' run/metrics.jsonl | head -n 1 | cut -d: -f2)
last=$(grep -o '"val_loss":[0-9.]*' run/metrics.jsonl | tail -n 1 | cut -d: -f2)
awk -v first="$first" -v last="$last" -v secs="$((end - start))" 'BEGIN {
  bound = log(4096); drop = 100 * (1 - last / bound)
  printf "== demo done in %d s: validation loss %.3f -> %.3f (ln(vocab) = %.3f; final is %.0f%% below it)\n", secs, first, last, bound, drop
  if (last > 0.6 * bound) { print "demo: the validation loss did not fall 40% below ln(vocab)" > "/dev/stderr"; exit 1 }
}'
echo "run folder: $WORK/run (checkpoints/, metrics.jsonl, TensorBoard events, config.json, report/index.html)"
