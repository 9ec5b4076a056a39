#!/usr/bin/env python3
"""HellaSwag-shaped scoring speed: tinyllama eval --task vs a transformers loop, same model.

    python3 bench/eval_reference.py --binary build/tinyllama --tokenizer llama2-tokenizer.model
        [--work /tmp/eval_bench] [--docs 10042] [--ref-batch 32] [--skip-reference]

Data: --docs synthetic HellaSwag rows (seed 0): 4 endings each, words drawn from a fixed
list, with word counts drawn to follow HellaSwag validation's profile (activity label 1-4
words, ctx_a 8-60, ctx_b 1-12, endings 5-35; the printed token statistics are what was
run). Model: the TinyLlama-1.1B shape, random weights (`tinyllama init --seed 0`), exported
to Hugging Face in bf16 for transformers.
Ours: `tinyllama eval --device cuda --task hellaswag=...` (bf16); the wall time of the whole
process and the scoring seconds it reports.
Theirs: the harness's HF backend loop: requests built with the same rules (context +
" " + ending, trailing-space move, split by token count, no BOS), sorted by descending
total length, fixed batches of --ref-batch requests right-padded, one forward each
(bf16, sdpa), log_softmax over the vocabulary, continuation log-probs gathered and summed.
No prefix sharing, as in the harness. Timed from the first batch to the last (tokenizing
excluded). Agreement: the share of documents where both predict the same ending.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F
import transformers
from transformers import LlamaForCausalLM

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "fixtures"))
from make_eval_golden import doc_hellaswag, encode_pair  # noqa: E402  (the same rules)

WORDS = ("the a man woman person child dog team player group is are was then now while after "
         "before he she they it his her their with on in at into of to from by using begins "
         "continues starts stops puts takes holds shows walks runs jumps talks smiles looks "
         "turns moves picks pulls pushes throws catches cuts mixes pours washes paints climbs "
         "ball rope knife bowl water paper table floor wall roof car bike board camera field "
         "kitchen room yard street river slowly quickly carefully again around back down up "
         "several small large red blue green wooden metal long short next other same").split()


def synthetic_docs(n, seed=0):
    rng = np.random.default_rng(seed)

    def words(lo, hi, mean):
        k = int(np.clip(rng.normal(mean, (hi - lo) / 5), lo, hi))
        return " ".join(rng.choice(WORDS, size=k))

    docs = []
    for i in range(n):
        docs.append({"ind": i, "activity_label": words(1, 4, 2).capitalize(),
                     "ctx_a": words(8, 60, 28).capitalize() + ".", "ctx_b": words(1, 12, 4),
                     "endings": [words(5, 35, 16) + "." for _ in range(4)], "label": str(rng.integers(4)),
                     "source_id": "synthetic", "split": "val", "split_type": "indomain"})
    return docs


def sh(cmd):
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print(p.stdout)
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return p.stdout, time.perf_counter() - t0


@torch.no_grad()
def reference(model, requests, batch):
    # requests: (doc, choice, context tokens, continuation tokens); the harness sorts by
    # descending total length and batches in that order.
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i][2] + requests[i][3]))
    lls = {}
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for b0 in range(0, len(order), batch):
        idx = order[b0:b0 + batch]
        inps, conts = [], []
        for i in idx:
            _, _, ctx, cont = requests[i]
            inps.append((ctx + cont)[-2049:][:-1])
            conts.append(cont)
        width = max(len(x) for x in inps)
        ids = torch.zeros((len(inps), width), dtype=torch.long)
        for r, x in enumerate(inps):
            ids[r, :len(x)] = torch.tensor(x)
        logits = model(ids.cuda()).logits
        logp = F.log_softmax(logits, dim=-1)
        for r, i in enumerate(idx):
            n, c = len(inps[r]), len(conts[r])
            rows = logp[r, n - c:n]
            tgt = torch.tensor(conts[r], device=rows.device)
            lls[i] = rows.gather(1, tgt[:, None]).sum().float().item()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, lls


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default="build/tinyllama")
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--work", default="/tmp/eval_bench")
    ap.add_argument("--docs", type=int, default=10042)
    ap.add_argument("--ref-batch", type=int, default=32)
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--eval-args", default="", help="extra arguments for tinyllama eval")
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    os.makedirs(a.work, exist_ok=True)
    ckpt = os.path.join(a.work, "tinyllama-1.1b-random.tlck")
    if not os.path.exists(ckpt):
        sh([binary, "init", "--preset", "tinyllama-1.1b", "--seed", "0", "--device", "cuda", "--out", ckpt])
    data = os.path.join(a.work, "hellaswag_synthetic.jsonl")
    docs = synthetic_docs(a.docs)
    with open(data, "w") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    sp = spm.SentencePieceProcessor(model_file=a.tokenizer)
    requests = []
    for i, d in enumerate(docs):
        built = doc_hellaswag(d)
        for c, (ctx, cont) in enumerate(built["requests"]):
            ce, co = encode_pair(sp, ctx, cont, False)
            requests.append((i, c, ce, co))
    ctx_len = np.array([len(r[2]) for r in requests[::4]])
    cont_len = np.array([len(r[3]) for r in requests])
    print(f"{len(docs)} documents, {len(requests)} requests; context tokens mean {ctx_len.mean():.1f} "
          f"(p5 {np.percentile(ctx_len, 5):.0f}, p95 {np.percentile(ctx_len, 95):.0f}); ending tokens "
          f"mean {cont_len.mean():.1f} (p5 {np.percentile(cont_len, 5):.0f}, p95 {np.percentile(cont_len, 95):.0f})",
          flush=True)

    out_json, samples = os.path.join(a.work, "ours.json"), os.path.join(a.work, "ours_samples.jsonl")
    log, wall = sh([binary, "eval", "--checkpoint", ckpt, "--tokenizer", a.tokenizer, "--device", "cuda",
                    "--task", "hellaswag=" + data, "--json", out_json, "--samples", samples]
                   + a.eval_args.split())
    print(log, flush=True)
    with open(out_json) as f:
        ours = json.load(f)["results"][0]
    with open(samples) as f:
        our_pred = [json.loads(line)["pred"] for line in f]
    gpu = torch.cuda.get_device_name(0)
    rows = [("tinyllama eval (bf16, prefix reuse)", ours["seconds"], wall, ours["acc"], "")]
    if not a.skip_reference:
        hf_dir = os.path.join(a.work, "hf_bf16")
        if not os.path.exists(os.path.join(hf_dir, "config.json")):
            sh([binary, "export", "--checkpoint", ckpt, "--out", hf_dir, "--dtype", "bf16"])
        try:
            model = LlamaForCausalLM.from_pretrained(hf_dir, dtype=torch.bfloat16, attn_implementation="sdpa")
        except TypeError:
            model = LlamaForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.bfloat16, attn_implementation="sdpa")
        model = model.cuda().eval()
        reference(model, requests[:a.ref_batch], a.ref_batch)  # warm-up
        secs, lls = reference(model, requests, a.ref_batch)
        preds = [int(np.argmax([lls[4 * i + c] for c in range(4)])) for i in range(len(docs))]
        acc = float(np.mean([p == int(d["label"]) for p, d in zip(preds, docs)]))
        agree = float(np.mean([p == q for p, q in zip(preds, our_pred)]))
        rows.append((f"transformers {transformers.__version__} loop, batch {a.ref_batch} (bf16, sdpa)",
                     secs, None, acc, f"{100 * agree:.1f}% same predictions as ours"))
    print(f"\n{gpu}, torch {torch.__version__}; TinyLlama-1.1B shape, random weights; "
          f"{len(docs)} synthetic HellaSwag documents x 4 endings\n")
    print("| implementation | scoring seconds | process seconds | acc | note |")
    print("|---|---|---|---|---|")
    for name, secs, wall_s, acc, note in rows:
        print(f"| {name} | {secs:.1f} | {'' if wall_s is None else f'{wall_s:.1f}'} | {acc:.4f} | {note} |")


if __name__ == "__main__":
    main()
