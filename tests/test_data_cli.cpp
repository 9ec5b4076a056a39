// The tinyllama binary's data subcommands, run as a user would.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "core/json_reader.h"
#include "data_test_util.h"

namespace {

std::vector<int> dt_parse_ids(const std::string& line) {
  std::istringstream in(line);
  std::vector<int> ids;
  for (int id; in >> id;) ids.push_back(id);
  return ids;
}

std::vector<std::string> dt_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

const std::string dt_binary = TL_BINARY;

}  // namespace

TEST(DataCli, TokenizeWholeInputMatchesKnownEncodings) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  for (const auto& [text, ids] : dt::llama_cases()) {
    dt::write_text(tmp / "in.txt", text);
    auto r = dt::run_command(dt_binary + " tokenize --tokenizer " + dt::llama_model() +
                                 " --bos --whole < " + tmp / "in.txt",
                             tmp.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(dt_parse_ids(r.out), ids) << "text: " << text;
  }
}

TEST(DataCli, TokenizeLineByLine) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  // "grabbed" → 2646 1327 287 and " grabbed" → 29871 2646 1327 287 (known encodings).
  dt::write_text(tmp / "in.txt", "grabbed\n\n grabbed\n");
  auto r = dt::run_command(dt_binary + " tokenize --tokenizer " + dt::llama_model() + " --eos < " +
                               tmp / "in.txt",
                           tmp.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = dt_lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_EQ(dt_parse_ids(lines[0]), (std::vector<int>{2646, 1327, 287, 2}));
  EXPECT_EQ(dt_parse_ids(lines[1]), (std::vector<int>{2}));
  EXPECT_EQ(dt_parse_ids(lines[2]), (std::vector<int>{29871, 2646, 1327, 287, 2}));
}

TEST(DataCli, BadArgumentsFailWithAMessage) {
  dt::TempDir tmp;
  auto r = dt::run_command(dt_binary + " tokenize --tokenizer " + tmp / "absent.model" + " < /dev/null",
                           tmp.path());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("absent.model"), std::string::npos) << r.err;

  dt::write_text(tmp / "corpus.txt", "a few words\n");
  r = dt::run_command(dt_binary + " tokenizer-train --out " + tmp / "m" + " --vocab-size 100 " +
                          tmp / "corpus.txt",
                      tmp.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("259"), std::string::npos) << r.err;

  r = dt::run_command(dt_binary + " prepare --out " + tmp / "out" + " " + tmp / "corpus.txt", tmp.path());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--tokenizer"), std::string::npos) << r.err;

  r = dt::run_command(dt_binary + " tokenize --tokenizer " + tmp / "corpus.txt" + " --no-such-flag",
                      tmp.path());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("no-such-flag"), std::string::npos) << r.err;
}

TEST(DataCli, PrepareWritesShardsAndRefusesMissingInputs) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  dt::write_text(tmp / "a.txt", "one\n%\ntwo\n");
  std::string base = dt_binary + " prepare --tokenizer " + dt::llama_model() + " --source demo --out " +
                     tmp / "out" + " --separator % --quiet ";
  auto r = dt::run_command(base + tmp / "a.txt" + " " + tmp / "gone.txt", tmp.path());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("gone.txt"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(tmp / "out/manifest.json"));

  r = dt::run_command(base + tmp / "a.txt", tmp.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << "--quiet printed: " << r.err;
  tl::json m = tl::read_json_file(tmp / "out/manifest.json");
  EXPECT_EQ(m["sources"]["demo"]["documents"], 2);
  EXPECT_TRUE(std::filesystem::exists(tmp / "out/train/demo_00000.bin"));

  // The same run again: said, and nothing done.
  const auto before = std::filesystem::last_write_time(tmp / "out/train/demo_00000.bin");
  r = dt::run_command(base + tmp / "a.txt", tmp.path());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("already prepared"), std::string::npos) << r.err;
  EXPECT_EQ(std::filesystem::last_write_time(tmp / "out/train/demo_00000.bin"), before);
  // Other settings over the same source need --overwrite.
  r = dt::run_command(base + "--chunk-size 3 " + tmp / "a.txt", tmp.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--overwrite"), std::string::npos) << r.err;
}

TEST(DataCli, TokenizerTrainWritesAModel) {
  dt::TempDir tmp;
  std::string corpus;
  for (int i = 0; i < 500; ++i) corpus += "the river runs past stone number " + std::to_string(i % 37) + "\n";
  dt::write_text(tmp / "corpus.txt", corpus);
  auto r = dt::run_command(dt_binary + " tokenizer-train --out " + tmp / "tok" + " --vocab-size 320 --threads 1 " +
                               tmp / "corpus.txt",
                           tmp.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(tmp / "tok.model"));
  dt::write_text(tmp / "in.txt", "river");
  r = dt::run_command(dt_binary + " tokenize --tokenizer " + tmp / "tok.model" + " --bos < " + tmp / "in.txt",
                      tmp.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ids = dt_parse_ids(r.out);
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids[0], 1);
  for (int id : ids) EXPECT_LT(id, 320);
}
