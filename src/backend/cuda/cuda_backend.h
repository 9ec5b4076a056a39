// The CUDA backend: bf16 activations and compute weights, f32 master weights, gradients
// and optimizer state; cuBLASLt GEMMs, fused kernels, flash attention.
#pragma once
#include <memory>

#include "backend/backend.h"

namespace tl::gpu {

int cuda_device_count();  // 0 when no driver or no GPU (never throws)
std::unique_ptr<Backend> make_cuda_backend(int device);

}  // namespace tl::gpu
