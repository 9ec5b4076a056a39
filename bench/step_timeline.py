#!/usr/bin/env python3
"""Summarizes a kernel timeline (tools/gpu/kernel_timeline.cpp's CSV) of `tinyllama bench`
training steps: where one optimizer step's device time goes, kernel kind by kernel kind.

Steps are cut at the AdamW update kernel (one a step: the bench takes one optimizer step per
micro-batch); the first WARMUP steps are dropped, and the last DROP_LAST (1: `bench`'s last
step records CUDA events around every op for its phase table). Per kernel kind (demangled name; with
--grids, name and grid, which tells the GEMM shapes apart) the mean over the kept steps of
  ms      the kernels' summed duration in a step,
  calls   how many ran in a step,
and the step's span (the first kernel's start to the AdamW kernel's end), the time no kernel
ran (the span less the union of kernel intervals: launch gaps, host syncs) and the sum of
durations (above the busy time where kernels overlapped).

  bench/step_timeline.py TIMELINE.csv [--grids] [--warmup 2] [--drop-last 1] [--top 40]
"""
import argparse
import collections
import csv
import sys

from decode_timeline import demangle, short


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--grids", action="store_true", help="kinds by name and grid")
    ap.add_argument("--warmup", type=int, default=2, help="steps dropped at the start")
    ap.add_argument("--drop-last", type=int, default=1, help="steps dropped at the end")
    ap.add_argument("--top", type=int, default=40, help="kinds listed")
    args = ap.parse_args()

    rows = []
    with open(args.csv, newline="") as f:
        for r in csv.DictReader(f):
            rows.append((int(r["start_ns"]), int(r["end_ns"]), int(r["grid"]), r["name"]))
    if not rows:
        sys.exit("no kernels in " + args.csv)
    rows.sort()
    names = demangle(sorted({r[3] for r in rows}))
    ends = [i for i, r in enumerate(rows) if "adamw" in names[r[3]].lower()]
    steps = [(ends[i - 1] + 1, ends[i] + 1) for i in range(args.warmup + 1, len(ends))]
    steps = steps[: len(steps) - args.drop_last]
    if not steps:
        sys.exit(f"{len(ends)} AdamW kernels in {args.csv}: no step left after {args.warmup} "
                 f"warm-up and {args.drop_last} at the end")

    per_kind = collections.defaultdict(lambda: [0.0, 0])  # kind -> [ms, calls] over kept steps
    spans, idle, summed = [], [], []
    for lo, hi in steps:
        span_start, span_end = rows[lo][0], rows[hi - 1][1]
        busy, cur_s, cur_e, total = 0, None, None, 0
        for s, e, grid, name in rows[lo:hi]:
            kind = short(names[name]) + (f" [{grid}]" if args.grids else "")
            per_kind[kind][0] += (e - s) / 1e6
            per_kind[kind][1] += 1
            total += e - s
            if cur_e is None or s > cur_e:
                if cur_e is not None:
                    busy += cur_e - cur_s
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
        busy += cur_e - cur_s
        spans.append((span_end - span_start) / 1e6)
        idle.append((span_end - span_start - busy) / 1e6)
        summed.append(total / 1e6)

    n = len(steps)
    mean = lambda v: sum(v) / len(v)
    print(f"{n} steps ({args.warmup} warm-up and the last {args.drop_last} left out): span {mean(spans):.2f} ms "
          f"(min {min(spans):.2f}), no kernel running {mean(idle):.2f} ms, "
          f"kernel durations summed {mean(summed):.2f} ms")
    print(f"{'ms/step':>9s} {'%':>6s} {'calls':>6s} {'us/call':>8s}  kind")
    kinds = sorted(per_kind.items(), key=lambda kv: -kv[1][0])
    for kind, (ms, calls) in kinds[: args.top]:
        ms, calls = ms / n, calls / n
        print(f"{ms:9.2f} {100 * ms / mean(spans):6.1f} {calls:6.0f} {1e3 * ms / calls:8.1f}  {kind}")
    rest = kinds[args.top :]
    if rest:
        print(f"{sum(v[0] for _, v in rest) / n:9.2f}        ({len(rest)} more kinds)")


if __name__ == "__main__":
    main()
