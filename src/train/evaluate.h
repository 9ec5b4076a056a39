// Mean next-token loss over held-out blocks.
#pragma once
#include "data/loader.h"
#include "model/llama.h"

namespace tl {

// Runs the first max_blocks blocks (all when max_blocks <= 0) of `blocks` in order,
// micro_batch rows at a time.
LossSum evaluate(LlamaModel& model, const SequentialBlocks& blocks, int seq_len, int micro_batch,
                 int64_t max_blocks);

}  // namespace tl
