#!/usr/bin/env python3
"""The exported tokenizer.json through transformers' fast tokenizer (issue #14's GPU-machine check).

Run where transformers is installed (the GPU machine), from the repository root, after building:

    python3 tools/gpu/hf_tokenizer_check.py --binary build/tinyllama \
        --tokenizer ../shared/data/llama2-tokenizer.model --data ../shared/data [--work /tmp/tok_check]

Exports a model with the tokenizer (`tinyllama init` + `export --format hf`), loads the folder
with AutoTokenizer.from_pretrained (which must pick the fast tokenizer from tokenizer.json),
and compares its ids with SentencePiece's own (the `sentencepiece` package when present, else
the known ids of llama2-tokenizer-cases.jsonl) on the shared cases and tinyshakespeare's
paragraphs. Prints the counts and exits 1 on any difference.
"""
import argparse
import json
import os
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/tinyllama")
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--data", required=True, help="folder with llama2-tokenizer-cases.jsonl, tinyshakespeare.txt")
    ap.add_argument("--work", default="/tmp/tok_check")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    ck, out = os.path.join(a.work, "m.tlck"), os.path.join(a.work, "hf")
    subprocess.run([a.binary, "init", "--preset", "tiny", "--set", "vocab_size=32000", "--out", ck], check=True)
    subprocess.run([a.binary, "export", "--checkpoint", ck, "--format", "hf", "--tokenizer", a.tokenizer,
                    "--out", out], check=True)

    from transformers import AutoTokenizer
    fast = AutoTokenizer.from_pretrained(out)
    print(f"AutoTokenizer: {type(fast).__name__}, is_fast={fast.is_fast}")
    if not fast.is_fast:
        print("FAIL: the slow tokenizer was loaded")
        return 1

    cases = [json.loads(line) for line in open(os.path.join(a.data, "llama2-tokenizer-cases.jsonl")) if line.strip()]
    texts = [c["text"] for c in cases]
    want = [c["ids"] for c in cases]
    shakes = open(os.path.join(a.data, "tinyshakespeare.txt"), encoding="utf-8").read().split("\n\n")
    try:
        import sentencepiece
        sp = sentencepiece.SentencePieceProcessor(model_file=a.tokenizer)
        texts += shakes
        want += [[1] + sp.encode(t) for t in shakes]
    except ImportError:
        print("sentencepiece (Python) not installed: comparing the shared cases only")
    bad = 0
    for t, w in zip(texts, want):
        got = fast(t)["input_ids"]
        if got != w:
            bad += 1
            if bad <= 5:
                print(f"DIFF {t[:60]!r}: fast {got[:12]} sentencepiece {w[:12]}")
    print(f"{len(texts) - bad} of {len(texts)} texts identical")
    # Decoding: the fast tokenizer's text from SentencePiece's ids must be SentencePiece's own.
    if "sp" in locals():
        bad_dec = 0
        for t, w in zip(texts, want):
            got, ref = fast.decode(w, skip_special_tokens=True), sp.decode([i for i in w if i != 1])
            if got != ref:
                bad_dec += 1
                if bad_dec <= 5:
                    print(f"DECODE DIFF {t[:60]!r}: fast {got[:60]!r} sentencepiece {ref[:60]!r}")
        print(f"{len(texts) - bad_dec} of {len(texts)} decodes identical")
        bad += bad_dec
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
