// prepare: text and JSON-lines corpora → shards + manifest, checked against the tokenizer.
#include <gtest/gtest.h>
#include <zstd.h>

#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/hash.h"
#include "data/documents.h"
#include "data/packed.h"
#include "data/prepare.h"
#include "data/tokenizer.h"
#include "data_test_util.h"

using namespace tl;

namespace {

PrepareOptions dt_options(const std::string& out, std::vector<std::string> inputs) {
  PrepareOptions o;
  o.tokenizer = dt::llama_model();
  o.source = "src";
  o.out_dir = out;
  o.inputs = std::move(inputs);
  o.threads = 2;
  o.progress = false;
  return o;
}

// Expected stream: each document's ids + EOS, in order.
std::vector<int32_t> dt_expected(const std::vector<std::string>& docs) {
  Tokenizer tok = Tokenizer::load(dt::llama_model());
  std::vector<int32_t> out;
  for (const auto& d : docs) {
    for (int id : tok.encode(d)) out.push_back(id);
    out.push_back(2);
  }
  return out;
}

// Concatenated tokens of one split's shards, as listed in the manifest entry.
std::vector<int32_t> dt_split_tokens(const std::string& dir, const json& split) {
  std::vector<int32_t> out;
  for (const auto& s : split["shards"]) {
    PackedShard shard(dir + "/" + s["file"].get<std::string>());
    EXPECT_EQ(shard.num_tokens(), s["tokens"].get<uint64_t>());
    size_t at = out.size();
    out.resize(at + shard.num_tokens());
    shard.read(0, shard.num_tokens(), out.data() + at);
  }
  return out;
}

// The documents of a token stream (split at EOS), decoded.
std::vector<std::string> dt_documents(const std::vector<int32_t>& tokens) {
  Tokenizer tok = Tokenizer::load(dt::llama_model());
  std::vector<std::string> docs;
  std::vector<int> cur;
  for (int32_t t : tokens) {
    if (t == 2) {
      docs.push_back(tok.decode(cur));
      cur.clear();
    } else {
      cur.push_back(t);
    }
  }
  EXPECT_TRUE(cur.empty()) << "stream does not end with EOS";
  return docs;
}

}  // namespace

TEST(DataPrepare, TextWithSeparatorAndJsonlWithBadLines) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  dt::write_text(
      tmp / "in/quotes.txt",
      "First quote,\nover two lines.\n%\nSecond quote.\n%\n%\nThird, no closing separator");
  dt::write_text(tmp / "in/records.jsonl",
                 "{\"text\": \"JSON document one.\", \"meta\": {\"a\": 1}}\n"
                 "{\"text\": \"broken\n"
                 "{\"body\": \"no text field\"}\n"
                 "{\"text\": 5}\n"
                 "\n"
                 "{\"text\": \"\"}\n"
                 "{\"text\": \"Last \\u00e9 document.\"}\n");
  PrepareOptions o = dt_options(tmp / "out", {tmp / "in/quotes.txt", tmp / "in/records.jsonl"});
  o.separator = "%";
  o.chunk_tokens = 16;
  json entry = prepare_dataset(o);

  const std::vector<std::string> docs = {"First quote,\nover two lines.", "Second quote.",
                                         "Third, no closing separator", "JSON document one.",
                                         "Last \xc3\xa9 document."};
  const std::vector<int32_t> want = dt_expected(docs);
  EXPECT_EQ(dt_split_tokens(tmp / "out", entry["train"]), want);
  EXPECT_EQ(entry["documents"], 5);
  EXPECT_EQ(entry["tokens"], want.size());
  EXPECT_EQ(entry["skipped"], json({{"empty", 2},
                                    {"malformed_json", 1},
                                    {"missing_field", 1},
                                    {"field_not_string", 1},
                                    {"blank_line", 1}}));
  // Every shard holds 16 tokens except the last, which holds the rest.
  const json& shards = entry["train"]["shards"];
  ASSERT_EQ(shards.size(), (want.size() + 15) / 16);
  for (size_t i = 0; i + 1 < shards.size(); ++i) EXPECT_EQ(shards[i]["tokens"], 16);
  EXPECT_EQ(shards.back()["tokens"], want.size() - 16 * (shards.size() - 1));
  EXPECT_EQ(shards[0]["file"], "train/src_00000.bin");
  EXPECT_EQ(entry["dtype"], "u16");
  EXPECT_EQ(entry["chunk_size"], 16);
  EXPECT_EQ(entry["source"], "src");
  EXPECT_EQ(entry["tokenizer"]["sha256"],
            "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347");
  EXPECT_EQ(entry["tokenizer"]["vocab_size"], 32000);
  ASSERT_EQ(entry["inputs"].size(), 2u);
  EXPECT_EQ(entry["inputs"][1]["path"], tmp / "in/records.jsonl");
  EXPECT_EQ(entry["inputs"][1]["bytes"], std::filesystem::file_size(tmp / "in/records.jsonl"));
  EXPECT_EQ(entry["val"]["shards"].size(), 0u);
  EXPECT_FALSE(std::filesystem::exists(tmp / "out/val"));
  // The manifest on disk holds the same entry under the source's name.
  json manifest = read_json_file(tmp / "out/manifest.json");
  EXPECT_EQ(manifest["sources"]["src"], entry);
  EXPECT_EQ(manifest["format"], "tinyllama-prepare");
}

TEST(DataPrepare, StrictModeFailsOnAMalformedLineAndLeavesNothing) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  dt::write_text(tmp / "a.jsonl", "{\"text\": \"fine\"}\n{\"txt\": \"wrong field\"}\n");
  PrepareOptions o = dt_options(tmp / "out", {tmp / "a.jsonl"});
  o.strict = true;
  o.chunk_tokens = 2;  // the first document alone fills shards before the error
  DT_EXPECT_THROW_WITH(prepare_dataset(o), "a.jsonl:2", "missing_field");
  EXPECT_FALSE(std::filesystem::exists(tmp / "out/manifest.json"));
  EXPECT_TRUE(std::filesystem::is_empty(tmp / "out/train"));
}

TEST(DataPrepare, FoldersAreWalkedRecursivelyInSortedOrder) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  dt::write_text(tmp / "in/b.txt", "Document b.");
  dt::write_text(tmp / "in/a/z.txt", "Document a/z.");
  dt::write_text(tmp / "in/c.jsonl", "{\"text\": \"Document c.\"}\n");
  dt::write_text(tmp / "in/notes.md", "Not taken by default.");
  json entry = prepare_dataset(dt_options(tmp / "out", {tmp / "in"}));
  EXPECT_EQ(dt_split_tokens(tmp / "out", entry["train"]),
            dt_expected({"Document a/z.", "Document b.", "Document c."}));
  PrepareOptions all = dt_options(tmp / "out2", {tmp / "in"});
  all.folder_suffixes = {"*"};
  entry = prepare_dataset(all);
  EXPECT_EQ(dt_split_tokens(tmp / "out2", entry["train"]),
            dt_expected({"Document a/z.", "Document b.", "Document c.", "Not taken by default."}));
}

TEST(DataPrepare, ReadsZstdCompressedJsonLines) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  std::string plain;
  std::vector<std::string> docs;
  for (int i = 0; i < 300; ++i) {
    docs.push_back("Compressed document number " + std::to_string(i) + ".");
    plain += "{\"text\": \"" + docs.back() +
             "\", \"meta\": {\"redpajama_set_name\": \"RedPajamaC4\"}}\n";
  }
  std::string packed(ZSTD_compressBound(plain.size()), '\0');
  packed.resize(ZSTD_compress(packed.data(), packed.size(), plain.data(), plain.size(), 3));
  dt::write_text(tmp / "part.jsonl.zst", packed);
  json entry = prepare_dataset(dt_options(tmp / "out", {tmp / "part.jsonl.zst"}));
  EXPECT_EQ(dt_split_tokens(tmp / "out", entry["train"]), dt_expected(docs));
  EXPECT_EQ(entry["inputs"][0]["format"], "jsonl");
  // A truncated compressed file is an error, not a silent short read.
  dt::write_text(tmp / "cut.jsonl.zst", packed.substr(0, packed.size() / 2));
  DT_EXPECT_THROW_WITH(prepare_dataset(dt_options(tmp / "out3", {tmp / "cut.jsonl.zst"})),
                       "cut.jsonl.zst", "truncated");
}

TEST(DataPrepare, ShardsAreByteIdenticalWhateverTheThreadCount) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  std::vector<std::string> out;
  for (int threads : {1, 2}) {
    PrepareOptions o = dt_options(tmp / ("t" + std::to_string(threads)),
                                  {dt::shared_data_dir() + "/tinyshakespeare.txt"});
    o.separator = "";  // paragraphs
    o.threads = threads;
    o.chunk_tokens = 100000;
    o.val_fraction = 0.1;
    json entry = prepare_dataset(o);
    const json& shards = entry["train"]["shards"];
    ASSERT_GE(shards.size(), 2u);  // full shards and a partial last one
    for (size_t i = 0; i + 1 < shards.size(); ++i) EXPECT_EQ(shards[i]["tokens"], 100000);
    std::string bytes;
    for (const char* split : {"train", "val"})
      for (const auto& s : entry[split]["shards"])
        bytes += dt::read_text(o.out_dir + "/" + s["file"].get<std::string>());
    out.push_back(bytes);
  }
  EXPECT_GT(out[0].size(), 700000u);
  EXPECT_TRUE(out[0] == out[1]) << "shards differ between 1 and 2 threads";
}

TEST(DataPrepare, ValidationSplitIsDisjointCompleteAndDeterministic) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  std::string lines;
  std::set<std::string> all;
  for (int i = 0; i < 400; ++i) {
    std::string d = "Document " + std::to_string(i) + " of the split test.";
    all.insert(d);
    lines += "{\"text\": \"" + d + "\"}\n";
  }
  dt::write_text(tmp / "docs.jsonl", lines);
  std::vector<std::string> val_runs;
  for (int threads : {1, 2}) {
    PrepareOptions o = dt_options(tmp / ("out" + std::to_string(threads)), {tmp / "docs.jsonl"});
    o.val_fraction = 0.25;
    o.threads = threads;
    json entry = prepare_dataset(o);
    auto train = dt_documents(dt_split_tokens(o.out_dir, entry["train"]));
    auto val = dt_documents(dt_split_tokens(o.out_dir, entry["val"]));
    EXPECT_EQ(entry["train"]["documents"], train.size());
    EXPECT_EQ(entry["val"]["documents"], val.size());
    EXPECT_NEAR(double(val.size()), 100.0, 30.0);  // 25% of 400, binomial sd 8.7
    std::set<std::string> seen(train.begin(), train.end());
    for (const auto& d : val) EXPECT_TRUE(seen.insert(d).second) << "in both splits: " << d;
    EXPECT_EQ(seen, all);
    std::string joined;
    for (const auto& d : val) joined += d + "\n";
    val_runs.push_back(joined);
  }
  EXPECT_EQ(val_runs[0], val_runs[1]);
}

TEST(DataPrepare, RefusesExistingShardsUnlessOverwrite) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  dt::write_text(tmp / "a.txt", "Some text that becomes more than a few tokens long, surely.");
  PrepareOptions o = dt_options(tmp / "out", {tmp / "a.txt"});
  o.chunk_tokens = 4;
  json first = prepare_dataset(o);
  ASSERT_GT(first["train"]["shards"].size(), 2u);
  PrepareOptions changed = o;  // the same run would be a no-op; other settings are refused
  changed.chunk_tokens = 5;
  DT_EXPECT_THROW_WITH(prepare_dataset(changed), "already holds", "src", "--overwrite");
  // Another source may share the folder; the manifest keeps both.
  PrepareOptions other = o;
  other.source = "other";
  other.allow_duplicates = true;
  prepare_dataset(other);
  // Overwrite with bigger shards: the stale higher-numbered shards must go.
  o.overwrite = true;
  o.allow_duplicates = true;  // 'other' holds the same input
  o.chunk_tokens = 1000;
  prepare_dataset(o);
  auto files = list_files(tmp / "out/train", ".bin");
  size_t mine = 0;
  for (const auto& f : files)
    mine += std::filesystem::path(f).filename().string().rfind("src_", 0) == 0;
  EXPECT_EQ(mine, 1u);
  json manifest = read_json_file(tmp / "out/manifest.json");
  EXPECT_EQ(manifest["sources"].size(), 2u);
  EXPECT_EQ(manifest["sources"]["src"]["chunk_size"], 1000);
}

TEST(DataPrepare, MissingInputOrBadOptionsFailWithoutManifest) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  dt::write_text(tmp / "a.txt", "text");
  DT_EXPECT_THROW_WITH(prepare_dataset(dt_options(tmp / "out", {tmp / "a.txt", tmp / "gone.txt"})),
                       "gone.txt", "does not exist");
  EXPECT_FALSE(std::filesystem::exists(tmp / "out/manifest.json"));
  PrepareOptions o = dt_options(tmp / "out", {tmp / "a.txt"});
  o.source = "bad/name";
  DT_EXPECT_THROW_WITH(prepare_dataset(o), "bad/name");
  o = dt_options(tmp / "out", {tmp / "a.txt"});
  o.val_fraction = 1.0;
  DT_EXPECT_THROW_WITH(prepare_dataset(o), "val fraction");
  o = dt_options(tmp / "out", {tmp / "a.txt"});
  o.tokenizer = tmp / "none.model";
  DT_EXPECT_THROW_WITH(prepare_dataset(o), "none.model");
  EXPECT_FALSE(std::filesystem::exists(tmp / "out/manifest.json"));
}

namespace {

std::string dt_parquet(const std::string& name) {
  return std::string(TL_SOURCE_DIR) + "/tests/fixtures/parquet/arrow-rs/" + name;
}

// A JSON-lines record in SlimPajama's schema.
std::string dt_slim_line(const std::string& text, const std::string& set) {
  return json{{"text", text}, {"meta", {{"redpajama_set_name", set}}}}.dump() + "\n";
}

std::string dt_zstd(const std::string& plain) {
  std::string packed(ZSTD_compressBound(plain.size()), '\0');
  packed.resize(ZSTD_compress(packed.data(), packed.size(), plain.data(), plain.size(), 3));
  return packed;
}

}  // namespace

TEST(DataPrepare, ReadsParquetColumnsAndCountsNulls) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  json expected =
      read_json_file(std::string(TL_SOURCE_DIR) + "/tests/fixtures/parquet/arrow-rs/expected.json");
  const json& star = expected["files"]["starcoder_like.parquet"]["values"];
  const json& text = expected["files"]["snappy_dict_v1.parquet"]["values"];
  json entry = prepare_dataset(dt_options(
      tmp / "out", {dt_parquet("starcoder_like.parquet"), dt_parquet("snappy_dict_v1.parquet")}));
  std::vector<std::string> docs;
  size_t nulls = 0, empty = 0;
  for (const auto& v : star) docs.push_back(v);
  for (const auto& v : text) {
    if (v.is_null())
      ++nulls;
    else if (v.get<std::string>().empty())
      ++empty;
    else
      docs.push_back(v);
  }
  ASSERT_GT(nulls, 0u);
  EXPECT_EQ(dt_split_tokens(tmp / "out", entry["train"]), dt_expected(docs));
  EXPECT_EQ(entry["skipped"], json({{"null", nulls}, {"empty", empty}}));
  EXPECT_EQ(entry["inputs"][0]["format"], "parquet");
  EXPECT_EQ(entry["column"], "content");
  // Another column by name.
  PrepareOptions ids = dt_options(tmp / "ids", {dt_parquet("starcoder_like.parquet")});
  ids.column = "max_stars_repo_path";
  EXPECT_EQ(prepare_dataset(ids)["documents"], 12);
}

TEST(DataPrepare, ParquetWithoutTheColumnIsReportedBeforeAnyWork) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  PrepareOptions o = dt_options(
      tmp / "out", {dt_parquet("starcoder_like.parquet"), dt_parquet("no_content.parquet")});
  DT_EXPECT_THROW_WITH(prepare_dataset(o), "1 of 2 inputs cannot be read", "no_content.parquet",
                       "no column 'content' (its columns: text)");
  EXPECT_FALSE(std::filesystem::exists(tmp / "out/manifest.json"));
  EXPECT_FALSE(std::filesystem::exists(tmp / "out/train"));
}

TEST(DataPrepare, ExcludeSetSkipsThatSetAndCountsSets) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  std::string lines;
  std::vector<std::string> kept;
  const char* sets[] = {"RedPajamaC4", "RedPajamaGithub", "RedPajamaWikipedia", "RedPajamaGithub"};
  for (int i = 0; i < 40; ++i) {
    std::string t = "Record " + std::to_string(i) + " of " + sets[i % 4] + ".";
    lines += dt_slim_line(t, sets[i % 4]);
    if (i % 4 != 1 && i % 4 != 3) kept.push_back(t);
  }
  lines += "{\"text\": \"no meta at all\"}\n";
  kept.push_back("no meta at all");
  dt::write_text(tmp / "slim.jsonl.zst", dt_zstd(lines));
  PrepareOptions o = dt_options(tmp / "out", {tmp / "slim.jsonl.zst"});
  o.exclude_sets = {"RedPajamaGithub"};
  json entry = prepare_dataset(o);
  EXPECT_EQ(dt_split_tokens(tmp / "out", entry["train"]), dt_expected(kept));
  EXPECT_EQ(entry["skipped"], json({{"excluded_set", 20}}));
  EXPECT_EQ(entry["sets"],
            json({{"RedPajamaC4", 10}, {"RedPajamaGithub", 20}, {"RedPajamaWikipedia", 10}}));
  EXPECT_EQ(entry["exclude_sets"], json({"RedPajamaGithub"}));
}

TEST(DataPrepare, GlobsExpandInSortedOrder) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  dt::write_text(tmp / "in/chunk2/b.jsonl", "{\"text\": \"two b\"}\n");
  dt::write_text(tmp / "in/chunk1/z.jsonl", "{\"text\": \"one z\"}\n");
  dt::write_text(tmp / "in/chunk1/a.jsonl", "{\"text\": \"one a\"}\n");
  dt::write_text(tmp / "in/chunk1/skip.txt", "not matched");
  json entry = prepare_dataset(dt_options(tmp / "out", {tmp / "in/chunk*/*.jsonl"}));
  EXPECT_EQ(dt_split_tokens(tmp / "out", entry["train"]), dt_expected({"one a", "one z", "two b"}));
  DT_EXPECT_THROW_WITH(prepare_dataset(dt_options(tmp / "out2", {tmp / "in/nothing*.jsonl"})),
                       "nothing*.jsonl", "matches nothing");
}

TEST(DataPrepare, ValidationFilesAreHeldOutWhole) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  std::vector<std::string> inputs;
  for (int f = 0; f < 10; ++f) {
    std::string lines;
    for (int d = 0; d < 3; ++d)
      lines += "{\"text\": \"file " + std::to_string(f) + " doc " + std::to_string(d) + "\"}\n";
    inputs.push_back(tmp / ("in/part" + std::to_string(f) + ".jsonl"));
    dt::write_text(inputs.back(), lines);
  }
  // A count: that many files, the same ones every time.
  PrepareOptions o = dt_options(tmp / "out", {tmp / "in"});
  o.val_files = "3";
  json entry = prepare_dataset(o);
  EXPECT_EQ(entry["val"]["documents"], 9);
  EXPECT_EQ(entry["train"]["documents"], 21);
  std::set<std::string> val_files;
  for (const auto& in : entry["inputs"])
    if (in["val"].get<bool>()) val_files.insert(in["path"]);
  EXPECT_EQ(val_files.size(), 3u);
  for (const auto& d : dt_documents(dt_split_tokens(o.out_dir, entry["val"]))) {
    const std::string file = tmp / ("in/part" + d.substr(5, d.find(' ', 5) - 5) + ".jsonl");
    EXPECT_TRUE(val_files.count(file)) << d;
  }
  EXPECT_EQ(val_file_mask(std::vector<std::string>(10, "x"), "3"),
            val_file_mask(std::vector<std::string>(10, "y"), "3"));
  // A pattern.
  PrepareOptions p = dt_options(tmp / "out2", {tmp / "in"});
  p.val_files = "*/part[12].jsonl";
  p.allow_duplicates = true;
  entry = prepare_dataset(p);
  EXPECT_EQ(dt_documents(dt_split_tokens(p.out_dir, entry["val"])),
            (std::vector<std::string>{"file 1 doc 0", "file 1 doc 1", "file 1 doc 2",
                                      "file 2 doc 0", "file 2 doc 1", "file 2 doc 2"}));
  p.val_files = "*/nothing";
  DT_EXPECT_THROW_WITH(prepare_dataset(p), "matches none");
  p.val_files = "2";
  p.val_fraction = 0.1;
  DT_EXPECT_THROW_WITH(prepare_dataset(p), "not both");
}

TEST(DataPrepare, ManifestIdentifiesInputsAndRefusesDuplicates) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  std::string lines;
  for (int i = 0; i < 50; ++i) lines += dt_slim_line("Line " + std::to_string(i), "RedPajamaBook");
  dt::write_text(tmp / "a.jsonl.zst", dt_zstd(lines));
  dt::write_text(tmp / "b.txt", "Plain text document.");
  PrepareOptions o = dt_options(tmp / "out", {tmp / "a.jsonl.zst", tmp / "b.txt"});
  json entry = prepare_dataset(o);
  for (int i = 0; i < 2; ++i) {
    const std::string path = entry["inputs"][i]["path"];
    EXPECT_EQ(entry["inputs"][i]["sha256"], sha256_file(path));
    EXPECT_EQ(entry["inputs"][i]["quick_sha256"], quick_file_identity(path));
  }
  EXPECT_EQ(entry["max_token_id"], [&] {
    int32_t m = 0;
    for (int32_t t : dt_split_tokens(o.out_dir, entry["train"])) m = std::max(m, t);
    return m;
  }());
  // The same run again: the same entry, nothing rewritten.
  const auto before = std::filesystem::last_write_time(tmp / "out/train/src_00000.bin");
  EXPECT_EQ(prepare_dataset(o), entry);
  EXPECT_EQ(std::filesystem::last_write_time(tmp / "out/train/src_00000.bin"), before);
  // A copy of an input under another source, or a file listed twice, would train twice.
  std::filesystem::copy_file(tmp / "a.jsonl.zst", tmp / "copy.jsonl.zst");
  PrepareOptions other = dt_options(tmp / "out", {tmp / "copy.jsonl.zst"});
  other.source = "other";
  DT_EXPECT_THROW_WITH(prepare_dataset(other), "copy.jsonl.zst", "already prepared in source 'src'",
                       "--allow-duplicates");
  other.allow_duplicates = true;
  EXPECT_EQ(prepare_dataset(other)["documents"], 50);
  PrepareOptions twice = dt_options(tmp / "out3", {tmp / "b.txt", tmp / "b.txt"});
  DT_EXPECT_THROW_WITH(prepare_dataset(twice), "b.txt", "already prepared in this run");
}

// A damaged manifest already in the folder (found by fuzz_manifest): an error naming it and
// the field, or a different run; never a stray json exception or a read of a missing key.
TEST(DataPrepare, DamagedManifestEntriesAreErrorsOrMismatches) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  dt::write_text(tmp / "b.txt", "Plain text document.");
  PrepareOptions o = dt_options(tmp / "out", {tmp / "b.txt"});
  // Another source lists an input whose size and path are not what they should be.
  dt::write_text(tmp / "out/manifest.json",
                 R"({"format": "tinyllama-prepare", "version": 1, "sources":
      {"other": {"inputs": [{"path": 5, "bytes": -1, "quick_sha256": "x"}]}}})");
  DT_EXPECT_THROW_WITH(prepare_dataset(o), "manifest.json", "sources.other", "'bytes' is -1");
  // This source's entry has every setting but no tokenizer, inputs or shards: not the same
  // run, so it is prepared again.
  std::filesystem::remove(tmp / "out/manifest.json");
  json prev = prepare_dataset(o);
  for (const char* k : {"tokenizer", "inputs", "train", "val"}) prev.erase(k);
  json m = {{"format", "tinyllama-prepare"}, {"version", 1}, {"sources", {{"src", prev}}}};
  std::filesystem::remove_all(tmp / "out");
  dt::write_text(tmp / "out/manifest.json", m.dump());
  EXPECT_EQ(prepare_dataset(o)["documents"], 1);
}

TEST(DataPrepare, ShardsAreIdenticalForOneAndThreeThreadsOverMixedInputs) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  const std::string shk = dt::read_text(dt::shared_data_dir() + "/tinyshakespeare.txt");
  std::string lines;
  size_t at = 0;
  for (int i = 0; at < shk.size() / 3; ++i) {  // paragraphs of a third of the play as JSON lines
    size_t end = shk.find("\n\n", at);
    lines += dt_slim_line(shk.substr(at, end - at), i % 5 ? "RedPajamaBook" : "RedPajamaGithub");
    at = end + 2;
  }
  dt::write_text(tmp / "in/a.jsonl.zst", dt_zstd(lines));
  dt::write_text(tmp / "in/b.txt", shk.substr(at, 20000));
  std::vector<std::string> out;
  for (int threads : {1, 3}) {
    PrepareOptions o = dt_options(tmp / ("t" + std::to_string(threads)),
                                  {tmp / "in", dt_parquet("starcoder_like.parquet")});
    o.threads = threads;
    o.chunk_tokens = 30000;
    o.exclude_sets = {"RedPajamaGithub"};
    o.batch_bytes = 20000;  // many batches
    o.allow_duplicates = true;
    json entry = prepare_dataset(o);
    ASSERT_GE(entry["train"]["shards"].size(), 3u);
    std::string bytes;
    for (const auto& s : entry["train"]["shards"])
      bytes += dt::read_text(o.out_dir + "/" + s["file"].get<std::string>());
    out.push_back(bytes);
  }
  EXPECT_TRUE(out[0] == out[1]) << "shards differ between 1 and 3 threads";
}
