#!/usr/bin/env python3
"""Resume exactness and run-to-run determinism of the trainer on a device:
  A  = 2N steps in one run        A2 = the same again (run-to-run)
  B  = N steps, then --resume auto, then N more steps
Compares the per-step losses (metrics.jsonl) and the final weights and AdamW moments of the
checkpoints, bit for bit, and prints how far they drift when they are not identical.

    python3 tools/gpu/resume_check.py --binary build/tinyllama --device cuda --out /tmp/rc

Exit status 0 when A, A2 and B are identical. Python standard library only.
"""
import argparse
import array
import json
import os
import random
import shutil
import struct
import subprocess
import sys


def write_shard(path, tokens):
    """A lit-gpt PackedDataset file, uint16 tokens (the format of data/packed.h)."""
    with open(path, "wb") as f:
        f.write(b"LITPKDS" + struct.pack("<QBQ", 1, 8, len(tokens)))
        f.write(array.array("H", tokens).tobytes())


def make_data(root, vocab):
    rng = random.Random(7)
    os.makedirs(f"{root}/train", exist_ok=True)
    os.makedirs(f"{root}/val", exist_ok=True)
    # A learnable mixture: runs of counting with random restarts.
    def stream(n):
        out, t = [], 0
        while len(out) < n:
            t = rng.randrange(vocab) if rng.random() < 0.05 else (t + 1) % vocab
            out.append(t)
        return out
    for i in range(4):
        write_shard(f"{root}/train/s_{i:05d}.bin", stream(200_000))
    write_shard(f"{root}/val/v_00000.bin", stream(40_000))


def read_checkpoint(path):
    """{section name: array('f')} of a native checkpoint (src/checkpoint/checkpoint.h)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"TLCKPT\0\0", path
    (header_len,) = struct.unpack_from("<Q", data, 16)
    header = json.loads(data[24:24 + header_len])
    out = {}
    for s in header["sections"]:
        a = array.array("f")
        a.frombytes(data[s["offset"]:s["offset"] + s["bytes"]])
        out[s["name"]] = a
    return out


def losses(run_dir):
    out = {}
    with open(f"{run_dir}/metrics.jsonl") as f:
        for line in f:
            j = json.loads(line)
            if "loss" in j:
                out[j["step"]] = j["loss"]
    return [out[k] for k in sorted(out)]


def compare(name, a, b):
    same = a.tobytes() == b.tobytes() if isinstance(a, array.array) else a == b  # bits, not values
    diff = max((abs(x - y) for x, y in zip(a, b)), default=0.0)
    n = sum(1 for x, y in zip(a, b) if x != y)
    print(f"  {name:8s} {'identical' if same else f'{n} of {len(a)} differ, max |diff| {diff:.3g}'}")
    return same


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default="build/tinyllama")
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default="/tmp/tl_resume_check")
    p.add_argument("--steps", type=int, default=20, help="N: steps before the resume")
    a = p.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    vocab = 512
    make_data(f"{a.out}/data", vocab)
    n = a.steps
    cfg = {
        "model": {"vocab_size": vocab, "dim": 256, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2,
                  "ffn_dim": 688, "max_seq_len": 256},
        "data": {"sources": [{"name": "s", "paths": ["data/train"], "weight": 1}],
                 "val": ["data/val"], "seq_len": 256},
        "batch": {"micro_batch": 4, "grad_accum": 2},
        "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 5, "decay_steps": 2 * n},
        "train": {"steps": 2 * n, "seed": 3, "device": a.device, "log_interval": 10},
        "eval": {"interval": 0, "batches": 4},
        "checkpoint": {"interval": n, "keep": 3},
    }
    with open(f"{a.out}/config.json", "w") as f:
        json.dump(cfg, f, indent=1)

    def train(run, *extra):
        cmd = [a.binary, "train", "--config", f"{a.out}/config.json",
               "--set", f"train.run_dir={a.out}/{run}", *extra]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
        return r.stderr

    train("A")
    train("A2")
    train("B", "--set", f"train.steps={n}")
    train("B", "--resume", "auto")
    ok = True
    final = f"checkpoints/step_{2 * n:08d}.tlck"
    ref = read_checkpoint(f"{a.out}/A/{final}")
    for run, what in (("A2", "run-to-run"), ("B", "resumed")):
        print(f"{what} ({run} vs A), {a.device}:")
        ok &= compare("losses", losses(f"{a.out}/{run}"), losses(f"{a.out}/A"))
        ck = read_checkpoint(f"{a.out}/{run}/{final}")
        for sec in ("params", "adam_m", "adam_v"):
            ok &= compare(sec, ck[sec], ref[sec])
    print("OK: identical" if ok else "NOT identical")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
