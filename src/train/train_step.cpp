#include "train/train_step.h"

#include <cmath>

namespace tl {

StepOutcome train_step(LlamaModel& model, Parallelism& par, const StepShape& s, float lr,
                       const NextMicroBatch& next, const std::function<void()>& before_update) {
  model.zero_grads();
  LossSum loss;
  for (int k = 0; k < s.grad_accum; ++k) {
    par.begin_micro_batch(k + 1 == s.grad_accum);
    const int32_t* tokens = nullptr;
    const int32_t* targets = nullptr;
    next(tokens, targets);
    loss += model.forward_backward(tokens, targets, s.micro_batch, s.seq_len, s.loss_scale);
  }
  if (before_update) before_update();
  StepOutcome out;
  out.loss = par.global_loss(loss);
  if (std::isfinite(out.loss.mean()))  // the optimizer skips a non-finite gradient itself
    out.update = par.update(lr);
  else
    out.update.grad_norm = NAN;
  return out;
}

StepResult optimizer_step(AdamW& opt, LlamaModel& model, float lr) {
  Tensor compute = model.compute_params();
  return opt.step(model.params(), model.grads(),
                  compute.data == model.params().data ? Tensor() : compute, lr);
}

}  // namespace tl
