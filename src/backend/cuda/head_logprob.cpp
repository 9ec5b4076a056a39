// The output head for evaluation: logits for one chunk of rows at a time (bf16, the same
// chunking and scratch as head_cross_entropy), reduced to log-probabilities of the targets.
#include <algorithm>

#include "backend/cuda/checks.h"
#include "backend/cuda/head_cross_entropy.h"
#include "backend/cuda/logprob.h"

namespace tl::gpu {

void head_logprob(Tensor logp, Tensor greedy, Tensor x, Tensor weight, Tensor targets,
                  CublasGemm& gemm, Profiler& prof, Scratch& scratch, cudaStream_t stream) {
  const char* op = "head_logprob";
  check_cuda(op, "weight", weight, DType::BF16);
  TL_CHECK(weight.ndim() == 2, op, ": weight must be [V, C], got ", weight.str());
  const int64_t V = weight.dim(0), C = weight.dim(1);
  check_cuda(op, "x", x, DType::BF16);
  check_rows(op, "x", x);
  check_shape(op, "x", x, with_last(x.shape, C));
  check_cuda(op, "logp", logp, DType::F32);
  check_shape(op, "logp", logp, leading(x.shape));
  check_cuda(op, "greedy", greedy, DType::I32);
  check_shape(op, "greedy", greedy, leading(x.shape));
  check_cuda(op, "targets", targets, DType::I32);
  check_shape(op, "targets", targets, leading(x.shape));
  const int64_t N = rows_of(x);
  if (N == 0) return;
  const Tensor x2 = x.view({N, C}), lp = logp.view({N}), gr = greedy.view({N}),
               tg = targets.view({N});
  const int64_t chunk = head_chunk_rows(N, V);
  void* scratch_logits = scratch.get(size_t(chunk * V) * 2, stream);  // bf16 [chunk, V]
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    const int64_t r1 = std::min(N, r0 + chunk);
    const Tensor z(scratch_logits, DType::BF16, Device::CUDA, {r1 - r0, V});  // [n, V]
    {
      auto s = prof.scope(ProfCat::Matmul);
      gemm.forward(op, z, x2.rows(r0, r1), weight);
    }
    auto s = prof.scope(ProfCat::Other);
    logprob_rows(lp.rows(r0, r1), gr.rows(r0, r1), z, tg.rows(r0, r1), stream);
  }
}

}  // namespace tl::gpu
