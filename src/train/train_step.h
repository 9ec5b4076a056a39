// One optimizer step, the same for the trainer, the bench and the sharded bench: zeroed
// gradients, grad_accum micro-batches of forward and backward, the loss summed over ranks,
// then the optimizer's update, skipped when the loss is not finite.
#pragma once
#include <cstdint>
#include <functional>

#include "model/llama.h"
#include "optim/adamw.h"
#include "train/parallelism.h"

namespace tl {

struct StepShape {
  int micro_batch = 1;   // B
  int seq_len = 1;       // T
  int grad_accum = 1;    // micro-batches per step
  float loss_scale = 1;  // 1 / the global batch's token count (every rank's)
};

// Points tokens and targets (host i32 [B*T] each) at the next micro-batch of this rank.
using NextMicroBatch = std::function<void(const int32_t*& tokens, const int32_t*& targets)>;

struct StepOutcome {
  LossSum loss;       // over every rank's micro-batches
  StepResult update;  // grad_norm NaN and nothing applied when the loss was not finite
};

// before_update, when set, runs once the gradients exist and before the loss is reduced
// and the update applied (tests inject faults there).
StepOutcome train_step(LlamaModel& model, Parallelism& par, const StepShape& shape, float lr,
                       const NextMicroBatch& next, const std::function<void()>& before_update = {});

// AdamW over the flat master weights and gradients of a model that holds them itself;
// refreshes its compute copy.
StepResult optimizer_step(AdamW& opt, LlamaModel& model, float lr);

}  // namespace tl
