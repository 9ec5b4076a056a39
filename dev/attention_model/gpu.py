# Lane-level model of the primitives used by attention_fa2.cuh: shared memory with the exact
# byte addressing (bf16 and f32 regions), ldmatrix (.trans), mma.m16n8k16, cp.async groups.
import numpy as np

def bf16(x):
    x = np.atleast_1d(np.asarray(x, dtype=np.float32))
    u = x.view(np.uint32).astype(np.uint64)
    u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000
    return u.astype(np.uint32).view(np.float32)

LANES = np.arange(32)
G, Q = LANES // 4, LANES % 4

class Smem:
    def __init__(self, nbytes):
        self.h = np.full(nbytes // 2, np.nan, np.float32)   # 2-byte units (bf16 data)
        self.w = np.full(nbytes // 4, np.nan, np.float32)   # 4-byte units (f32 data)
        self.pending = []  # list of groups; each group = list of (kind, addr, values)
        self.open = []
        self.immediate = False
    def apply(self, op):
        kind, addr, vals = op
        if kind == 16: self.h[addr // 2: addr // 2 + 8] = vals
        else: self.w[addr // 4] = vals
    def cp16(self, addr, vals):
        assert addr % 16 == 0
        op = (16, addr, bf16(vals))
        self.apply(op) if self.immediate else self.open.append(op)
    def cp4(self, addr, val):
        assert addr % 4 == 0
        op = (4, addr, np.float32(val))
        self.apply(op) if self.immediate else self.open.append(op)
    def commit(self):
        self.pending.append(self.open); self.open = []
    def wait(self, n):
        while len(self.pending) > n:
            for op in self.pending.pop(0): self.apply(op)

def at(base, cols, row, chunk):
    return base + row * cols * 2 + ((chunk ^ (row & 7)) << 4)

def ldsm(sm, addrs, trans=False):
    # addrs: int array [32]; returns regs [32, 4, 2]
    addrs = np.asarray(addrs)
    assert (addrs % 16 == 0).all()
    rows = np.stack([sm.h[a // 2: a // 2 + 8] for a in addrs])  # [32, 8]
    out = np.zeros((32, 4, 2), np.float32)
    for i in range(4):
        M = rows[8 * i: 8 * i + 8]
        if not trans:
            out[:, i, 0] = M[G, 2 * Q]; out[:, i, 1] = M[G, 2 * Q + 1]
        else:
            out[:, i, 0] = M[2 * Q, G]; out[:, i, 1] = M[2 * Q + 1, G]
    return out

def mma(c, a, b0, b1):
    # c [32,4] f32 accum (in place), a [32,4,2], b0/b1 [32,2]
    A = np.zeros((16, 16), np.float32); B = np.zeros((16, 8), np.float32)
    for i, (ro, co) in enumerate([(0, 0), (8, 0), (0, 8), (8, 8)]):
        A[G + ro, 2 * Q + co] = a[:, i, 0]; A[G + ro, 2 * Q + co + 1] = a[:, i, 1]
    B[2 * Q, G] = b0[:, 0]; B[2 * Q + 1, G] = b0[:, 1]
    B[2 * Q + 8, G] = b1[:, 0]; B[2 * Q + 9, G] = b1[:, 1]
    C = (A.astype(np.float64) @ B.astype(np.float64)).astype(np.float32)
    c[:, 0] += C[G, 2 * Q]; c[:, 1] += C[G, 2 * Q + 1]; c[:, 2] += C[G + 8, 2 * Q]; c[:, 3] += C[G + 8, 2 * Q + 1]

def pack(lo, hi):
    return np.stack([bf16(lo), bf16(hi)], axis=-1)

def c_to_a(c0, c1):
    return np.stack([pack(c0[:, 0], c0[:, 1]), pack(c0[:, 2], c0[:, 3]), pack(c1[:, 0], c1[:, 1]), pack(c1[:, 2], c1[:, 3])], axis=1)

def shfl_xor(v, m):
    return v[LANES ^ m]

row_a = LANES & 15; chunk_a = LANES >> 4
row_bn = (LANES & 7) + ((LANES >> 4) << 3); chunk_bn = (LANES >> 3) & 1

def load_tile(sm, base, cols, rows, g, ld, goff, row0, n_rows):
    # load_tile_async: g flat global array, element offset goff of row 0
    for r in range(rows):
        for c in range(cols // 8):
            valid = row0 + r < n_rows
            vals = g[goff + (row0 + r) * ld + c * 8: goff + (row0 + r) * ld + c * 8 + 8] if valid else np.zeros(8)
            sm.cp16(at(base, cols, r, c), vals)
