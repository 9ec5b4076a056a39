// config.json <-> ModelConfig. Reading accepts what real Llama checkpoints hold across
// transformers versions and refuses anything our model would compute differently.
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <optional>

#include "checkpoint/hf.h"

namespace tl {

namespace {

// Typed, named access to config.json keys; null counts as absent (HF writes nulls).
struct HfKeys {
  const json& j;
  bool has(const char* key) const { return j.contains(key) && !j[key].is_null(); }
  int integer(const char* key) const {
    TL_CHECK(has(key), "missing '", key, "'");
    const json& v = j[key];
    // Some writers store integers as floats (2048.0); accept those when exact.
    double d = v.is_number() ? v.get<double>() : 0.5;
    TL_CHECK(v.is_number() && d == std::floor(d) && d >= INT32_MIN && d <= INT32_MAX, "'", key,
             "' must be an integer, got ", v.dump());
    return int(d);
  }
  int integer(const char* key, int fallback) const { return has(key) ? integer(key) : fallback; }
  double number(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    TL_CHECK(j[key].is_number(), "'", key, "' must be a number, got ", j[key].dump());
    return j[key].get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    TL_CHECK(j[key].is_boolean(), "'", key, "' must be true or false, got ", j[key].dump());
    return j[key].get<bool>();
  }
  std::string string(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    TL_CHECK(j[key].is_string(), "'", key, "' must be a string, got ", j[key].dump());
    return j[key].get<std::string>();
  }
};

// RoPE base: top-level rope_theta (transformers 4.x) or inside rope_parameters (5.x) or
// rope_scaling; only the unscaled "default" RoPE is something our model computes.
double rope_theta_of(const json& j) {
  std::optional<double> theta;
  auto take = [&](double v, const std::string& where) {
    TL_CHECK(!theta || *theta == v, "rope_theta ", v, " in ", where, " disagrees with ", *theta);
    theta = v;
  };
  HfKeys top{j};
  if (top.has("rope_theta")) take(top.number("rope_theta", 0), "rope_theta");
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    if (!top.has(key)) continue;
    TL_CHECK(j[key].is_object(), "'", key, "' must be an object or null, got ", j[key].dump());
    HfKeys r{j[key]};
    std::string type = r.string("rope_type", r.string("type", "default"));
    TL_CHECK(type == "default", "unsupported RoPE scaling '", type, "' in '", key,
             "' (only unscaled \"default\" RoPE is supported)");
    if (r.has("rope_theta")) take(r.number("rope_theta", 0), std::string(key) + ".rope_theta");
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

}  // namespace

ModelConfig model_config_from_hf(const json& hf) {
  TL_CHECK(hf.is_object(), "HF config must be a JSON object");
  HfKeys k{hf};
  try {
    const std::string type = k.string("model_type", "");
    TL_CHECK(type == "llama", "model_type is '", type, "'; only \"llama\" models are supported");
    const std::string act = k.string("hidden_act", "silu");
    TL_CHECK(act == "silu", "hidden_act is '", act, "'; Llama's SwiGLU needs \"silu\"");
    TL_CHECK(!k.boolean("attention_bias", false), "attention_bias is true; biases are not supported");
    TL_CHECK(!k.boolean("mlp_bias", false), "mlp_bias is true; biases are not supported");
    k.boolean("tie_word_embeddings", false);  // type check; import_hf uses it

    ModelConfig c;
    c.vocab_size = k.integer("vocab_size");
    c.dim = k.integer("hidden_size");
    c.ffn_dim = k.integer("intermediate_size");
    c.n_layers = k.integer("num_hidden_layers");
    c.n_heads = k.integer("num_attention_heads");
    c.n_kv_heads = k.integer("num_key_value_heads", c.n_heads);
    c.max_seq_len = k.integer("max_position_embeddings", 2048);
    c.norm_eps = float(k.number("rms_norm_eps", 1e-6));
    c.rope_theta = float(rope_theta_of(hf));
    TL_CHECK(c.n_heads > 0, "num_attention_heads must be positive");
    if (k.has("head_dim"))
      TL_CHECK(k.integer("head_dim") * c.n_heads == c.dim, "head_dim ", k.integer("head_dim"),
               " is not hidden_size / num_attention_heads = ", c.dim / c.n_heads,
               "; such models are not supported");
    c.validate();
    for (const auto& name : ModelConfig::preset_names()) {  // name a known shape
      ModelConfig p = ModelConfig::from_preset(name);
      p.norm_eps = c.norm_eps;
      p.rope_theta = c.rope_theta;
      p.preset = c.preset;
      if (p.to_json() == c.to_json()) c.preset = name;
    }
    return c;
  } catch (const Error& e) {
    fail("HF config: ", e.what());
  }
}

json hf_config_from_model(const ModelConfig& cfg, int bos_id, int eos_id) {
  cfg.validate();
  const double init_std = cfg.init_std > 0 ? cfg.init_std : std::sqrt(2.0 / (5.0 * cfg.dim));
  return json{{"architectures", json::array({"LlamaForCausalLM"})},
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
