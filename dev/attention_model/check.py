# Runs the lane-level transcriptions of the fa2 kernels against the float64 reference.
#   python3 dev/attention_model/check.py      (numpy; ~40 s on one core)
import os, sys
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu import bf16
from fwd import forward
from bwd import backward
from ref import ref_forward, ref_backward

rng = np.random.default_rng(1)
def rel(a, b): return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)
worst = 0.0
# (B, T, H, K, D, amp): partial tiles, multi-query, peaked softmax, D=128
for (B, T, H, K, D, amp) in [(1, 17, 2, 1, 64, 1), (1, 130, 4, 2, 64, 1), (2, 64, 2, 2, 64, 3),
                             (1, 200, 4, 1, 64, 1), (1, 130, 2, 1, 128, 1)]:
    qkv = bf16(amp * rng.standard_normal(B * T * (H + 2 * K) * D))
    dout = bf16(rng.standard_normal(B * T * H * D))
    ro, rl = ref_forward(qkv, B, T, H, K, D)
    out, lse = bf16(ro), rl.astype(np.float32)
    rd = ref_backward(qkv, out, lse, dout, B, T, H, K, D).reshape(B, T, H + 2 * K, D)
    parts = {'dq': np.s_[:, :, :H], 'dk': np.s_[:, :, H:H + K], 'dv': np.s_[:, :, H + K:]}
    for imm in (False, True):  # cp.async data landing at the wait, or at issue
        o, l = forward(qkv, B, T, H, K, D, immediate=imm)
        r = [rel(o, ro), np.abs(l - rl).max()]
        line = f"B{B} T{T} H{H} K{K} D{D} amp{amp} imm={int(imm)}: fwd out {r[0]:.1e} lse {r[1]:.1e}"
        for det, nw in [(True, 4), (False, 4), (False, 8)]:
            if D != 64 and nw == 8: continue
            d = backward(qkv, out, lse, dout, B, T, H, K, D, det, nw, imm).reshape(B, T, H + 2 * K, D)
            e = max(rel(d[s], rd[s]) if np.abs(rd[s]).max() > 0 else np.abs(d[s]).max() for s in parts.values())
            line += f" | bwd {'det' if det else f'atomic{nw * 16}'} {e:.1e}"
            r.append(e)
        worst = max(worst, max(x for x in r if np.isfinite(x)), 0 if all(np.isfinite(r)) else np.inf)
        print(line, flush=True)
print("worst", f"{worst:.2e}", "OK" if worst < 1e-2 else "FAIL")
sys.exit(0 if worst < 1e-2 else 1)
