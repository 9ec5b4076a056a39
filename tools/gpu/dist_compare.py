#!/usr/bin/env python3
"""Helpers for tools/gpu/dist_check.sh (numpy only).

  dist_compare.py make-data DIR [--tokens N] [--vocab V] [--seed S]
      Packed training shards (lit-gpt LITPKDS, uint16) of a low-entropy Markov chain: each
      token has 4 likely successors, so a small model's loss falls fast and stays informative.
  dist_compare.py losses REF_RUN RUN [--skip K] [--tol T]
      Per-step training losses of two runs (metrics.jsonl); RUN's steps are matched to REF's
      by step number. Fails when max |difference| > T.
  dist_compare.py params REF_HF HF [--tol T]
      Parameters of two exported Hugging Face folders (f32 safetensors). Fails when
      ||a - b|| / ||b|| over all tensors > T.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np


def make_data(a):
    os.makedirs(a.dir, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    vocab = a.vocab
    succ = rng.integers(0, vocab, size=(vocab, 4))
    probs = np.array([0.55, 0.25, 0.12, 0.08])
    choice = rng.choice(4, size=a.tokens, p=probs)
    noise = rng.random(a.tokens) < 0.03
    rand = rng.integers(0, vocab, size=a.tokens)
    toks = np.empty(a.tokens, dtype=np.uint16)
    t = 1
    for i in range(a.tokens):
        t = rand[i] if noise[i] else succ[t, choice[i]]
        toks[i] = t
    chunk = 2049 * 1024
    for k, start in enumerate(range(0, a.tokens, chunk)):
        part = toks[start:start + chunk]
        with open(os.path.join(a.dir, f"train_{k:05d}.bin"), "wb") as f:
            f.write(b"LITPKDS" + struct.pack("<QBQ", 1, 8, len(part)) + part.tobytes())
    print(f"wrote {a.tokens} tokens (vocab {vocab}) to {a.dir}")


def read_losses(run):
    out = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if "loss" in j and "step" in j:
                out[j["step"]] = j["loss"]
    return out


def losses(a):
    ref, got = read_losses(a.ref), read_losses(a.run)
    steps = sorted(s for s in got if s in ref and s > a.skip)
    if not steps:
        sys.exit(f"no common steps between {a.ref} and {a.run}")
    diffs = [abs(got[s] - ref[s]) for s in steps]
    worst = max(range(len(steps)), key=lambda i: diffs[i])
    print(f"losses {a.run} vs {a.ref}: {len(steps)} steps ({steps[0]}..{steps[-1]}), "
          f"first {ref[steps[0]]:.4f}/{got[steps[0]]:.4f}, last {ref[steps[-1]]:.4f}/{got[steps[-1]]:.4f}, "
          f"max |diff| {diffs[worst]:.5f} at step {steps[worst]}, mean |diff| {np.mean(diffs):.5f} "
          f"(tolerance {a.tol})")
    if diffs[worst] > a.tol:
        sys.exit(1)


def read_safetensors(folder):
    tensors = {}
    files = [f for f in os.listdir(folder) if f.endswith(".safetensors")]
    for name in sorted(files):
        with open(os.path.join(folder, name), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            data = f.read()
        for key, v in header.items():
            if key == "__metadata__":
                continue
            assert v["dtype"] == "F32", f"{key}: export with --dtype f32"
            lo, hi = v["data_offsets"]
            tensors[key] = np.frombuffer(data[lo:hi], dtype=np.float32)
    return tensors


def params(a):
    ref, got = read_safetensors(a.ref), read_safetensors(a.run)
    assert ref.keys() == got.keys(), "the folders hold different tensors"
    num = den = 0.0
    worst = (0.0, "")
    for k in ref:
        d = got[k].astype(np.float64) - ref[k]
        num += float(d @ d)
        den += float(ref[k].astype(np.float64) @ ref[k])
        m = float(np.abs(d).max()) if d.size else 0.0
        worst = max(worst, (m, k))
    rel = (num / den) ** 0.5
    print(f"params {a.run} vs {a.ref}: {len(ref)} tensors, ||diff||/||ref|| = {rel:.2e}, "
          f"max |diff| {worst[0]:.2e} in {worst[1]} (tolerance {a.tol})")
    if rel > a.tol:
        sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-data")
    m.add_argument("dir")
    m.add_argument("--tokens", type=int, default=3_000_000)
    m.add_argument("--vocab", type=int, default=2048)
    m.add_argument("--seed", type=int, default=1)
    l = sub.add_parser("losses")
    l.add_argument("ref")
    l.add_argument("run")
    l.add_argument("--skip", type=int, default=0)
    l.add_argument("--tol", type=float, default=0.03)
    q = sub.add_parser("params")
    q.add_argument("ref")
    q.add_argument("run")
    q.add_argument("--tol", type=float, default=0.01)
    a = p.parse_args()
    {"make-data": make_data, "losses": losses, "params": params}[a.cmd](a)


if __name__ == "__main__":
    main()
