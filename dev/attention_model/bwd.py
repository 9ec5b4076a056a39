# Transcription of the backward kernels (attention_fa2.cu) onto the lane-level model.
import numpy as np
from gpu import *
kLog2e = np.float32(1.4426950408889634)

def preprocess(P, D, atomic):
    # Dsum[b,h,t] = sum_d dout*out (f32); zero dq_acc
    T, H = P['T'], P['H']
    n_rows = P['B'] * T * H
    for row in range(n_rows):
        acc = np.float32(np.dot(P['dout'][row * D:(row + 1) * D].astype(np.float32), P['out'][row * D:(row + 1) * D].astype(np.float32)))
        if atomic: P['dq_acc'][row * D:(row + 1) * D] = 0
        bt, h = row // H, row % H; b, t = bt // T, bt % T
        P['dsum'][(b * H + h) * T + t] = acc

def kv_cta(P, bx, by, D, NW, ATOMIC, immediate):
    BKV, BQ, THREADS = 16 * NW, 64, NW * 32
    KS, NTQ, NTD = D // 16, BQ // 8, D // 8
    kKvInRegs = D <= 64
    kTileQ = BQ * D * 2
    kK = 0; kV = kK + BKV * D * 2; kQ = kV + BKV * D * 2; kdO = kQ + 2 * BQ * D * 2
    kL = kdO + 2 * BQ * D * 2; kDs = kL + 2 * BQ * 4; kdS = kDs + 2 * BQ * 4
    kBytes = kdS + (BKV * BQ * 2 if ATOMIC else 0)
    sm = Smem(kBytes); sm.immediate = immediate
    s0 = 0; sK = s0 + kK; sV = s0 + kV
    T, H, K = P['T'], P['H'], P['K']; G = H // K; W = P['qkv_row']; OW = P['out_row']
    b, g = bx // K, bx % K
    k0 = by * BKV
    qb0 = k0 // BQ; per_head = (T + BQ - 1) // BQ - qb0; n_iter = G * per_head
    koff = b * T * W + (H + g) * D; voff = koff + K * D
    def load_q(it, stage):
        h = g * G + it // per_head; qs = (qb0 + it % per_head) * BQ
        load_tile(sm, s0 + kQ + stage * kTileQ, D, BQ, P['qkv'], W, b * T * W + h * D, qs, T)
        load_tile(sm, s0 + kdO + stage * kTileQ, D, BQ, P['dout'], OW, b * T * OW + h * D, qs, T)
        for i in range(THREADS):
            if i < 2 * BQ:
                arr = P['lse'] if i < BQ else P['dsum']
                idx = (b * H + h) * T + qs + (i % BQ)
                dst = s0 + (kL if i < BQ else kDs) + stage * BQ * 4 + (i % BQ) * 4
                valid = qs + (i % BQ) < T
                sm.cp4(dst, arr[idx] if valid else 0.0)
    load_tile(sm, sK, D, BKV, P['qkv'], W, koff, k0, T)
    load_tile(sm, sV, D, BKV, P['qkv'], W, voff, k0, T)
    load_q(0, 0); sm.commit()
    warps = [dict(dk=np.zeros((NTD, 32, 4), np.float32), dv=np.zeros((NTD, 32, 4), np.float32), kf={}, vf={}) for _ in range(NW)]
    for it in range(n_iter):
        st = it & 1
        if it + 1 < n_iter: load_q(it + 1, st ^ 1)
        sm.commit(); sm.wait(1)
        h = g * G + it // per_head; qs = (qb0 + it % per_head) * BQ
        sQ = s0 + kQ + st * kTileQ; sdO = s0 + kdO + st * kTileQ
        sL = s0 + kL + st * BQ * 4; sDs = s0 + kDs + st * BQ * 4
        dps = []
        for w in range(NW):
            R = warps[w]; key_w = k0 + w * 16
            if kKvInRegs and it == 0:
                for kk in range(KS):
                    R['kf'][kk] = ldsm(sm, at(sK, D, w * 16 + row_a, 2 * kk + chunk_a))
                    R['vf'][kk] = ldsm(sm, at(sV, D, w * 16 + row_a, 2 * kk + chunk_a))
            active = key_w <= qs + BQ - 1
            s = np.zeros((NTQ, 32, 4), np.float32); dp = np.zeros((NTQ, 32, 4), np.float32)
            if active:
                for kk in range(KS):
                    if kKvInRegs: ak, av = R['kf'][kk], R['vf'][kk]
                    else:
                        ak = ldsm(sm, at(sK, D, w * 16 + row_a, 2 * kk + chunk_a))
                        av = ldsm(sm, at(sV, D, w * 16 + row_a, 2 * kk + chunk_a))
                    for np_ in range(NTQ // 2):
                        bq = ldsm(sm, at(sQ, D, np_ * 16 + row_bn, 2 * kk + chunk_bn))
                        bo = ldsm(sm, at(sdO, D, np_ * 16 + row_bn, 2 * kk + chunk_bn))
                        mma(s[2 * np_], ak, bq[:, 0], bq[:, 1]); mma(s[2 * np_ + 1], ak, bq[:, 2], bq[:, 3])
                        mma(dp[2 * np_], av, bo[:, 0], bo[:, 1]); mma(dp[2 * np_ + 1], av, bo[:, 2], bo[:, 3])
                mask = key_w + 15 > qs or qs + BQ > T
                for nt in range(NTQ):
                    col = nt * 8 + 2 * (LANES & 3)
                    lse = np.stack([sm.w[(sL + col * 4) // 4], sm.w[(sL + col * 4) // 4 + 1]], 1)
                    ds = np.stack([sm.w[(sDs + col * 4) // 4], sm.w[(sDs + col * 4) // 4 + 1]], 1)
                    for e in range(4):
                        q = qs + col + (e & 1); key = key_w + (LANES >> 2) + 8 * (e >> 1)
                        pv = np.exp2(s[nt, :, e] * P['scale_log2'] - lse[:, e & 1] * kLog2e).astype(np.float32)
                        if mask: pv = np.where((key > q) | (q >= T), 0, pv)
                        s[nt, :, e] = pv
                        dp[nt, :, e] = pv * (dp[nt, :, e] - ds[:, e & 1])
                for kq in range(BQ // 16):
                    ap = c_to_a(s[2 * kq], s[2 * kq + 1]); as_ = c_to_a(dp[2 * kq], dp[2 * kq + 1])
                    for dd in range(NTD // 2):
                        bo = ldsm(sm, at(sdO, D, kq * 16 + row_a, 2 * dd + chunk_a), trans=True)
                        bq = ldsm(sm, at(sQ, D, kq * 16 + row_a, 2 * dd + chunk_a), trans=True)
                        mma(R['dv'][2 * dd], ap, bo[:, 0], bo[:, 1]); mma(R['dv'][2 * dd + 1], ap, bo[:, 2], bo[:, 3])
                        mma(R['dk'][2 * dd], as_, bq[:, 0], bq[:, 1]); mma(R['dk'][2 * dd + 1], as_, bq[:, 2], bq[:, 3])
            dps.append(dp)
        if ATOMIC:
            sdS = s0 + kdS
            for w in range(NW):
                dp = dps[w]
                for nt in range(NTQ):
                    for r in range(2):
                        v = pack(dp[nt, :, 2 * r], dp[nt, :, 2 * r + 1])
                        for t in range(32):
                            a_ = at(sdS, BQ, w * 16 + (t >> 2) + 8 * r, nt) + 4 * (t & 3)
                            sm.h[a_ // 2] = v[t, 0]; sm.h[a_ // 2 + 1] = v[t, 1]
            # __syncthreads
            WD = D * 4 // NW; NTW = WD // 8
            for w in range(NW):
                mq, d0 = w & 3, (w >> 2) * WD
                dq = np.zeros((NTW, 32, 4), np.float32)
                for kk in range(BKV // 16):
                    a = ldsm(sm, at(sdS, BQ, kk * 16 + row_bn, 2 * mq + chunk_bn), trans=True)
                    for dd in range(NTW // 2):
                        bk = ldsm(sm, at(sK, D, kk * 16 + row_a, d0 // 8 + 2 * dd + chunk_a), trans=True)
                        mma(dq[2 * dd], a, bk[:, 0], bk[:, 1]); mma(dq[2 * dd + 1], a, bk[:, 2], bk[:, 3])
                for r in range(2):
                    for t in range(32):
                        q = qs + mq * 16 + (t >> 2) + 8 * r
                        if q >= T: continue
                        row = (b * T + q) * OW + h * D + d0 + 2 * (t & 3)
                        for nt in range(NTW):
                            P['dq_acc'][row + nt * 8] += dq[nt, t, 2 * r]
                            P['dq_acc'][row + nt * 8 + 1] += dq[nt, t, 2 * r + 1]
    for w in range(NW):
        R = warps[w]; key_w = k0 + w * 16
        for r in range(2):
            for t in range(32):
                key = key_w + (t >> 2) + 8 * r
                if key >= T: continue
                row = (b * T + key) * W + (H + g) * D + 2 * (t & 3)
                for nt in range(NTD):
                    v = pack(R['dk'][nt, t, 2 * r] * P['scale'], R['dk'][nt, t, 2 * r + 1] * P['scale'])
                    P['dqkv'][row + nt * 8: row + nt * 8 + 2] = v
                    v = pack(R['dv'][nt, t, 2 * r], R['dv'][nt, t, 2 * r + 1])
                    P['dqkv'][row + K * D + nt * 8: row + K * D + nt * 8 + 2] = v

def dq_cta(P, bx, by, gy, D, immediate):
    BQ, BC = 64, 64; KS, NTS, NTD = D // 16, BC // 8, D // 8
    kTile = 64 * D * 2
    sm = Smem(6 * kTile); sm.immediate = immediate
    s0 = 0; sQ = s0; sdO = s0 + kTile; sK0 = s0 + 2 * kTile; sV0 = s0 + 4 * kTile
    T, H, K = P['T'], P['H'], P['K']; W = P['qkv_row']; OW = P['out_row']
    bh = bx; b = bh // H; h = bh % H; g = h // (H // K)
    q0 = (gy - 1 - by) * BQ
    koff = b * T * W + (H + g) * D; voff = koff + K * D
    n_blocks = (min(T, q0 + BQ) + BC - 1) // BC
    load_tile(sm, sQ, D, BQ, P['qkv'], W, b * T * W + h * D, q0, T)
    load_tile(sm, sdO, D, BQ, P['dout'], OW, b * T * OW + h * D, q0, T)
    load_tile(sm, sK0, D, BC, P['qkv'], W, koff, 0, T)
    load_tile(sm, sV0, D, BC, P['qkv'], W, voff, 0, T)
    sm.commit()
    warps = []
    for w in range(4):
        row_w = q0 + w * 16
        lse2 = np.zeros((2, 32), np.float32); dsum = np.zeros((2, 32), np.float32)
        for r in range(2):
            row = row_w + (LANES >> 2) + 8 * r
            i = bh * T + row
            ok = row < T
            lse2[r] = np.where(ok, P['lse'][np.minimum(i, len(P['lse']) - 1)] * kLog2e, 0)
            dsum[r] = np.where(ok, P['dsum'][np.minimum(i, len(P['dsum']) - 1)], 0)
        warps.append(dict(lse2=lse2, dsum=dsum, qf={}, of={}, dq=np.zeros((NTD, 32, 4), np.float32)))
    for j in range(n_blocks):
        st = j & 1
        if j + 1 < n_blocks:
            load_tile(sm, sK0 + (st ^ 1) * kTile, D, BC, P['qkv'], W, koff, (j + 1) * BC, T)
            load_tile(sm, sV0 + (st ^ 1) * kTile, D, BC, P['qkv'], W, voff, (j + 1) * BC, T)
        sm.commit(); sm.wait(1)
        for w in range(4):
            R = warps[w]; row_w = q0 + w * 16
            if j == 0:
                for kk in range(KS):
                    R['qf'][kk] = ldsm(sm, at(sQ, D, w * 16 + row_a, 2 * kk + chunk_a))
                    R['of'][kk] = ldsm(sm, at(sdO, D, w * 16 + row_a, 2 * kk + chunk_a))
            k0 = j * BC
            if k0 > row_w + 15: continue
            sK = sK0 + st * kTile; sV = sV0 + st * kTile
            s = np.zeros((NTS, 32, 4), np.float32); dp = np.zeros((NTS, 32, 4), np.float32)
            for kk in range(KS):
                for np_ in range(NTS // 2):
                    bk = ldsm(sm, at(sK, D, np_ * 16 + row_bn, 2 * kk + chunk_bn))
                    bv = ldsm(sm, at(sV, D, np_ * 16 + row_bn, 2 * kk + chunk_bn))
                    mma(s[2 * np_], R['qf'][kk], bk[:, 0], bk[:, 1]); mma(s[2 * np_ + 1], R['qf'][kk], bk[:, 2], bk[:, 3])
                    mma(dp[2 * np_], R['of'][kk], bv[:, 0], bv[:, 1]); mma(dp[2 * np_ + 1], R['of'][kk], bv[:, 2], bv[:, 3])
            mask = k0 + BC - 1 > row_w
            for nt in range(NTS):
                for e in range(4):
                    r = e >> 1
                    key = k0 + nt * 8 + 2 * (LANES & 3) + (e & 1); row = row_w + (LANES >> 2) + 8 * r
                    pv = np.exp2(s[nt, :, e] * P['scale_log2'] - R['lse2'][r]).astype(np.float32)
                    if mask: pv = np.where(key > row, 0, pv)
                    dp[nt, :, e] = pv * (dp[nt, :, e] - R['dsum'][r])
            for kk in range(BC // 16):
                a = c_to_a(dp[2 * kk], dp[2 * kk + 1])
                for dd in range(NTD // 2):
                    bk = ldsm(sm, at(sK, D, kk * 16 + row_a, 2 * dd + chunk_a), trans=True)
                    mma(R['dq'][2 * dd], a, bk[:, 0], bk[:, 1]); mma(R['dq'][2 * dd + 1], a, bk[:, 2], bk[:, 3])
    for w in range(4):
        R = warps[w]; row_w = q0 + w * 16
        for r in range(2):
            for t in range(32):
                row = row_w + (t >> 2) + 8 * r
                if row >= T: continue
                dst = (b * T + row) * W + h * D + 2 * (t & 3)
                for nt in range(NTD):
                    P['dqkv'][dst + nt * 8: dst + nt * 8 + 2] = pack(R['dq'][nt, t, 2 * r] * P['scale'], R['dq'][nt, t, 2 * r + 1] * P['scale'])

def backward(qkv, out, lse, dout, B, T, H, K, D, deterministic, kv_warps=4, immediate=False):
    P = dict(qkv=qkv, out=out, lse=lse, dout=dout, B=B, T=T, H=H, K=K, qkv_row=(H + 2 * K) * D, out_row=H * D,
             scale=np.float32(1 / np.sqrt(D)), scale_log2=np.float32(1 / np.sqrt(D) * 1.4426950408889634),
             dqkv=np.full(B * T * (H + 2 * K) * D, np.nan, np.float32), dsum=np.zeros(B * H * T, np.float32),
             dq_acc=np.full(B * T * H * D, np.nan, np.float32))
    preprocess(P, D, not deterministic)
    NW = 4 if deterministic or D != 64 else kv_warps
    BKV = 16 * NW
    for bx in range(B * K):
        for by in range((T + BKV - 1) // BKV):
            kv_cta(P, bx, by, D, NW, not deterministic, immediate)
    if deterministic:
        gy = (T + 63) // 64
        for bx in range(B * H):
            for by in range(gy):
                dq_cta(P, bx, by, gy, D, immediate)
    else:
        OW = H * D; W = (H + 2 * K) * D
        n = B * T * OW // 8
        for i in range(n):
            e = i * 8; token = e // OW; col = e % OW
            P['dqkv'][token * W + col: token * W + col + 8] = bf16(P['dq_acc'][e:e + 8] * P['scale'])
    return P['dqkv']
