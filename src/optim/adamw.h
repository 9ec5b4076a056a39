// AdamW over flat f32 parameter arrays, with global-norm clipping done on the device (the
// norm is read back once per step, for logging and the non-finite guard). It knows arrays,
// not models: the trainer hands it the model's arrays (train/train_step.h), FSDP its shard.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "backend/backend.h"

namespace tl {

struct AdamWConfig {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;
  float grad_clip = 1.0f;  // max global L2 norm; <= 0 disables clipping
};

struct StepResult {
  double grad_norm = 0;  // before clipping
  bool applied = false;  // false when the gradient was not finite (update skipped)
};

class AdamW {
 public:
  AdamW(Backend& be, int64_t num_params, AdamWConfig cfg);

  // Clips and updates params from grads ([num_params] f32); params_compute (may be empty)
  // receives the updated parameters in its dtype. Skips the update (and leaves the step
  // counter) when the gradient norm is NaN or infinite. reduce_norm_sq, when set, turns
  // this rank's sum of squares (f32 [1] on the device) into the global one before it is
  // read (sharded training: params and grads are then this rank's shard).
  StepResult step(Tensor params, Tensor grads, Tensor params_compute, float lr,
                  const std::function<void(Tensor)>& reduce_norm_sq = {});

  int64_t steps_taken() const { return t_; }
  void set_steps_taken(int64_t t) { t_ = t; }
  const AdamWConfig& config() const { return cfg_; }
  // Moments to and from the host (checkpoints).
  void get_state(std::vector<float>& m, std::vector<float>& v) const;
  void set_state(const std::vector<float>& m, const std::vector<float>& v);

 private:
  Backend& be_;
  AdamWConfig cfg_;
  int64_t n_;
  int64_t t_ = 0;
  Buffer m_, v_, norm_sq_;
};

}  // namespace tl
