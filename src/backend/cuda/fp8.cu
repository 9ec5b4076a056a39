// FP8 operands of the linear layers (train.precision fp8): amax and quantization, the
// twins of backend/cpu/ops/fp8.h (codes bit-identical; the product is matmul.cpp's fp8()).
#include <cuda_fp8.h>

#include <algorithm>
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

// ---- vectorized paths: 8 elements (16 bytes of bf16, 32 of f32) per thread ----
// The scalar kernels above move 2-4 bytes per thread and reach ~1 TB/s; these move 16 and
// are what the model's shapes take (the scalar ones stay for odd shapes and unaligned views).

constexpr int kVec = 8;

template <class T>
__device__ __forceinline__ unsigned abs_bits_max(const Vec<T, kVec>& v, unsigned m) {
#pragma unroll
  for (int k = 0; k < kVec; ++k) m = max(m, __float_as_uint(fabsf(to_f32(v.v[k]))));
  return m;
}

// amax_kernel over in[0, n): vectors of 8, then the n % 8 tail element by element.
template <class T>
__global__ void amax_vec_kernel(unsigned* out, const T* in, int64_t n) {
  const int64_t n8 = n / kVec, stride = int64_t(gridDim.x) * blockDim.x,
                first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  unsigned m = 0;
  for (int64_t i = first; i < n8; i += stride) m = abs_bits_max(load_vec<kVec>(in + i * kVec), m);
  for (int64_t i = n8 * kVec + first; i < n; i += stride)
    m = max(m, __float_as_uint(fabsf(to_f32(in[i]))));
  m = warp_max(m);
  __shared__ unsigned warp_maxes[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_maxes[warp] = m;
  __syncthreads();
  if (warp == 0) {
    m = warp_max(lane < int(blockDim.x / 32) ? warp_maxes[lane] : 0u);
    if (lane == 0 && m != 0) atomicMax(out, m);
  }
}

template <class T>
__device__ __forceinline__ Vec<uint8_t, kVec> quantize8(const Vec<T, kVec>& v, float s,
                                                        __nv_fp8_interpretation_t fmt) {
  Vec<uint8_t, kVec> q;
#pragma unroll
  for (int k = 0; k < kVec; ++k)
    q.v[k] = __nv_cvt_float_to_fp8(to_f32(v.v[k]) * s, __NV_SATFINITE, fmt);
  return q;
}

__device__ __forceinline__ void write_scale_inv(float* scale_inv, float s) {
  *scale_inv = s > 0.0f ? __fdiv_rn(1.0f, s) : __int_as_float(0x7fc00000);
}

// quantize_kernel<false> over in[0, n) as one flat array: 8 codes (one 8-byte store) a
// thread, the n % 8 tail element by element.
template <class T>
__global__ void quantize_vec_kernel(uint8_t* out, float* scale_inv, const T* in, int64_t n,
                                    const float* amax, __nv_fp8_interpretation_t fmt,
                                    float fp8_max) {
  const float s = scale_for_amax(*amax, fp8_max);
  const int64_t n8 = n / kVec, stride = int64_t(gridDim.x) * blockDim.x,
                first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (first == 0) write_scale_inv(scale_inv, s);
  for (int64_t i = first; i < n8; i += stride)
    store_vec<kVec>(out + i * kVec, quantize8(load_vec<kVec>(in + i * kVec), s, fmt));
  for (int64_t i = n8 * kVec + first; i < n; i += stride)
    out[i] = __nv_cvt_float_to_fp8(to_f32(in[i]) * s, __NV_SATFINITE, fmt);
}

// quantize_kernel<true> for C % 8 == 0, R % 16 == 0 and 16-byte aligned operands: a block
// of 256 threads takes a 64 x 64 tile. Loads: 8 threads a row, 16 bytes of bf16 each, the
// codes into shared memory (row stride 68 bytes: the column reads below hit each bank at
// most twice). Stores: 4 threads an output row (a column of the tile), 16 codes each, so a
// warp writes 8 runs of 64 contiguous bytes.
constexpr int kTT = 64, kTTStride = kTT + 4, kTTThreads = 256;

template <class T>
__global__ void __launch_bounds__(kTTThreads)
    quantize_t_vec_kernel(uint8_t* out, float* scale_inv, const T* in, int64_t R, int64_t C,
                          const float* amax, __nv_fp8_interpretation_t fmt, float fp8_max) {
  __shared__ __align__(16) uint8_t tile[kTT * kTTStride];  // [row r - r0][column c - c0]
  const float s = scale_for_amax(*amax, fp8_max);
  const int t = threadIdx.x;
  if (blockIdx.x == 0 && blockIdx.y == 0 && t == 0) write_scale_inv(scale_inv, s);
  const int64_t c0 = int64_t(blockIdx.x) * kTT, r0 = int64_t(blockIdx.y) * kTT;
  const int cv = (t % (kTT / kVec)) * kVec;
  if (c0 + cv < C)
    for (int j = t / (kTT / kVec); j < kTT && r0 + j < R; j += kTTThreads / (kTT / kVec)) {
      const Vec<uint8_t, kVec> q = quantize8(load_vec<kVec>(in + (r0 + j) * C + c0 + cv), s, fmt);
      // Row stride 68 is 4-byte aligned only: two 4-byte stores.
      uint32_t lo = 0, hi = 0;
#pragma unroll
      for (int k = 0; k < 4; ++k)
        lo |= uint32_t(q.v[k]) << (8 * k), hi |= uint32_t(q.v[k + 4]) << (8 * k);
      uint32_t* dst = reinterpret_cast<uint32_t*>(tile + j * kTTStride + cv);
      dst[0] = lo;
      dst[1] = hi;
    }
  __syncthreads();
  const int c = t / 4, k = t % 4;  // output row c0 + c, its rows r0 + 16k .. + 15
  if (c0 + c >= C || r0 + 16 * k >= R) return;
  uint32_t w[4];
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    w[q] = 0;
#pragma unroll
    for (int b = 0; b < 4; ++b)
      w[q] |= uint32_t(tile[(16 * k + 4 * q + b) * kTTStride + c]) << (8 * b);
  }
  *reinterpret_cast<uint4*>(out + (c0 + c) * R + r0 + 16 * k) = make_uint4(w[0], w[1], w[2], w[3]);
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
  const bool vec = aligned16(in.data);
  const unsigned blocks =
      unsigned(std::min<int64_t>(ceil_div(vec ? ceil_div(n, kVec) : n, kThreads), 1024));
  auto launch = [&](auto* src) {
    if (vec)
      amax_vec_kernel<<<blocks, kThreads, 0, stream>>>(out.ptr<unsigned>(), src, n);
    else
      amax_kernel<<<blocks, kThreads, 0, stream>>>(out.ptr<unsigned>(), src, n);
  };
  if (in.dtype == DType::F32)
    launch(in.ptr<float>());
  else
    launch(in.ptr<bf16>());
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
  const __nv_fp8_interpretation_t fmt = f == Fp8Format::E4M3 ? __NV_E4M3 : __NV_E5M2;
  const bool aligned = aligned16(in.data) && aligned16(out.data);
  if (aligned && !transpose) {  // the vectorized paths (the model's shapes)
    const int64_t n = R * C;
    const unsigned blocks =
        unsigned(std::clamp<int64_t>(ceil_div(ceil_div(n, kVec), 256), 1, 4096));
    auto launch = [&](auto* src) {
      quantize_vec_kernel<<<blocks, 256, 0, stream>>>(out.ptr<uint8_t>(), scale_inv.ptr<float>(),
                                                      src, n, amax.ptr<float>(), fmt, fp8_max(f));
    };
    in.dtype == DType::F32 ? launch(in.ptr<float>()) : launch(in.ptr<bf16>());
    TL_CUDA_LAUNCH_CHECK();
    return;
  }
  if (aligned && transpose && C % kVec == 0 && R % 16 == 0 && R > 0 && C > 0) {
    const dim3 grid(unsigned(ceil_div(C, kTT)), unsigned(ceil_div(R, kTT)));
    auto launch = [&](auto* src) {
      quantize_t_vec_kernel<<<grid, kTTThreads, 0, stream>>>(out.ptr<uint8_t>(),
                                                             scale_inv.ptr<float>(), src, R, C,
                                                             amax.ptr<float>(), fmt, fp8_max(f));
    };
    in.dtype == DType::F32 ? launch(in.ptr<float>()) : launch(in.ptr<bf16>());
    TL_CUDA_LAUNCH_CHECK();
    return;
  }
  const dim3 grid(unsigned(std::max<int64_t>(ceil_div(C, kTile), 1)),
                  unsigned(std::max<int64_t>(ceil_div(R, kTile), 1)));
  const dim3 block(kTile, kRowsPerPass);
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
