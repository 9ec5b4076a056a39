// Tokenizer: exactness against known Llama 2 encodings, and BPE training.
#include <gtest/gtest.h>

#include "core/error.h"
#include "core/rng.h"
#include "data/tokenizer.h"
#include "data_test_util.h"

using namespace tl;

TEST(DataTokenizer, MatchesKnownLlama2Encodings) {
  DT_REQUIRE_SHARED_DATA();
  Tokenizer tok = Tokenizer::load(dt::llama_model());
  auto cases = dt::llama_cases();
  ASSERT_EQ(cases.size(), 12u);
  for (const auto& [text, ids] : cases) {
    std::vector<int> got = tok.encode(text);
    got.insert(got.begin(), 1);  // the cases start with BOS
    EXPECT_EQ(got, ids) << "text: " << text;
    EXPECT_EQ(tok.decode(tok.encode(text)), text);
  }
}

TEST(DataTokenizer, Llama2VocabularyAndIdentity) {
  DT_REQUIRE_SHARED_DATA();
  Tokenizer tok = Tokenizer::load(dt::llama_model());
  EXPECT_EQ(tok.vocab_size(), 32000);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.piece(0), "<unk>");
  EXPECT_EQ(tok.piece(3), "<0x00>");
  EXPECT_EQ(tok.piece(258), "<0xFF>");
  EXPECT_EQ(tok.sha256(), "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347");
  EXPECT_EQ(tok.path(), dt::llama_model());
  EXPECT_THROW(tok.piece(32000), Error);
  EXPECT_THROW(tok.decode({-1}), Error);
}

TEST(DataTokenizer, LoadErrorsNameTheFile) {
  dt::TempDir tmp;
  DT_EXPECT_THROW_WITH(Tokenizer::load(tmp / "missing.model"), "missing.model", "does not exist");
  dt::write_text(tmp / "junk.model", "this is not a protobuf");
  DT_EXPECT_THROW_WITH(Tokenizer::load(tmp / "junk.model"), "junk.model", "not a valid");
}

namespace {
// Lines of words from a small alphabet and many repeats of a few numbers, so that BPE
// would merge digit runs ("2024") if digits were not split.
std::string dt_training_corpus() {
  const char* words[] = {"the",   "cat",  "sat",   "on",    "mat",   "year",  "price", "code",
                         "alpha", "beta", "gamma", "delta", "river", "stone", "light", "data"};
  const char* numbers[] = {"2024", "1999", "31415", "777", "42"};
  Rng rng(7);
  std::string text;
  for (int line = 0; line < 3000; ++line) {
    for (int w = 0; w < 10; ++w) {
      if (w) text += ' ';
      text += rng.below(4) == 0 ? numbers[rng.below(5)] : words[rng.below(16)];
    }
    text += ".\n";
  }
  return text;
}
}  // namespace

TEST(DataTokenizer, TrainsLlamaStyleBpe) {
  dt::TempDir tmp;
  dt::write_text(tmp / "corpus.txt", dt_training_corpus());
  TokenizerTrainOptions o;
  o.out_prefix = tmp / "small";
  o.inputs = {tmp / "corpus.txt"};
  o.vocab_size = 320;
  o.threads = 1;
  train_tokenizer(o);
  Tokenizer tok = Tokenizer::load(tmp / "small.model");
  EXPECT_EQ(tok.vocab_size(), 320);
  EXPECT_EQ(tok.piece(0), "<unk>");
  EXPECT_EQ(tok.piece(1), "<s>");
  EXPECT_EQ(tok.piece(2), "</s>");
  EXPECT_EQ(tok.piece(3), "<0x00>");
  EXPECT_EQ(tok.piece(3 + 0xC3), "<0xC3>");
  EXPECT_EQ(tok.piece(258), "<0xFF>");

  // Characters never seen in training fall back to their UTF-8 bytes (ü = C3 BC).
  std::vector<int> ids = tok.encode("cat ü");
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids[ids.size() - 2], 3 + 0xC3);
  EXPECT_EQ(ids[ids.size() - 1], 3 + 0xBC);
  EXPECT_EQ(tok.decode(ids), "cat ü");

  // Digits are split: no piece holds two digits, even for numbers seen thousands of times.
  std::vector<int> nums = tok.encode("2024 1999 31415");
  int digits_seen = 0;
  for (int id : nums) {
    std::string p = tok.piece(id);
    int d = 0;
    for (char c : p) d += (c >= '0' && c <= '9');
    EXPECT_LE(d, 1) << "piece '" << p << "'";
    digits_seen += d;
  }
  EXPECT_EQ(digits_seen, 13);
  // Frequent words are learned as single pieces ("▁the").
  EXPECT_EQ(tok.encode("the").size(), 1u);
}

TEST(DataTokenizer, TrainingRejectsBadOptions) {
  dt::TempDir tmp;
  dt::write_text(tmp / "corpus.txt", "a b c\n");
  TokenizerTrainOptions o;
  o.out_prefix = tmp / "m";
  o.inputs = {tmp / "corpus.txt"};
  o.vocab_size = 259;
  DT_EXPECT_THROW_WITH(train_tokenizer(o), "259");
  o.vocab_size = 300;
  o.inputs = {tmp / "nope.txt"};
  DT_EXPECT_THROW_WITH(train_tokenizer(o), "nope.txt");
  o.inputs = {};
  DT_EXPECT_THROW_WITH(train_tokenizer(o), "no input");
  o.inputs = {tmp / "corpus.txt"};
  o.out_prefix = tmp / "missing_dir/m";
  DT_EXPECT_THROW_WITH(train_tokenizer(o), "missing_dir");
  o.out_prefix = tmp / "m";
  o.max_sentences = 50;
  DT_EXPECT_THROW_WITH(train_tokenizer(o), "max sentences");
}
