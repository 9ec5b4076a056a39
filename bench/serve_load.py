#!/usr/bin/env python3
"""HTTP load on a running `tinyllama serve` (standard library only).

CONCURRENCY clients each send REQUESTS completions (token-id prompts of PROMPT random ids,
MAX_TOKENS new tokens, greedy, EOS ignored) back to back; prints aggregate generated
tokens/s over the wall time, requests/s, and p50/p99 latency, and writes them as JSON with
--json. Where the server's /metrics has the scheduler counters, it also prints what they say
over the run: the mean decode batch, the time a decode step and a prefill call take, and the
share of the scheduler's busy time spent on the host between calls; and the slowest requests
with the client, the round and when they started. Example:
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

    latencies, tokens, errors, trace = [], [0], [], []
    lock = threading.Lock()

    def scheduler_counters():
        """{(name, kind): value} of the tinyllama_scheduler_* counters; {} when absent."""
        out = {}
        try:
            with urllib.request.urlopen(a.url + "/metrics", timeout=30) as r:
                text = r.read().decode()
        except Exception:  # noqa: BLE001 - the figures are optional
            return out
        for line in text.splitlines():
            if line.startswith(("tinyllama_scheduler_", "tinyllama_decode_graph_")):
                name, value = line.rsplit(" ", 1)
                kind = name.split('kind="')[1].split('"')[0] if "kind=" in name else ""
                out[(name.split("{")[0], kind)] = float(value)
        return out

    def client(c):
        rng = random.Random(c)
        for rnd in range(a.requests):
            body = json.dumps({"model": "x", "prompt": [rng.randrange(3, a.vocab) for _ in range(a.prompt)],
                               "max_tokens": a.max_tokens, "temperature": 0, "ignore_eos": True}).encode()
            req = urllib.request.Request(a.url + "/v1/completions", body, {"Content-Type": "application/json"})
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=600) as r:
                    out = json.load(r)
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    trace.append((latencies[-1], c, rnd, t0 - start))
                    tokens[0] += out["usage"]["completion_tokens"]
            except Exception as e:  # noqa: BLE001 - every failure is reported
                with lock:
                    errors.append(str(e))

    before = scheduler_counters()
    start = t0 = time.perf_counter()
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
    after = scheduler_counters()
    d = {k: after[k] - before.get(k, 0.0) for k in after}
    steps = lambda kind: d.get(("tinyllama_scheduler_steps_total", kind), 0.0)
    if steps("decode") > 0:
        secs = lambda kind: d.get(("tinyllama_scheduler_step_seconds_total", kind), 0.0)
        busy = d.get(("tinyllama_scheduler_busy_seconds_total", ""), 0.0)
        res["scheduler"] = {
            "decode_steps": steps("decode"),
            "mean_decode_batch": d[("tinyllama_scheduler_step_rows_total", "decode")] / steps("decode"),
            "decode_step_ms": 1e3 * secs("decode") / steps("decode"),
            "prefill_calls": steps("prefill"),
            "prefill_call_ms": 1e3 * secs("prefill") / steps("prefill") if steps("prefill") else 0.0,
            "busy_s": busy, "decode_s": secs("decode"), "prefill_s": secs("prefill"),
            "host_share_of_busy": (busy - secs("decode") - secs("prefill")) / busy if busy else 0.0,
            "idle_s": wall - busy,
            "graph_replays": d.get(("tinyllama_decode_graph_replays_total", ""), 0.0),
            "graph_recordings": d.get(("tinyllama_decode_graph_recordings_total", ""), 0.0),
            "graph_invalidations": d.get(("tinyllama_decode_graph_invalidations_total", ""), 0.0)}
        sc = res["scheduler"]
        print(f"  scheduler over the run: {sc['decode_steps']:.0f} decode steps, mean batch "
              f"{sc['mean_decode_batch']:.1f}, {sc['decode_step_ms']:.2f} ms a step ({sc['decode_s']:.2f} s); "
              f"{sc['prefill_calls']:.0f} prefill calls, {sc['prefill_call_ms']:.2f} ms each "
              f"({sc['prefill_s']:.2f} s); busy {busy:.2f} s of {wall:.2f}, host "
              f"{100 * sc['host_share_of_busy']:.1f}% of it; decode graphs: {sc['graph_replays']:.0f} "
              f"steps replayed, {sc['graph_recordings']:.0f} recorded, {sc['graph_invalidations']:.0f} "
              f"invalidations")
    trace.sort(reverse=True)
    res["slowest"] = [{"latency_s": l, "client": c, "round": r, "started_s": t} for l, c, r, t in trace[:5]]
    print("  slowest: " + ", ".join(f"{l:.3f} s (client {c}, round {r}, at {t:.3f} s)"
                                   for l, c, r, t in trace[:5]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
