#!/usr/bin/env python3
"""Golden fixtures from Hugging Face transformers for tinyllama's HF import and its model.

Run on a machine with torch, transformers, safetensors and numpy (CPU is enough):

    python3 tools/make_golden.py --out tests/fixtures/hf_golden

It writes into --out:
  config.json, model.safetensors  save_pretrained() of a small random LlamaForCausalLM in float32
                                  (vocab 256, hidden 64, intermediate 176, 2 layers, 4 query heads
                                  over 2 KV heads, untied head, RoPE theta 10000, RMSNorm eps 1e-5)
  golden.safetensors              tokens  I32 [2, 16]   the input ids
                                  logits  F32 [2, 16, 256]
                                  loss    F32 [1]
                                  grad.<HF parameter name>  F32, d loss / d parameter, for every
                                  parameter (e.g. grad.model.layers.0.self_attn.q_proj.weight)
  bf16/config.json, bf16/model.safetensors
                                  the same weights saved in bfloat16 (for the import path only)
  versions.json                   library versions and the settings used

The loss is exactly HF's `labels=input_ids` loss: the mean next-token cross-entropy over the
2 x 15 predicted positions, logits[:, :-1] against tokens[:, 1:] (HF shifts internally).
"""
import argparse
import copy
import inspect
import json
import os
import platform

import numpy as np
import safetensors
import torch
import torch.nn.functional as F
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

SHAPE = dict(vocab_size=256, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
             rms_norm_eps=1e-5)
ROPE_THETA = 10000.0
BATCH, SEQ = 2, 16
SEED = 0
WEIGHT_STD = 0.08  # larger than HF's 0.02 so logits and gradients are far from trivial
NORM_STD = 0.2     # norm weights 1 + N(0, 0.2^2): away from 1, so their gradients matter
LOSS_DOC = ("mean next-token cross-entropy over the 2 x 15 predicted positions: "
            "logits[:, :-1] against tokens[:, 1:] (HF labels=input_ids)")


def make_config():
    kwargs = dict(SHAPE, hidden_act="silu", tie_word_embeddings=False, attention_bias=False,
                  mlp_bias=False, bos_token_id=1, eos_token_id=2, initializer_range=0.02,
                  attn_implementation="eager")
    if "rope_parameters" in inspect.signature(LlamaConfig.__init__).parameters:  # transformers 5
        kwargs["rope_parameters"] = {"rope_type": "default", "rope_theta": ROPE_THETA}
    else:
        kwargs.update(rope_theta=ROPE_THETA, rope_scaling=None)
    return LlamaConfig(**kwargs)


def use_eager_attention(model):
    # Eager is the plain softmax(QK^T)V that the C++ reference computes; make sure we got it.
    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("eager")
        except Exception as e:  # older versions: the config kwarg already did it
            print(f"note: set_attn_implementation failed ({e}); relying on the config")
    else:
        model.config._attn_implementation = "eager"
    impl = getattr(model.config, "_attn_implementation", "eager")
    assert impl == "eager", f"attention implementation is {impl!r}, wanted eager"
    return impl


def randomize(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + NORM_STD * noise)
            else:
                p.copy_(WEIGHT_STD * noise)


def save_kwargs(model):
    # transformers 5 always writes safetensors and dropped the argument.
    if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
        return {"safe_serialization": True}
    return {}


def check_saved(folder, model, dtype_name):
    path = os.path.join(folder, "model.safetensors")
    assert os.path.exists(path), f"{path} was not written (sharded?)"
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("inv_freq")}
    with safe_open(path, framework="pt") as f:
        names = set(f.keys())
        assert names == set(state), f"saved tensors differ: {sorted(names ^ set(state))}"
        for name in names:
            t = f.get_tensor(name)
            assert str(t.dtype) == f"torch.{dtype_name}", (name, t.dtype)
            assert torch.equal(t, state[name]), name


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/hf_golden", help="folder to write")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    config = make_config()
    model = LlamaForCausalLM(config).to(torch.float32)
    impl = use_eager_attention(model)
    randomize(model, gen)
    model.eval()  # no dropout (attention_dropout is 0 anyway)
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()

    # Weights first, before any gradient exists.
    model.save_pretrained(args.out, **save_kwargs(model))
    check_saved(args.out, model, "float32")
    bf16_dir = os.path.join(args.out, "bf16")
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    bf16.save_pretrained(bf16_dir, **save_kwargs(bf16))
    check_saved(bf16_dir, bf16, "bfloat16")
    del bf16

    tokens = torch.randint(0, SHAPE["vocab_size"], (BATCH, SEQ), generator=gen)
    out = model(input_ids=tokens, labels=tokens, use_cache=False)
    logits = out.logits.float()
    assert logits.shape == (BATCH, SEQ, SHAPE["vocab_size"]), logits.shape
    manual = F.cross_entropy(logits[:, :-1].reshape(-1, SHAPE["vocab_size"]),
                             tokens[:, 1:].reshape(-1))
    assert torch.allclose(out.loss, manual, rtol=1e-6, atol=1e-6), (out.loss, manual)
    out.loss.backward()

    golden = {
        "tokens": tokens.to(torch.int32).contiguous(),
        "logits": logits.detach().contiguous(),
        "loss": out.loss.detach().float().reshape(1).contiguous(),
    }
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        golden["grad." + name] = p.grad.detach().float().contiguous()
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "attn_implementation": impl,
        "seed": SEED,
        "weight_std": WEIGHT_STD,
        "norm_weight": f"1 + {NORM_STD} * N(0, 1)",
        "rope_theta": ROPE_THETA,
        "batch": BATCH,
        "seq": SEQ,
        "loss": LOSS_DOC,
    }
    save_file(golden, os.path.join(args.out, "golden.safetensors"),
              metadata={k: str(v) for k, v in versions.items()})
    with open(os.path.join(args.out, "versions.json"), "w") as f:
        json.dump(versions, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {args.out}: loss {out.loss.item():.6f}, {len(golden) - 3} gradients, "
          f"torch {torch.__version__}, transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
