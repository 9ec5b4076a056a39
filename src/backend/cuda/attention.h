// Causal grouped-query flash attention on the GPU (FlashAttention-2 algorithm: tiles of
// Q against K/V in shared memory, online softmax, logsumexp saved, no T x T matrix).
// Semantics exactly as Backend::attention_forward/backward (backend/backend.h).
#pragma once
#include "backend/cuda/cuda_context.h"
#include "core/tensor.h"

namespace tl {

// out[B,T,H*D] bf16, lse[B,H,T] f32, qkv[B,T,(H+2K)*D] bf16 (packed q, k, v heads).
void attention_forward_cuda(CudaContext& ctx, Tensor out, Tensor lse, Tensor qkv, int n_head,
                            int n_kv_head);
// dqkv[B,T,(H+2K)*D] bf16 (=), dout[B,T,H*D] bf16.
void attention_backward_cuda(CudaContext& ctx, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out,
                             Tensor lse, int n_head, int n_kv_head);
// Workspace bytes attention needs for this shape (f32 dq accumulators and the like).
size_t attention_workspace_bytes(int B, int T, int n_head, int n_kv_head, int head_dim);

}  // namespace tl
