#!/usr/bin/env python3
"""Small corpora in the real layouts and schemas of TinyLlama's data, for trying `prepare`.

  --slim DIR  SlimPajama-627B's layout: DIR/train/chunk{1,2}/example_train_N.jsonl.zst and
              DIR/validation/chunk1/example_holdout_0.jsonl.zst, one JSON object a line:
              {"text": ..., "meta": {"redpajama_set_name": ...}}, the seven sets in about
              SlimPajama's proportions (RedPajamaGithub among them, for --exclude-set).
              Needs the zstd command.
  --star DIR  Starcoderdata's layout: DIR/{python,cpp}/train-0000N-of-00002.parquet with its
              columns (max_stars_repo_path, max_stars_repo_name, max_stars_count, id,
              content). Needs pyarrow.
Texts come from tinyshakespeare (prose sets) and this repository's sources (code).

  python3 tools/make_corpus_samples.py --slim /tmp/slim --star /tmp/star [--mb 20]
"""
import argparse
import glob
import json
import os
import random
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SETS = [("RedPajamaCommonCrawl", 52.2), ("RedPajamaC4", 26.7), ("RedPajamaGithub", 5.2), ("RedPajamaBook", 4.2),
        ("RedPajamaArXiv", 4.6), ("RedPajamaWikipedia", 3.8), ("RedPajamaStackExchange", 3.3)]


def prose():
    shared = os.environ.get("TL_SHARED_DIR", os.path.join(ROOT, "..", "shared"))
    with open(os.path.join(shared, "data", "tinyshakespeare.txt"), encoding="utf-8") as f:
        return [p for p in f.read().split("\n\n") if p.strip()]


def code():
    files = sorted(glob.glob(os.path.join(ROOT, "src", "**", "*.*"), recursive=True))
    out = []
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            out.append((os.path.relpath(path, ROOT), f.read()))
    return out


def write_zst(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    subprocess.run(["zstd", "-q", "-f", "-3", "-o", path], input="".join(lines).encode(), check=True)


def make_slim(out, mb, rng):
    paras, sources = prose(), code()
    names, weights = zip(*SETS)
    target, files, lines, size, n = mb * 1e6, 0, [], 0, 0
    while size < target:
        s = rng.choices(names, weights)[0]
        text = rng.choice(sources)[1] if s == "RedPajamaGithub" else "\n\n".join(rng.sample(paras, rng.randint(1, 6)))
        line = json.dumps({"text": text, "meta": {"redpajama_set_name": s}}) + "\n"
        lines.append(line)
        size += len(line)
        n += 1
        if len(lines) == 500:
            write_zst(os.path.join(out, "train", f"chunk{1 + files % 2}", f"example_train_{files // 2}.jsonl.zst"), lines)
            files, lines = files + 1, []
    if lines:
        write_zst(os.path.join(out, "train", f"chunk{1 + files % 2}", f"example_train_{files // 2}.jsonl.zst"), lines)
        files += 1
    held = [json.dumps({"text": p, "meta": {"redpajama_set_name": "RedPajamaC4"}}) + "\n" for p in paras[:300]]
    write_zst(os.path.join(out, "validation", "chunk1", "example_holdout_0.jsonl.zst"), held)
    print(f"slim: {n} records ({size / 1e6:.1f} MB of JSON lines) in {files} training files + 1 validation file under {out}")


def make_star(out, rng):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        print("star: skipped (pyarrow is not installed)")
        return
    sources = code()
    for lang, ext in (("python", (".py",)), ("cpp", (".cpp", ".h", ".cu", ".cuh"))):
        picked = [s for s in sources if s[0].endswith(ext)] or sources
        for part in range(2):
            rows = picked[part::2]
            table = pa.table({
                "max_stars_repo_path": [p for p, _ in rows],
                "max_stars_repo_name": ["tinyllama/tinyllama"] * len(rows),
                "max_stars_count": pa.array([rng.randint(0, 5000) for _ in rows], pa.int64()),
                "id": [f"{lang}-{part}-{i}" for i in range(len(rows))],
                "content": [c for _, c in rows],
            })
            os.makedirs(os.path.join(out, lang), exist_ok=True)
            pq.write_table(table, os.path.join(out, lang, f"train-0000{part}-of-00002.parquet"), row_group_size=64)
    print(f"star: parquet files under {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slim")
    ap.add_argument("--star")
    ap.add_argument("--mb", type=float, default=20, help="size of the SlimPajama sample's JSON lines")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    if a.slim:
        make_slim(a.slim, a.mb, rng)
    if a.star:
        make_star(a.star, rng)


if __name__ == "__main__":
    main()
