#include "data/tokenizer.h"

#include <sentencepiece_processor.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/hash.h"

namespace tl {

Tokenizer Tokenizer::load(const std::string& model_path) {
  TL_CHECK(file_exists(model_path), "tokenizer '", model_path, "' does not exist or is not a file");
  Tokenizer t;
  t.sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
  auto status = t.sp_->Load(model_path);
  TL_CHECK(status.ok(), "tokenizer '", model_path,
           "' is not a valid SentencePiece model: ", status.ToString());
  t.path_ = model_path;
  t.sha256_ = sha256_file(model_path);
  return t;
}

Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

// SentencePieceProcessor::Encode is const and keeps no per-call state: safe from many threads.
std::vector<int> Tokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  auto status = sp_->Encode(text, &ids);
  TL_CHECK(status.ok(), "tokenizer '", path_, "': encode failed: ", status.ToString());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  for (int id : ids)
    TL_CHECK(id >= 0 && id < vocab_size(), "tokenizer '", path_, "': cannot decode id ", id,
             " (vocabulary has ", vocab_size(), " pieces)");
  std::string text;
  auto status = sp_->Decode(ids, &text);
  TL_CHECK(status.ok(), "tokenizer '", path_, "': decode failed: ", status.ToString());
  return text;
}

std::string Tokenizer::piece(int id) const {
  TL_CHECK(id >= 0 && id < vocab_size(), "tokenizer '", path_, "': no piece ", id,
           " (vocabulary has ", vocab_size(), " pieces)");
  return sp_->IdToPiece(id);
}

SpModelInfo Tokenizer::model_info() const {
  return parse_sp_model(sp_->serialized_model_proto(), path_);
}

int Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int Tokenizer::bos_id() const { return sp_->bos_id(); }
int Tokenizer::eos_id() const { return sp_->eos_id(); }

}  // namespace tl
