#!/usr/bin/env bash
# Where a batch-1 decode step's time goes, kernel by kernel, with Nsight Compute (the GPU
# machine has ncu, not nsys): tinyllama_serve_bench at batch 1 with the decode steps launched
# op by op (TL_DECODE_GRAPHS=0: the same kernels a recorded step replays), ncu on two steps'
# kernels well after the prefill, each with its duration and the DRAM bytes it read (caches
# flushed before each, as a step that streams 2 GB of weights leaves none of them in L2).
# Then the same bench with graphs for the step time they add up to (the rest is the gaps
# between kernels). Clocks are left alone (--clock-control none).
#   bench/decode_ncu.sh    (repository root, GPU machine; BUILD=build-gpu OUT=$OUT)
# Extra environment (levers) passes through: TL_DECODE_STAGES=2 bench/decode_ncu.sh
set -uo pipefail
BUILD=${BUILD:-build-gpu}
OUT=${OUT:-/tmp/decode_ncu}
mkdir -p "$OUT"
[ -d .carry/httplib/lib ] && export LD_LIBRARY_PATH="$PWD/.carry/httplib/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "no ncu on this machine"; exit 1; }
metrics=gpu__time_duration.sum,dram__bytes_read.sum,launch__grid_size,launch__block_size,launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active
TL_DECODE_GRAPHS=0 timeout 300 "$NCU" --clock-control none --cache-control all --metrics "$metrics" --print-units base \
  --launch-skip "${SKIP:-3000}" --launch-count "${COUNT:-240}" --csv --page raw \
  "$BUILD/tinyllama_serve_bench" --device cuda --batches 1 --prompt 128 --new 64 \
  >"$OUT/ncu.csv" 2>"$OUT/ncu.err"
echo "ncu rc $? ($(wc -l <"$OUT/ncu.csv") lines)"
tail -3 "$OUT/ncu.err"
python3 - "$OUT/ncu.csv" <<'PY'
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1])))
head = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
names = rows[head]; data = [dict(zip(names, r)) for r in rows[head + 2:] if len(r) == len(names)]
def num(v):
    try: return float(v.replace(",", ""))
    except ValueError: return 0.0
agg = collections.OrderedDict()
for d in data:
    key = (d["Kernel Name"][:60], d.get("launch__grid_size", ""), d.get("launch__block_size", ""))
    a = agg.setdefault(key, [0, 0.0, 0.0, d.get("launch__registers_per_thread", ""), 0.0])
    a[0] += 1; a[1] += num(d["gpu__time_duration.sum"]); a[2] += num(d["dram__bytes_read.sum"])
    a[4] += num(d.get("sm__warps_active.avg.pct_of_peak_sustained_active", "0"))
total = sum(a[1] for a in agg.values())
print(f"{len(data)} kernels, {total/1e3:.1f} us of kernel time (ncu reports ns)")
print(f"{'kernel':60} {'grid':>6} {'block':>5} {'regs':>4} {'n':>4} {'us avg':>8} {'MB avg':>8} {'GB/s':>7} {'occ%':>5} {'% time':>6}")
for (k, g, b), (n, t, by, regs, occ) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
    print(f"{k:60} {g:>6} {b:>5} {regs:>4} {n:>4} {t/n/1e3:8.2f} {by/n/1e6:8.2f} {by/t if t else 0:7.0f} {occ/n:5.1f} {100*t/total:6.1f}")
PY
echo "-- the same step from recorded graphs (what the kernel times above add up to, plus gaps):"
"$BUILD/tinyllama_serve_bench" --device cuda --batches 1 --prompt 128 --new 256
