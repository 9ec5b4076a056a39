#include "model/param_layout.h"

namespace tl {

namespace {
constexpr int kKinds = 9;
int64_t align_up(int64_t x) { return (x + kParamAlign - 1) / kParamAlign * kParamAlign; }
}  // namespace

const char* param_kind_name(ParamKind k) {
  switch (k) {
    case ParamKind::Embed: return "embed";
    case ParamKind::AttnNorm: return "attn_norm";
    case ParamKind::Wqkv: return "wqkv";
    case ParamKind::Wo: return "wo";
    case ParamKind::MlpNorm: return "mlp_norm";
    case ParamKind::WGateUp: return "w_gate_up";
    case ParamKind::WDown: return "w_down";
    case ParamKind::FinalNorm: return "final_norm";
    case ParamKind::Head: return "head";
  }
  return "?";
}

ParamLayout::ParamLayout(const ModelConfig& cfg) : n_layers_(cfg.n_layers) {
  const int64_t C = cfg.dim, V = cfg.vocab_size, I = cfg.ffn_dim, Q = cfg.qkv_dim();
  index_.assign(size_t(kKinds) * size_t(cfg.n_layers + 1), SIZE_MAX);
  auto add = [&](ParamKind kind, int layer, Shape shape) {
    std::string name = layer >= 0 ? cat("layers.", layer, ".", param_kind_name(kind))
                                  : std::string(param_kind_name(kind));
    index_[size_t(layer + 1) * kKinds + size_t(kind)] = params_.size();
    params_.push_back({name, kind, layer, shape, total_});
    total_ = align_up(total_ + shape.numel());
  };
  add(ParamKind::Embed, -1, {V, C});
  for (int l = 0; l < cfg.n_layers; ++l) {
    add(ParamKind::AttnNorm, l, {C});
    add(ParamKind::Wqkv, l, {Q, C});  // rows: q heads, then k heads, then v heads
    add(ParamKind::Wo, l, {C, C});
    add(ParamKind::MlpNorm, l, {C});
    add(ParamKind::WGateUp, l, {2 * I, C});  // rows: gate, then up
    add(ParamKind::WDown, l, {C, I});
  }
  add(ParamKind::FinalNorm, -1, {C});
  add(ParamKind::Head, -1, {V, C});
}

const ParamInfo& ParamLayout::get(ParamKind kind, int layer) const {
  size_t slot = size_t(layer + 1) * kKinds + size_t(kind);
  TL_CHECK(layer >= -1 && layer < n_layers_ && index_[slot] != SIZE_MAX, "no parameter ",
           param_kind_name(kind), " for layer ", layer);
  return params_[index_[slot]];
}

const ParamInfo* ParamLayout::find(const std::string& name) const {
  for (const auto& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

int64_t ParamLayout::layer_begin(int l) const { return get(ParamKind::AttnNorm, l).offset; }

int64_t ParamLayout::layer_end(int l) const {
  return l + 1 < n_layers_ ? layer_begin(l + 1) : get(ParamKind::FinalNorm).offset;
}

}  // namespace tl
