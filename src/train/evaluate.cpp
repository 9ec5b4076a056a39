#include "train/evaluate.h"

#include <algorithm>
#include <vector>

namespace tl {

LossSum evaluate(LlamaModel& model, const SequentialBlocks& blocks, int seq_len, int micro_batch,
                 int64_t max_blocks) {
  int64_t n = blocks.num_blocks();
  if (max_blocks > 0) n = std::min(n, max_blocks);
  std::vector<int32_t> tokens(size_t(micro_batch) * seq_len), targets(tokens.size());
  LossSum total;
  for (int64_t start = 0; start < n; start += micro_batch) {
    const int rows = int(std::min<int64_t>(micro_batch, n - start));
    for (int r = 0; r < rows; ++r)
      blocks.read(start + r, tokens.data() + size_t(r) * seq_len,
                  targets.data() + size_t(r) * seq_len);
    // A short last batch is padded with ignored rows, so the activation shape never changes.
    std::fill(tokens.begin() + ptrdiff_t(rows) * seq_len, tokens.end(), 0);
    std::fill(targets.begin() + ptrdiff_t(rows) * seq_len, targets.end(), -1);
    total += model.forward_loss(tokens.data(), targets.data(), micro_batch, seq_len);
  }
  return total;
}

}  // namespace tl
