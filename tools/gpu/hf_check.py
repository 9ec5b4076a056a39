#!/usr/bin/env python3
"""Hugging Face round trip of tinyllama checkpoints, checked against transformers.

Run on the GPU machine (torch, transformers, safetensors, numpy), from the repository root,
after building (cmake -S . -B build && cmake --build build -j):

    python3 tools/gpu/hf_check.py --binary build/tinyllama [--work /tmp/hf_check]
                              [--tiny-checkpoint CK] [--models tiny 1.1b]

Two models:
  tiny  a small GQA model (vocab 512, dim 128, 2 layers, 4 query / 2 KV heads, head dim 32,
        RoPE base 500000 so that a misread base shows) trained here for 200 CPU steps on a synthetic Markov-chain corpus (or --tiny-checkpoint)
  1.1b  the TinyLlama-1.1B shape with random init (`tinyllama init --seed 1`), exported
        sharded in fp32 (--max-shard-gb 2)
For each: `tinyllama export` in fp32 and bf16, then
  logits fp32   ours (CPU, f32) vs LlamaForCausalLM.from_pretrained(fp32 export) in float32:
                max|ours - hf| / max|hf| <= 1e-4
  logits bf16   ours (CUDA, bf16 compute) vs HF in bfloat16, both against HF float32: ours
                may be at most 2x (+1e-3) as far from HF fp32 as HF's own bf16 run is
  greedy fp32   64 new tokens, ours (one batch of two prompts of different lengths, KV cache)
                vs HF generate (each prompt alone): the same ids; a difference is accepted
                only at a near-tie (HF's logits of the two ids within 1e-4 of max|logit|)
  greedy bf16   the same on the GPU in bf16; near-ties within the measured bf16 logit error
  import        HF save_pretrained of the fp32 model (sharded for 1.1b) -> `tinyllama import`
                -> our logits equal those of the original checkpoint bit for bit; for tiny
                also fp16 and bf16 saves and a tied-embedding model (ours vs HF <= 1e-4 on the
                same rounded weights)
Prints one line per check and a summary; exits 1 if any check fails. Results also go to
WORK/results.json.
"""
import argparse
import copy
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file, save_file
from transformers import LlamaForCausalLM

RESULTS = []


def log(msg):
    print(msg, flush=True)


def record(model, check, ok, detail):
    RESULTS.append({"model": model, "check": check, "ok": bool(ok), "detail": detail})
    log(f"[{'PASS' if ok else 'FAIL'}] {model:5s} {check:14s} {detail}")


def run(cmd):
    log("$ " + " ".join(cmd))
    t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        log(p.stdout)
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}")
    lines = p.stdout.strip().splitlines()
    log(f"  ({time.time() - t0:.1f} s) {lines[-1] if lines else ''}")
    return p.stdout


def load_hf(path, dtype, device, attn="eager"):
    try:
        m = LlamaForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn)
    except TypeError:  # older transformers
        m = LlamaForCausalLM.from_pretrained(path, torch_dtype=dtype, attn_implementation=attn)
    return m.to(device).eval()


def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


# ---------------------------------------------------------------- ours, through the binary

def our_logits(binary, ckpt, tokens, device, work, tag):
    tok_path = os.path.join(work, f"tokens_{tag}.safetensors")
    out_path = os.path.join(work, f"logits_{tag}.safetensors")
    save_file({"tokens": np.ascontiguousarray(tokens, dtype=np.int32)}, tok_path)
    run([binary, "logits", "--checkpoint", ckpt, "--tokens", tok_path, "--out", out_path,
         "--device", device])
    return load_file(out_path)["logits"]


def our_greedy(binary, ckpt, prompts, n_new, device, work, tag):
    pf = os.path.join(work, f"prompts_{tag}.txt")
    with open(pf, "w") as f:
        for p in prompts:
            f.write(" ".join(str(int(x)) for x in p) + "\n")
    js = os.path.join(work, f"generate_{tag}.json")
    run([binary, "generate", "--checkpoint", ckpt, "--ids", "--prompts-file", pf,
         "--max-new", str(n_new), "--temperature", "0", "--ignore-eos", "--device", device,
         "--json", js])
    with open(js) as f:
        return json.load(f)["outputs"]


# ---------------------------------------------------------------- transformers

@torch.no_grad()
def hf_logits(model, tokens):
    ids = torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=model.device)
    return model(input_ids=ids, use_cache=False).logits.float().cpu().numpy()


@torch.no_grad()
def hf_greedy(model, prompt, n_new):
    ids = torch.as_tensor([list(prompt)], dtype=torch.long, device=model.device)
    cfg = copy.deepcopy(model.generation_config)
    cfg.eos_token_id = None  # as --ignore-eos: never stop early
    cfg.pad_token_id = 0
    cfg.do_sample = False
    cfg.max_new_tokens = n_new
    cfg.temperature = None
    cfg.top_p = None
    cfg.top_k = None
    out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=cfg)
    return out[0, len(prompt):].tolist()


def compare_greedy(model_name, check, hf_model, prompts, ours, theirs, tie_tol):
    """Same ids, or a first difference where HF's logits of the two ids are within tie_tol."""
    worst = []
    ok = True
    for p, a, b in zip(prompts, ours, theirs):
        n = min(len(a), len(b))
        k = next((i for i in range(n) if a[i] != b[i]), None)
        if k is None:
            ok &= len(b) <= len(a)
            worst.append(f"{n}/{n}")
            continue
        z = hf_logits(hf_model, [list(p) + list(b[:k])])[0, -1]
        gap = float(z[b[k]] - z[a[k]]) / float(np.abs(z).max())
        tie = gap <= tie_tol
        ok &= tie
        worst.append(f"{k}/{n} then {'near-tie' if tie else 'DIFFERENT'} (gap {gap:.2e})")
    record(model_name, check, ok, "identical ids for " + ", ".join(worst))


# ---------------------------------------------------------------- models

def write_packed(path, tokens):
    """lit-gpt PackedDataset shard, u16 tokens (dtype code 8)."""
    tokens = np.asarray(tokens, dtype=np.uint16)
    with open(path, "wb") as f:
        f.write(b"LITPKDS" + struct.pack("<QBQ", 1, 8, len(tokens)))
        f.write(tokens.tobytes())


def make_tiny(binary, work):
    """Trains a small model on a Markov chain (each token has 3 likely successors)."""
    vocab = 512
    rng = np.random.default_rng(0)
    succ = rng.integers(3, vocab, size=(vocab, 3))
    data_dir = os.path.join(work, "tiny_data")
    os.makedirs(data_dir, exist_ok=True)
    toks = [3]
    choice = rng.choice(3, size=400_000, p=[0.8, 0.15, 0.05])
    for c in choice:
        toks.append(int(succ[toks[-1], c]))
    write_packed(os.path.join(data_dir, "markov_00000.bin"), toks)
    run_dir = os.path.join(work, "tiny_run")
    cfg = {
        "model": {"vocab_size": vocab, "dim": 128, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2,
                  "ffn_dim": 352, "max_seq_len": 256, "rope_theta": 500000.0},
        "data": {"sources": [{"name": "markov", "paths": [data_dir]}], "seq_len": 128},
        "batch": {"micro_batch": 16},
        "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 20},
        "train": {"steps": 200, "device": "cpu", "run_dir": run_dir, "log_interval": 50},
    }
    cfg_path = os.path.join(work, "tiny_train.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    run([binary, "train", "--config", cfg_path, "--resume", "auto"])
    return os.path.join(run_dir, "checkpoints", "step_00000200.tlck")


def check_model(name, binary, ckpt, work, vocab, shard_gb, extra_imports):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    f32_dir, bf16_dir = os.path.join(d, "hf_fp32"), os.path.join(d, "hf_bf16")
    run([binary, "export", "--checkpoint", ckpt, "--format", "hf", "--out", f32_dir,
         "--dtype", "fp32", "--max-shard-gb", str(shard_gb)])
    run([binary, "export", "--checkpoint", ckpt, "--format", "hf", "--out", bf16_dir,
         "--dtype", "bf16"])
    rng = np.random.default_rng(1)
    tokens = rng.integers(3, vocab, size=(2, 32))
    prompts = [tokens[0, :16].tolist(), tokens[1, :7].tolist()]

    # fp32: our CPU backend vs HF float32
    hf32 = load_hf(f32_dir, torch.float32, "cuda")
    ref32 = hf_logits(hf32, tokens)
    ours32 = our_logits(binary, ckpt, tokens, "cpu", d, "fp32")
    e = rel_err(ours32, ref32)
    record(name, "logits fp32", e <= 1e-4, f"max rel err {e:.2e} (tol 1e-4), logits [2, 32, {vocab}]")

    hf_ids = [hf_greedy(hf32, p, 64) for p in prompts]
    ours_ids = our_greedy(binary, ckpt, prompts, 64, "cpu", d, "fp32")
    compare_greedy(name, "greedy fp32", hf32, prompts, ours_ids, hf_ids, 1e-4)

    # import of what transformers itself writes: the fp32 model, sharded for big models
    saved = os.path.join(d, "hf_saved_fp32")
    hf32.save_pretrained(saved, max_shard_size="1GB")
    sharded = os.path.exists(os.path.join(saved, "model.safetensors.index.json"))
    imported = os.path.join(d, "imported_fp32.tlck")
    run([binary, "import", "--hf", saved, "--out", imported])
    back = our_logits(binary, imported, tokens, "cpu", d, "import_fp32")
    same = np.array_equal(back, ours32)
    record(name, "import fp32", same and rel_err(back, ref32) <= 1e-4,
           f"{'sharded ' if sharded else ''}save_pretrained -> import: logits "
           f"{'bit-identical to' if same else 'DIFFER from'} the original checkpoint's")
    for kind in extra_imports:
        check_import_variant(name, binary, hf32, kind, tokens, d)
    del hf32
    torch.cuda.empty_cache()

    # bf16: our CUDA backend vs HF bfloat16, both measured against HF float32
    hf16 = load_hf(bf16_dir, torch.bfloat16, "cuda", attn="sdpa")
    ref16 = hf_logits(hf16, tokens)
    ours16 = our_logits(binary, ckpt, tokens, "cuda", d, "bf16")
    e_hf, e_ours, e_pair = rel_err(ref16, ref32), rel_err(ours16, ref32), rel_err(ours16, ref16)
    record(name, "logits bf16", e_ours <= 2 * e_hf + 1e-3,
           f"vs HF fp32: ours {e_ours:.2e}, HF bf16 {e_hf:.2e} (tol 2x + 1e-3); ours vs HF bf16 {e_pair:.2e}")
    hf_ids16 = [hf_greedy(hf16, p, 64) for p in prompts]
    ours_ids16 = our_greedy(binary, ckpt, prompts, 64, "cuda", d, "bf16")
    compare_greedy(name, "greedy bf16", hf16, prompts, ours_ids16, hf_ids16, max(2 * e_pair, 1e-3))
    del hf16
    torch.cuda.empty_cache()


def check_import_variant(name, binary, hf32, kind, tokens, d):
    """fp16 / bf16 saves and a tied-embedding model: import, then ours vs HF on those weights."""
    m = copy.deepcopy(hf32).cpu()
    if kind == "tied":
        m.config.tie_word_embeddings = True
        m.lm_head.weight = m.model.embed_tokens.weight
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(kind, torch.float32)
    m = m.to(dtype)
    path = os.path.join(d, f"hf_saved_{kind}")
    m.save_pretrained(path)
    ref_model = load_hf(path, torch.float32, "cuda")  # the saved (rounded) weights in fp32
    ref = hf_logits(ref_model, tokens)
    imported = os.path.join(d, f"imported_{kind}.tlck")
    run([binary, "import", "--hf", path, "--out", imported])
    ours = our_logits(binary, imported, tokens, "cpu", d, f"import_{kind}")
    e = rel_err(ours, ref)
    with open(os.path.join(path, "config.json")) as f:
        saved_cfg = json.load(f)
    record(name, f"import {kind}", e <= 1e-4,
           f"save_pretrained ({saved_cfg.get('dtype') or saved_cfg.get('torch_dtype')}, "
           f"tie_word_embeddings={saved_cfg.get('tie_word_embeddings')}) -> import: "
           f"max rel err {e:.2e} (tol 1e-4)")
    del ref_model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default="build/tinyllama")
    ap.add_argument("--work", default="/tmp/hf_check")
    ap.add_argument("--tiny-checkpoint", help="a trained checkpoint to use instead of training one")
    ap.add_argument("--models", nargs="+", default=["tiny", "1.1b"], choices=["tiny", "1.1b"],
                    help="which models to check (each takes a few minutes)")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    os.makedirs(args.work, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"GPU {torch.cuda.get_device_name(0)}")

    if "tiny" in args.models:
        tiny = args.tiny_checkpoint or make_tiny(binary, args.work)
        check_model("tiny", binary, tiny, args.work, vocab_of(tiny), 5, ["fp16", "bf16", "tied"])
    if "1.1b" in args.models:
        big = os.path.join(args.work, "tinyllama-1.1b-random.tlck")
        if not os.path.exists(big):
            run([binary, "init", "--preset", "tinyllama-1.1b", "--seed", "1", "--device", "cuda",
                 "--out", big])
        check_model("1.1b", binary, big, args.work, 32000, 2, [])

    with open(os.path.join(args.work, f"results_{'_'.join(args.models)}.json"), "w") as f:
        json.dump({"torch": torch.__version__, "transformers": transformers.__version__,
                   "results": RESULTS}, f, indent=2)
    failed = [r for r in RESULTS if not r["ok"]]
    log(f"\n{len(RESULTS) - len(failed)} of {len(RESULTS)} checks passed"
        + (": FAILED " + ", ".join(f"{r['model']} {r['check']}" for r in failed) if failed else ""))
    sys.exit(1 if failed else 0)


def vocab_of(ckpt):
    """vocab_size from a native checkpoint's header (magic, version, reserved, length, JSON)."""
    with open(ckpt, "rb") as f:
        head = f.read(24)
        n = struct.unpack("<Q", head[16:24])[0]
        meta = json.loads(f.read(n))["meta"]
    return int(meta["model"]["vocab_size"])


if __name__ == "__main__":
    main()
