#!/usr/bin/env python3
"""Parquet fixtures written by pyarrow for the reader's tests.

Writes tests/fixtures/parquet/pyarrow/*.parquet and expected.json (the values pyarrow
wrote, read back with pyarrow), covering none/snappy/gzip/zstd, PLAIN and dictionary
encodings (plus the DELTA byte-array encodings where this pyarrow writes them), data
pages v1 and v2, several row groups and pages, nulls, an empty string, non-ASCII text, a
Starcoderdata-like schema and a file without the `content` column. Total < 100 kB.

Run (any machine with pyarrow, e.g. the GPU machine), from the repository root:
    python3 tools/make_parquet_fixtures.py
then commit tests/fixtures/parquet/pyarrow/.
"""
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "parquet", "pyarrow")


def text_values():
    """Nulls, an empty string, non-ASCII text, a value spanning pages, repeats."""
    v = ["First document.", "", None, "naïve café – 日本語のテキスト – emoji 🚀 – Ελληνικά"]
    long, i = "", 0
    while len(long) < 5000:
        long += f"line {i}: the quick brown fox jumps over the lazy dog\n"
        i += 1
    v.append(long)
    for i in range(45):
        v.append("repeated value" if i % 3 == 0 else None if i % 7 == 0 else f"document number {i}")
    v.append("last")
    return v


def write(name, table, **kw):
    path = os.path.join(OUT, name)
    pq.write_table(table, path, write_batch_size=4, data_page_size=512, **kw)
    return path


def main():
    os.makedirs(OUT, exist_ok=True)
    values = text_values()
    table = pa.table({"content": pa.array(values, pa.string())})
    files = {}

    def case(name, compression, dictionary, page_version, row_group_size, **kw):
        try:
            path = write(name, table, compression=compression, use_dictionary=dictionary,
                         data_page_version=page_version, row_group_size=row_group_size, **kw)
        except (pa.ArrowNotImplementedError, TypeError, ValueError) as e:  # an older pyarrow
            print(f"skipped {name}: {e}")
            if os.path.exists(os.path.join(OUT, name)):
                os.remove(os.path.join(OUT, name))
            return
        back = pq.read_table(path).column("content").to_pylist()
        assert back == values, name
        meta = pq.ParquetFile(path).metadata
        files[name] = {
            "column": "content", "values": back,
            "compression": "none" if compression == "none" else compression,
            "dictionary": dictionary, "data_page_version": int(float(page_version)),
            "row_groups": meta.num_row_groups,
            "encodings": sorted({e for g in range(meta.num_row_groups)
                                 for e in meta.row_group(g).column(0).encodings}),
        }

    case("none_plain_v1.parquet", "none", False, "1.0", 16)
    case("snappy_dict_v1.parquet", "snappy", True, "1.0", 16)
    case("gzip_plain_v2.parquet", "gzip", False, "2.0", 8)
    case("zstd_dict_v2.parquet", "zstd", True, "2.0", 1000)
    case("snappy_plain_v2.parquet", "snappy", False, "2.0", 10)
    case("zstd_plain_v1.parquet", "zstd", False, "1.0", 7)
    case("gzip_dict_v1.parquet", "gzip", True, "1.0", 20)
    case("none_dict_v2.parquet", "none", True, "2.0", 25)
    # A dictionary too small for the values: pages fall back to PLAIN within a chunk.
    case("snappy_dictfallback_v1.parquet", "snappy", True, "1.0", 1000, dictionary_pagesize_limit=64)
    case("zstd_deltalength_v2.parquet", "zstd", False, "2.0", 20,
         column_encoding={"content": "DELTA_LENGTH_BYTE_ARRAY"})
    case("snappy_delta_v1.parquet", "snappy", False, "1.0", 20,
         column_encoding={"content": "DELTA_BYTE_ARRAY"})

    # Starcoderdata's schema; the text is in `content`.
    n = 12
    sc = {
        "max_stars_repo_path": [f"src/m{i}.py" for i in range(n)],
        "max_stars_repo_name": [f"user/repo{i % 3}" for i in range(n)],
        "max_stars_count": pa.array([i * 10 for i in range(n)], pa.int64()),
        "id": [f"id-{i}" for i in range(n)],
        "content": [f"def f{i}(x):\n    return x * {i}  # ünïcode\n" for i in range(n)],
    }
    write("starcoder_like.parquet", pa.table(sc), compression="snappy", row_group_size=5)
    files["starcoder_like.parquet"] = {"column": "content", "values": sc["content"], "compression": "snappy",
                                       "dictionary": True, "data_page_version": 1, "row_groups": 3}
    files["starcoder_like.parquet#id"] = {"file": "starcoder_like.parquet", "column": "id", "values": sc["id"]}
    files["starcoder_like.parquet#stars"] = {"file": "starcoder_like.parquet", "column": "max_stars_count",
                                             "error": "not a BYTE_ARRAY"}
    # A file without the content column: reported, not skipped.
    write("no_content.parquet", pa.table({"text": ["a", "b"]}), compression="snappy")
    files["no_content.parquet"] = {"column": "content", "error": "no column 'content'"}

    expected = {"writer": f"pyarrow {pa.__version__}", "files": files}
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, x)) for x in os.listdir(OUT))
    print(f"wrote {len(files)} cases ({total} bytes) to {OUT} with pyarrow {pa.__version__}")


if __name__ == "__main__":
    main()
