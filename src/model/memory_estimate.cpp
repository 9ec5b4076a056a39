#include "model/memory_estimate.h"

#include <cstdio>

#include "core/error.h"
#include "model/fp8_linear.h"
#include "model/llama.h"
#include "model/param_layout.h"

namespace tl {

std::string format_bytes(double b) {
  char buf[32];
  if (b >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f GiB", b / (1024.0 * 1024 * 1024));
  else
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024));
  return buf;
}

MemoryEstimate estimate_training_memory(const ModelConfig& cfg, int micro_batch, int seq_len,
                                        DType compute, bool recompute, bool fp8) {
  MemoryEstimate e;
  const size_t P = size_t(ParamLayout(cfg).total());
  e.weights = P * 4 + (compute == DType::F32 ? 0 : P * dtype_size(compute));
  e.gradients = P * 4;
  e.optimizer = 2 * P * 4;
  e.activations = LlamaModel::activation_bytes(cfg, micro_batch, seq_len, compute, recompute, fp8);
  // Output head: a chunk of up to 8192 tokens' logits, unless the backward's dgu and dsw
  // (lent to it, LlamaModel's head_ws) hold it; 32 MiB GEMM workspace; attention and
  // reduction scratch of the order of one activation tensor.
  const size_t N = size_t(micro_batch) * size_t(seq_len);
  const size_t head_chunk =
      std::min<size_t>(N, 8192) * size_t(cfg.vocab_size) * dtype_size(compute);
  const size_t lent = 3 * N * size_t(cfg.ffn_dim) * dtype_size(compute);
  e.workspace = (head_chunk <= lent ? 0 : head_chunk) + (32u << 20) + N * size_t(cfg.dim) * 4;
  // FP8: the codes' scratch and the kept W^T (not kept under FSDP: this single-device
  // estimate counts it anyway) in workspace; wo's kept x^T grows with the micro-batch.
  if (fp8) {
    e.workspace += Fp8Linears::scratch_bytes(cfg, int64_t(N)) + Fp8Linears::kept_bytes(cfg);
    e.activations += Fp8Linears::kept_input_bytes(cfg, int64_t(N));
  }
  return e;
}

void check_fits(const MemoryEstimate& e, size_t available, const std::string& device) {
  if (available == 0 || e.total() <= available) return;
  fail("this configuration needs about ", format_bytes(double(e.total())), " of memory on ", device,
       " (weights ", format_bytes(double(e.weights)), ", gradients ",
       format_bytes(double(e.gradients)), ", optimizer ", format_bytes(double(e.optimizer)),
       ", activations ", format_bytes(double(e.activations)), ", workspace ",
       format_bytes(double(e.workspace)), ") but the device has ", format_bytes(double(available)),
       "; reduce batch.micro_batch (and raise batch.grad_accum to keep the global batch), "
       "set train.recompute=true, or shorten data.seq_len");
}

}  // namespace tl
