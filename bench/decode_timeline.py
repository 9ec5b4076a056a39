#!/usr/bin/env python3
"""Summarizes a kernel timeline (tools/gpu/kernel_timeline.cpp's CSV) of decode steps replayed
as CUDA graphs: where a step's time goes, kernel by kernel, as the kernels really overlap
(programmatic dependent launch included).

Each graph replay is one group of kernels sharing a correlation id (the cudaGraphLaunch call).
The graph replayed most often is taken (a decode step at one batch size); for each kernel of
it, by its place in the step, the median over replays of
  duration  its end - its start,
  gap       its start - the end of the kernel before it (negative: they overlapped),
and per kernel kind (name and grid) the sums over a step. Also the step's span (first start to
last end), the sum of positive gaps (time no kernel of the chain ran), the gap between one
replay's end and the next one's start (the host's share) and what the device ran in that gap
outside any graph (copies, memsets, single kernels: kernel_timeline.cpp records them too).

  bench/decode_timeline.py TIMELINE.csv [--positions]
"""
import argparse
import bisect
import collections
import csv
import re
import shutil
import statistics
import subprocess
import sys


def demangle(names):
    if not shutil.which("c++filt"):
        return {n: n for n in names}
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout
    return dict(zip(names, out.splitlines()))


def short(name):
    # tl::gpu::(anon)::decode_linear_kernel<1, (tl::Backend::LinearIn)1, 0>(Args) -> decode_linear<1,1,0>
    name = re.sub(r"^void ", "", name)
    name = re.sub(r"\(anonymous namespace\)::", "", name)
    name = re.sub(r"\([^()]*\)$", "", name)  # the parameter list
    name = re.sub(r"\(tl::Backend::LinearIn\)", "In", name)
    name = re.sub(r"\b(tl|gpu|cutlass|cudnn)::", "", name)
    name = name.replace("_kernel", "")
    return name if len(name) <= 60 else name[:57] + "..."


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--positions", action="store_true", help="also every kernel of the step by place")
    args = ap.parse_args()

    replays = collections.defaultdict(list)  # correlation -> kernels
    loose = []  # what ran outside graphs: copies, memsets, kernels launched one by one
    with open(args.csv, newline="") as f:
        for r in csv.DictReader(f):
            if r["graph_id"] in ("0", ""):
                loose.append(r)
                continue
            replays[(r["graph_id"], r["correlation"])].append(r)
    if not replays:
        sys.exit("no graph-replayed kernels in " + args.csv)
    by_graph = collections.Counter(g for g, _ in replays)
    graph, n_replays = by_graph.most_common(1)[0]
    groups = [sorted(k, key=lambda r: int(r["start_ns"])) for (g, _), k in replays.items() if g == graph]
    # Replays of one graph run the same nodes; keep those with the usual kernel count.
    width = collections.Counter(len(g) for g in groups).most_common(1)[0][0]
    groups = sorted((g for g in groups if len(g) == width), key=lambda g: int(g[0]["start_ns"]))
    groups = groups[len(groups) // 10:]  # the first tenth warms up
    names = demangle(sorted({r["name"] for g in groups for r in g} | {r["name"] for r in loose if r["grid"] != "0"}))

    dur = [[] for _ in range(width)]
    gap = [[] for _ in range(width)]
    spans, idle, host = [], [], []
    between = []  # per pair of consecutive replays: the loose records that started in between
    loose.sort(key=lambda r: int(r["start_ns"]))
    loose_starts = [int(r["start_ns"]) for r in loose]
    prev_end = None
    for g in groups:
        start = [int(r["start_ns"]) for r in g]
        end = [int(r["end_ns"]) for r in g]
        last_end, no_kernel = end[0], 0.0  # the latest end so far
        dur[0].append((end[0] - start[0]) / 1e3)
        for i in range(1, width):
            dur[i].append((end[i] - start[i]) / 1e3)
            gap[i].append((start[i] - last_end) / 1e3)
            no_kernel += max(0.0, gap[i][-1])
            last_end = max(last_end, end[i])
        spans.append((last_end - start[0]) / 1e3)
        idle.append(no_kernel)
        if prev_end is not None:
            host.append((start[0] - prev_end) / 1e3)
            lo, hi = bisect.bisect_left(loose_starts, prev_end), bisect.bisect_left(loose_starts, start[0])
            between.append([(r, prev_end) for r in loose[lo:hi]])
        prev_end = last_end

    med = statistics.median
    step = med(spans) + (med(host) if host else 0.0)
    print(f"graph {graph}: {len(groups)} replays of {width} kernels (of {n_replays}; the first tenth "
          f"left out)")
    print(f"step: span {med(spans):.1f} us (first start to last end), then {med(host) if host else 0:.1f} us "
          f"to the next replay: {step:.1f} us a step, {1e6 / step:.1f} steps/s")
    print(f"  no kernel of the chain running (positive gaps): {med(idle):.1f} us a step")
    kinds = collections.OrderedDict()
    for i, r in enumerate(groups[0]):
        key = (short(names[r["name"]]), r["grid"])
        k = kinds.setdefault(key, {"n": 0, "dur": 0.0, "gap": 0.0})
        k["n"] += 1
        k["dur"] += med(dur[i])
        k["gap"] += med(gap[i]) if i else 0.0
    print(f"\n{'kernel':62} {'grid':>6} {'a step':>6} {'us each':>8} {'us a step':>9} {'gap a step':>10}")
    for (name, grid), k in sorted(kinds.items(), key=lambda kv: -kv[1]["dur"]):
        print(f"{name:62} {grid:>6} {k['n']:>6} {k['dur'] / k['n']:8.2f} {k['dur']:9.1f} {k['gap']:10.1f}")
    if any(between):
        # By kind: how many a gap holds (median over every gap, those without one count 0),
        # each one's duration and where it starts after the replay's last kernel ends (medians
        # over the ones seen).
        def op_name(r):
            return short(names.get(r["name"], r["name"])) if r["grid"] != "0" else r["name"]
        ops = collections.OrderedDict()
        for gap_ops in between:
            for r, end0 in gap_ops:
                o = ops.setdefault(op_name(r), {"n": [], "dur": [], "at": []})
                o["dur"].append((int(r["end_ns"]) - int(r["start_ns"])) / 1e3)
                o["at"].append((int(r["start_ns"]) - end0) / 1e3)
        for gap_ops in between:
            seen = collections.Counter(op_name(r) for r, _ in gap_ops)
            for name, o in ops.items():
                o["n"].append(seen[name])
        print(f"\nbetween replays ({len(between)} gaps): {'op':40} {'a gap':>6} {'us each':>8} {'starts at us':>12}")
        for name, o in ops.items():
            print(f"{'':28}{name:40} {med(o['n']):6.1f} {med(o['dur']):8.2f} {med(o['at']):12.2f}")
    if args.positions:
        print(f"\n{'#':>4} {'kernel':62} {'grid':>6} {'us':>7} {'gap us':>7}")
        for i, r in enumerate(groups[0]):
            g = f"{med(gap[i]):7.2f}" if i else "       "
            print(f"{i:4} {short(names[r['name']]):62} {r['grid']:>6} {med(dur[i]):7.2f} {g}")


if __name__ == "__main__":
    main()
