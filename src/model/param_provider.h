// Where the model's weights and gradients live when the model does not own them (sharded
// training, parallel/fsdp.h). The model asks for views and brackets each unit's use with
// hooks; it never learns how the views are filled.
//
// Units: 0 = the embedding, 1 + l = layer l, n_layers + 1 = final norm + output head (the
// ranges of model/sharding.h). Protocol, per micro-batch:
//   forward:  before_forward(u) ... ops reading u's weights ... after_forward(u), u rising;
//             before_forward(u + 1) comes before after_forward(u), because a layer's last
//             op (the fused residual + next norm) reads the next unit's norm weight.
//   backward: before_backward(u) ... ops reading u's weights and adding into u's
//             gradients ... after_backward(u), u falling, unit by unit; the head unit's
//             backward starts right after its forward (the loss and its gradient are one op).
// Views are valid only between a unit's before and after hooks.
#pragma once
#include <vector>

#include "core/tensor.h"
#include "model/param_layout.h"

namespace tl {

class ParamProvider {
 public:
  virtual ~ParamProvider() = default;
  virtual Tensor weight(const ParamInfo& p) = 0;  // compute dtype, p.shape
  virtual Tensor grad(const ParamInfo& p) = 0;    // f32, p.shape, accumulated with +=

  virtual void before_forward(int unit) = 0;
  virtual void after_forward(int unit) = 0;
  virtual void before_backward(int unit) = 0;
  virtual void after_backward(int unit) = 0;

  // Full flat parameters [P] in and out (may be collective: every rank calls them).
  virtual void set_params(const std::vector<float>& full) = 0;
  virtual std::vector<float> get_params() = 0;
  virtual void zero_grads() = 0;
};

inline int layer_unit(int layer) { return layer + 1; }
inline int head_unit(int n_layers) { return n_layers + 1; }

}  // namespace tl
