// SentencePiece tokenizer (exact for the Llama 2 tokenizer.model) and BPE training with
// Llama's settings.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/sp_model.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace tl {

class Tokenizer {
 public:
  // Loads a SentencePiece .model file; throws naming the file if it is missing or invalid.
  static Tokenizer load(const std::string& model_path);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  std::vector<int> encode(const std::string& text) const;  // no BOS/EOS added
  std::string decode(const std::vector<int>& ids) const;
  std::string piece(int id) const;
  int vocab_size() const;
  int bos_id() const;  // 1 for Llama
  int eos_id() const;  // 2 for Llama
  const std::string& path() const { return path_; }
  const std::string& sha256() const { return sha256_; }  // of the .model file
  // Pieces with scores and types, the model type and the normalizer settings (data/sp_model.h).
  SpModelInfo model_info() const;

 private:
  Tokenizer() = default;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string path_, sha256_;
};

struct TokenizerTrainOptions {
  std::string out_prefix;           // writes PREFIX.model and PREFIX.vocab
  std::vector<std::string> inputs;  // text files, one sentence/line each
  int vocab_size = 32000;
  int64_t max_sentences = 2000000;  // sampled from the inputs when there are more
  int threads = 0;                  // 0 = all cores
  uint64_t seed = 0;                // (sampling is made deterministic where possible)
  bool verbose = false;             // SentencePiece's own progress log on stderr
};

// Trains a BPE model with Llama 2's settings: byte fallback, split digits, <unk>=0, <s>=1,
// </s>=2, no added dummy-prefix change. Inputs may be zstd-compressed (*.zst).
// max_sentences: 0 = every line, else more than 100 (SentencePiece's minimum).
// Throws on bad options or failure.
void train_tokenizer(const TokenizerTrainOptions& opts);

}  // namespace tl
