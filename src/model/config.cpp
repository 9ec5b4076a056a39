#include "model/config.h"

#include <cmath>

namespace tl {

namespace {
struct Preset {
  const char* name;
  int vocab, dim, layers, heads, kv_heads, ffn, ctx;
};
// tinyllama-1.1b is the released TinyLlama; the others are small shapes for demos and tests.
constexpr Preset kPresets[] = {
    {"tinyllama-1.1b", 32000, 2048, 22, 32, 4, 5632, 2048},
    {"tinyllama-120m", 32000, 768, 12, 12, 4, 2048, 2048},
    {"tiny", 4096, 192, 4, 6, 2, 512, 256},
    {"micro", 512, 64, 2, 4, 2, 176, 64},
};
}  // namespace

std::vector<std::string> ModelConfig::preset_names() {
  std::vector<std::string> out;
  for (const auto& p : kPresets) out.push_back(p.name);
  return out;
}

ModelConfig ModelConfig::from_preset(const std::string& name) {
  for (const auto& p : kPresets) {
    if (name != p.name) continue;
    ModelConfig c;
    c.preset = p.name;
    c.vocab_size = p.vocab;
    c.dim = p.dim;
    c.n_layers = p.layers;
    c.n_heads = p.heads;
    c.n_kv_heads = p.kv_heads;
    c.ffn_dim = p.ffn;
    c.max_seq_len = p.ctx;
    return c;
  }
  std::string names;
  for (const auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
  fail("unknown model preset '", name, "' (known: ", names, ")");
}

ModelConfig ModelConfig::from_json(const json& j, const std::string& path) {
  JsonReader r(j, path);
  ModelConfig c;
  std::string preset;
  r.get("preset", preset);
  if (!preset.empty() && preset != "custom") c = from_preset(preset);
  r.get("vocab_size", c.vocab_size);
  r.get("dim", c.dim);
  r.get("n_layers", c.n_layers);
  r.get("n_heads", c.n_heads);
  r.get("n_kv_heads", c.n_kv_heads);
  r.get("ffn_dim", c.ffn_dim);
  r.get("max_seq_len", c.max_seq_len);
  r.get("norm_eps", c.norm_eps);
  r.get("rope_theta", c.rope_theta);
  r.get("init_std", c.init_std);
  r.finish();
  // A preset changed by an override is no longer that preset.
  if (!preset.empty() && preset != "custom") {
    ModelConfig ref = from_preset(preset);
    ref.norm_eps = c.norm_eps;
    ref.rope_theta = c.rope_theta;
    ref.init_std = c.init_std;
    if (ref.to_json() != c.to_json()) c.preset = "custom";
  }
  c.validate();
  return c;
}

json ModelConfig::to_json() const {
  return json{{"preset", preset},         {"vocab_size", vocab_size},   {"dim", dim},
              {"n_layers", n_layers},     {"n_heads", n_heads},         {"n_kv_heads", n_kv_heads},
              {"ffn_dim", ffn_dim},       {"max_seq_len", max_seq_len}, {"norm_eps", norm_eps},
              {"rope_theta", rope_theta}, {"init_std", init_std}};
}

void ModelConfig::validate() const {
  auto positive = [](const char* key, int v) {
    TL_CHECK(v > 0, "model config: ", key, " must be positive, got ", v);
  };
  positive("vocab_size", vocab_size);
  positive("dim", dim);
  positive("n_layers", n_layers);
  positive("n_heads", n_heads);
  positive("n_kv_heads", n_kv_heads);
  positive("ffn_dim", ffn_dim);
  positive("max_seq_len", max_seq_len);
  TL_CHECK(dim % n_heads == 0, "model config: n_heads (", n_heads, ") must divide dim (", dim, ")");
  TL_CHECK(n_heads % n_kv_heads == 0, "model config: n_kv_heads (", n_kv_heads,
           ") must divide n_heads (", n_heads, ")");
  TL_CHECK(head_dim() % 2 == 0, "model config: the head dim dim/n_heads = ", head_dim(),
           " must be even for rotary embeddings");
  TL_CHECK(norm_eps > 0 && std::isfinite(norm_eps), "model config: norm_eps must be positive");
  TL_CHECK(rope_theta > 0 && std::isfinite(rope_theta),
           "model config: rope_theta must be positive");
  TL_CHECK(init_std >= 0, "model config: init_std must not be negative");
  TL_CHECK(vocab_size <= (1 << 30) && dim <= (1 << 20) && ffn_dim <= (1 << 22),
           "model config: sizes are implausibly large");
}

ArchitectureDifference architecture_difference(const ModelConfig& a, const ModelConfig& b) {
  json ja = a.to_json(), jb = b.to_json();
  for (const char* k : {"preset", "init_std"}) {
    ja.erase(k);
    jb.erase(k);
  }
  for (auto it = ja.begin(); it != ja.end(); ++it)
    if (jb[it.key()] != it.value()) return {it.key(), it.value().dump(), jb[it.key()].dump()};
  return {};
}

int64_t ModelConfig::num_params_no_embedding() const {
  int64_t C = dim, per_layer = 2 * C + C * qkv_dim() + C * C + 3 * C * int64_t(ffn_dim);
  return per_layer * n_layers + C + int64_t(vocab_size) * C;
}

int64_t ModelConfig::num_params() const {
  return num_params_no_embedding() + int64_t(vocab_size) * dim;
}

double ModelConfig::flops_per_token(int seq_len) const {
  return 6.0 * double(num_params_no_embedding()) + 12.0 * n_layers * dim * double(seq_len);
}

}  // namespace tl
