# Transcription of the generic kernels (attention_generic.cu) at thread level: every array
# below has one entry per thread of a 128-thread block (t), shared memory is a flat f32 array
# with the kernels' index arithmetic, and each barrier-delimited segment runs for all threads
# at once (so it checks indexing, masks, chunking and tile bounds, not races).
import numpy as np

TILE, THREADS, LDP = 32, 128, 36
t = np.arange(THREADS); ty = t >> 3; tx = t & 7
LOG2E = np.float32(1.4426950408889634)
f32 = np.float32

def chunk_width(D): return 32 if D <= 32 else 64 if D <= 64 else 128
def ld(DG): return DG + 4

def stage(sm, dst, DG, src, base, stride, row0, n_rows, col0, D):
    kp = DG // 2
    for i in range(TILE * kp // THREADS):
        idx = t + i * THREADS; r = idx // kp; c = 2 * (idx % kp)
        ok = (row0 + r < n_rows) & (col0 + c < D)
        a = np.where(ok, base + (row0 + r) * stride + col0 + c, 0)
        sm[dst + r * ld(DG) + c] = np.where(ok, src[a], 0)
        sm[dst + r * ld(DG) + c + 1] = np.where(ok, src[a + 1], 0)

def dot_tile(sm, acc, A, B, DG):  # acc[i][j] += A[ty+16i][:] . B[tx+8j][:]
    d = np.arange(DG)
    for i in range(2):
        a = sm[A + (ty + 16 * i)[:, None] * ld(DG) + d]
        for j in range(4):
            b = sm[B + (tx + 8 * j)[:, None] * ld(DG) + d]
            acc[i, j] += (a * b).sum(1, dtype=f32)

def acc_tile(sm, acc, W, C, DG):  # acc[i][k][e] += sum_j W[ty+16i][j] C[j][4tx+32k+e]
    j = np.arange(TILE)
    for i in range(2):
        w = sm[W + (ty + 16 * i)[:, None] * LDP + j]
        for k in range(DG // 32):
            for e in range(4):
                c = sm[C + j[None, :] * ld(DG) + (4 * tx + 32 * k + e)[:, None]]
                acc[i, k, e] += (w * c).sum(1, dtype=f32)

def store_tile(dst, base, stride, row0, n_rows, col0, D, acc, mul, DG):
    for i in range(2):
        row = row0 + ty + 16 * i
        for k in range(DG // 32):
            for e in range(4):
                col = col0 + 4 * tx + 32 * k + e
                ok = (row < n_rows) & (col < D)
                dst[(base + row * stride + col)[ok]] = (acc[i, k, e] * mul)[ok]

def row_reduce(x, op):  # shfl_xor 1, 2, 4: the 8 lanes of a row
    r = op(x.reshape(16, 8), axis=1)
    return np.repeat(r, 8)

def params(B, T, H, K, D):
    DG = chunk_width(D)
    sc = f32(1 / np.sqrt(f32(D)))
    return dict(B=B, T=T, H=H, K=K, D=D, DG=DG, nch=-(-D // DG), W=(H + 2 * K) * D, OW=H * D,
                scale=sc, sl2=f32(sc * LOG2E), nqt=-(-T // TILE))

def forward(qkv, B, T, H, K, D):
    P = params(B, T, H, K, D); DG, nch, W = P['DG'], P['nch'], P['W']
    out = np.full(B * T * H * D, np.nan, f32); lse = np.full(B * H * T, np.nan, f32)
    L = ld(DG); sQ, sK, sV, sP = 0, TILE * L, 2 * TILE * L, 3 * TILE * L
    for bh in range(B * H):
        b, h = bh // H, bh % H; g = h // (H // K)
        for by in range(P['nqt']):
            for z in range(nch):
                sm = np.full(3 * TILE * L + TILE * LDP, np.nan, f32)
                qt = P['nqt'] - 1 - by; q0 = qt * TILE; col0 = z * DG
                qb = b * T * W + h * D; kb = b * T * W + (H + g) * D; vb = kb + K * D
                o = np.zeros((2, DG // 32, 4, THREADS), f32)
                m = np.full((2, THREADS), -np.inf, f32); l = np.zeros((2, THREADS), f32)
                for kt in range(qt + 1):
                    k0 = kt * TILE; s = np.zeros((2, 4, THREADS), f32)
                    for c in range(nch):
                        if nch > 1 or kt == 0: stage(sm, sQ, DG, qkv, qb, W, q0, T, c * DG, D)
                        stage(sm, sK, DG, qkv, kb, W, k0, T, c * DG, D)
                        dot_tile(sm, s, sQ, sK, DG)
                    stage(sm, sV, DG, qkv, vb, W, k0, T, col0, D)
                    for i in range(2):
                        row = q0 + ty + 16 * i; mx = m[i].copy()
                        for j in range(4):
                            s[i, j] = np.where(k0 + tx + 8 * j > row, -np.inf, s[i, j])
                            mx = np.fmax(mx, s[i, j])
                        mx = row_reduce(mx, np.max)
                        ms = np.where(mx == -np.inf, 0, mx * P['sl2']).astype(f32)
                        corr = np.exp2(m[i] * P['sl2'] - ms).astype(f32)
                        m[i] = mx; l[i] *= corr; o[i] *= corr
                        for j in range(4):
                            pv = np.exp2(s[i, j] * P['sl2'] - ms).astype(f32)
                            l[i] += pv; sm[sP + (ty + 16 * i) * LDP + tx + 8 * j] = pv
                    acc_tile(sm, o, sP, sV, DG)
                for i in range(2):
                    lt = row_reduce(l[i], np.sum); row = q0 + ty + 16 * i
                    ok = (z == 0) & (tx == 0) & (row < T)
                    lse[(bh * T + row)[ok]] = (m[i] * P['scale'] + np.log(lt))[ok]
                    o[i] *= f32(1) / lt
                store_tile(out, b * T * P['OW'] + h * D, P['OW'], q0, T, col0, D, o, 1, DG)
    return out, lse

def dsum(dout, out, B, T, H, D):
    x = dout.reshape(B, T, H, D).astype(f32) * out.reshape(B, T, H, D).astype(f32)
    return x.sum(3, dtype=f32).transpose(0, 2, 1).reshape(-1)

def backward(qkv, out, lse, dout, B, T, H, K, D):
    P = params(B, T, H, K, D); DG, nch, W, OW = P['DG'], P['nch'], P['W'], P['OW']
    ds_all = dsum(dout, out, B, T, H, D)
    d = np.full(B * T * W, np.nan, f32)
    L = ld(DG); G = H // K
    # bwd_kv_kernel
    sK, sV, sQ, sdO = 0, TILE * L, 2 * TILE * L, 3 * TILE * L
    sP = 4 * TILE * L; sdS = sP + TILE * LDP
    for bx in range(B * K):
        b, g = bx // K, bx % K
        for kt in range(P['nqt']):
            for z in range(nch):
                sm = np.full(4 * TILE * L + 2 * TILE * LDP, np.nan, f32)
                k0 = kt * TILE; col0 = z * DG
                per_head = P['nqt'] - kt
                kb = b * T * W + (H + g) * D; vb = kb + K * D
                dk = np.zeros((2, DG // 32, 4, THREADS), f32); dv = np.zeros_like(dk)
                for it in range(G * per_head):
                    h = g * G + it // per_head; q0 = (kt + it % per_head) * TILE
                    qb = b * T * W + h * D; ob = b * T * OW + h * D
                    s = np.zeros((2, 4, THREADS), f32); dp = np.zeros_like(s)
                    for c in range(nch):
                        if nch > 1 or it == 0:
                            stage(sm, sK, DG, qkv, kb, W, k0, T, c * DG, D)
                            stage(sm, sV, DG, qkv, vb, W, k0, T, c * DG, D)
                        stage(sm, sQ, DG, qkv, qb, W, q0, T, c * DG, D)
                        stage(sm, sdO, DG, dout, ob, OW, q0, T, c * DG, D)
                        dot_tile(sm, s, sK, sQ, DG); dot_tile(sm, dp, sV, sdO, DG)
                    if nch > 1:
                        stage(sm, sQ, DG, qkv, qb, W, q0, T, col0, D)
                        stage(sm, sdO, DG, dout, ob, OW, q0, T, col0, D)
                    for j in range(4):
                        q = q0 + tx + 8 * j; inn = q < T
                        qi = (b * H + h) * T + np.where(inn, q, 0)
                        l2 = np.where(inn, lse[qi] * LOG2E, 0).astype(f32)
                        dsj = np.where(inn, ds_all[qi], 0).astype(f32)
                        for i in range(2):
                            key = k0 + ty + 16 * i
                            with np.errstate(over='ignore'):
                                pv = np.exp2(s[i, j] * P['sl2'] - l2).astype(f32)
                            pv = np.where((key > q) | ~inn, 0, pv).astype(f32)
                            sm[sP + (ty + 16 * i) * LDP + tx + 8 * j] = pv
                            sm[sdS + (ty + 16 * i) * LDP + tx + 8 * j] = pv * (dp[i, j] - dsj)
                    acc_tile(sm, dv, sP, sdO, DG); acc_tile(sm, dk, sdS, sQ, DG)
                store_tile(d, b * T * W + (H + g) * D, W, k0, T, col0, D, dk, P['scale'], DG)
                store_tile(d, b * T * W + (H + K + g) * D, W, k0, T, col0, D, dv, 1, DG)
    # bwd_dq_kernel
    sQ, sdO, sK, sV = 0, TILE * L, 2 * TILE * L, 3 * TILE * L
    sdS = 4 * TILE * L
    for bh in range(B * H):
        b, h = bh // H, bh % H; g = h // G
        for by in range(P['nqt']):
            for z in range(nch):
                sm = np.full(4 * TILE * L + TILE * LDP, np.nan, f32)
                qt = P['nqt'] - 1 - by; q0 = qt * TILE; col0 = z * DG
                qb = b * T * W + h * D; ob = b * T * OW + h * D
                kb = b * T * W + (H + g) * D; vb = kb + K * D
                l2 = np.zeros((2, THREADS), f32); dsr = np.zeros((2, THREADS), f32)
                for i in range(2):
                    row = q0 + ty + 16 * i; ri = bh * T + np.where(row < T, row, 0)
                    l2[i] = np.where(row < T, lse[ri] * LOG2E, 0)
                    dsr[i] = np.where(row < T, ds_all[ri], 0)
                dq = np.zeros((2, DG // 32, 4, THREADS), f32)
                for kt in range(qt + 1):
                    k0 = kt * TILE
                    s = np.zeros((2, 4, THREADS), f32); dp = np.zeros_like(s)
                    for c in range(nch):
                        if nch > 1 or kt == 0:
                            stage(sm, sQ, DG, qkv, qb, W, q0, T, c * DG, D)
                            stage(sm, sdO, DG, dout, ob, OW, q0, T, c * DG, D)
                        stage(sm, sK, DG, qkv, kb, W, k0, T, c * DG, D)
                        stage(sm, sV, DG, qkv, vb, W, k0, T, c * DG, D)
                        dot_tile(sm, s, sQ, sK, DG); dot_tile(sm, dp, sdO, sV, DG)
                    if nch > 1: stage(sm, sK, DG, qkv, kb, W, k0, T, col0, D)
                    for i in range(2):
                        for j in range(4):
                            with np.errstate(over='ignore'):
                                pv = np.exp2(s[i, j] * P['sl2'] - l2[i]).astype(f32)
                            pv = np.where(k0 + tx + 8 * j > q0 + ty + 16 * i, 0, pv)
                            sm[sdS + (ty + 16 * i) * LDP + tx + 8 * j] = pv * (dp[i, j] - dsr[i])
                    acc_tile(sm, dq, sdS, sK, DG)
                store_tile(d, b * T * W + h * D, W, q0, T, col0, D, dq, P['scale'], DG)
    return d
