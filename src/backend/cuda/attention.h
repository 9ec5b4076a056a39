// Causal grouped-query flash attention on the GPU (FlashAttention-2 algorithm: tiles of
// Q against K/V in shared memory, online softmax, logsumexp saved, no T x T matrix).
// Semantics exactly as Backend::attention_forward/backward (backend/backend.h).
//
// Three implementations, same results up to bf16 rounding, mixable (all write lse as the
// natural-log logsumexp of the scaled scores, which every backward reads):
//   fa2      our tensor-core kernels (attention_fa2.cu), head dims 64 and 128, 16-byte aligned
//            tensors. Backward deterministic by default (separate dQ pass);
//            TL_ATTENTION_DETERMINISTIC=0 accumulates dQ with f32 atomics instead (dq then
//            varies in the last bits from run to run).
//   cudnn    cuDNN's fused SDPA through the graph backend API (attention_cudnn.cpp): head dims
//            up to 128 that are multiples of 8, 16-byte aligned tensors, and T % 128 == 0 before
//            cuDNN 9.16; its backward may not be deterministic.
//   generic  f32 CUDA-core kernels for every even head dim and T (attention_generic.cu), 4-byte
//            aligned tensors; deterministic; much slower than the two above.
// Auto (the default) picks per shape the first of kAutoOrder (attention.cpp: cudnn, fa2,
// generic) that runs it; TL_ATTENTION=fa2|cudnn|generic prefers one where it runs the shape (Auto
// elsewhere). TL_FA2_BWD_KV_WARPS=4|8 picks the block shape of the atomic fa2 backward at D=64 (64
// or 128 keys per block; benchmarking).
//
// State: the first call hangs an attention state off ctx.attention_state (scratch memory,
// cuDNN plans) and creates ctx.cudnn when cuDNN is used. The backend must call
// attention_release(ctx) before destroying ctx.stream.
#pragma once
#include <cstddef>
#include <cstdint>

#include "backend/cuda/cuda_context.h"
#include "core/tensor.h"

namespace tl::gpu {

enum class AttentionImpl : uint8_t { Auto, Fa2, Cudnn, Generic };

struct AttentionOptions {
  AttentionImpl impl = AttentionImpl::Auto;
  // impl cannot run a shape: false: Auto's choice runs it; true: throw (tests, benchmarks).
  bool strict = false;
  bool deterministic = true;  // fa2 backward only (generic always is, cudnn may not be)
};
// TL_ATTENTION=auto|fa2|cudnn|generic, TL_ATTENTION_DETERMINISTIC=1|0 (strict off); throws
// on other values.
AttentionOptions attention_options_from_env();

// The implementation that runs a shape under opt, given whether all tensors are 16-byte
// aligned; throws when opt.strict and opt.impl cannot run it.
AttentionImpl attention_impl_for(const AttentionOptions& opt, int T, int n_head, int n_kv_head,
                                 int head_dim, bool aligned16 = true);
const char* attention_impl_name(AttentionImpl impl);  // "auto", "fa2", "cudnn", "generic"

// out[B,T,H*D] bf16, lse[B,H,T] f32, qkv[B,T,(H+2K)*D] bf16 (packed q, k, v heads).
void attention_forward_cuda(CudaContext& ctx, Tensor out, Tensor lse, Tensor qkv, int n_head,
                            int n_kv_head);
// dqkv[B,T,(H+2K)*D] bf16 (=), dout[B,T,H*D] bf16.
void attention_backward_cuda(CudaContext& ctx, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out,
                             Tensor lse, int n_head, int n_kv_head);
// The same with explicit options instead of the environment (tests, benchmarks).
void attention_forward_cuda(CudaContext& ctx, const AttentionOptions& opt, Tensor out, Tensor lse,
                            Tensor qkv, int n_head, int n_kv_head);
void attention_backward_cuda(CudaContext& ctx, const AttentionOptions& opt, Tensor dqkv,
                             Tensor dout, Tensor qkv, Tensor out, Tensor lse, int n_head,
                             int n_kv_head);

// Scratch bytes the implementation the environment picks allocates for this shape (its
// backward's: Dsum [B,H,T] f32, plus a dQ accumulator [B,T,H,D] f32 for atomic fa2 and cuDNN;
// cuDNN adds a plan-dependent workspace, not counted). attention_scratch_bytes() reports what
// is held.
size_t attention_workspace_bytes(int B, int T, int n_head, int n_kv_head, int head_dim);
// Device bytes attention holds now (scratch), for memory reports.
size_t attention_scratch_bytes(const CudaContext& ctx);
// Frees the attention state and the cuDNN handle (ctx.cudnn); safe to call more than once.
void attention_release(CudaContext& ctx) noexcept;

}  // namespace tl::gpu
