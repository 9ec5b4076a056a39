#!/usr/bin/env bash
# Data benchmark: prepare's tokenization throughput (MB/s of text, per thread and per
# CPU-second) for 1..N threads on tinyshakespeare repeated to ~50 MB, as text and as a
# SlimPajama-style jsonl.zst, against spm_encode (one thread) on the same text; then the
# loader's blocks/s from a warm page cache and the time a training step waits in next().
#
# usage: bench/data_bench.sh [BUILD_DIR (build)] [MAX_THREADS (nproc)] [MB (50)]
# Needs the tinyllama and tinyllama_data_bench binaries in BUILD_DIR and the shared data
# ($TL_SHARED_DIR/data, else ../shared/data). Prints a markdown table for bench/RESULTS.md.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
max_threads=${2:-$(nproc)}
mb=${3:-50}
shared=${TL_SHARED_DIR:-$here/../shared}/data
model=$shared/llama2-tokenizer.model
tl=$build/tinyllama
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "# data_bench $(date -u +%Y-%m-%d) on $(hostname): $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load $(cut -d' ' -f1-3 /proc/loadavg)"
# Physical cores vs hardware threads: per-thread figures drop once threads share a core.
if command -v lscpu >/dev/null; then
  lscpu | grep -E '^(Thread\(s\) per core|Core\(s\) per socket|Socket\(s\)|L3 cache):' | sed 's/^/#   /'
fi
"$build/tinyllama_data_bench" make-inputs "$shared/tinyshakespeare.txt" "$work" "$mb"
text_mb=$(awk -v b="$(stat -c %s "$work/text.txt")" 'BEGIN { printf "%.2f", b / 1e6 }')

# Runs a command; prints "wall user+sys" seconds.
timed() {
  local TIMEFORMAT='%R %U %S' t
  t=$( { time "$@" >/dev/null 2>"$work/stderr"; } 2>&1 ) || { cat "$work/stderr" >&2; return 1; }
  awk '{ printf "%.3f %.3f\n", $1, $2 + $3 }' <<<"$t"
}

echo
echo "| tool | input | threads | wall s | MB/s | MB/s per thread | MB per CPU-second |"
echo "|---|---|---|---|---|---|---|"
if command -v spm_encode >/dev/null; then
  read -r wall cpu < <(timed spm_encode --model "$model" --output_format=id --input "$work/text.txt")
  awk -v w="$wall" -v c="$cpu" -v m="$text_mb" 'BEGIN { printf "| spm_encode (lines) | text.txt | 1 | %.2f | %.2f | %.2f | %.2f |\n", w, m / w, m / w, m / c }'
else
  echo "| spm_encode | - | - | - | - | - | not installed here (Debian package sentencepiece) |"
fi
for input in text jsonl; do
  for t in 1 2 4 8 16 32 64; do
    [ "$t" -le "$max_threads" ] || break
    if [ "$input" = text ]; then
      args=(--separator '' "$work/text.txt")
    else
      args=("$work/slim.jsonl.zst")
    fi
    read -r wall cpu < <(timed "$tl" prepare --tokenizer "$model" --source b --out "$work/out_$input$t" \
      --threads "$t" --progress-seconds 1000 "${args[@]}")
    # Text bytes tokenized, from prepare's summary ("..., 50.2 MB of text, ...").
    m=$(grep -o '[0-9.]* [kMG]B of text' "$work/stderr" | awk '{ f = $2 == "GB" ? 1000 : $2 == "kB" ? 0.001 : 1; printf "%.2f", $1 * f }')
    awk -v w="$wall" -v c="$cpu" -v m="$m" -v t="$t" -v i="$input" 'BEGIN {
      printf "| tinyllama prepare | %s | %d | %.2f | %.2f | %.2f | %.2f |\n", i == "text" ? "text.txt (paragraphs)" : "slim.jsonl.zst", t, w, m / w, m / w / t, m / c }'
  done
done

echo
shards=$work/out_text1/train
echo "Loader over $(ls "$shards" | wc -l) shards of $shards:"
bench=$build/tinyllama_data_bench
"$bench" loader "$shards" 2048 8 20000 0 0 >/dev/null  # warm the page cache
"$bench" loader "$shards" 2048 8 20000 0 0
"$bench" loader "$shards" 2048 8 20000 0 4
# A training step of 20 ms: how long does next() hold it up, from a warm and a cold cache?
"$bench" loader "$shards" 2048 8 300 20 0
"$bench" loader "$shards" 2048 8 300 20 4
"$bench" loader "$shards" 2048 8 300 20 0 cold
"$bench" loader "$shards" 2048 8 300 20 4 cold
