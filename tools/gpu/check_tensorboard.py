#!/usr/bin/env python3
"""Loads a run's TensorBoard event files with the tensorboard package's EventAccumulator,
prints every scalar tag, and checks them against metrics.jsonl: one train/loss per step, no
step twice (a resumed run's SessionLog START must have purged the redone steps), values
equal to metrics.jsonl's rounded to float32.

    python3 tools/gpu/check_tensorboard.py RUN_DIR

Exit status 0 when everything agrees. Needs `tensorboard` (on the GPU machine).
"""
import json
import math
import os
import struct
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    run = sys.argv[1]
    files = sorted(f for f in os.listdir(run) if f.startswith("events.out.tfevents."))
    print(f"{len(files)} event files in {run}")
    acc = EventAccumulator(run, size_guidance={"scalars": 0})  # 0: keep every value
    acc.Reload()
    tags = acc.Tags()["scalars"]
    problems = []
    for tag in sorted(tags):
        ev = acc.Scalars(tag)
        steps = [e.step for e in ev]
        print(f"{tag:24s} {len(ev):6d} values, steps {steps[0]}..{steps[-1]}, last {ev[-1].value:.6g}")
        if len(set(steps)) != len(steps):
            problems.append(f"{tag}: a step appears twice (restart not purged)")

    want = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if "loss" in j and j["loss"] is not None:
                want[j["step"]] = j["loss"]
    got = {e.step: e.value for e in acc.Scalars("train/loss")} if "train/loss" in tags else {}
    if set(got) != set(want):
        problems.append(f"train/loss steps differ from metrics.jsonl: {len(got)} vs {len(want)}")
    bad = [s for s in want if s in got and not math.isclose(got[s], f32(want[s]), rel_tol=0, abs_tol=0)]
    if bad:
        problems.append(f"train/loss differs from metrics.jsonl at {len(bad)} steps, first {bad[0]}")
    for p in problems:
        print("PROBLEM:", p)
    print("OK: TensorBoard reads every scalar, one per step, equal to metrics.jsonl" if not problems
          else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
