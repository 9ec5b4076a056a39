// tokenizer.json as the fast tokenizers read it: tokenizers.js (@huggingface/tokenizers, the
// JavaScript port of Hugging Face's tokenizers) loads what `export --format hf` writes and
// must give SentencePiece's ids on the Llama 2 tokenizer's known cases and on tinyshakespeare,
// for the Llama 2 tokenizer and for one trained by `tokenizer-train`.
#include <gtest/gtest.h>

#include "ckpt_test_util.h"
#include "data/tokenizer.h"
#include "data_test_util.h"
#include "interop_util.h"

using namespace tl;

namespace {

// Exports a fresh model with `tokenizer` and runs tokenizers.js over `texts`; returns its result.
json tokenizers_js(const ckpt_test::TempDir& dir, const std::string& node,
                   const std::string& tokenizer, const std::string& tag,
                   const std::vector<std::string>& texts, int vocab) {
  const std::string bin = TL_BINARY, ck = dir.file(tag + ".tlck"), out = dir.file(tag + "-hf");
  auto r = ckpt_test::run_cmd(
      bin + " init --preset tiny --set vocab_size=" + std::to_string(vocab) + " --out " + ck);
  EXPECT_EQ(r.rc, 0) << r.output;
  r = ckpt_test::run_cmd(bin + " export --checkpoint " + ck +
                         " --format hf --dtype f32 --tokenizer " + tokenizer + " --out " + out);
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(out + "/tokenizer.json")) << r.output;
  ckpt_test::write_bytes(dir.file(tag + "-req.json"), json{{"dir", out}, {"texts", texts}}.dump());
  r = ckpt_test::run_cmd("(cd '" + node + "' && node tokenizers_check.mjs " +
                         dir.file(tag + "-req.json") + " 2>" + dir.file(tag + "-node.err") + ")");
  EXPECT_EQ(r.rc, 0) << r.output << ckpt_test::read_bytes(dir.file(tag + "-node.err"));
  return r.rc == 0 ? json::parse(r.output) : json();
}

// tinyshakespeare's paragraphs (blank-line separated) and the shared cases.
std::vector<std::string> test_texts() {
  std::vector<std::string> texts;
  for (const auto& c : dt::llama_cases()) texts.push_back(c.first);
  const std::string all = dt::read_text(dt::shared_data_dir() + "/tinyshakespeare.txt");
  for (size_t at = 0; at < all.size();) {
    size_t end = all.find("\n\n", at);
    if (end == std::string::npos) end = all.size();
    texts.push_back(all.substr(at, end - at));
    at = end + 2;
  }
  // Whitespace runs, digits, bytes outside the vocabulary, and text around a special token's
  // spelling.
  texts.push_back("  two  spaces\tand a tab\n\nnewlines   ");
  texts.push_back("1234567 digits, 3.14159 and 2026-12-05");
  texts.push_back("caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\xa6\x99 \xe2\x80\x94 emoji");
  texts.push_back("");
  return texts;
}

void expect_same_as_sentencepiece(const json& res, const Tokenizer& sp,
                                  const std::vector<std::string>& texts) {
  ASSERT_TRUE(res.is_object());
  ASSERT_EQ(res["ids"].size(), texts.size());
  size_t mismatches = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<int> want = sp.encode(texts[i]);
    want.insert(want.begin(), sp.bos_id());
    const std::vector<int> got = res["ids"][i].get<std::vector<int>>();
    if (got != want && ++mismatches <= 5)
      ADD_FAILURE() << "text " << i << " '" << texts[i].substr(0, 80) << "'";
    EXPECT_EQ(res["decoded"][i].get<std::string>(),
              sp.decode(std::vector<int>(want.begin() + 1, want.end())))
        << "text " << i;
  }
  EXPECT_EQ(mismatches, 0u) << "of " << texts.size() << " texts";
}

}  // namespace

TEST(TokenizerJson, TokenizersJsEncodesLikeSentencePiece) {
  if (!interop::have_node()) GTEST_SKIP() << "Node.js/npm not installed: tokenizers.js cannot run";
  if (dt::shared_data_dir().empty())
    GTEST_SKIP() << "../shared/data (the Llama 2 tokenizer) is absent";
  std::string npm_error;
  const std::string node = interop::node_dir(&npm_error);
  ASSERT_FALSE(node.empty()) << npm_error;
  ckpt_test::TempDir dir;
  const std::vector<std::string> texts = test_texts();
  ASSERT_GT(texts.size(), 1000u);

  const Tokenizer llama = Tokenizer::load(dt::llama_model());
  expect_same_as_sentencepiece(tokenizers_js(dir, node, dt::llama_model(), "llama", texts, 32000),
                               llama, texts);

  // A tokenizer trained by tokenizer-train (byte fallback, split digits, 2000 pieces).
  const std::string shakes = dt::shared_data_dir() + "/tinyshakespeare.txt";
  auto r = ckpt_test::run_cmd(std::string(TL_BINARY) + " tokenizer-train --vocab-size 2000 --out " +
                              dir.file("own") + " " + shakes);
  ASSERT_EQ(r.rc, 0) << r.output;
  const Tokenizer own = Tokenizer::load(dir.file("own.model"));
  expect_same_as_sentencepiece(tokenizers_js(dir, node, dir.file("own.model"), "own", texts, 2000),
                               own, texts);
}
