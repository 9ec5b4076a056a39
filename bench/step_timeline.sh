#!/usr/bin/env bash
# A training step's kernels as they run (#15, #16): `tinyllama bench` at TinyLlama-1.1B,
# micro-batch 8 x 2048, with tools/gpu/kernel_timeline.cpp preloaded, then
# bench/step_timeline.py over the timeline: each kernel kind's device time a step, the
# launch gaps. One run per configuration in CONFIGS (space-separated; inside one, commas
# separate bench options and VAR=VALUE levers, as in gpu_round.sh's ours@...).
# Carry [".carry/bin.tgz", ".carry/data", ".carry/httplib", ".carry/timeline"].
#   bench/step_timeline.sh      (repository root, GPU machine; OUT=$OUT, BUILD=build-gpu)
set -uo pipefail
source tools/gpu/timeline_env.sh step_timeline
for config in ${CONFIGS:---precision=bf16 --precision=fp8,--fp8-scaling=delayed}; do
  name=$(echo "$config" | tr -c 'A-Za-z0-9\n' '_' | sed 's/^_*//')
  vars=() flags=()
  for item in ${config//,/ }; do [[ $item == --* ]] && flags+=("$item") || vars+=("$item"); done
  echo "== $config (traced; the tracing costs ~1 us a kernel)"
  env "${vars[@]}" TL_TIMELINE_OUT="$OUT/step_$name.csv" LD_PRELOAD="$TIMELINE" \
    timeout 240 "$BUILD/tinyllama" bench --preset tinyllama-1.1b --micro-batch 8 --steps 8 "${flags[@]}" \
    >"$OUT/step_$name.log" 2>&1 || echo "bench rc $?"
  grep -E "tokens/s|kernel_timeline" "$OUT/step_$name.log" | tail -3
  python3 bench/step_timeline.py "$OUT/step_$name.csv" --top 45 | tee "$OUT/summary_$name.txt"
  python3 bench/step_timeline.py "$OUT/step_$name.csv" --grids --top 80 >"$OUT/grids_$name.txt"
  gzip -f "$OUT/step_$name.csv"
done
nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader
# One file back instead of four a configuration (a call returns a limited number of files).
(cd "$OUT" && tar -cf step_timeline.tar --remove-files -- step_* summary_* grids_* 2>/dev/null)
