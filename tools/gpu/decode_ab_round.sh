#!/usr/bin/env bash
# A lean device call (~200 s) for batch-1 decode levers (#13), for when starts are scarce: the
# decode kernels' tests, then scheduler decode tokens/s at batch 1 under the default and each
# lever in LEVERS (a lever's variables joined by commas), ROUNDS times interleaved, with the
# SM clock and power after each run. Writes the best lever to $OUT/winner when its mean beats
# the default's by MIN_GAIN percent (default 1) and its worst run beats the default's best,
# else nothing. Then batches 4, 8 and 32 under the default and the winner (a lever must not
# cost the others), unless SKIP_BATCHES=1. Carry [".carry/bin.tgz", ".carry/data",
# ".carry/httplib"] (tools/gpu/make_carry.sh).
#   LEVERS="A=1 B=1 A=1,B=1" OUT=$OUT tools/gpu/decode_ab_round.sh   (repository root, GPU)
set -uo pipefail
OUT=${OUT:-/tmp/decode_ab_round}
ROUNDS=${ROUNDS:-2}
MIN_GAIN=${MIN_GAIN:-1}
mkdir -p "$OUT"
T0=$(date +%s)
bash tools/gpu/unpack_carry.sh
export LD_LIBRARY_PATH=$PWD/.carry/httplib/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader
# The levers' own tests come first (every lever against the default, bit for bit): a lever
# whose tests fail is not named the winner, however fast.
TL_BACKEND_OPS_ONLY=decode,argmax timeout 150 build-gpu/tinyllama_tests \
  --gtest_filter='CudaDecode.*:CudaOps.Decode*:BackendOps.Cuda*' >"$OUT/tests.log" 2>&1
tests_rc=$?
echo "== decode tests: rc $tests_rc $(grep -E '^\[  (PASSED|FAILED)|FAILED TEST' "$OUT/tests.log" |
  tr '\n' ' ')"

# Scheduler decode tokens/s at batch $1 under variant $2 (variables joined by commas).
sched() {
  env ${2//,/ } timeout 60 build-gpu/tinyllama_serve_bench --device cuda --batches "$1" \
    --prompt 128 --new 256 2>&1 | tail -1 | awk '{print $2}'
}
: >"$OUT/ab.tsv"
for r in $(seq "$ROUNDS"); do
  for v in default ${LEVERS:?LEVERS names the levers to compare}; do
    [ "$v" = default ] && e="" || e=$v
    t=$(sched 1 "$e")
    clk=$(nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader | tr -d ' ')
    printf '%s\t%s\t%s\t%s\n' "$r" "$v" "${t:-0}" "$clk" | tee -a "$OUT/ab.tsv"
  done
done
# The best variant by mean, if it beats the default as the header says.
awk -F'\t' -v gain="$MIN_GAIN" '
  { s[$2] += $3; n[$2]++
    if (!($2 in lo) || $3 < lo[$2]) lo[$2] = $3
    if (!($2 in hi) || $3 > hi[$2]) hi[$2] = $3 }
  END {
    base = s["default"] / n["default"]; best = ""; bm = base
    for (v in s) { m = s[v] / n[v]
      printf "%-60s mean %8.1f  min %8.1f  max %8.1f  %+5.1f%%\n", v, m, lo[v], hi[v], 100 * (m / base - 1)
      if (v != "default" && m > bm && m >= base * (1 + gain / 100) && lo[v] > hi["default"]) { bm = m; best = v } }
    if (best != "") { print best > "'"$OUT"'/winner"; print "winner: " best }
    else print "winner: none (the default stays)" }' "$OUT/ab.tsv"
if [ "$tests_rc" != 0 ] && [ -f "$OUT/winner" ]; then
  echo "the decode tests failed (rc $tests_rc, $OUT/tests.log): no winner named"
  mv "$OUT/winner" "$OUT/winner.untested"
fi
if [ -z "${SKIP_BATCHES:-}" ] && [ -f "$OUT/winner" ]; then
  w=$(cat "$OUT/winner")
  for b in 4 8 32; do
    echo "== batch $b: default $(sched "$b" "") | $w $(sched "$b" "$w")"
  done
fi
nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader
echo "== end at $(($(date +%s) - T0)) s"
