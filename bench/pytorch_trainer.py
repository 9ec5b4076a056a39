#!/usr/bin/env python3
"""PyTorch reference trainer for the curve comparison (issue #15): trains a Hugging Face Llama
folder (our initialization, written by `tinyllama export --format hf`) on exactly the token
stream `tinyllama train` reads (bench/litpkds.py), with our trainer's hyperparameter rules, and
writes a metrics jsonl that `tinyllama report --reference` can draw beside ours.

Matches src/train (read there if in doubt):
- lr of optimizer step s (1-based): lr * s / warmup while s < warmup; then cosine from lr to
  min_lr reached at decay_steps (default: the run's steps); min_lr after.
- AdamW(beta1, beta2, eps, weight_decay) over every parameter (lit-gpt's TinyLlama pretrain
  script decays them all, and so do we), gradient clipping to a global norm, one step per
  micro-batch (grad_accum > 1 averages micro-batches as ours does).
- loss: mean next-token cross-entropy over the micro-batch's tokens, bf16 autocast over fp32
  master weights; validation: token-mean loss over the first eval_batches * micro_batch blocks
  of the validation shards in file order.
Runs as strongly as PyTorch goes (as bench/pytorch_reference.py does): torch.compile over
forward + loss, causal SDPA without a mask tensor on cuDNN (flash with --sdpa flash), fused
AdamW.

    python3 bench/pytorch_trainer.py --hf HF_DIR --source web=1:data/web/train \
        --val data/web/val --steps 1000 --warmup 100 --eval-interval 250 --out ref.jsonl
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import litpkds  # noqa: E402
from pytorch_reference import register_causal_sdpa  # noqa: E402


def lr_at(step, a):
    decay = a.decay_steps or a.steps
    if step < a.warmup:
        return a.lr * step / a.warmup
    if step >= decay or decay <= a.warmup:
        return a.min_lr if step >= decay else a.lr
    ratio = (step - a.warmup) / (decay - a.warmup)
    return a.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (a.lr - a.min_lr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", required=True, help="HF folder of the initialization (export --format hf)")
    ap.add_argument("--source", action="append", required=True, help="NAME=WEIGHT:PATH[,PATH]")
    ap.add_argument("--val", action="append", required=True)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=3407, help="the data order's seed (train.seed)")
    ap.add_argument("--window", type=int, default=8, help="data.shuffle_window")
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--min-lr", type=float, default=4e-5)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--decay-steps", type=int, default=0)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.95)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--eval-interval", type=int, default=250)
    ap.add_argument("--eval-batches", type=int, default=20)
    ap.add_argument("--sdpa", choices=["cudnn", "flash"], default="cudnn")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out", required=True, help="metrics jsonl")
    a = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)  # nothing random remains (no dropout), but keep it fixed
    # transformers' own sdpa path builds a [B,1,T,T] mask under torch.compile and sends SDPA to
    # cuDNN's masked kernels (22% slower, RESULTS.md); is_causal with no mask is the same math.
    register_causal_sdpa(repeat_kv=False)
    model = LlamaForCausalLM.from_pretrained(a.hf, torch_dtype=torch.float32,
                                             attn_implementation="causal_sdpa").cuda()
    model.train()
    V = model.config.vocab_size
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps,
                            weight_decay=a.weight_decay, fused=True)
    backend = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}[a.sdpa]

    def fwd_loss(x, y):
        logits = model(input_ids=x).logits
        return F.cross_entropy(logits.float().view(-1, V), y.view(-1))

    loss_fn = fwd_loss if a.no_compile else torch.compile(fwd_loss)
    sources = [litpkds._parse_source(s) for s in a.source]
    stream = litpkds.TrainStream(sources, a.seq_len, a.micro_batch, a.seed, a.window)
    val = litpkds.SequentialBlocks(a.val, a.seq_len)
    n_val = min(len(val), a.eval_batches * a.micro_batch)

    def batch(rows):
        t = torch.tensor([list(r) for r in rows], dtype=torch.long).cuda(non_blocking=True)
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()

    @torch.no_grad()
    def validate():
        model.eval()
        total, count = 0.0, 0
        for start in range(0, n_val, a.micro_batch):
            rows = [val[i] for i in range(start, min(n_val, start + a.micro_batch))]
            x, y = batch(rows)
            with torch.autocast("cuda", dtype=torch.bfloat16), sdpa_kernel([backend]):
                logits = model(input_ids=x).logits
            total += float(F.cross_entropy(logits.float().view(-1, V), y.view(-1), reduction="sum"))
            count += y.numel()
        model.train()
        return total / count

    out = open(a.out + ".tmp", "w")

    def emit(rec):
        out.write(json.dumps(rec) + "\n")
        out.flush()

    emit({"event": "start", "hf": os.path.abspath(a.hf), "args": vars(a), "torch": torch.__version__,
          "device": torch.cuda.get_device_name()})
    tokens_per_step = a.micro_batch * a.seq_len * a.grad_accum
    t_start = time.perf_counter()
    for step in range(1, a.steps + 1):
        lr = lr_at(step, a)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for _ in range(a.grad_accum):
            x, y = batch(stream.next())
            with torch.autocast("cuda", dtype=torch.bfloat16), sdpa_kernel([backend]):
                loss = loss_fn(x, y) / a.grad_accum
                loss.backward()
            loss_sum += float(loss)
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip if a.clip > 0 else float("inf")))
        opt.step()
        rec = {"step": step, "loss": loss_sum, "lr": lr, "grad_norm": norm,
               "tokens": step * tokens_per_step, "seconds": time.perf_counter() - t_start}
        emit(rec)
        if step % 50 == 0:
            print(f"step {step}: loss {loss_sum:.4f}, lr {lr:.3g}, norm {norm:.3f}, "
                  f"{step * tokens_per_step / rec['seconds']:.0f} tokens/s", flush=True)
        if (a.eval_interval and step % a.eval_interval == 0) or step == a.steps:
            v = validate()
            emit({"step": step, "val_loss": v, "val_perplexity": math.exp(v), "tokens": step * tokens_per_step})
            print(f"validation loss at step {step}: {v:.4f}", flush=True)
    out.close()
    os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()
