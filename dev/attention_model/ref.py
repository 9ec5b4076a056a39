import numpy as np
def ref_forward(qkv, B, T, H, K, D):
    W = (H + 2 * K) * D; x = qkv.astype(np.float64).reshape(B, T, H + 2 * K, D)
    q, k, v = x[:, :, :H], x[:, :, H:H + K], x[:, :, H + K:]
    G = H // K
    out = np.zeros((B, T, H, D)); lse = np.zeros((B, H, T))
    mask = np.tril(np.ones((T, T), bool))
    for b in range(B):
        for h in range(H):
            s = q[b, :, h] @ k[b, :, h // G].T / np.sqrt(D)
            s = np.where(mask, s, -np.inf)
            m = s.max(1, keepdims=True); l = np.exp(s - m).sum(1, keepdims=True)
            p = np.exp(s - m) / l
            out[b, :, h] = p @ v[b, :, h // G]; lse[b, h] = (m + np.log(l))[:, 0]
    return out.reshape(-1), lse.reshape(-1)

def ref_backward(qkv, out, lse, dout, B, T, H, K, D):
    x = qkv.astype(np.float64).reshape(B, T, H + 2 * K, D)
    q, k, v = x[:, :, :H], x[:, :, H:H + K], x[:, :, H + K:]
    o = out.astype(np.float64).reshape(B, T, H, D); do = dout.astype(np.float64).reshape(B, T, H, D)
    L = lse.astype(np.float64).reshape(B, H, T)
    G = H // K; sc = 1 / np.sqrt(D)
    d = np.zeros((B, T, H + 2 * K, D))
    mask = np.tril(np.ones((T, T), bool))
    for b in range(B):
        for h in range(H):
            g = h // G
            p = np.where(mask, np.exp(q[b, :, h] @ k[b, :, g].T * sc - L[b, h][:, None]), 0)
            dv = p.T @ do[b, :, h]
            dp = do[b, :, h] @ v[b, :, g].T
            Di = (do[b, :, h] * o[b, :, h]).sum(1)
            ds = p * (dp - Di[:, None])
            d[b, :, h] += sc * ds @ k[b, :, g]
            d[b, :, H + g] += sc * ds.T @ q[b, :, h]
            d[b, :, H + K + g] += dv
    return d.reshape(-1)
