# Runs the thread-level transcription of the generic kernels against the float64 reference.
#   python3 dev/attention_model/check_generic.py      (numpy; a few minutes on one core)
import os, sys
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu import bf16
from generic import forward, backward
from ref import ref_forward, ref_backward

rng = np.random.default_rng(2)
def rel(a, b): return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)
worst = 0.0
# (B, T, H, K, D, amp): one row, partial tiles, GQA ratios 1..4, D below, at and across the
# chunk widths (32, 64, 128), D not a multiple of 8, several chunks (130, 200, 256)
cases = [(1, 1, 2, 1, 16, 1), (2, 17, 4, 2, 2, 1), (1, 33, 6, 2, 32, 1), (1, 45, 4, 1, 12, 1),
         (1, 70, 4, 4, 40, 3), (1, 40, 2, 1, 64, 1), (1, 65, 3, 3, 96, 1), (1, 40, 2, 1, 130, 1),
         (1, 33, 4, 2, 200, 1), (1, 64, 2, 2, 256, 1)]
for (B, T, H, K, D, amp) in cases:
    qkv = bf16(amp * rng.standard_normal(B * T * (H + 2 * K) * D))
    dout = bf16(rng.standard_normal(B * T * H * D))
    ro, rl = ref_forward(qkv, B, T, H, K, D)
    out, lse = bf16(ro), rl.astype(np.float32)
    rd = ref_backward(qkv, out, lse, dout, B, T, H, K, D).reshape(B, T, H + 2 * K, D)
    o, l = forward(qkv, B, T, H, K, D)
    d = backward(qkv, out, lse, dout, B, T, H, K, D).reshape(B, T, H + 2 * K, D)
    r = [rel(o, ro), np.abs(l - rl).max()]
    parts = {'dq': np.s_[:, :, :H], 'dk': np.s_[:, :, H:H + K], 'dv': np.s_[:, :, H + K:]}
    for name, s in parts.items():
        r.append(rel(d[s], rd[s]) if np.abs(rd[s]).max() > 0 else np.abs(d[s]).max())
    bad = not all(np.isfinite(r))
    worst = max(worst, np.inf if bad else max(r))
    print(f"B{B} T{T} H{H} K{K} D{D} amp{amp}: out {r[0]:.1e} lse {r[1]:.1e} dq {r[2]:.1e} "
          f"dk {r[3]:.1e} dv {r[4]:.1e}", flush=True)
print("worst", f"{worst:.2e}", "OK" if worst < 1e-3 else "FAIL")
sys.exit(0 if worst < 1e-3 else 1)
