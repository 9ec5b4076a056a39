// Per-backend CUDA state, passed explicitly to every launcher (no globals).
#pragma once
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace tl::gpu {

struct CudaContext {
  int device = 0;
  int sm_count = 0;
  size_t smem_optin = 0;  // shared memory a block may opt into (99 KB on sm_86/89, 227 on sm_90)
  int cc_major = 0, cc_minor = 0;
  cudaStream_t stream = nullptr;
  cublasLtHandle_t cublaslt = nullptr;
  void* cublas_workspace = nullptr;  // 32 MiB on Hopper
  size_t cublas_workspace_bytes = 0;
  void* cudnn = nullptr;            // cudnnHandle_t, created on first use by attention
  void* attention_state = nullptr;  // owned by attention (attention.h); attention_release() frees
                                    // it and cudnn, before the stream is destroyed
};

}  // namespace tl::gpu
