#!/usr/bin/env python3
"""The corpus of the 1,000-step curve comparison (issue #15): prose and code that a Debian 12
machine carries, as SlimPajama-style JSON lines ({"text": ...}), for `tinyllama prepare`.

- prose: /usr/share/doc (READMEs, NEWS, changelogs, FAQs, manuals; gzip or plain text), the
  Vim and Perl documentation (/usr/share/vim/*/doc, /usr/share/perl/*/pod) — English prose with
  some technical structure;
- code: C and C++ headers (/usr/include) and the Python standard library (/usr/lib/python3*).
Every file is one document. Identical files (the same licence text in a hundred packages) are
kept once, by content hash; documents under 200 or over 2,000,000 characters and files that
are not UTF-8 text are skipped. Files are taken in sorted path order until each source reaches
its character budget, so the corpus is the same on every run on the same machine.

    python3 bench/curve_corpus.py --out .carry/curve --prose-mb 45 --code-mb 35
writes OUT/prose.jsonl.zst and OUT/code.jsonl.zst (zstd via the `zstd` program) and OUT/README
with the counts. About 3.3 characters per Llama 2 token: 80 MB of text is ~24M tokens, enough
for 1,000 steps of 8 x 2048 tokens (16.4M) plus held-out validation without a second epoch.
"""
import argparse
import glob
import gzip
import hashlib
import json
import os
import subprocess
import sys

PROSE = ["/usr/share/doc/**/*", "/usr/share/vim/vim*/doc/*.txt", "/usr/share/perl/*/pod/*.pod"]
CODE = ["/usr/include/**/*.h", "/usr/include/**/*.hpp", "/usr/include/c++/**/*",
        "/usr/lib/python3*/**/*.py"]
SKIP_PROSE = ("copyright",)  # licence boilerplate, near-identical across packages


def read_text(path):
    try:
        if os.path.islink(path) or not os.path.isfile(path):
            return None
        raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
        if b"\0" in raw[:4096]:
            return None
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return None


def gather(patterns, budget_chars, skip_names, seen):
    files = sorted({p for pat in patterns for p in glob.glob(pat, recursive=True)})
    docs, chars = [], 0
    for path in files:
        if os.path.basename(path).split(".")[0] in skip_names:
            continue
        if path.endswith((".html", ".htm", ".css", ".js", ".png", ".jpg", ".svg", ".pdf")):
            continue
        text = read_text(path)
        if text is None or not (200 <= len(text) <= 2_000_000):
            continue
        h = hashlib.sha256(text.encode()).digest()
        if h in seen:
            continue
        seen.add(h)
        docs.append(text)
        chars += len(text)
        if chars >= budget_chars:
            break
    return docs, chars, len(files)


def write_zst(path, docs):
    data = "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs).encode()
    subprocess.run(["zstd", "-q", "-f", "-10", "-o", path], input=data, check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--prose-mb", type=float, default=45)
    ap.add_argument("--code-mb", type=float, default=35)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    seen = set()
    lines = []
    for name, pats, mb, skip in (("prose", PROSE, a.prose_mb, SKIP_PROSE), ("code", CODE, a.code_mb, ())):
        docs, chars, candidates = gather(pats, mb * 1e6, skip, seen)
        write_zst(os.path.join(a.out, f"{name}.jsonl.zst"), docs)
        lines.append(f"{name}: {len(docs)} documents, {chars / 1e6:.1f} M characters "
                     f"(of {candidates} candidate files; patterns {', '.join(pats)})")
        print(lines[-1], flush=True)
    with open(os.path.join(a.out, "README"), "w") as f:
        f.write("Made by bench/curve_corpus.py on " + os.uname().nodename + "\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
