#include "checkpoint/hf_tensors.h"

namespace tl {

std::vector<HfTensorSlot> hf_tensor_slots(const ModelConfig& cfg, const ParamLayout& layout) {
  const int64_t C = cfg.dim, V = cfg.vocab_size, I = cfg.ffn_dim, hd = cfg.head_dim();
  const int64_t q_rows = int64_t(cfg.n_heads) * hd, kv_rows = int64_t(cfg.n_kv_heads) * hd;
  std::vector<HfTensorSlot> out;
  auto add = [&](std::string name, std::vector<int64_t> shape, ParamKind kind, int layer,
                 int64_t row = 0) {
    const ParamInfo& p = layout.get(kind, layer);
    int64_t row_len = shape.size() == 2 ? shape[1] : 0;
    out.push_back({std::move(name), std::move(shape), p.offset + row * row_len});
  };
  add("model.embed_tokens.weight", {V, C}, ParamKind::Embed, -1);
  for (int l = 0; l < cfg.n_layers; ++l) {
    const std::string pre = "model.layers." + std::to_string(l) + ".";
    add(pre + "input_layernorm.weight", {C}, ParamKind::AttnNorm, l);
    add(pre + "self_attn.q_proj.weight", {q_rows, C}, ParamKind::Wqkv, l, 0);
    add(pre + "self_attn.k_proj.weight", {kv_rows, C}, ParamKind::Wqkv, l, q_rows);
    add(pre + "self_attn.v_proj.weight", {kv_rows, C}, ParamKind::Wqkv, l, q_rows + kv_rows);
    add(pre + "self_attn.o_proj.weight", {C, C}, ParamKind::Wo, l);
    add(pre + "post_attention_layernorm.weight", {C}, ParamKind::MlpNorm, l);
    add(pre + "mlp.gate_proj.weight", {I, C}, ParamKind::WGateUp, l, 0);
    add(pre + "mlp.up_proj.weight", {I, C}, ParamKind::WGateUp, l, I);
    add(pre + "mlp.down_proj.weight", {C, I}, ParamKind::WDown, l);
  }
  add("model.norm.weight", {C}, ParamKind::FinalNorm, -1);
  add("lm_head.weight", {V, C}, ParamKind::Head, -1);
  return out;
}

}  // namespace tl
