#!/usr/bin/env python3
"""PyTorch reference for `tinyllama bench`: Hugging Face LlamaForCausalLM with the
TinyLlama-1.1B config, bf16 autocast over fp32 master weights, fused AdamW, clipping 1.0, one
optimizer step per micro-batch, synthetic tokens. Prints tokens/s, MFU and peak memory (JSON
with --json).

Configured as strongly as PyTorch goes without code of our own inside it:
  --sdpa flash|cudnn|efficient|default   the SDPA backend, selected explicitly (only that one
                                         is allowed, so a silent fallback is an error); the
                                         attention kernels that actually ran are read from
                                         the profiler and reported
  --loss compiled|outside                compiled: the forward, the f32 upcast of the logits and
                                         the cross-entropy are one torch.compile region (Inductor
                                         fuses the upcast into the loss); outside: the loss in
                                         eager mode after the compiled model (the rows before
                                         2026-12-05)
  --mask causal|hf                       causal (default): SDPA gets is_causal=True and no mask
                                         tensor, the form every fused kernel takes; hf:
                                         transformers' own sdpa path, which under torch.compile
                                         materializes a [B,1,T,T] bool mask (flash refuses it,
                                         cuDNN runs its slower masked kernels; rows before
                                         2026-12-05 session 3 used it)
  --compile-mode default|max-autotune-no-cudagraphs|...
  --no-compile                           eager, for comparison

Run on the GPU machine (torch + transformers installed):
    python3 bench/pytorch_reference.py --micro-batch 8 --steps 10 --sdpa cudnn --loss compiled
bench/gpu_round.sh runs every configuration beside `tinyllama bench` in one call.
"""
import argparse
import contextlib
import json
import os
import time

# Inductor's caches key a graph without the SDPA backend context, so a --sdpa flash run after a
# --sdpa cudnn run loaded the cuDNN graph (2026-12-05: the profiler saw cuDNN kernels). Every
# run compiles its own graph.
os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "0")
os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "0")

import torch  # noqa: E402
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import LlamaConfig, LlamaForCausalLM

PEAK_BF16 = 989e12  # H100/H200 SXM dense bf16

BACKENDS = {
    "flash": [SDPBackend.FLASH_ATTENTION],
    "cudnn": [SDPBackend.CUDNN_ATTENTION],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION],
    "default": None,
}


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


def kernels_match(sdpa, kernels):
    """Whether the attention kernels that ran belong to the requested backend (cuDNN's own
    kernel names contain "flash" too, so flash and efficient also require no "cudnn")."""
    names = [k.lower() for k in kernels]
    if sdpa == "cudnn":
        return any("cudnn" in k for k in names)
    if sdpa == "flash":
        return any("flash" in k and "cudnn" not in k for k in names)
    if sdpa == "efficient":
        return any(("fmha" in k or "efficient" in k) and "cudnn" not in k for k in names)
    return True


def causal_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                repeat_kv=False, **kwargs):
    """transformers attention function: q [B,H,T,D], k/v [B,Hkv,T,D] -> out [B,T,H,D].
    Causal by is_causal, so no mask tensor exists and every SDPA backend can take it."""
    gqa = query.shape[1] // key.shape[1]
    if repeat_kv and gqa > 1:
        key, value = key.repeat_interleave(gqa, dim=1), value.repeat_interleave(gqa, dim=1)
    out = F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scaling,
                                         enable_gqa=gqa > 1 and not repeat_kv)
    return out.transpose(1, 2).contiguous(), None


def register_causal_sdpa(repeat_kv):
    """Registers causal_sdpa as attn_implementation "causal_sdpa", with no mask built for it."""
    from transformers import AttentionInterface
    AttentionInterface.register(
        "causal_sdpa", lambda *a, **k: causal_sdpa(*a, repeat_kv=repeat_kv, **k))
    try:  # transformers >= 4.53 builds masks per implementation; ours needs none
        from transformers.masking_utils import AttentionMaskInterface
    except ImportError:
        return
    AttentionMaskInterface.register("causal_sdpa", lambda *a, **k: None)


def attention_kernels(step):
    """Names of the attention kernels one step launches (from the profiler's CUDA events)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    keys = ("flash", "fmha", "attn", "attention", "sdpa", "cudnn")
    names = {e.key for e in prof.key_averages() if any(k in e.key.lower() for k in keys)}
    return sorted(n[:120] for n in names)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--sdpa", choices=sorted(BACKENDS), default="cudnn")
    ap.add_argument("--loss", choices=["compiled", "outside"], default="compiled")
    ap.add_argument("--mask", choices=["causal", "hf"], default="causal")
    ap.add_argument("--compile-mode", default="default")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--repeat-kv", action="store_true",
                    help="expand K/V heads before SDPA instead of enable_gqa (for backends without GQA)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    if args.mask == "causal":
        register_causal_sdpa(args.repeat_kv)
        attn_impl = "causal_sdpa"
    else:
        attn_impl = "sdpa"
        if args.repeat_kv:
            # transformers asks SDPA for native GQA when it can; some backends refuse it.
            import transformers.integrations.sdpa_attention as sa
            sa.use_gqa_in_sdpa = lambda *a, **k: False

    torch.manual_seed(0)
    cfg = tinyllama_config(args.seq_len)
    model = LlamaForCausalLM._from_config(cfg, attn_implementation=attn_impl).cuda()  # fp32 master
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1, fused=True)
    B, T, V = args.micro_batch, args.seq_len, cfg.vocab_size
    tokens = torch.randint(0, V, (B, T + 1), device="cuda")
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    backends = BACKENDS[args.sdpa]

    # The backend is fixed when Dynamo traces the graph (the SDPA call is lowered to one
    # backend's op then), so the context wraps the whole step, outside the compiled region.
    def attn_ctx():
        return sdpa_kernel(backends) if backends else contextlib.nullcontext()

    def fwd_loss(x, y):
        logits = model(input_ids=x).logits
        return F.cross_entropy(logits.float().view(-1, V), y.view(-1))

    compile_kw = {} if args.compile_mode == "default" else {"mode": args.compile_mode}
    if args.no_compile:
        loss_fn = fwd_loss
    elif args.loss == "compiled":
        loss_fn = torch.compile(fwd_loss, **compile_kw)
    else:
        cmodel = torch.compile(model, **compile_kw)

        def loss_fn(x, y):
            logits = cmodel(input_ids=x).logits
            return F.cross_entropy(logits.float().view(-1, V), y.view(-1))

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16), attn_ctx():
            loss = loss_fn(x, y)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    t_compile = time.perf_counter()
    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    t_compile = time.perf_counter() - t_compile
    kernels = attention_kernels(step)
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
        "compile_mode": args.compile_mode,
        "sdpa": args.sdpa,
        "loss": "eager" if args.no_compile else args.loss,
        "repeat_kv": args.repeat_kv,
        "mask": args.mask,
        "attention_kernels": kernels,
        "warmup_seconds": t_compile,
        "tokens_per_s": tok_s,
        "step_seconds": dt,
        "mfu": tok_s * flops_per_token(cfg, T) / PEAK_BF16,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(),
        "final_loss": float(loss),
    }
    mode = "eager" if args.no_compile else f"compiled ({args.compile_mode}), loss {args.loss}"
    print(f"pytorch reference [sdpa {args.sdpa}, mask {args.mask}"
          f"{', kv repeated' if args.repeat_kv else ''}, {mode}]: "
          f"{tok_s:.0f} tokens/s, MFU {100 * res['mfu']:.1f}%, "
          f"peak {res['peak_memory_bytes'] / 2**30:.1f} GiB, loss {res['final_loss']:.4f}")
    print("attention kernels:", "; ".join(kernels) or "(none matched)")
    res["kernels_match_backend"] = kernels_match(args.sdpa, kernels)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    if not res["kernels_match_backend"]:
        print(f"ERROR: --sdpa {args.sdpa} was asked for, but the kernels above ran: "
              f"this is not a {args.sdpa} figure")
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
