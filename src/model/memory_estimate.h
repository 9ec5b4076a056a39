// What a training configuration needs in device memory, so a run that cannot fit says so
// before it starts, with the knobs that reduce it.
#pragma once
#include <cstddef>
#include <string>

#include "core/dtype.h"
#include "model/config.h"

namespace tl {

struct MemoryEstimate {
  size_t weights = 0;      // f32 master + compute copy (when not f32)
  size_t gradients = 0;    // f32
  size_t optimizer = 0;    // AdamW m and v, f32
  size_t activations = 0;  // one micro-batch
  size_t workspace = 0;    // output-head chunk, GEMM workspace, attention scratch (approx.)
  size_t total() const { return weights + gradients + optimizer + activations + workspace; }
};

// fp8: train.precision fp8 (model/fp8_linear.h: the codes' scratch and the kept W^T in
// workspace, wo's kept x^T in activations).
MemoryEstimate estimate_training_memory(const ModelConfig& cfg, int micro_batch, int seq_len,
                                        DType compute, bool recompute, bool fp8 = false);
// Throws a message with the estimate, what the device has and the knobs, when
// total > available (available 0 = unknown: no check).
void check_fits(const MemoryEstimate& e, size_t available, const std::string& device);
std::string format_bytes(double bytes);  // "12.3 GiB"

}  // namespace tl
