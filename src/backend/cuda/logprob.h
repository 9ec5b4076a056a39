// Backend::head_logprob on the GPU: the output head chunk by chunk (as head_cross_entropy),
// each chunk of bf16 logits reduced to the target's log-probability and a greedy flag.
#pragma once
#include <cuda_runtime.h>

#include "backend/cuda/matmul.h"
#include "backend/cuda/memory.h"
#include "backend/cuda/profile.h"
#include "core/tensor.h"

namespace tl::gpu {

// logits[n,V] (bf16) -> logp[n] (f32) = z[t] - logsumexp(z) (f32 softmax), greedy[n] (i32)
// = 1 when t is the first index of max(z); targets[n] (i32) in [0, V).
void logprob_rows(Tensor logp, Tensor greedy, Tensor logits, Tensor targets, cudaStream_t stream);

// ids[N] (i32) = the first index of the maximum of x[N,V] (bf16): greedy decoding; and
// positions and host_ids as Backend::argmax_rows says (host_ids: pinned, from cudaMallocHost).
void argmax_rows(Tensor ids, Tensor x, Tensor positions, int32_t* host_ids, cudaStream_t stream);

// logp[N] (f32), greedy[N] (i32); x[N,C], weight[V,C] (bf16); targets[N] (i32, in [0, V)).
void head_logprob(Tensor logp, Tensor greedy, Tensor x, Tensor weight, Tensor targets,
                  CublasGemm& gemm, Profiler& prof, Scratch& scratch, cudaStream_t stream);

}  // namespace tl::gpu
