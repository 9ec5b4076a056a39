// Hugging Face Llama checkpoints: config.json + model.safetensors (or shards with
// model.safetensors.index.json), f32 / bf16 / f16, tied or untied heads.
#pragma once
#include <string>
#include <vector>

#include "core/dtype.h"
#include "data/sp_model.h"
#include "model/config.h"

namespace tl {

struct HfModel {
  ModelConfig config;
  std::vector<float> params;  // flat, ParamLayout(config) order
  json hf_config;             // the config.json as read
};

// Maps q/k/v_proj into wqkv rows [q; k; v], gate/up_proj into w_gate_up rows [gate; up].
// Throws naming the file and tensor for a missing shard, a missing tensor, a wrong shape
// or dtype, or a malformed header.
HfModel import_hf(const std::string& dir);
ModelConfig model_config_from_hf(const json& hf_config);
json hf_config_from_model(const ModelConfig& cfg, int bos_id = 1, int eos_id = 2);

struct HfExportOptions {
  DType dtype = DType::BF16;              // F32 or BF16 (or F16)
  uint64_t max_shard_bytes = 5ull << 30;  // shard above this, with an index file
  std::string tokenizer_model;            // copied as tokenizer.model when set
};
// tokenizer.json for the fast tokenizers (transformers, tokenizers.js, vLLM) describing a
// SentencePiece BPE model exactly. hf_tokenizer_json_unsupported says why a model cannot be
// described ("" when it can); hf_tokenizer_json throws with that reason.
std::string hf_tokenizer_json_unsupported(const SpModelInfo& sp);
json hf_tokenizer_json(const SpModelInfo& sp);

void export_hf(const std::string& dir, const ModelConfig& cfg, const std::vector<float>& params,
               const HfExportOptions& opts);

}  // namespace tl
