// The fused output head + cross-entropy (Backend::head_cross_entropy on the GPU).
#pragma once
#include <cuda_runtime.h>

#include "backend/cuda/matmul.h"
#include "backend/cuda/memory.h"
#include "backend/cuda/profile.h"
#include "core/tensor.h"

namespace tl::gpu {

// Rows of logits computed at once: a [rows, V] bf16 chunk of at most 512 MiB.
int64_t head_chunk_rows(int64_t N, int64_t V);

// losses[N] (f32); dx[N,C] (bf16, =) and dweight[V,C] (f32, +=) when dx is given; x[N,C],
// weight[V,C] (bf16); targets[N] (i32, < 0 ignored). The logits chunk goes to workspace
// when it is given and holds one, else to scratch. GEMMs are profiled as "matmul", the
// softmax as "other".
void head_cross_entropy(Tensor losses, Tensor dx, Tensor dweight, Tensor x, Tensor weight,
                        Tensor targets, float loss_scale, Tensor workspace, CublasGemm& gemm,
                        Profiler& prof, Scratch& scratch, cudaStream_t stream);

}  // namespace tl::gpu
