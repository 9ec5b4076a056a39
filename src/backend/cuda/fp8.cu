// FP8 operands of the linear layers (train.precision fp8): amax and quantization, the
// twins of backend/cpu/ops/fp8.h (codes bit-identical; the product is matmul.cpp's fp8()).
#include <cuda_fp8.h>

#include <cmath>

#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/vec.cuh"

namespace tl::gpu {

namespace {

constexpr int kTile = 32, kRowsPerPass = 8;  // quantize: 32 x 32 tiles, 32 x 8 threads

// ---- kernels ----

// *out = max over in of the bits of |x|: for non-negative floats the bit patterns order as
// the values do, and every NaN's lies above infinity's, so a NaN anywhere wins (as on the
// CPU). *out starts at 0 (memset); one atomicMax per block.
template <class T>
__global__ void amax_kernel(unsigned* out, const T* in, int64_t n) {
  unsigned m = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    m = max(m, __float_as_uint(fabsf(to_f32(in[i]))));
  for (int o = 16; o > 0; o >>= 1) m = max(m, __shfl_xor_sync(0xffffffffu, m, o));
  __shared__ unsigned warp_max[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_max[warp] = m;
  __syncthreads();
  if (warp == 0) {
    m = lane < int(blockDim.x / 32) ? warp_max[lane] : 0u;
    for (int o = 16; o > 0; o >>= 1) m = max(m, __shfl_xor_sync(0xffffffffu, m, o));
    if (lane == 0 && m != 0) atomicMax(out, m);
  }
}

// core/fp8.cpp's fp8_scale_for_amax (margin 0), with the same float operations.
__device__ __forceinline__ float scale_for_amax(float amax, float fp8_max) {
  if (!isfinite(amax)) return 0.0f;
  if (amax <= 0.0f) return 1.0f;
  return fminf(__fdiv_rn(fp8_max, amax), kFp8MaxScale);
}

// out (u8 codes) = in[R, C] * s, rounded to nearest even and saturated (satfinite), as
// [R, C] or, when Transpose, [C, R] through a shared-memory tile so both the reads and the
// writes are coalesced. Block (x, y) covers columns 32x .. and rows 32y ..
template <bool Transpose, class T>
__global__ void quantize_kernel(uint8_t* out, float* scale_inv, const T* in, int64_t R, int64_t C,
                                const float* amax, __nv_fp8_interpretation_t fmt, float fp8_max) {
  __shared__ uint8_t tile[kTile][kTile + 1];
  const float s = scale_for_amax(*amax, fp8_max);
  if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0 && threadIdx.y == 0)
    *scale_inv = s > 0.0f ? __fdiv_rn(1.0f, s) : __int_as_float(0x7fc00000);
  const int64_t c0 = int64_t(blockIdx.x) * kTile, r0 = int64_t(blockIdx.y) * kTile;
  for (int j = threadIdx.y; j < kTile; j += kRowsPerPass) {
    const int64_t r = r0 + j, c = c0 + threadIdx.x;
    if (r < R && c < C) {
      const uint8_t q = __nv_cvt_float_to_fp8(to_f32(in[r * C + c]) * s, __NV_SATFINITE, fmt);
      if (Transpose)
        tile[j][threadIdx.x] = q;
      else
        out[r * C + c] = q;
    }
  }
  if (!Transpose) return;
  __syncthreads();
  for (int j = threadIdx.y; j < kTile; j += kRowsPerPass) {
    const int64_t c = c0 + j, r = r0 + threadIdx.x;  // out[c, r] = tile[r - r0][c - c0]
    if (c < C && r < R) out[c * R + r] = tile[threadIdx.x][j];
  }
}

}  // namespace

// ---- launchers ----

void amax(Tensor out, Tensor in, cudaStream_t stream) {
  const char* op = "amax";
  check_cuda(op, "out", out, DType::F32);
  check_shape(op, "out", out, {1});
  check_device(op, "in", in, Device::CUDA);
  TL_CHECK(in.dtype == DType::F32 || in.dtype == DType::BF16, op, ": in must be f32 or bf16, got ",
           in.str());
  TL_CUDA_CHECK(cudaMemsetAsync(out.data, 0, sizeof(float), stream));
  const int64_t n = in.numel();
  if (n == 0) return;
  constexpr int kThreads = 256;
  const unsigned blocks = unsigned(std::min<int64_t>(ceil_div(n, kThreads), 1024));
  if (in.dtype == DType::F32)
    amax_kernel<<<blocks, kThreads, 0, stream>>>(out.ptr<unsigned>(), in.ptr<float>(), n);
  else
    amax_kernel<<<blocks, kThreads, 0, stream>>>(out.ptr<unsigned>(), in.ptr<bf16>(), n);
  TL_CUDA_LAUNCH_CHECK();
}

void fp8_quantize(Tensor out, Tensor scale_inv, Tensor in, Tensor amax, Fp8Format f, bool transpose,
                  cudaStream_t stream) {
  const char* op = "fp8_quantize";
  check_device(op, "in", in, Device::CUDA);
  TL_CHECK((in.dtype == DType::F32 || in.dtype == DType::BF16) && in.ndim() == 2, op,
           ": in must be f32 or bf16 [R, C], got ", in.str());
  const int64_t R = in.dim(0), C = in.dim(1);
  check_cuda(op, "out", out, DType::U8);
  check_shape(op, "out", out, transpose ? Shape{C, R} : Shape{R, C});
  check_cuda(op, "amax", amax, DType::F32);
  check_shape(op, "amax", amax, {1});
  check_cuda(op, "scale_inv", scale_inv, DType::F32);
  check_shape(op, "scale_inv", scale_inv, {1});
  TL_CHECK(ceil_div(R, kTile) <= 65535, op, ": ", R, " rows are more than one launch covers");
  const dim3 grid(unsigned(std::max<int64_t>(ceil_div(C, kTile), 1)),
                  unsigned(std::max<int64_t>(ceil_div(R, kTile), 1)));
  const dim3 block(kTile, kRowsPerPass);
  const __nv_fp8_interpretation_t fmt = f == Fp8Format::E4M3 ? __NV_E4M3 : __NV_E5M2;
  auto launch = [&](auto* src) {
    if (transpose)
      quantize_kernel<true><<<grid, block, 0, stream>>>(out.ptr<uint8_t>(), scale_inv.ptr<float>(),
                                                        src, R, C, amax.ptr<float>(), fmt,
                                                        fp8_max(f));
    else
      quantize_kernel<false><<<grid, block, 0, stream>>>(out.ptr<uint8_t>(), scale_inv.ptr<float>(),
                                                         src, R, C, amax.ptr<float>(), fmt,
                                                         fp8_max(f));
  };
  if (in.dtype == DType::F32)
    launch(in.ptr<float>());
  else
    launch(in.ptr<bf16>());
  TL_CUDA_LAUNCH_CHECK();
}

}  // namespace tl::gpu
