#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<name>/: small valid
files (from tests/fixtures, or built here byte by byte) and hostile variants of them
(truncations, huge sizes, wrong counts, '../' names, NaN). Run from anywhere; overwrites
the seeds it writes and leaves other files alone (the tokenizer models, seeds that a
target dumps, regression inputs). Needs python3 and the zstd command."""
import json
import os
import struct
import subprocess
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
CORPUS = os.path.join(HERE, "corpus")
FIX = os.path.join(ROOT, "tests", "fixtures")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def zstd(data):
    return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, stdout=subprocess.PIPE, check=True).stdout


def truncations(target, name, data, cuts=(0.5, 0.9)):
    for c in cuts:
        put(target, f"{name}.trunc{int(c * 100)}", data[: int(len(data) * c)])


# ---- tlck ----
def tlck(sections, meta=None, version=2, header_override=None, crc_override=None):
    """sections: list of (name, float list)."""
    meta = meta if meta is not None else {"step": 3, "model": {"preset": "tiny"}}
    prelude = 24
    # A generous reserved header, as save_checkpoint does (offsets fit in it).
    body = []
    entries = []
    reserved = 400 + 120 * len(sections)
    at = (prelude + reserved + 63) // 64 * 64
    for name, vals in sections:
        raw = struct.pack(f"<{len(vals)}f", *vals)
        entries.append({"name": name, "dtype": "f32", "numel": len(vals), "offset": at,
                        "bytes": len(raw), "crc32": zlib.crc32(raw)})
        body.append((at, raw))
        at = (at + len(raw) + 63) // 64 * 64
    header = header_override if header_override is not None else json.dumps(
        {"meta": meta, "sections": entries}, separators=(",", ":")).encode()
    header = header.ljust(reserved, b" ") if len(header) < reserved else header
    out = bytearray(b"TLCKPT\0\0" + struct.pack("<IIQ", version,
                    crc_override if crc_override is not None else (zlib.crc32(header) if version >= 2 else 0),
                    len(header)) + header)
    for off, raw in body:
        out += b"\0" * (off - len(out)) + raw
    return bytes(out)


vals = [0.5, -1.0, 2.0, 0.0, 1e-3, 3.0, -2.5, 7.0]
good = tlck([("params", vals), ("adam_m", vals), ("adam_v", vals)])
put("tlck", "valid_v2", good)
put("tlck", "valid_v1", tlck([("params", vals)], version=1))
put("tlck", "model_only", tlck([("params", vals)]))
truncations("tlck", "valid_v2", good)
put("tlck", "bad_crc", tlck([("params", vals)], crc_override=1))
put("tlck", "version9", tlck([("params", vals)], version=9))
put("tlck", "huge_numel_v1", tlck([], version=1, header_override=json.dumps(
    {"meta": {}, "sections": [{"name": "params", "dtype": "f32", "numel": 2 ** 59, "offset": 448,
                               "bytes": 2 ** 61, "crc32": 0}]}).encode()))
put("tlck", "overlap_v1", tlck([], version=1, header_override=json.dumps(
    {"meta": {}, "sections": [{"name": "params", "dtype": "f32", "numel": 4, "offset": 448, "bytes": 16, "crc32": 0},
                              {"name": "adam_m", "dtype": "f32", "numel": 4, "offset": 448, "bytes": 16, "crc32": 0}]}).encode()))
put("tlck", "nan_values", tlck([("params", [float("nan"), float("inf"), -0.0, 1.0])]))
put("tlck", "huge_header_len", b"TLCKPT\0\0" + struct.pack("<IIQ", 2, 0, 2 ** 63) + b"{}")

# ---- safetensors ----
def st(tensors, metadata=None, header_override=None, pad=True):
    """tensors: list of (name, dtype, shape, bytes)."""
    h, data = {}, b""
    for name, dt, shape, raw in tensors:
        h[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        h["__metadata__"] = metadata
    text = header_override if header_override is not None else json.dumps(h).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


f32 = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
bf16 = b"".join(struct.pack("<f", v)[2:] for v in (1.0, -2.0, 0.5, 3.0))
f16 = struct.pack("<4e", 1.0, -2.0, 0.5, 65504.0)
f64 = struct.pack("<2d", 1.5, -1e300)
valid_st = st([("a.weight", "F32", [2, 3], f32), ("b", "BF16", [4], bf16), ("c", "F16", [2, 2], f16),
               ("d", "F64", [2], f64), ("scalar", "F32", [], struct.pack("<f", 9))], {"format": "pt"})
put("safetensors", "valid", valid_st)
truncations("safetensors", "valid", valid_st)
put("safetensors", "hf_golden_head", read(os.path.join(FIX, "hf_golden", "model.safetensors"))[:4096])
put("safetensors", "huge_header_len", struct.pack("<Q", 2 ** 63) + b"{}")
put("safetensors", "offsets_past_end", st([], header_override=json.dumps(
    {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 2 ** 62]}}).encode()))
put("safetensors", "shape_overflow", st([], header_override=json.dumps(
    {"w": {"dtype": "F32", "shape": [2 ** 40, 2 ** 40], "data_offsets": [0, 16]}}).encode()) + b"\0" * 16)
put("safetensors", "negative_dim", st([], header_override=json.dumps(
    {"w": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}}).encode()) + b"\0" * 16)
put("safetensors", "overlap", st([], header_override=json.dumps(
    {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
     "v": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}).encode()) + b"\0" * 24)
put("safetensors", "nan", st([("w", "F32", [3], struct.pack("<3f", float("nan"), float("inf"), 1))]))
put("safetensors", "bad_dtype", st([("w", "F8_E4M3", [4], b"\0" * 4)]))

# ---- hf_config ----
cfg = json.loads(read(os.path.join(FIX, "hf_golden", "config.json")))
put("hf_config", "golden", json.dumps(cfg, indent=1))
for k, v in [("vocab_size", 0), ("num_attention_heads", 3), ("hidden_size", -64), ("num_key_value_heads", 0),
             ("rms_norm_eps", "nan"), ("vocab_size", 2 ** 40), ("max_position_embeddings", 2 ** 31),
             ("head_dim", 7), ("rope_theta", 1e309), ("tie_word_embeddings", "yes")]:
    c = dict(cfg)
    c[k] = v
    put("hf_config", f"bad_{k}_{str(v)[:8]}", json.dumps(c).replace('"nan"', "NaN").replace("1e+309", "1e309"))
c = dict(cfg)
del c["rope_parameters"]
c["rope_theta"] = 500000.0
c["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0}
put("hf_config", "rope_scaling", json.dumps(c))
put("hf_config", "not_object", "[1, 2, 3]")
put("hf_config", "deep", "[" * 2000 + "]" * 2000)

# ---- train_config ----
for f in sorted(os.listdir(os.path.join(ROOT, "configs"))):
    if f.endswith(".json"):
        put("train_config", f, read(os.path.join(ROOT, "configs", f)))
demo = json.loads(read(os.path.join(ROOT, "configs", "demo.json")))
for path, v in [(("batch", "micro_batch"), 0), (("batch", "grad_accum"), 2 ** 31 - 1),
                (("data", "seq_len"), -1), (("optim", "lr"), float("nan")), (("train", "steps"), 2 ** 63 - 1),
                (("model", "preset"), "nope"), (("data", "sources"), []), (("checkpoint", "keep"), -3),
                (("data", "seq_len"), 2 ** 31 - 1)]:
    c = json.loads(json.dumps(demo))
    c[path[0]][path[1]] = v
    put("train_config", f"bad_{path[0]}_{path[1]}", json.dumps(c, allow_nan=True))
c = json.loads(json.dumps(demo))
c["model"] = {"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 3, "vocab_size": 100, "ffn_dim": 128, "max_seq_len": 64}
put("train_config", "explicit_model_bad_gqa", json.dumps(c))
put("train_config", "empty_object", "{}")
put("train_config", "unknown_key", '{"model": {"preset": "tiny"}, "nope": 1}')

# ---- packed (LITPKDS) ----
def packed(code, chunk, tokens, fmt, version=1):
    return b"LITPKDS" + struct.pack("<QBQ", version, code, chunk) + struct.pack(f"<{len(tokens)}{fmt}", *tokens)


toks = [1, 5, 9, 300, 2, 7, 11, 13, 17, 19, 23, 29]
put("packed", "u16", packed(8, len(toks), toks, "H"))
put("packed", "i32", packed(4, len(toks), toks, "i"))
put("packed", "u8", packed(1, 8, toks[:8] if max(toks[:8]) < 256 else [1] * 8, "B"))
put("packed", "i64", packed(5, 4, toks[:4], "q"))
put("packed", "f32_dtype", packed(6, 4, [1.0, 2.0, 3.0, 4.0], "f"))
put("packed", "chunk_bigger_than_file", packed(8, 2 ** 40, toks, "H"))
put("packed", "chunk_overflow", packed(4, 2 ** 62, toks, "i"))
put("packed", "bad_dtype", packed(42, 4, toks[:4], "i"))
put("packed", "bad_version", packed(8, 4, toks[:4], "H", version=2))
put("packed", "negative_tokens", packed(4, 4, [-1, -2, 2 ** 31 - 1, 0], "i"))
put("packed", "header_only", packed(8, 0, [], "H"))
put("packed", "short", b"LITPKDS\x01")

# ---- parquet (file) and its Thrift metadata / codecs ----
for lib in ("pyarrow", "arrow-rs"):
    d = os.path.join(FIX, "parquet", lib)
    for f in sorted(os.listdir(d)):
        if not f.endswith(".parquet"):
            continue
        data = read(os.path.join(d, f))
        if len(data) > 5000:
            continue
        name = f"{lib}_{f[:-8]}"
        put("parquet", name, data)
        n = struct.unpack("<I", data[-8:-4])[0]
        put("parquet_thrift", name + ".footer", data[-8 - n:-8])
        put("parquet_thrift", name + ".page", data[4:64])
        if f in ("snappy_dict_v1.parquet", "zstd_plain_v1.parquet"):
            put("parquet", name + ".trunc_footer", data[:-8 - n // 2] + data[-8:])
            put("parquet", name + ".trunc_body", data[: len(data) // 2] + data[-8 - n:])
# the evaluator's row reader: nested shapes (lists, structs, ints, booleans)
for d in (os.path.join(FIX, "parquet", "nested"), os.path.join(FIX, "eval", "arc_challenge")):
    for f in sorted(os.listdir(d)):
        if f.endswith(".parquet") and len(read(os.path.join(d, f))) <= 8000:
            put("parquet_rows", f[:-8], read(os.path.join(d, f)))
put("parquet", "magic_only", b"PAR1PAR1")
put("parquet", "footer_len_huge", b"PAR1" + b"\0" * 16 + struct.pack("<I", 2 ** 31) + b"PAR1")

payload = b"hello hello hello parquet page " * 8
put("codec", "none", bytes([0]) + struct.pack("<I", len(payload)) + payload)
lit = payload[:40]
# snappy: varint length, a literal of 40 bytes (tag (len-1)<<2), then a copy (tag 2, 2 offset bytes)
snap = bytes([len(lit) + 60, (len(lit) - 1) << 2]) + lit + bytes([((60 - 1) << 2) | 2]) + struct.pack("<H", 40)
put("codec", "snappy", bytes([1]) + struct.pack("<I", 100) + snap)
put("codec", "snappy_huge_length", bytes([1]) + struct.pack("<I", 0x7fffffff) + b"\xff\xff\xff\xff\x07" + b"\0" * 4)
put("codec", "gzip", bytes([2]) + struct.pack("<I", len(payload)) + zlib.compress(payload))
put("codec", "gzip_huge", bytes([2]) + struct.pack("<I", 0x7fffffff) + zlib.compress(b"\0" * 100000))
put("codec", "zstd", bytes([3]) + struct.pack("<I", len(payload)) + zstd(payload))
put("codec", "zstd_huge", bytes([3]) + struct.pack("<I", 0x7fffffff) + zstd(b"\0" * 100000))

# ---- documents (jsonl / text, plain or zst): byte 0 picks the kind ----
jsonl = "\n".join([
    json.dumps({"text": "First document.", "meta": {"redpajama_set_name": "RedPajamaC4"}}),
    json.dumps({"text": "Excluded.", "meta": {"redpajama_set_name": "RedPajamaGithub"}}),
    "", "   ", "{not json", json.dumps({"content": "no text"}), json.dumps({"text": 5}),
    json.dumps({"text": "nul\u0000inside"}), json.dumps({"text": "caf\u00e9 \ud83d\ude00"}), "[1,2]",
    json.dumps({"text": "last, no newline"})]).encode()
put("documents", "jsonl", b"\0" + jsonl + b"\r\n")
put("documents", "jsonl_zst", b"\1" + zstd(jsonl))
put("documents", "jsonl_zst_trunc", b"\1" + zstd(jsonl * 20)[:60])
put("documents", "jsonl_zst_two_frames", b"\1" + zstd(jsonl) + zstd(b"\n{\"text\": \"second frame\"}\n"))
put("documents", "text_sep", b"\2doc one\nline two\n---\ndoc two\r\n---\r\n\n---\n")
put("documents", "text_zst", b"\3" + zstd(b"a whole text document\nwith two lines\n"))
put("documents", "zst_garbage", b"\1" + b"\x28\xb5\x2f\xfd" + b"\xff" * 20)
put("documents", "deep_json", b"\0" + b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}\n")
put("documents", "invalid_utf8", b"\0" + b'{"text": "\xff\xfe\xc3"}\n')

# ---- tokenizer: the committed models (tiny_bpe.model, tiny_uni.model) and cuts of them ----
for m in ("tiny_bpe.model", "tiny_uni.model"):
    p = os.path.join(CORPUS, "tokenizer", m)
    if os.path.exists(p):
        truncations("tokenizer", m, read(p), cuts=(0.3, 0.7))
put("tokenizer", "garbage", b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 20)

# ---- manifest ----
shard = {"file": "train/src_00000.bin", "tokens": 100}
entry = {"dtype": "u16", "max_token_id": 294, "train": {"shards": [shard]}, "val": {"shards": []}}
put("manifest", "loader_valid", json.dumps({"format": "tinyllama-prepare", "version": 1, "sources": {"src": entry}}))
for name, e in [("tokens_huge", {"train": {"shards": [dict(shard, tokens=2 ** 62)]}, "val": {"shards": []}}),
                ("tokens_negative", {"train": {"shards": [dict(shard, tokens=-5)]}, "val": {"shards": []}}),
                ("tokens_float", {"train": {"shards": [dict(shard, tokens=1.5)]}, "val": {"shards": []}}),
                ("max_id_huge", dict(entry, max_token_id=2 ** 63 - 1)),
                ("dtype_wrong", dict(entry, dtype="i64")),
                ("traversal", {"train": {"shards": [{"file": "../../etc/passwd", "tokens": 10}]}, "val": {"shards": []}}),
                ("inputs_odd", dict(entry, inputs=[{"path": 5, "bytes": -1, "quick_sha256": 7}], tokenizer=3))]:
    put("manifest", name, json.dumps({"format": "tinyllama-prepare", "version": 1, "sources": {"src": e, "prep": e}}))
put("manifest", "sources_list", '{"format": "tinyllama-prepare", "version": 1, "sources": []}')
put("manifest", "not_object", "42")

# ---- sharded checkpoint meta.json (the valid seed comes from the target: run.sh --seeds) ----
base = {"format": "tinyllama-sharded", "version": 1, "world": 1, "shard_world": 1, "strategy": "full",
        "shards": [{"file": "shard_00000_of_00001.tlck", "bytes": 1, "crc32": 0}], "meta": {"step": 1}}
for name, change in [("traversal", {"shards": [{"file": "../../../../etc/passwd", "bytes": 0, "crc32": 0}]}),
                     ("absolute", {"shards": [{"file": "/etc/hostname", "bytes": 0, "crc32": 0}]}),
                     ("world_huge", {"shard_world": 2 ** 40}),
                     ("world_negative", {"shard_world": -1}),
                     ("count_mismatch", {"shard_world": 2}),
                     ("shards_object", {"shards": {"file": "x"}}),
                     ("file_number", {"shards": [{"file": 7, "bytes": 0, "crc32": 0}]})]:
    m = dict(base)
    m.update(change)
    put("sharded_meta", name, json.dumps(m))
put("sharded_meta", "empty", "")

# ---- a reference loss file for `report --reference`: CSV or jsonl (Python's NaN included) ----
put("reference", "csv", "step,tokens,loss,val_loss\n1,64,4.2,\n8,512,3.4,3.35\n")
put("reference", "jsonl", '{"event": "start", "args": {"steps": 8}}\n{"step": 1, "loss": 4.2, "tokens": 64}\n'
    '{"step": 2, "loss": NaN, "tokens": 128}\n{"step": 8, "val_loss": 3.3, "tokens": 512}\n')
put("reference", "tokens_tsv", "tokens\tloss\n64\t4.1\n1e300\t3\n")
