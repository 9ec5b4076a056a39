// config.json <-> ModelConfig. Reading accepts what real Llama checkpoints hold across
// transformers versions and refuses anything our model would compute differently.
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <optional>

#include "checkpoint/hf.h"

namespace tl {

namespace {

// HF writes null for unset fields: treat those as absent, then read with JsonReader (which
// names the key and checks the type; unknown keys are fine here, so no finish()).
json without_nulls(const json& j) {
  json out = json::object();
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!it->is_null()) out[it.key()] = *it;
  return out;
}

// RoPE base: top-level rope_theta (transformers 4.x) or inside rope_parameters (5.x) or
// rope_scaling; only the unscaled "default" RoPE is something our model computes.
double rope_theta_of(const json& hf) {
  std::optional<double> theta;
  auto take = [&](JsonReader& r, const std::string& where) {
    double v = 0;
    r.get("rope_theta", v);
    TL_CHECK(!theta || *theta == v, "config: rope_theta ", v, " in ", where, " disagrees with ",
             *theta);
    theta = v;
  };
  JsonReader top(hf, "");
  if (top.has("rope_theta")) take(top, "rope_theta");
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    if (!hf.contains(key)) continue;
    TL_CHECK(hf[key].is_object(), "config: '", key, "' must be an object or null, got ",
             hf[key].dump());
    const json rope = without_nulls(hf[key]);
    JsonReader r(rope, key);
    std::string type = "default";
    r.get("type", type);  // older spelling
    r.get("rope_type", type);
    TL_CHECK(type == "default", "config: unsupported RoPE scaling '", type, "' in '", key,
             "' (only unscaled \"default\" RoPE is supported)");
    if (r.has("rope_theta")) take(r, std::string(key) + ".rope_theta");
  }
  return theta.value_or(10000.0);  // the LlamaConfig default
}

// The shortest decimal that reads back as f, so 1e-5f is written as 1e-05, not 9.99e-06.
double shortest(float f) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof buf, f);
  *res.ptr = '\0';
  return std::strtod(buf, nullptr);
}

// A size field of config.json: 1 to `most`.
void check_range(const char* key, int value, int most) {
  TL_CHECK(value >= 1 && value <= most, "config: ", key, " is ", value, "; expected 1 to ", most);
}

}  // namespace

ModelConfig model_config_from_hf(const json& hf_config) {
  TL_CHECK(hf_config.is_object(), "config: must be a JSON object");
  const json hf = without_nulls(hf_config);
  JsonReader r(hf, "");
  std::string type, act = "silu";
  bool attention_bias = false, mlp_bias = false, tied = false;
  r.get("model_type", type);
  TL_CHECK(type == "llama", "config: model_type is '", type,
           "'; only \"llama\" models are supported");
  r.get("hidden_act", act);
  TL_CHECK(act == "silu", "config: hidden_act is '", act, "'; Llama's SwiGLU needs \"silu\"");
  r.get("attention_bias", attention_bias);
  r.get("mlp_bias", mlp_bias);
  TL_CHECK(!attention_bias, "config: attention_bias is true; biases are not supported");
  TL_CHECK(!mlp_bias, "config: mlp_bias is true; biases are not supported");
  r.get("tie_word_embeddings", tied);  // type check only; import_hf uses it

  ModelConfig c;
  c.max_seq_len = 2048;  // LlamaConfig defaults for keys a config may omit
  c.norm_eps = 1e-6f;
  r.require("vocab_size", c.vocab_size);
  r.require("hidden_size", c.dim);
  r.require("intermediate_size", c.ffn_dim);
  r.require("num_hidden_layers", c.n_layers);
  r.require("num_attention_heads", c.n_heads);
  c.n_kv_heads = c.n_heads;
  r.get("num_key_value_heads", c.n_kv_heads);
  r.get("max_position_embeddings", c.max_seq_len);
  // Sizes past any released Llama are refused here, by their config.json names, before
  // anything is allocated for them.
  check_range("vocab_size", c.vocab_size, 1 << 24);
  check_range("hidden_size", c.dim, 1 << 16);
  check_range("intermediate_size", c.ffn_dim, 1 << 18);
  check_range("num_hidden_layers", c.n_layers, 1024);
  check_range("num_attention_heads", c.n_heads, 1024);
  check_range("num_key_value_heads", c.n_kv_heads, 1024);
  check_range("max_position_embeddings", c.max_seq_len, 1 << 24);
  r.get("rms_norm_eps", c.norm_eps);
  c.rope_theta = float(rope_theta_of(hf));
  if (r.has("head_dim")) {
    int head_dim = 0;
    r.get("head_dim", head_dim);
    TL_CHECK(int64_t(head_dim) * c.n_heads == c.dim, "config: head_dim ", head_dim,
             " is not hidden_size / num_attention_heads (", c.dim, " / ", c.n_heads,
             "); such models are not supported");
  }
  c.validate();
  for (const auto& name : ModelConfig::preset_names()) {  // name a known shape
    ModelConfig p = ModelConfig::from_preset(name);
    p.norm_eps = c.norm_eps;
    p.rope_theta = c.rope_theta;
    p.preset = c.preset;
    if (p.to_json() == c.to_json()) c.preset = name;
  }
  return c;
}

json hf_config_from_model(const ModelConfig& cfg, int bos_id, int eos_id) {
  cfg.validate();
  const double init_std = cfg.init_std > 0 ? cfg.init_std : std::sqrt(2.0 / (5.0 * cfg.dim));
  return json{
      {"architectures", json::array({"LlamaForCausalLM"})},
      {"model_type", "llama"},
      {"vocab_size", cfg.vocab_size},
      {"hidden_size", cfg.dim},
      {"intermediate_size", cfg.ffn_dim},
      {"num_hidden_layers", cfg.n_layers},
      {"num_attention_heads", cfg.n_heads},
      {"num_key_value_heads", cfg.n_kv_heads},
      {"head_dim", cfg.head_dim()},
      {"max_position_embeddings", cfg.max_seq_len},
      {"rms_norm_eps", shortest(cfg.norm_eps)},
      {"rope_theta", shortest(cfg.rope_theta)},
      {"rope_scaling", nullptr},
      // transformers 5 spelling; 4.x keeps it as an unused attribute
      {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", shortest(cfg.rope_theta)}}},
      {"hidden_act", "silu"},
      {"initializer_range", init_std},
      {"bos_token_id", bos_id},
      {"eos_token_id", eos_id},
      {"tie_word_embeddings", false},
      {"use_cache", true},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"mlp_bias", false},
      {"pretraining_tp", 1},
      {"torch_dtype", "float32"},
      {"dtype", "float32"}};
}

}  // namespace tl
