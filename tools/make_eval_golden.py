#!/usr/bin/env python3
"""Golden log-likelihoods for `tinyllama eval --task` from an oracle independent of it.

Run on a machine with torch, transformers, safetensors and sentencepiece (CPU is enough):

    python3 tools/make_eval_golden.py --tokenizer PATH/llama2-tokenizer.model \
        --tasks tests/fixtures/eval --out tests/fixtures/eval

It (1) builds a tiny random LlamaForCausalLM (seed 0, vocab 32000 for the Llama 2 tokenizer,
hidden 32, 2 layers, 4 query / 2 KV heads, context 128, tied embeddings; weights rounded to
bfloat16) and saves it to OUT/model (config.json + model.safetensors); (2) reads the task
files in TASKS (each dataset's Hugging Face schema; ARC-Challenge is parquet, read with
pyarrow or, without it, from arc_challenge_rows.json); (3) builds every request with this
file's own implementation of lm-evaluation-harness 0.4's rules (written from docs/eval.md
and the harness's task yamls, not from tinyllama's code); (4) tokenizes with SentencePiece,
scores each request alone with the model in float64 (eager attention), and (5) writes
OUT/golden.json: per task, document and choice the token ids, the log-likelihood and the
greedy flag; per document pred, pred_norm, acc, acc_norm; per task acc/acc_norm and their
standard errors; for BOS off and on.
"""
import argparse
import glob
import inspect
import json
import math
import os
import platform
import re

import numpy as np
import sentencepiece as spm
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

SHAPE = dict(vocab_size=32000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
             rms_norm_eps=1e-5)
ROPE_THETA = 10000.0
SEED = 0
WEIGHT_STD = 0.3  # logits far from uniform, so choices differ clearly
NORM_STD = 0.2
TASKS = ["hellaswag", "openbookqa", "winogrande", "arc_easy", "arc_challenge", "boolq", "piqa", "mmlu"]
ACC_NORM = {"hellaswag", "openbookqa", "arc_easy", "arc_challenge", "piqa"}

# ---------------- Python-side harness rules (str methods are the reference) ----------------


def hellaswag_preprocess(text):
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def shared(context, choices, gold):
    return {"requests": [(context, " " + c) for c in choices], "lengths": [len(c) for c in choices],
            "gold": gold}


def doc_hellaswag(d):
    ctx = d["ctx_a"] + " " + d["ctx_b"].capitalize()
    query = hellaswag_preprocess(d["activity_label"] + ": " + ctx)
    return shared(query, [hellaswag_preprocess(e) for e in d["endings"]], int(d["label"]))


def doc_openbookqa(d):
    return shared(d["question_stem"], list(d["choices"]["text"]),
                  list(d["choices"]["label"]).index(d["answerKey"].lstrip()))


def doc_arc(d):
    return shared("Question: " + d["question"] + "\nAnswer:", list(d["choices"]["text"]),
                  list(d["choices"]["label"]).index(d["answerKey"]))


def doc_winogrande(d):
    idx = d["sentence"].index("_")
    cont = " " + d["sentence"][idx + 1:].strip()
    ctxs = [d["sentence"][:idx] + d["option1"], d["sentence"][:idx] + d["option2"]]
    return {"requests": [(c, cont) for c in ctxs], "lengths": [len(c) for c in ctxs],
            "gold": {"1": 0, "2": 1}[d["answer"]]}


def doc_boolq(d):
    return shared(d["passage"] + "\nQuestion: " + d["question"] + "?\nAnswer:", ["no", "yes"], d["label"])


def doc_piqa(d):
    return shared("Question: " + d["goal"] + "\nAnswer:", [d["sol1"], d["sol2"]], d["label"])


def mmlu_text(d):
    c = d["choices"]
    return (d["question"].strip() + "\nA. " + c[0] + "\nB. " + c[1] + "\nC. " + c[2] + "\nD. " + c[3]
            + "\nAnswer:")


BUILD = {"hellaswag": doc_hellaswag, "openbookqa": doc_openbookqa, "arc_easy": doc_arc,
         "arc_challenge": doc_arc, "winogrande": doc_winogrande, "boolq": doc_boolq, "piqa": doc_piqa}


def read_rows(path, task_dir):
    if path.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
            return pq.read_table(path).to_pylist(), "pyarrow"
        except ImportError:
            with open(os.path.join(task_dir, "arc_challenge_rows.json")) as f:
                return json.load(f), "arc_challenge_rows.json"
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()], "json"


def task_files(task_dir, task):
    files = []
    for ext in ("parquet", "jsonl", "json"):
        files += glob.glob(os.path.join(task_dir, task, "**", "*." + ext), recursive=True)
    return sorted(files)


def load_docs(task_dir, task, readers):
    docs = []
    if task != "mmlu":
        for path in task_files(task_dir, task):
            rows, how = read_rows(path, task_dir)
            readers[os.path.relpath(path, task_dir)] = how
            for i, row in enumerate(rows):
                d = BUILD[task](row)
                d["where"] = [os.path.relpath(path, task_dir), i]
                docs.append(d)
        return docs
    test, dev = {}, {}
    for path in task_files(task_dir, task):
        base = os.path.basename(path)
        split = "test" if base.startswith("test") else "dev" if base.startswith("dev") else None
        if split is None:
            continue
        rows, how = read_rows(path, task_dir)
        readers[os.path.relpath(path, task_dir)] = how
        for i, row in enumerate(rows):
            (test if split == "test" else dev).setdefault(row["subject"], []).append(
                (row, [os.path.relpath(path, task_dir), i]))
    for subject in sorted(test):
        prefix = ("The following are multiple choice questions (with answers) about "
                  + subject.replace("_", " ") + ".\n\n")
        for row, _ in dev[subject][:5]:  # first_n sampler over the dev split
            prefix += mmlu_text(row) + " " + "ABCD"[row["answer"]] + "\n\n"
        for row, where in test[subject]:
            d = shared(prefix + mmlu_text(row), ["A", "B", "C", "D"], row["answer"])
            d["where"], d["subject"] = where, subject
            docs.append(d)
    return docs


# ---------------- the Hugging Face backend's request building ----------------


def encode_pair(sp, context, continuation, bos):
    def enc(s):
        return ([sp.bos_id()] if bos else []) + sp.encode(s)
    if context == "":
        return [sp.bos_id()], enc(continuation)
    n = len(context) - len(context.rstrip())
    if n > 0:
        continuation = context[-n:] + continuation
        context = context[:-n]
    whole = enc(context + continuation)
    ctx = enc(context)
    return ctx, whole[len(ctx):]


def score(model, ctx, cont, window):
    assert 0 < len(cont) <= window
    full = (ctx + cont)[-(window + 1):]
    inp = torch.tensor([full[:-1]], dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=inp, use_cache=False).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    n = len(full) - 1
    rows = logp[n - len(cont):n]
    target = torch.tensor(cont, dtype=torch.long)
    ll = rows.gather(1, target[:, None]).sum().item()
    greedy = bool((rows.argmax(dim=-1) == target).all())
    return full, ll, greedy


def stderr(values):
    n = len(values)
    if n < 2:
        return None
    mu = sum(values) / n
    return math.sqrt(sum((x - mu) ** 2 for x in values) / (n - 1)) / math.sqrt(n)


# ---------------- the model ----------------


def make_model():
    kwargs = dict(SHAPE, hidden_act="silu", tie_word_embeddings=True, attention_bias=False, mlp_bias=False,
                  bos_token_id=1, eos_token_id=2, attn_implementation="eager")
    if "rope_parameters" in inspect.signature(LlamaConfig.__init__).parameters:  # transformers 5
        kwargs["rope_parameters"] = {"rope_type": "default", "rope_theta": ROPE_THETA}
    else:
        kwargs.update(rope_theta=ROPE_THETA, rope_scaling=None)
    config = LlamaConfig(**kwargs)
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            p.copy_(1.0 + NORM_STD * noise if name.endswith("norm.weight") else WEIGHT_STD * noise)
    model = model.to(torch.bfloat16)  # the saved weights; scored in float64 from these values
    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("eager")
        except Exception:
            pass
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", required=True, help="the Llama 2 tokenizer.model")
    ap.add_argument("--tasks", default="tests/fixtures/eval", help="folder of the task fixtures")
    ap.add_argument("--out", default="tests/fixtures/eval", help="folder for golden.json and model/")
    args = ap.parse_args()
    sp = spm.SentencePieceProcessor(model_file=args.tokenizer)
    assert sp.get_piece_size() == SHAPE["vocab_size"], sp.get_piece_size()

    model = make_model()
    model_dir = os.path.join(args.out, "model")
    os.makedirs(model_dir, exist_ok=True)
    model.save_pretrained(model_dir)
    assert os.path.exists(os.path.join(model_dir, "model.safetensors"))
    model = model.to(torch.float64).eval()
    window = SHAPE["max_position_embeddings"]

    readers = {}
    golden = {"window": window, "tasks": {}}
    for bos_mode in ("off", "on"):
        tasks = {}
        for task in TASKS:
            docs_out, accs, norms = [], [], []
            for d in load_docs(args.tasks, task, readers):
                choices = []
                for context, continuation in d["requests"]:
                    ctx, cont = encode_pair(sp, context, continuation, bos_mode == "on")
                    full, ll, greedy = score(model, ctx, cont, window)
                    choices.append({"tokens": full, "contlen": len(cont), "ll": ll, "greedy": greedy})
                lls = np.array([c["ll"] for c in choices])
                pred = int(np.argmax(lls))
                pred_norm = int(np.argmax(lls / np.array(d["lengths"], dtype=float)))
                acc, norm = float(pred == d["gold"]), float(pred_norm == d["gold"])
                accs.append(acc)
                norms.append(norm)
                out = {"where": d["where"], "gold": d["gold"], "lengths": d["lengths"], "choices": choices,
                       "pred": pred, "pred_norm": pred_norm, "acc": acc, "acc_norm": norm}
                if "subject" in d:
                    out["subject"] = d["subject"]
                docs_out.append(out)
            summary = {"n": len(docs_out), "acc": sum(accs) / len(accs), "acc_stderr": stderr(accs)}
            if task in ACC_NORM:
                summary.update(acc_norm=sum(norms) / len(norms), acc_norm_stderr=stderr(norms))
            tasks[task] = {"summary": summary, "docs": docs_out}
            print(f"bos {bos_mode} {task}: n {summary['n']} acc {summary['acc']:.4f}"
                  + (f" acc_norm {summary['acc_norm']:.4f}" if task in ACC_NORM else ""))
        golden["tasks"][bos_mode] = tasks
    golden["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                          "transformers": transformers.__version__, "sentencepiece": spm.__version__,
                          "numpy": np.__version__, "seed": SEED, "weight_std": WEIGHT_STD,
                          "readers": readers, "dtype": "float64 (weights bfloat16-rounded)"}
    with open(os.path.join(args.out, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", os.path.join(args.out, "golden.json"), "and", model_dir)


if __name__ == "__main__":
    main()
