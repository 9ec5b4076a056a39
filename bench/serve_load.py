#!/usr/bin/env python3
"""HTTP load on a running `tinyllama serve` (standard library only).

CONCURRENCY clients each send REQUESTS completions (token-id prompts of PROMPT random ids,
MAX_TOKENS new tokens, greedy, EOS ignored) back to back; prints aggregate generated
tokens/s over the wall time, requests/s, and p50/p99 latency, and writes them as JSON with
--json. Example:
    python3 bench/serve_load.py --url http://127.0.0.1:8000 --concurrency 32 --requests 4
"""
import argparse
import json
import random
import threading
import time
import urllib.request


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--requests", type=int, default=4, help="per client")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--json", default="")
    a = ap.parse_args()

    latencies, tokens, errors = [], [0], []
    lock = threading.Lock()

    def client(c):
        rng = random.Random(c)
        for _ in range(a.requests):
            body = json.dumps({"model": "x", "prompt": [rng.randrange(3, a.vocab) for _ in range(a.prompt)],
                               "max_tokens": a.max_tokens, "temperature": 0, "ignore_eos": True}).encode()
            req = urllib.request.Request(a.url + "/v1/completions", body, {"Content-Type": "application/json"})
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=600) as r:
                    out = json.load(r)
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    tokens[0] += out["usage"]["completion_tokens"]
            except Exception as e:  # noqa: BLE001 - every failure is reported
                with lock:
                    errors.append(str(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else float("nan")
    res = {"concurrency": a.concurrency, "requests": len(latencies), "errors": len(errors), "wall_s": wall,
           "generated_tokens": tokens[0], "tokens_per_s": tokens[0] / wall, "requests_per_s": len(latencies) / wall,
           "latency_p50_s": pct(0.5), "latency_p99_s": pct(0.99), "prompt": a.prompt, "max_tokens": a.max_tokens}
    print(f"{a.concurrency} clients x {a.requests}: {res['tokens_per_s']:.1f} generated tokens/s, "
          f"{res['requests_per_s']:.2f} req/s, p50 {res['latency_p50_s']:.3f} s, p99 {res['latency_p99_s']:.3f} s, "
          f"{len(errors)} errors" + (f" (first: {errors[0]})" if errors else ""))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
