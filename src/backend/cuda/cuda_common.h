// The CUDA backend lives in one namespace, tl::gpu (kernels, launchers, attention, the
// backend class). Error checks for CUDA, cuBLAS(Lt) and cuDNN calls: each failure throws tl::Error
// naming the expression, the library's message, file and line. Library code never exits.
#pragma once
#include <cublasLt.h>
#include <cuda_runtime.h>

#include "core/error.h"

namespace tl::gpu {

[[noreturn]] void cuda_fail(const char* what, const char* expr, const char* file, int line);
const char* cublas_status_name(cublasStatus_t s);

// Whether kernels may be launched as programmatic dependents (pdl.cuh): the current
// device is sm_90 or newer and TL_PDL is not 0 (decided once per process).
bool pdl_enabled();

// Whether the current device runs thread block clusters: sm_90 or newer (asked each call;
// pdl_enabled asks it once).
bool clusters_supported();

}  // namespace tl::gpu

#define TL_CUDA_CHECK(expr)                                                         \
  do {                                                                              \
    cudaError_t tl_err_ = (expr);                                                   \
    if (tl_err_ != cudaSuccess)                                                     \
      ::tl::gpu::cuda_fail(cudaGetErrorString(tl_err_), #expr, __FILE__, __LINE__); \
  } while (0)

#define TL_CUBLAS_CHECK(expr)                                                                 \
  do {                                                                                        \
    cublasStatus_t tl_st_ = (expr);                                                           \
    if (tl_st_ != CUBLAS_STATUS_SUCCESS)                                                      \
      ::tl::gpu::cuda_fail(::tl::gpu::cublas_status_name(tl_st_), #expr, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: reports launch-configuration errors at the launch site.
#define TL_CUDA_LAUNCH_CHECK() TL_CUDA_CHECK(cudaGetLastError())
