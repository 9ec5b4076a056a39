#include "train/train_step.h"

namespace tl {

StepResult optimizer_step(AdamW& opt, LlamaModel& model, float lr) {
  Tensor compute = model.compute_params();
  return opt.step(model.params(), model.grads(),
                  compute.data == model.params().data ? Tensor() : compute, lr);
}

}  // namespace tl
