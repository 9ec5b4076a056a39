// Parquet fixtures from a second writer, arrow-rs (through the parquet-wasm npm package),
// for the reader's tests: tests/fixtures/parquet/arrow-rs/*.parquet + expected.json.
// The values and layout mirror tools/make_parquet_fixtures.py (pyarrow).
// Run:  d=$(mktemp -d) && (cd $d && npm install parquet-wasm@0.8.0 apache-arrow@21) &&
//       NODE_PATH=$d/node_modules node tools/make_parquet_fixtures_rs.cjs
const fs = require("fs");
const path = require("path");
const arrow = require("apache-arrow");
const pq = require("parquet-wasm");

const out = path.join(__dirname, "..", "tests", "fixtures", "parquet", "arrow-rs");
fs.mkdirSync(out, { recursive: true });

// The shared text values: nulls, an empty string, non-ASCII text, a long value spanning
// pages, and repeats (so that dictionaries have something to share).
function textValues() {
  const v = ["First document.", "", null, "naïve café – 日本語のテキスト – emoji 🚀 – Ελληνικά"];
  let long = "";
  for (let i = 0; long.length < 5000; ++i) long += `line ${i}: the quick brown fox jumps over the lazy dog\n`;
  v.push(long);
  for (let i = 0; i < 45; ++i) v.push(i % 3 == 0 ? "repeated value" : i % 7 == 0 ? null : `document number ${i}`);
  v.push("last");
  return v;
}

function write(name, columns, props, meta) {
  const vectors = {};
  for (const [col, vals] of Object.entries(columns))
    vectors[col] = typeof vals[0] === "bigint" ? arrow.vectorFromArray(vals, new arrow.Int64())
                                                : arrow.vectorFromArray(vals, new arrow.Utf8());
  const t = new arrow.Table(vectors);
  const wasm = pq.Table.fromIPCStream(arrow.tableToIPC(t, "stream"));
  fs.writeFileSync(path.join(out, name), pq.writeParquet(wasm, props.build()));
  return meta;
}

function props(codec, dict, v2, rowGroup) {
  let b = new pq.WriterPropertiesBuilder()
    .setCompression(codec)
    .setDictionaryEnabled(dict)
    .setWriterVersion(v2 ? pq.WriterVersion.V2 : pq.WriterVersion.V1)
    .setMaxRowGroupSize(rowGroup)
    .setWriteBatchSize(4)
    .setDataPageSizeLimit(512)
    .setStatisticsEnabled(pq.EnabledStatistics.Page);
  if (!dict) b = b.setEncoding(pq.Encoding.PLAIN);
  return b;
}

const C = pq.Compression;
const values = textValues();
const expected = { writer: "arrow-rs via parquet-wasm " + JSON.parse(fs.readFileSync(require.resolve("parquet-wasm").replace(/node\/parquet_wasm.js$/, "package.json"))).version, files: {} };
const cases = [
  ["none_plain_v1.parquet", C.UNCOMPRESSED, false, false, 16],
  ["snappy_dict_v1.parquet", C.SNAPPY, true, false, 16],
  ["gzip_plain_v2.parquet", C.GZIP, false, true, 8],
  ["zstd_dict_v2.parquet", C.ZSTD, true, true, 1000],
  ["snappy_plain_v2.parquet", C.SNAPPY, false, true, 10],
  ["zstd_plain_v1.parquet", C.ZSTD, false, false, 7],
];
const codecName = { [C.UNCOMPRESSED]: "none", [C.SNAPPY]: "snappy", [C.GZIP]: "gzip", [C.ZSTD]: "zstd" };
for (const [name, codec, dict, v2, rg] of cases) {
  write(name, { content: values }, props(codec, dict, v2, rg));
  expected.files[name] = {
    column: "content", values, compression: codecName[codec], dictionary: dict,
    data_page_version: v2 ? 2 : 1, row_groups: Math.ceil(values.length / rg),
  };
}
// Default arrow-rs v2 byte-array encoding when dictionaries are off: DELTA_BYTE_ARRAY.
{
  const b = new pq.WriterPropertiesBuilder().setCompression(C.SNAPPY).setDictionaryEnabled(false)
    .setWriterVersion(pq.WriterVersion.V2).setMaxRowGroupSize(20).setWriteBatchSize(4).setDataPageSizeLimit(512);
  write("snappy_delta_v2.parquet", { content: values }, b);
  expected.files["snappy_delta_v2.parquet"] = { column: "content", values, compression: "snappy",
    dictionary: false, data_page_version: 2, row_groups: Math.ceil(values.length / 20) };
}
// A dictionary too small for the values: pages fall back to PLAIN within a chunk.
write("snappy_dictfallback_v1.parquet", { content: values }, props(C.SNAPPY, true, false, 1000).setDictionaryPageSizeLimit(64));
expected.files["snappy_dictfallback_v1.parquet"] = { column: "content", values, compression: "snappy",
  dictionary: true, data_page_version: 1, row_groups: 1 };
// Starcoderdata's schema; the text is in `content`.
{
  const n = 12, content = [], paths = [], names = [], stars = [], ids = [];
  for (let i = 0; i < n; ++i) {
    content.push(`def f${i}(x):\n    return x * ${i}  # ünïcode\n`);
    paths.push(`src/m${i}.py`); names.push(`user/repo${i % 3}`); stars.push(BigInt(i * 10)); ids.push(`id-${i}`);
  }
  write("starcoder_like.parquet", { max_stars_repo_path: paths, max_stars_repo_name: names,
    max_stars_count: stars, id: ids, content }, props(C.SNAPPY, true, false, 5));
  expected.files["starcoder_like.parquet"] = { column: "content", values: content, compression: "snappy",
    dictionary: true, data_page_version: 1, row_groups: 3 };
  expected.files["starcoder_like.parquet#id"] = { file: "starcoder_like.parquet", column: "id", values: ids };
}
// A file without the content column: reported, not skipped.
write("no_content.parquet", { text: ["a", "b"] }, props(C.SNAPPY, true, false, 10));
expected.files["no_content.parquet"] = { column: "content", error: "no column 'content'" };
expected.files["starcoder_like.parquet#stars"] = { file: "starcoder_like.parquet", column: "max_stars_count",
  error: "not a BYTE_ARRAY" };

fs.writeFileSync(path.join(out, "expected.json"), JSON.stringify(expected, null, 1) + "\n");
console.log("wrote", Object.keys(expected.files).length, "cases to", out);
