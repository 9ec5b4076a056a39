# Transcription of forward_kernel (attention_fa2.cu) onto the lane-level model.
import numpy as np
from gpu import *

def forward_cta(P, bx, by, gy, D, MT, immediate):
    BR, BC = 64 * MT, 64
    KS, NTS, NTO = D // 16, BC // 8, D // 8
    kTileKV = BC * D * 2
    sm = Smem(BR * D * 2 + 4 * kTileKV); sm.immediate = immediate
    s0 = 0; sQ = s0; sK0 = s0 + BR * D * 2; sV0 = sK0 + 2 * kTileKV
    T, H, K = P['T'], P['H'], P['K']
    bh = bx; b = bh // H; h = bh % H; g = h // (H // K)
    q0 = (gy - 1 - by) * BR
    W = P['qkv_row']
    qoff = b * T * W + h * D; koff = b * T * W + (H + g) * D; voff = koff + K * D
    n_blocks = (min(T, q0 + BR) + BC - 1) // BC
    qkv = P['qkv']
    load_tile(sm, sQ, D, BR, qkv, W, qoff, q0, T)
    load_tile(sm, sK0, D, BC, qkv, W, koff, 0, T)
    load_tile(sm, sV0, D, BC, qkv, W, voff, 0, T)
    sm.commit()
    warps = []
    for w in range(4):
        warps.append(dict(o=np.zeros((MT, NTO, 32, 4), np.float32), m=np.full((MT, 2, 32), -np.inf, np.float32),
                          l=np.zeros((MT, 2, 32), np.float32), qf={}))
    for j in range(n_blocks):
        st = j & 1
        if j + 1 < n_blocks:
            load_tile(sm, sK0 + (st ^ 1) * kTileKV, D, BC, qkv, W, koff, (j + 1) * BC, T)
            load_tile(sm, sV0 + (st ^ 1) * kTileKV, D, BC, qkv, W, voff, (j + 1) * BC, T)
        sm.commit(); sm.wait(1)
        for w in range(4):
            R = warps[w]; row_w = q0 + w * 16 * MT
            if j == 0:
                for mt in range(MT):
                    for kk in range(KS):
                        R['qf'][mt, kk] = ldsm(sm, at(sQ, D, w * 16 * MT + mt * 16 + row_a, 2 * kk + chunk_a))
            k0 = j * BC
            if k0 > row_w + 16 * MT - 1: continue
            sK = sK0 + st * kTileKV; sV = sV0 + st * kTileKV
            s = np.zeros((MT, NTS, 32, 4), np.float32)
            for kk in range(KS):
                for np_ in range(NTS // 2):
                    bk = ldsm(sm, at(sK, D, np_ * 16 + row_bn, 2 * kk + chunk_bn))
                    for mt in range(MT):
                        mma(s[mt, 2 * np_], R['qf'][mt, kk], bk[:, 0], bk[:, 1])
                        mma(s[mt, 2 * np_ + 1], R['qf'][mt, kk], bk[:, 2], bk[:, 3])
            if k0 + BC - 1 > row_w:
                for mt in range(MT):
                    for nt in range(NTS):
                        for e in range(4):
                            key = k0 + nt * 8 + 2 * (LANES & 3) + (e & 1)
                            row = row_w + mt * 16 + (LANES >> 2) + 8 * (e >> 1)
                            s[mt, nt, :, e] = np.where(key > row, -np.inf, s[mt, nt, :, e])
            for mt in range(MT):
                for r in range(2):
                    mx = R['m'][mt, r].copy()
                    for nt in range(NTS): mx = np.fmax(mx, np.fmax(s[mt, nt, :, 2 * r], s[mt, nt, :, 2 * r + 1]))
                    mx = np.fmax(mx, shfl_xor(mx, 1)); mx = np.fmax(mx, shfl_xor(mx, 2))
                    ms = np.where(mx == -np.inf, 0, mx * P['scale_log2']).astype(np.float32)
                    with np.errstate(invalid='ignore'):
                        corr = np.exp2(R['m'][mt, r] * P['scale_log2'] - ms)
                    R['m'][mt, r] = mx
                    R['l'][mt, r] *= corr
                    for nt in range(NTO):
                        R['o'][mt, nt, :, 2 * r] *= corr; R['o'][mt, nt, :, 2 * r + 1] *= corr
                    for nt in range(NTS):
                        for e in (2 * r, 2 * r + 1):
                            pv = np.exp2(s[mt, nt, :, e] * P['scale_log2'] - ms).astype(np.float32)
                            s[mt, nt, :, e] = pv
                            R['l'][mt, r] += pv
            for kk in range(BC // 16):
                a = [c_to_a(s[mt, 2 * kk], s[mt, 2 * kk + 1]) for mt in range(MT)]
                for dp in range(NTO // 2):
                    bv = ldsm(sm, at(sV, D, kk * 16 + row_a, 2 * dp + chunk_a), trans=True)
                    for mt in range(MT):
                        mma(R['o'][mt, 2 * dp], a[mt], bv[:, 0], bv[:, 1])
                        mma(R['o'][mt, 2 * dp + 1], a[mt], bv[:, 2], bv[:, 3])
    for w in range(4):
        R = warps[w]
        for mt in range(MT):
            for r in range(2):
                lt = R['l'][mt, r].copy(); lt = lt + shfl_xor(lt, 1); lt = lt + shfl_xor(lt, 2)
                inv = 1.0 / lt
                row_l = w * 16 * MT + mt * 16 + (LANES >> 2) + 8 * r
                for t in range(32):
                    if (t & 3) == 0 and q0 + row_l[t] < T:
                        P['lse'][bh * T + q0 + row_l[t]] = R['m'][mt, r][t] * P['scale'] + np.log(lt[t])
                for nt in range(NTO):
                    v = pack(R['o'][mt, nt, :, 2 * r] * inv, R['o'][mt, nt, :, 2 * r + 1] * inv)
                    for t in range(32):
                        a_ = at(sQ, D, row_l[t], nt) + 4 * (t & 3)
                        sm.h[a_ // 2] = v[t, 0]; sm.h[a_ // 2 + 1] = v[t, 1]
        kWarpChunks = 16 * MT * (D // 8)
        for i in range(kWarpChunks // 32):
            for lane in range(32):
                idx = lane + 32 * i
                row_l = w * 16 * MT + idx // (D // 8); c = idx % (D // 8)
                if q0 + row_l < T:
                    a_ = at(sQ, D, row_l, c)
                    o0 = (b * T + q0 + row_l) * P['out_row'] + h * D + c * 8
                    P['out'][o0: o0 + 8] = sm.h[a_ // 2: a_ // 2 + 8]

def forward(qkv, B, T, H, K, D, immediate=False):
    MT = 2 if D == 64 else 1
    BR = 64 * MT
    P = dict(qkv=qkv, T=T, H=H, K=K, qkv_row=(H + 2 * K) * D, out_row=H * D,
             scale=np.float32(1 / np.sqrt(D)), scale_log2=np.float32(1 / np.sqrt(D) * 1.4426950408889634),
             out=np.full(B * T * H * D, np.nan, np.float32), lse=np.full(B * H * T, np.nan, np.float32))
    gy = (T + BR - 1) // BR
    for bx in range(B * H):
        for by in range(gy):
            forward_cta(P, bx, by, gy, D, MT, immediate)
    return P['out'], P['lse']
