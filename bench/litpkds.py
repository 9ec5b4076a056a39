#!/usr/bin/env python3
"""Our training loader's token stream over LITPKDS shards, written again in Python, so that a
PyTorch reference trainer (bench/pytorch_trainer.py) reads exactly the micro-batches that
`tinyllama train` reads, in the same order (issue #15's curve comparison).

It follows src/data/loader.cpp and src/data/block_order.cpp (rank 0 of world 1):
- each source's shards (folders expand to their *.bin files, sorted) are cut into blocks of
  seq_len + 1 tokens within a shard (a shard's tail shorter than a block is unused);
- global sample i takes its source from a uniform hash of (seed, i) through the normalized
  cumulative weights; the m-th sample of a source gets position m of that source's stream;
- a stream runs epoch after epoch: the shards in a seeded permutation, grouped into windows of
  shuffle_window shards whose blocks are permuted together.
Random numbers are SplitMix64 hashes and xoshiro256** (src/core/rng.h), so the order is bit for
bit the C++ one; tests/test_data_loader_python.cpp checks it against the C++ loader.

Validation blocks (SequentialBlocks): the shards in file-name order, blocks in position order.

Command line (for the test and for inspection):
    python3 bench/litpkds.py train --source NAME=WEIGHT:PATH[,PATH] ... --seq-len T \
        --micro-batch B --seed S [--window W] --batches N        # JSON rows of tokens
    python3 bench/litpkds.py val --path P ... --seq-len T --blocks N
Works without numpy (slowly); with numpy the shards are memory-mapped.
"""
import argparse
import bisect
import glob
import json
import os
import struct
import sys

M64 = (1 << 64) - 1
SOURCE_TAG = 0x534F55524345
SHARD_TAG = 0x534841524453
WINDOW_TAG = 0x57494E444F57
DTYPES = {1: ("B", "u1"), 2: ("b", "i1"), 3: ("h", "<i2"), 4: ("i", "<i4"), 5: ("q", "<i8"),
          8: ("H", "<u2")}  # header code -> (array typecode, numpy dtype); floats are refused


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def hash_mix(seed, a, b=0, c=0):
    return splitmix64(splitmix64(splitmix64(seed ^ splitmix64(a)) ^ b) ^ c)


def _rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class Rng:
    """xoshiro256**, seeded by four SplitMix64 steps (core/rng.h)."""

    def __init__(self, seed):
        self.s, x = [], seed
        for _ in range(4):
            x = splitmix64(x)
            self.s.append(x)

    def next_u64(self):
        s = self.s
        result = (_rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def below(self, n):
        return self.next_u64() % n if n else 0


def shuffle(v, seed):  # Fisher-Yates, as block_order.cpp
    rng = Rng(seed)
    for i in range(len(v), 1, -1):
        j = rng.below(i)
        v[i - 1], v[j] = v[j], v[i - 1]


class BlockOrder:
    def __init__(self, shard_blocks, window, seed):
        self.blocks, self.window, self.seed = list(shard_blocks), max(1, window), seed
        self.per_epoch = sum(self.blocks)
        assert self.per_epoch > 0
        self.epoch = self.cur_window = None

    def _enter_epoch(self, epoch):
        self.order = list(range(len(self.blocks)))
        shuffle(self.order, hash_mix(self.seed, SHARD_TAG, epoch))
        self.window_start = [0]
        for i in range(0, len(self.order), self.window):
            n = sum(self.blocks[j] for j in self.order[i:i + self.window])
            self.window_start.append(self.window_start[-1] + n)
        self.epoch, self.cur_window = epoch, None

    def _enter_window(self, w):
        self.shard_start = [0]
        for j in self.order[w * self.window:(w + 1) * self.window]:
            self.shard_start.append(self.shard_start[-1] + self.blocks[j])
        self.perm = list(range(self.shard_start[-1]))
        shuffle(self.perm, hash_mix(self.seed, WINDOW_TAG, self.epoch, w))
        self.cur_window = w

    def at(self, p):
        """Position p of the endless stream -> (shard index, block within the shard)."""
        epoch, q = divmod(p, self.per_epoch)
        if epoch != self.epoch:
            self._enter_epoch(epoch)
        w = bisect.bisect_right(self.window_start, q) - 1
        if w != self.cur_window:
            self._enter_window(w)
        local = self.perm[q - self.window_start[w]]
        k = bisect.bisect_right(self.shard_start, local) - 1
        return self.order[w * self.window + k], local - self.shard_start[k]


class Shard:
    """One LITPKDS file: 'LITPKDS', u64 version 1, u8 dtype code, u64 chunk_size, tokens."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            head = f.read(24)
        if len(head) < 24 or head[:7] != b"LITPKDS":
            raise ValueError(f"{path}: not a LITPKDS shard (bad magic)")
        version, code, self.num_tokens = struct.unpack("<QBQ", head[7:24])
        if version != 1 or code not in DTYPES:
            raise ValueError(f"{path}: version {version}, dtype code {code} not supported")
        self.typecode, self.np_dtype = DTYPES[code]
        self.itemsize = struct.calcsize(self.typecode)
        if os.path.getsize(path) != 24 + self.num_tokens * self.itemsize:
            raise ValueError(f"{path}: size does not match chunk_size {self.num_tokens}")
        self._np = None

    def read(self, begin, n):
        try:
            import numpy as np
            if self._np is None:
                self._np = np.memmap(self.path, dtype=self.np_dtype, mode="r", offset=24,
                                     shape=(self.num_tokens,))
            return self._np[begin:begin + n].astype(np.int64)
        except ImportError:
            import array
            a = array.array(self.typecode)
            with open(self.path, "rb") as f:
                f.seek(24 + begin * self.itemsize)
                a.frombytes(f.read(n * self.itemsize))
            if sys.byteorder != "little":
                a.byteswap()
            return list(a)


def expand_paths(paths):
    """Folders -> their *.bin files, sorted (not recursive); files as given."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            files = sorted(glob.glob(os.path.join(p, "*.bin")))
            if not files:
                raise ValueError(f"{p}: no *.bin shards in the folder")
            out += files
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise ValueError(f"{p}: no such file or folder")
    return out


class _Source:
    def __init__(self, paths, block_tokens, window, seed):
        self.shards = [Shard(p) for p in expand_paths(paths)]
        self.block_tokens = block_tokens
        counts = [s.num_tokens // block_tokens for s in self.shards]
        if sum(counts) == 0:
            raise ValueError(f"{paths}: no complete block of {block_tokens} tokens")
        self.order = BlockOrder(counts, window, seed)

    def block(self, position):
        s, b = self.order.at(position)
        return self.shards[s].read(b * self.block_tokens, self.block_tokens)


class TrainStream:
    """Micro-batches in `tinyllama train`'s order (rank 0, world 1): next() returns
    micro_batch rows of seq_len + 1 tokens (inputs are row[:-1], targets row[1:])."""

    def __init__(self, sources, seq_len, micro_batch, seed, shuffle_window=8):
        # sources: [(name, [paths], weight)], in the config's order
        self.seq_len, self.micro_batch, self.seed = seq_len, micro_batch, seed
        self.sources = [_Source(paths, seq_len + 1, shuffle_window, hash_mix(seed, i))
                        for i, (_, paths, _) in enumerate(sources)]
        total, self.cumulative = 0.0, []
        for _, _, w in sources:
            total += w
            self.cumulative.append(total)
        self.cumulative = [c / total for c in self.cumulative]
        self.cumulative[-1] = 1.0
        self.samples = 0
        self.consumed = [0] * len(sources)

    def _choose(self, i):
        u = (hash_mix(self.seed, SOURCE_TAG, i) >> 11) * 2.0 ** -53
        return min(bisect.bisect_right(self.cumulative, u), len(self.sources) - 1)

    def next(self):
        rows = []
        for j in range(self.micro_batch):
            s = self._choose(self.samples + j)
            rows.append(self.sources[s].block(self.consumed[s]))
            self.consumed[s] += 1
        self.samples += self.micro_batch
        return rows


class SequentialBlocks:
    """Validation blocks: shards in file-name order, blocks of seq_len + 1 in position order."""

    def __init__(self, paths, seq_len):
        self.shards = [Shard(p) for p in expand_paths(paths)]
        self.bt = seq_len + 1
        self.index = [(s, b) for s, sh in enumerate(self.shards) for b in range(sh.num_tokens // self.bt)]
        if not self.index:
            raise ValueError(f"{paths}: no complete block of {self.bt} tokens")

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        s, b = self.index[i]
        return self.shards[s].read(b * self.bt, self.bt)


def _parse_source(text):
    name, rest = text.split("=", 1)
    weight, paths = rest.split(":", 1)
    return name, paths.split(","), float(weight)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--source", action="append", required=True, help="NAME=WEIGHT:PATH[,PATH]")
    t.add_argument("--seq-len", type=int, required=True)
    t.add_argument("--micro-batch", type=int, required=True)
    t.add_argument("--seed", type=int, required=True)
    t.add_argument("--window", type=int, default=8)
    t.add_argument("--batches", type=int, required=True)
    v = sub.add_parser("val")
    v.add_argument("--path", action="append", required=True)
    v.add_argument("--seq-len", type=int, required=True)
    v.add_argument("--blocks", type=int, required=True)
    a = ap.parse_args()
    try:
        if a.cmd == "train":
            stream = TrainStream([_parse_source(s) for s in a.source], a.seq_len, a.micro_batch,
                                 a.seed, a.window)
            rows = [[int(x) for x in r] for _ in range(a.batches) for r in stream.next()]
        else:
            blocks = SequentialBlocks(a.path, a.seq_len)
            rows = [[int(x) for x in blocks[i]] for i in range(min(a.blocks, len(blocks)))]
    except ValueError as e:
        print(f"litpkds: {e}", file=sys.stderr)
        return 1
    json.dump(rows, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
