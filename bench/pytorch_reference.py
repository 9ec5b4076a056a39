#!/usr/bin/env python3
"""PyTorch reference for `tinyllama bench`: Hugging Face LlamaForCausalLM with the
TinyLlama-1.1B config, bf16 autocast over fp32 master weights, SDPA attention, fused AdamW,
torch.compile; synthetic tokens; prints tokens/s, MFU and peak memory (JSON with --json).

Run on the GPU machine (torch + transformers installed):
    python3 bench/pytorch_reference.py --micro-batch 8 --steps 10 [--no-compile]
"""
import argparse
import json
import math
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

H100_PEAK = 989e12


def tinyllama_config(seq_len):
    return LlamaConfig(
        vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
        num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=seq_len,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
        attention_bias=False, mlp_bias=False, hidden_act="silu")


def flops_per_token(cfg, seq_len):
    # 6N + 12 L d T with N the parameters without the input embedding (the MFU convention of bench/RESULTS.md).
    C, I, L, V = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    D = C // cfg.num_attention_heads
    qkv = (cfg.num_attention_heads + 2 * cfg.num_key_value_heads) * D
    per_layer = 2 * C + C * qkv + C * C + 3 * C * I
    n = per_layer * L + C + V * C
    return 6 * n + 12 * L * C * seq_len


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    torch.manual_seed(0)
    cfg = tinyllama_config(args.seq_len)
    cfg._attn_implementation = "sdpa"
    model = LlamaForCausalLM(cfg).cuda()  # fp32 master weights
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1, fused=True)
    step_model = model if args.no_compile else torch.compile(model)
    B, T = args.micro_batch, args.seq_len
    tokens = torch.randint(0, cfg.vocab_size, (B, T + 1), device="cuda")
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = step_model(input_ids=x).logits
            loss = torch.nn.functional.cross_entropy(logits.float().view(-1, cfg.vocab_size), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / args.steps
    tok_s = B * T / dt
    res = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "compile": not args.no_compile,
        "tokens_per_s": tok_s,
        "step_seconds": dt,
        "mfu": tok_s * flops_per_token(cfg, T) / H100_PEAK,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(),
        "final_loss": float(loss),
    }
    print(f"pytorch reference ({'compiled' if res['compile'] else 'eager'}): "
          f"{tok_s:.0f} tokens/s, MFU {100 * res['mfu']:.1f}%, "
          f"peak {res['peak_memory_bytes'] / 2**30:.1f} GiB, loss {res['final_loss']:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f)


if __name__ == "__main__":
    main()
