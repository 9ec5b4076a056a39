#!/usr/bin/env python3
"""Generation tokens/s: tinyllama generate vs transformers' generate, same model, same call.

    python3 bench/generate_bench.py --binary build/tinyllama [--work /tmp/gen_bench]
        [--checkpoint CK] [--batches 1 32] [--prompt-len 128] [--new 512]

Model: --checkpoint, or the TinyLlama-1.1B shape with random weights (`tinyllama init
--seed 0`), exported to Hugging Face in bf16. Prompts: random ids in [3, vocab), one per
row. Both sides: bf16 on one GPU, greedy, exactly --new tokens per row (EOS ignored),
KV cache. Timed: the whole generation call after the model is loaded and one untimed call of
the same shape on each side (ours: prefill + decode as the binary reports it after
`generate --warmup 1`; transformers: model.generate after its warm-up call). Rows before
2026-12-06 session 10 timed our first, cold call (kernel loading and GEMM algorithm choice
inside its prefill). transformers runs in its strongest configuration by default (--hf static): a
static KV cache (`cache_implementation="static"`), whose decode step generate compiles with
torch.compile (`CompileConfig(fullgraph=True, mode="reduce-overhead")`: Inductor kernels
replayed as CUDA graphs), sdpa attention; --hf dynamic is the eager dynamic-cache path.
tokens/s = batch x new tokens / seconds. Prints a markdown table (for bench/RESULTS.md) and
writes WORK/generate_bench.json.
"""
import argparse
import json
import os
import subprocess
import time

import numpy as np
import torch
import transformers
from transformers import LlamaForCausalLM


def sh(cmd):
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print(p.stdout)
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return p.stdout


def ours(binary, ckpt, prompts, n_new, work, tag):
    pf, js = os.path.join(work, f"prompts_{tag}.txt"), os.path.join(work, f"ours_{tag}.json")
    with open(pf, "w") as f:
        for p in prompts:
            f.write(" ".join(map(str, p)) + "\n")
    out = sh([binary, "generate", "--checkpoint", ckpt, "--device", "cuda", "--ids",
              "--prompts-file", pf, "--max-new", str(n_new), "--temperature", "0",
              "--ignore-eos", "--warmup", "1", "--json", js])
    print([l for l in out.splitlines() if l.startswith("[")][-1], flush=True)
    with open(js) as f:
        return json.load(f)


@torch.no_grad()
def theirs(model, prompts, n_new, mode):
    ids = torch.tensor(prompts, dtype=torch.long, device="cuda")
    kw = dict(attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n_new,
              min_new_tokens=n_new, pad_token_id=0)
    compiled = "no"
    if mode == "static":
        if getattr(transformers, "CompileConfig", None) is None:
            raise SystemExit("this transformers has no CompileConfig: use --hf dynamic")
        # The static cache is sized prompt + new: the warm-up (which compiles) has the timed shape.
        kw["cache_implementation"] = "static"
        kw["compile_config"] = transformers.CompileConfig(fullgraph=True, mode="reduce-overhead")
        model.generate(ids, **kw)
        # generate keeps its compiled decode step in _compiled_call (transformers >= 4.48).
        compiled = "yes" if getattr(model, "_compiled_call", None) is not None else "unknown"
    else:
        model.generate(ids, **{**kw, "max_new_tokens": 8, "min_new_tokens": 8})  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = model.generate(ids, **kw)
    torch.cuda.synchronize()
    return time.perf_counter() - t0, out[:, ids.shape[1]:].tolist(), compiled


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default="build/tinyllama")
    ap.add_argument("--work", default="/tmp/gen_bench")
    ap.add_argument("--checkpoint")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new", type=int, default=512)
    ap.add_argument("--hf", choices=["static", "dynamic"], default="static",
                    help="transformers' cache: static + compiled decode step (strongest), or dynamic eager")
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    os.makedirs(a.work, exist_ok=True)
    ckpt = a.checkpoint or os.path.join(a.work, "tinyllama-1.1b-random.tlck")
    if not os.path.exists(ckpt):
        sh([binary, "init", "--preset", "tinyllama-1.1b", "--seed", "0", "--device", "cuda", "--out", ckpt])
    hf_dir = os.path.join(a.work, "hf_bf16")
    sh([binary, "export", "--checkpoint", ckpt, "--out", hf_dir, "--dtype", "bf16"])
    with open(os.path.join(hf_dir, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    gpu = torch.cuda.get_device_name(0)
    rows = []
    rng = np.random.default_rng(0)
    for B in a.batches:
        prompts = rng.integers(3, vocab, size=(B, a.prompt_len)).tolist()
        r = ours(binary, ckpt, prompts, a.new, a.work, f"b{B}")
        total = r["prefill_seconds"] + r["decode_seconds"]
        rows.append(dict(impl="tinyllama generate", batch=B, seconds=total,
                         tokens_per_s=r["new_tokens"] / total, decode_tokens_per_s=r["decode_tokens_per_s"],
                         prefill_ms=1e3 * r["prefill_seconds"], ids=r["outputs"]))
    try:
        model = LlamaForCausalLM.from_pretrained(hf_dir, dtype=torch.bfloat16, attn_implementation="sdpa")
    except TypeError:
        model = LlamaForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.bfloat16, attn_implementation="sdpa")
    model = model.cuda().eval()
    rng = np.random.default_rng(0)
    for B in a.batches:
        prompts = rng.integers(3, vocab, size=(B, a.prompt_len)).tolist()
        secs, ids, compiled = theirs(model, prompts, a.new, a.hf)
        mine = next(r for r in rows if r["impl"] == "tinyllama generate" and r["batch"] == B)
        same = sum(x == y for x, y in zip(np.array(ids).ravel(), np.array(mine["ids"]).ravel()))
        how = "static cache, compiled" if a.hf == "static" else "dynamic cache, eager"
        rows.append(dict(impl=f"transformers {transformers.__version__} generate ({how})", batch=B,
                         seconds=secs, tokens_per_s=B * a.new / secs, decode_tokens_per_s=None,
                         prefill_ms=None, ids=None,
                         agree=f"compiled: {compiled}; {100.0 * same / (B * a.new):.0f}% of ids equal to ours "
                               "(bf16, random weights)"))
    print(f"\n{gpu}, torch {torch.__version__}; model {os.path.basename(ckpt)}; prompt {a.prompt_len}, "
          f"{a.new} new tokens per row, greedy, bf16\n")
    print("| implementation | batch | seconds | tokens/s | decode tokens/s | prefill ms | note |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["batch"], r["impl"])):
        dec = f"{r['decode_tokens_per_s']:.0f}" if r["decode_tokens_per_s"] else ""
        pre = f"{r['prefill_ms']:.1f}" if r["prefill_ms"] else ""
        print(f"| {r['impl']} | {r['batch']} | {r['seconds']:.2f} | {r['tokens_per_s']:.0f} | {dec} | {pre} | {r.get('agree', '')} |")
    for r in rows:
        r.pop("ids", None)
    with open(os.path.join(a.work, "generate_bench.json"), "w") as f:
        json.dump({"gpu": gpu, "torch": torch.__version__, "transformers": transformers.__version__,
                   "prompt_len": a.prompt_len, "new": a.new, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
