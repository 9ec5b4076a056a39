// prepare: text and JSON-lines corpora → shards + manifest, checked against the tokenizer.
#include <gtest/gtest.h>
#include <zstd.h>

#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/fs.h"
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
  dt::write_text(tmp / "in/quotes.txt", "First quote,\nover two lines.\n%\nSecond quote.\n%\n%\nThird, no closing separator");
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
  EXPECT_EQ(entry["skipped"], json({{"empty", 2}, {"malformed_json", 1}, {"missing_field", 1},
                                    {"field_not_string", 1}, {"blank_line", 1}}));
  // Every shard holds 16 tokens except the last, which holds the rest.
  const json& shards = entry["train"]["shards"];
  ASSERT_EQ(shards.size(), (want.size() + 15) / 16);
  for (size_t i = 0; i + 1 < shards.size(); ++i) EXPECT_EQ(shards[i]["tokens"], 16);
  EXPECT_EQ(shards.back()["tokens"], want.size() - 16 * (shards.size() - 1));
  EXPECT_EQ(shards[0]["file"], "train/src_00000.bin");
  EXPECT_EQ(entry["dtype"], "u16");
  EXPECT_EQ(entry["chunk_size"], 16);
  EXPECT_EQ(entry["source"], "src");
  EXPECT_EQ(entry["tokenizer"]["sha256"], "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347");
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
    plain += "{\"text\": \"" + docs.back() + "\", \"meta\": {\"redpajama_set_name\": \"RedPajamaC4\"}}\n";
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
  DT_EXPECT_THROW_WITH(prepare_dataset(o), "already holds", "src", "--overwrite");
  // Another source may share the folder; the manifest keeps both.
  PrepareOptions other = o;
  other.source = "other";
  prepare_dataset(other);
  // Overwrite with bigger shards: the stale higher-numbered shards must go.
  o.overwrite = true;
  o.chunk_tokens = 1000;
  prepare_dataset(o);
  auto files = list_files(tmp / "out/train", ".bin");
  size_t mine = 0;
  for (const auto& f : files) mine += std::filesystem::path(f).filename().string().rfind("src_", 0) == 0;
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
