#!/usr/bin/env python3
"""Plots of the 1,000-step curve comparison (issues #15, #16) from the runs' metrics files.

    python3 bench/curve_plot.py --dir bench/results/curve-2026-12-06 --out bench/results

DIR holds what bench/curve_compare.sh leaves in build/curve: run_ours.jsonl and
run_ours_fp8.jsonl (our trainer's metrics.jsonl), ref1.jsonl and ref2.jsonl
(bench/pytorch_trainer.py), each optionally zstd-compressed (.zst). Writes, with gnuplot:
- curve_loss.png: validation loss at each evaluation of every run, and the training loss
  of each run as a 50-step moving average (single steps are too noisy to compare by eye);
- curve_fp8_amax.png: the amax history of the down-projection's input (SwiGLU's output, the
  tensor where FP8 training of SwiGLU models is known to break first) for every layer of the
  FP8 run (of the long one, run_long_fp8.jsonl from `curve_compare.sh long:fp8`, where DIR has
  it); with the long run also curve_fp8_long.png, its training and validation loss. Per-tensor scaling maps each amax to E4M3's 448, so what would hurt is an amax
  that jumps far above the bulk of the tensor's values (an outlier), not its size.
"""
import argparse
import json
import os
import subprocess
import tempfile

RUNS = [("run_ours.jsonl", "tinyllama bf16"), ("run_ours_fp8.jsonl", "tinyllama fp8"),
        ("ref1.jsonl", "PyTorch, init 1"), ("ref2.jsonl", "PyTorch, init 2")]
SMOOTH = 50


def records(path):
    if not os.path.exists(path) and os.path.exists(path + ".zst"):
        text = subprocess.run(["zstd", "-dc", path + ".zst"], check=True, capture_output=True).stdout
        lines = text.decode().splitlines()
    elif os.path.exists(path):
        lines = open(path).read().splitlines()
    else:
        return None
    return [json.loads(line) for line in lines if line.strip()]


def write_curves(recs, train_path, val_path):
    """The training loss as a SMOOTH-step moving average and the validation points, as TSV."""
    train = [(r["step"], r["loss"]) for r in recs if "loss" in r and "val_loss" not in r]
    with open(train_path, "w") as f:
        for k in range(SMOOTH - 1, len(train)):
            f.write(f"{train[k][0]}\t{sum(l for _, l in train[k - SMOOTH + 1:k + 1]) / SMOOTH}\n")
    with open(val_path, "w") as f:
        for r in recs:
            if "val_loss" in r:
                f.write(f"{r['step']}\t{r['val_loss']}\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp()
    loss_plots, val_plots = [], []
    for i, (name, title) in enumerate(RUNS):
        recs = records(os.path.join(a.dir, name))
        if recs is None:
            print(f"{name}: not found, left out")
            continue
        write_curves(recs, f"{work}/train{i}.tsv", f"{work}/val{i}.tsv")
        loss_plots.append(f"'train{i}.tsv' using 1:2 with lines lw 1 lc {i + 1} "
                          f"title '{title}, train ({SMOOTH}-step mean)'")
        val_plots.append(f"'val{i}.tsv' using 1:2 with linespoints lw 2 pt {4 + i} ps 1.5 lc {i + 1} "
                         f"title '{title}, validation'")
    long_run = records(os.path.join(a.dir, "run_long_fp8.jsonl"))
    amax_run = long_run or records(os.path.join(a.dir, "run_ours_fp8.jsonl")) or []
    amax = [(r["step"], r["linears"]["down"]["x"]["amax"]) for r in amax_run
            if r.get("event") == "fp8" and "down" in r.get("linears", {})]
    with open(f"{work}/amax.tsv", "w") as f:
        for step, layers in amax:
            f.write("\t".join([str(step)] + [str(x) for x in layers]) + "\n")
    n_layers = len(amax[0][1]) if amax else 0
    if long_run:
        write_curves(long_run, f"{work}/long_train.tsv", f"{work}/long_val.tsv")
    gp = f"""set terminal pngcairo size 1100,620 noenhanced
set datafile separator '\\t'
set grid
set xlabel 'optimizer step (16,384 tokens each)'
set output '{os.path.abspath(a.out)}/curve_loss.png'
set title 'TinyLlama-1.1B, 1,000 steps: tinyllama (bf16, fp8) against PyTorch (two initializations)'
set ylabel 'cross-entropy (nats/token)'
set yrange [1.5:8]
set key top right
plot {", ".join(loss_plots + val_plots)}
"""
    if long_run:
        gp += f"""set output '{os.path.abspath(a.out)}/curve_fp8_long.png'
set title 'tinyllama fp8, the long run'
plot 'long_train.tsv' using 1:2 with lines lw 1 title 'train ({SMOOTH}-step mean)', \\
     'long_val.tsv' using 1:2 with linespoints lw 2 pt 7 title 'validation'
"""
    if n_layers:
        cols = ", ".join(f"'amax.tsv' using 1:{l + 2} with lines lw 1 title 'layer {l}'"
                         for l in range(n_layers))
        gp += f"""set output '{os.path.abspath(a.out)}/curve_fp8_amax.png'
set title '{"long " if long_run else ""}fp8 run: amax of the down-projection input (SwiGLU output) per layer'
set ylabel 'amax'
set autoscale y
set logscale y
set key outside right font ',8'
plot {cols}
"""
    open(f"{work}/plot.gp", "w").write(gp)
    subprocess.run(["gnuplot", "plot.gp"], cwd=work, check=True)
    print("wrote", ", ".join(p for p in ("curve_loss.png", "curve_fp8_amax.png", "curve_fp8_long.png")
                             if os.path.exists(os.path.join(a.out, p))))


if __name__ == "__main__":
    main()
