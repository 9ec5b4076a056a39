// The Hugging Face Llama tensor names and where each one lives in our flat layout.
// Every HF tensor is a contiguous run of rows of one of our parameters: q/k/v_proj are
// rows [0, H*hd), [H*hd, (H+K)*hd), [(H+K)*hd, (H+2K)*hd) of wqkv; gate/up_proj are
// rows [0, I) and [I, 2I) of w_gate_up. So import and export need no reshuffling.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/param_layout.h"

namespace tl {

struct HfTensorSlot {
  std::string name;            // "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;  // as HF stores it, [out_features, in_features] for linears
  int64_t offset = 0;          // first element in the flat parameter array
};

// In checkpoint order: embedding, each layer's tensors, final norm, lm_head.
std::vector<HfTensorSlot> hf_tensor_slots(const ModelConfig& cfg, const ParamLayout& layout);

}  // namespace tl
