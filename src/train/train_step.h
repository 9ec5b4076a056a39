// One optimizer step of a model held by a single process.
#pragma once
#include "model/llama.h"
#include "optim/adamw.h"

namespace tl {

// AdamW over the model's flat master weights and gradients; refreshes the compute copy.
StepResult optimizer_step(AdamW& opt, LlamaModel& model, float lr);

}  // namespace tl
