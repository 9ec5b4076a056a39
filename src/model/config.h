// Llama model shape: named presets, JSON round trip, validation that names what is wrong.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/json_reader.h"

namespace tl {

struct ModelConfig {
  std::string preset = "custom";
  int vocab_size = 0;
  int dim = 0;          // C, hidden size
  int n_layers = 0;     // L
  int n_heads = 0;      // H, query heads
  int n_kv_heads = 0;   // K, key/value heads (grouped-query attention)
  int ffn_dim = 0;      // I, SwiGLU intermediate size
  int max_seq_len = 0;  // context length
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  // Init std for embeddings and linears; 0 means TinyLlama's sqrt(2 / (5 * dim)).
  double init_std = 0;

  int head_dim() const { return dim / n_heads; }
  // A sequence length as configs and flags give it: 0 means the model's context. The one
  // place that rule lives (training config, eval, bench).
  int seq_len_or_context(int seq_len) const { return seq_len == 0 ? max_seq_len : seq_len; }
  int qkv_dim() const { return (n_heads + 2 * n_kv_heads) * head_dim(); }
  void validate() const;  // throws naming the problem

  // Parameters in all; and without the input embedding (the N of the MFU formula).
  int64_t num_params() const;
  int64_t num_params_no_embedding() const;
  // Training FLOPs per token: 6N + 12 L C T (the MFU convention of PaLM, TinyLlama and
  // bench/RESULTS.md), T = seq_len.
  double flops_per_token(int seq_len) const;

  json to_json() const;
  // Reads {"preset": name, ...overrides}; unknown keys are an error.
  static ModelConfig from_json(const json& j, const std::string& path = "model");
  static ModelConfig from_preset(const std::string& name);
  static std::vector<std::string> preset_names();
};

// Where two configs describe different networks: the first key of to_json() that differs,
// with both values as JSON text; key "" when they are the same network. The preset name
// and init_std (how fresh weights are drawn) do not change the network. Resume and
// --init-from both ask this.
struct ArchitectureDifference {
  std::string key, a, b;
  bool none() const { return key.empty(); }
};
ArchitectureDifference architecture_difference(const ModelConfig& a, const ModelConfig& b);
inline bool same_architecture(const ModelConfig& a, const ModelConfig& b) {
  return architecture_difference(a, b).none();
}

}  // namespace tl
