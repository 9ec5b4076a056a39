// A Llama model as llama.cpp reads it from GGUF (checkpoint/gguf.h is the container):
// metadata under llama.* and tokenizer.ggml.*, tensors under llama.cpp's names.
//
// RoPE: our weights (like Hugging Face's) rotate the two halves of each head, llama.cpp
// rotates adjacent pairs. So q and k rows are reordered per head on export: rows j and
// j + head_dim/2 of a head become rows 2j and 2j+1 (import undoes it). The test that
// proves it compares llama.cpp's next-token probabilities with ours.
#pragma once
#include <string>
#include <vector>

#include "checkpoint/gguf.h"
#include "data/sp_model.h"
#include "model/config.h"

namespace tl {

struct GgufExportOptions {
  gguf::TensorType type = gguf::TensorType::F16;  // of the matrices; norms stay F32
  std::string name = "tinyllama";                 // general.name
};

// The vocabulary must be a BPE SentencePiece model with identity normalization (what
// llama.cpp's "llama" tokenizer implements) of exactly cfg.vocab_size pieces. Everything is
// checked before the file is created; the file appears complete or not at all. An output
// head identical to the embedding is left out, as llama.cpp expects of tied weights.
void export_gguf(const std::string& path, const ModelConfig& cfg, const std::vector<float>& params,
                 const SpModelInfo& vocab, const GgufExportOptions& opts);

struct GgufModel {
  ModelConfig config;
  std::vector<float> params;  // flat, ParamLayout(config) order; Q8_0 dequantized
  std::string name;           // general.name, when present
};

// Reads an F32/F16/BF16/Q8_0 llama GGUF; throws naming the file and the key or tensor for
// any other architecture, a missing/unexpected tensor, a wrong shape, or non-finite weights.
GgufModel import_gguf(const std::string& path);

// Q8_0 as ggml defines it: per block of 32 values, d = max|x| / 127 stored as f16 and
// q = round(x / d) as int8; a value reads back as q * d.
void quantize_q8_0(const float* x, int64_t n, uint8_t* out);
void dequantize_q8_0(const uint8_t* in, int64_t n, float* x);

}  // namespace tl
