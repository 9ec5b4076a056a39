// Parquet fixtures with nested columns from a real writer, arrow-rs (through the
// parquet-wasm npm package), for the evaluator's dataset reader:
//   tests/fixtures/eval/arc_challenge/test-00000-of-00001.parquet  ARC's hub schema
//       (choices: struct {text: list<string>, label: list<string>}), and its rows as JSON in
//       tests/fixtures/eval/arc_challenge_rows.json (for make_eval_golden.py without pyarrow)
//   tests/fixtures/parquet/nested/*.parquet + expected.json  scalars, nulls, empty lists,
//       lists of strings, structs of lists, ints and booleans under several writer settings
// Run:  d=$(mktemp -d) && (cd $d && npm install parquet-wasm@0.8.0 apache-arrow@21) &&
//       NODE_PATH=$d/node_modules node tools/make_eval_parquet_fixtures.cjs
const fs = require("fs");
const path = require("path");
const arrow = require("apache-arrow");
const pq = require("parquet-wasm");

const root = path.join(__dirname, "..", "tests", "fixtures");
const strList = () => new arrow.List(new arrow.Field("item", new arrow.Utf8(), true));
const choicesType = () => new arrow.Struct([new arrow.Field("text", strList(), true),
                                            new arrow.Field("label", strList(), true)]);

function writeTable(file, columns, props) {
  const vectors = {};
  for (const [name, [type, values]] of Object.entries(columns))
    vectors[name] = arrow.vectorFromArray(values, type);
  const t = new arrow.Table(vectors);
  const wasm = pq.Table.fromIPCStream(arrow.tableToIPC(t, "stream"));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, pq.writeParquet(wasm, props.build()));
}

function props(codec, dict, v2, rowGroup, pageLimit) {
  let b = new pq.WriterPropertiesBuilder().setCompression(codec).setDictionaryEnabled(dict)
    .setWriterVersion(v2 ? pq.WriterVersion.V2 : pq.WriterVersion.V1)
    .setMaxRowGroupSize(rowGroup).setWriteBatchSize(2).setDataPageSizeLimit(pageLimit);
  if (!dict) b = b.setEncoding(pq.Encoding.PLAIN);
  return b;
}
const C = pq.Compression;

// ---- ARC-Challenge, test split, made-up questions ----
{
  const rows = [
    { id: "Made_2024_1", question: "An astronomer sees a planet spin faster after an impact. What most likely changed?",
      choices: { text: ["its mass", "its rotation period", "its orbit around the sun", "its moons"], label: ["A", "B", "C", "D"] }, answerKey: "B" },
    { id: "Made_2024_2", question: "Which unit measures force?",
      choices: { text: ["newton", "joule", "watt"], label: ["1", "2", "3"] }, answerKey: "1" },
    { id: "Made_2024_3", question: "Which of these would best keep a drink cold? ",
      choices: { text: ["a metal cup", "a foam cup", "a paper cup", "a glass cup", "an open bowl"], label: ["A", "B", "C", "D", "E"] }, answerKey: "B" },
  ];
  const file = path.join(root, "eval", "arc_challenge", "test-00000-of-00001.parquet");
  writeTable(file, {
    id: [new arrow.Utf8(), rows.map(r => r.id)],
    question: [new arrow.Utf8(), rows.map(r => r.question)],
    choices: [choicesType(), rows.map(r => r.choices)],
    answerKey: [new arrow.Utf8(), rows.map(r => r.answerKey)],
  }, props(C.SNAPPY, true, false, 1000, 1024));
  fs.writeFileSync(path.join(root, "eval", "arc_challenge_rows.json"), JSON.stringify(rows, null, 1) + "\n");
}

// ---- nested shapes for the reader's tests ----
{
  const n = 23, rows = [];
  for (let i = 0; i < n; ++i) {
    const r = {};
    r.s = i % 5 == 3 ? null : `row ${i} ${"é".repeat(i % 3)}`;
    r.i64 = i % 7 == 4 ? null : BigInt(i * 1000003 - 5000);
    r.i32 = i % 2 ? -i : i * 3;
    r.b = i % 3 == 0;
    r.lst = i % 6 == 1 ? null : i % 6 == 2 ? [] : Array.from({ length: 1 + (i % 4) }, (_, k) => (k == 1 && i % 5 == 0) ? null : `item ${i}.${k}`);
    r.st = i % 8 == 5 ? null : { text: Array.from({ length: 2 + (i % 3) }, (_, k) => `t${i}${k}`),
                                 label: i % 4 == 3 ? [] : Array.from({ length: 2 + (i % 3) }, (_, k) => "ABCDE"[k]) };
    rows.push(r);
  }
  const columns = () => ({
    s: [new arrow.Utf8(), rows.map(r => r.s)],
    i64: [new arrow.Int64(), rows.map(r => r.i64)],
    i32: [new arrow.Int32(), rows.map(r => r.i32)],
    b: [new arrow.Bool(), rows.map(r => r.b)],
    lst: [strList(), rows.map(r => r.lst)],
    st: [choicesType(), rows.map(r => r.st)],
  });
  const cases = [
    ["plain_v1.parquet", C.UNCOMPRESSED, false, false, 1000, 1 << 20],
    ["dict_v1_small_pages.parquet", C.SNAPPY, true, false, 1000, 64],
    ["dict_v2.parquet", C.ZSTD, true, true, 7, 1 << 20],
    ["plain_v2_small_groups.parquet", C.GZIP, false, true, 5, 128],
  ];
  const expected = { writer: "arrow-rs via parquet-wasm", rows: rows.map(r => ({ ...r, i64: r.i64 === null ? null : Number(r.i64) })), files: cases.map(c => c[0]) };
  for (const [name, codec, dict, v2, rg, page] of cases)
    writeTable(path.join(root, "parquet", "nested", name), columns(), props(codec, dict, v2, rg, page));
  fs.writeFileSync(path.join(root, "parquet", "nested", "expected.json"), JSON.stringify(expected, null, 1) + "\n");
}
console.log("wrote the eval and nested parquet fixtures under", root);
