// Where every parameter lives in the flat f32 parameter (and gradient, AdamW m/v) arrays.
// Order: embedding, then each layer's tensors contiguously (so a layer is one range,
// which sharding uses), then the final norm and the output head. Offsets are padded to
// kParamAlign elements so every tensor starts 256-byte aligned in any dtype.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace tl {

enum class ParamKind : uint8_t {
  Embed,
  AttnNorm,
  Wqkv,
  Wo,
  MlpNorm,
  WGateUp,
  WDown,
  FinalNorm,
  Head
};

constexpr int64_t kParamAlign = 128;

struct ParamInfo {
  std::string name;  // "layers.3.wqkv"
  ParamKind kind;
  int layer;  // -1 for embed / final norm / head
  Shape shape;
  int64_t offset;  // in elements into the flat arrays
  int64_t numel() const { return shape.numel(); }
};

class ParamLayout {
 public:
  explicit ParamLayout(const ModelConfig& cfg);

  const std::vector<ParamInfo>& params() const { return params_; }
  int64_t total() const { return total_; }  // flat length, padding included
  const ParamInfo& get(ParamKind kind, int layer = -1) const;
  const ParamInfo* find(const std::string& name) const;
  // [begin, end) element range of layer l (all its tensors and their padding).
  int64_t layer_begin(int l) const;
  int64_t layer_end(int l) const;

 private:
  std::vector<ParamInfo> params_;
  std::vector<size_t> index_;  // (kind, layer) -> position in params_
  int n_layers_;
  int64_t total_ = 0;
};

const char* param_kind_name(ParamKind k);

}  // namespace tl
