#!/usr/bin/env python3
"""The demo's prose corpus and a zero-shot task the demo model has not seen.

    scripts/demo_cloze.py --fortunes /usr/share/games/fortunes --corpus corpus/prose \
        --task cloze/validation.jsonl [--every 20] [--seed 0]

Copies every fortune file into --corpus (one .txt each, fortunes separated by '%' lines, as
fortune writes them) minus every --every-th fortune, which is held out. From the held-out
fortunes that read as prose (16-80 words, mostly letters) it writes a 4-way sentence-completion
task in HellaSwag's schema (ctx_a, ctx_b, activity_label, endings, label), so `tinyllama eval
--task hellaswag=...` scores it with HellaSwag's rules: the context is a fortune's first ~55%
of words, the right ending its remainder. The three wrong endings are
  --distractors shuffled (default): the right ending's own words in three other orders (same
      characters, so acc_norm equals acc: a test of word order alone, like BLiMP's minimal
      pairs, which a small model learns early);
  --distractors others: the remainders of other held-out fortunes (HellaSwag's kind of
      question: which continuation fits; a model of a few million parameters is near chance).
Chance is 25%. Standard library only; deterministic for a given corpus and seed.
"""
import argparse
import json
import os
import random
import sys


def fortunes_of(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        docs, cur = [], []
        for line in f:
            if line.rstrip("\n") == "%":
                docs.append("".join(cur))
                cur = []
            else:
                cur.append(line)
        if "".join(cur).strip():
            docs.append("".join(cur))
    return [d for d in docs if d.strip()]


def is_prose(words):
    text = "".join(words)
    return 16 <= len(words) <= 80 and sum(ch.isalpha() for ch in text) >= 0.75 * len(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fortunes", default="/usr/share/games/fortunes")
    ap.add_argument("--corpus", required=True, help="folder for the training copies")
    ap.add_argument("--task", required=True, help="the held-out task's .jsonl")
    ap.add_argument("--every", type=int, default=20, help="hold out every N-th fortune")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--distractors", choices=["shuffled", "others"], default="shuffled")
    a = ap.parse_args()
    if a.every < 2:
        sys.exit("demo_cloze: --every must be at least 2")

    names = sorted(n for n in os.listdir(a.fortunes)
                   if not n.endswith((".dat", ".u8")) and not os.path.islink(os.path.join(a.fortunes, n))
                   and os.path.isfile(os.path.join(a.fortunes, n)))
    if not names:
        sys.exit(f"demo_cloze: no fortune files in {a.fortunes} (Debian package 'fortunes')")
    os.makedirs(a.corpus, exist_ok=True)
    held, kept = [], 0
    for name in names:
        docs = fortunes_of(os.path.join(a.fortunes, name))
        train = [d for i, d in enumerate(docs) if i % a.every != a.every - 1]
        held += [d for i, d in enumerate(docs) if i % a.every == a.every - 1]
        kept += len(train)
        with open(os.path.join(a.corpus, name + ".txt"), "w", encoding="utf-8") as f:
            f.write("%\n".join(d if d.endswith("\n") else d + "\n" for d in train))

    items = []
    for d in held:
        words = d.split()
        if is_prose(words):
            cut = max(6, int(len(words) * 0.55))
            # shuffled needs three distinct reorderings of the ending: at least 4 words
            if a.distractors == "others" or len(set(words[cut:])) >= 4:
                items.append((" ".join(words[:cut]), " ".join(words[cut:])))
    if len(items) < 4:
        sys.exit(f"demo_cloze: only {len(items)} held-out fortunes read as prose; need 4")
    rng = random.Random(a.seed)
    os.makedirs(os.path.dirname(os.path.abspath(a.task)), exist_ok=True)
    tmp = a.task + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for i, (ctx, ending) in enumerate(items):
            if a.distractors == "others":
                endings = [items[j][1] for j in rng.sample([j for j in range(len(items)) if j != i], 3)]
            else:
                endings, words = [], ending.split()
                while len(endings) < 3:
                    w = words[:]
                    rng.shuffle(w)
                    if " ".join(w) != ending and " ".join(w) not in endings:
                        endings.append(" ".join(w))
            label = rng.randrange(4)
            endings.insert(label, ending)
            f.write(json.dumps({"ind": i, "activity_label": "Fortune", "ctx_a": ctx, "ctx_b": "",
                                "endings": endings, "label": str(label), "split": "validation",
                                "source_id": "fortunes"}) + "\n")
    os.replace(tmp, a.task)  # complete or absent
    print(f"prose: {kept} fortunes in {len(names)} files for training; {len(held)} held out, "
          f"{len(items)} of them a 4-way completion task, distractors {a.distractors} ({a.task})")


if __name__ == "__main__":
    main()
