// Internal interface between the attention dispatcher (attention.cpp) and its three
// implementations: our FlashAttention-2 kernels (attention_fa2.cu), the generic kernels for
// any head dim (attention_generic.cu) and cuDNN's fused SDPA (attention_cudnn.cpp). Raw
// pointers into the packed layouts of backend.h:
//   qkv[B,T,(H+2K)*D] bf16, out/dout[B,T,H*D] bf16, lse[B,H,T] f32, dqkv like qkv.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "backend/cuda/cuda_context.h"

namespace tl::gpu {

struct AttnShape {
  int B = 0, T = 0, H = 0, K = 0, D = 0;  // batch, tokens, query heads, kv heads, head dim
  int64_t qkv_row() const { return int64_t(H + 2 * K) * D; }  // elements per token of qkv
  int64_t out_row() const { return int64_t(H) * D; }          // elements per token of out
};

// Device scratch shared by the three implementations (they run on one stream, never at once).
// Grows on demand (stream-ordered cudaMallocAsync/cudaFreeAsync on ctx.stream); freed by
// attention_release(). Returns nullptr for bytes == 0.
void* attention_scratch(CudaContext& ctx, size_t bytes);

// ---- FlashAttention-2 kernels (head dims 64 and 128; callers check fa2_supports_head_dim) ----
// attention_fa2.cu stays free of std::string: nvcc objects reference libstdc++ string members
// that an unrelated library object may define weakly, which drags it into small binaries.
bool fa2_supports_head_dim(int D);
size_t fa2_workspace_bytes(const AttnShape& s, bool deterministic);
void fa2_forward(const AttnShape& s, void* out, float* lse, const void* qkv, cudaStream_t stream);
// workspace: fa2_workspace_bytes(s, deterministic) bytes, 16-byte aligned.
void fa2_backward(const AttnShape& s, void* dqkv, const void* dout, const void* qkv,
                  const void* out, const float* lse, void* workspace, bool deterministic,
                  cudaStream_t stream);

// ---- generic kernels (any even head dim, T <= generic_max_T(); 4-byte aligned tensors) ----
// Deterministic; the backward's workspace is Dsum [B,H,T] f32.
int generic_max_T();
size_t generic_workspace_bytes(const AttnShape& s);
void generic_forward(const AttnShape& s, void* out, float* lse, const void* qkv,
                     cudaStream_t stream);
void generic_backward(const AttnShape& s, void* dqkv, const void* dout, const void* qkv,
                      const void* out, const float* lse, void* workspace, cudaStream_t stream);

// ---- cuDNN fused SDPA (graph backend API), plans cached per shape ----
struct CudnnAttention;  // owned by the attention state
CudnnAttention* cudnn_attention_create();
void cudnn_attention_destroy(CudnnAttention* c) noexcept;
void cudnn_release_handle(CudaContext& ctx) noexcept;  // destroys ctx.cudnn if created
// cuDNN's version at run time (cudnnGetVersion: 91900 for 9.19.0); below 91600 its fused
// attention backward needs T % 128 == 0.
size_t cudnn_runtime_version();
// Empty when cuDNN can run this shape, else the reason it cannot.
const char* cudnn_attention_unsupported(const AttnShape& s);
// Builds every tensor and node of the forward and backward graphs, stopping before the
// operation graph (which needs a GPU): throws what cuDNN rejects. For tests without a GPU.
void cudnn_attention_check_nodes(const AttnShape& s);
void cudnn_attention_forward(CudaContext& ctx, CudnnAttention* c, const AttnShape& s, void* out,
                             float* lse, const void* qkv);
void cudnn_attention_backward(CudaContext& ctx, CudnnAttention* c, const AttnShape& s, void* dqkv,
                              const void* dout, const void* qkv, const void* out, const float* lse);

}  // namespace tl::gpu
