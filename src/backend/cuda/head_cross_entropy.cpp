// The fused output head: logits exist for one chunk of tokens at a time (never N x V in
// f32): chunk = x @ W^T (bf16), the cross-entropy kernel turns it into losses and, in
// place, dlogits; then dx = dlogits @ W and dW += dlogits^T @ x (f32, beta = 1).
#include "backend/cuda/head_cross_entropy.h"

#include <algorithm>

#include "backend/cuda/checks.h"
#include "backend/cuda/ops.h"

namespace tl::gpu {

int64_t head_chunk_rows(int64_t N, int64_t V) {
  constexpr int64_t kChunkBytes = int64_t(512) << 20;  // 8192 rows at V = 32000
  int64_t rows = std::max<int64_t>(1, kChunkBytes / (std::max<int64_t>(V, 1) * 2));
  if (rows >= 256) rows = rows / 256 * 256;  // whole GEMM tiles
  return std::min(rows, std::max<int64_t>(N, 1));
}

void head_cross_entropy(Tensor losses, Tensor dx, Tensor dweight, Tensor x, Tensor weight,
                        Tensor targets, float loss_scale, Tensor workspace, CublasGemm& gemm,
                        Profiler& prof, Scratch& scratch, cudaStream_t stream) {
  const char* op = "head_cross_entropy";
  check_cuda(op, "weight", weight, DType::BF16);
  TL_CHECK(weight.ndim() == 2, op, ": weight must be [V, C], got ", weight.str());
  const int64_t V = weight.dim(0), C = weight.dim(1);
  check_cuda(op, "x", x, DType::BF16);
  check_rows(op, "x", x);
  check_shape(op, "x", x, with_last(x.shape, C));
  check_cuda(op, "losses", losses, DType::F32);
  check_shape(op, "losses", losses, leading(x.shape));
  check_cuda(op, "targets", targets, DType::I32);
  check_shape(op, "targets", targets, leading(x.shape));
  const bool grad = !dx.empty();
  const bool grad_w = grad && !dweight.empty();
  if (grad) {
    check_cuda(op, "dx", dx, DType::BF16);
    check_shape(op, "dx", dx, x.shape);
  }
  if (grad_w) {
    check_cuda(op, "dweight", dweight, DType::F32);
    check_shape(op, "dweight", dweight, weight.shape);
  }
  const int64_t N = rows_of(x);
  if (N == 0) return;

  const Tensor x2 = x.view({N, C}), loss1 = losses.view({N}), tgt1 = targets.view({N});
  const Tensor dx2 = grad ? dx.view({N, C}) : Tensor();
  const int64_t chunk = head_chunk_rows(N, V);
  const size_t chunk_bytes = size_t(chunk * V) * 2;  // bf16 [chunk, V]
  void* scratch_logits = nullptr;
  if (!workspace.empty()) {
    check_device(op, "workspace", workspace, Device::CUDA);
    for (const Tensor* t : {&losses, &dx, &dweight, &x, &weight, &targets})
      TL_CHECK(t->empty() || !shares_memory(workspace, *t), op, ": workspace shares memory with ",
               t->str());
    if (workspace.nbytes() >= chunk_bytes) scratch_logits = workspace.data;
  }
  if (!scratch_logits) scratch_logits = scratch.get(chunk_bytes, stream);
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    const int64_t r1 = std::min(N, r0 + chunk);
    const Tensor xc = x2.rows(r0, r1);
    const Tensor z(scratch_logits, DType::BF16, Device::CUDA, {r1 - r0, V});  // [n, V]
    {
      auto s = prof.scope(ProfCat::Matmul);
      gemm.forward(op, z, xc, weight);
    }
    {
      auto s = prof.scope(ProfCat::Other);
      cross_entropy_rows(loss1.rows(r0, r1), z, tgt1.rows(r0, r1), loss_scale, grad, stream);
    }
    if (!grad) continue;
    auto s = prof.scope(ProfCat::Matmul);
    gemm.backward_input(op, dx2.rows(r0, r1), z, weight, false);
    if (grad_w) gemm.backward_weight(op, dweight, z, xc, /*accumulate=*/true);
  }
}

}  // namespace tl::gpu
