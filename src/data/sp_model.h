// What a SentencePiece .model file says about its vocabulary and normalization, read from
// the ModelProto bytes (the Debian library ships no protobuf headers for it): what GGUF's
// tokenizer.ggml.* keys and Hugging Face's tokenizer.json need to describe the same tokenizer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tl {

// ModelProto.SentencePiece.Type; the same numbers are GGUF's tokenizer.ggml.token_type.
enum class PieceType : int32_t {
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6
};

struct SpPiece {
  std::string text;  // "▁the", "<0x0A>", "<s>"
  float score = 0;
  PieceType type = PieceType::Normal;
};

struct SpModelInfo {
  std::vector<SpPiece> pieces;          // by id
  int model_type = 1;                   // TrainerSpec.model_type: 1 unigram, 2 bpe, 3 word, 4 char
  bool byte_fallback = false;           // TrainerSpec.byte_fallback
  std::string normalizer = "nmt_nfkc";  // NormalizerSpec.name ("identity" for Llama)
  bool has_charsmap = false;            // NormalizerSpec.precompiled_charsmap is non-empty
  bool add_dummy_prefix = true;         // a "▁" before the text
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;                       // spaces become "▁"
  int unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;  // TrainerSpec ids

  bool is_bpe() const { return model_type == 2; }
  int find(const std::string& text) const;  // id, or -1 (linear: for checks, not hot paths)
};

// Parses serialized ModelProto bytes; throws naming `path` where they are malformed.
SpModelInfo parse_sp_model(const std::string& bytes, const std::string& path);

}  // namespace tl
