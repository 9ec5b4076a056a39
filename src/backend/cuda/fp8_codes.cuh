// Device helpers of the FP8 casts, shared by fp8.cu's quantize kernels and the producer
// kernels that write FP8 codes themselves (swiglu.cu): the scale from an amax, the
// satfinite round-to-nearest-even conversion, and the amax / scale_inv bookkeeping.
// Amaxes are kept as the bits of non-negative floats (see fp8.cu).
#pragma once
#include <cuda_fp8.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/vec.cuh"

namespace tl::gpu {

constexpr int kVec = 8;  // vectorized paths: 8 elements a thread

// What every quantize kernel takes besides its input.
struct QuantizeArgs {
  uint8_t* out;    // null, or the codes [R, C]
  uint8_t* out_t;  // null, or the codes [C, R]
  float* scale_inv;
  const float* amax;   // the scale's amax
  unsigned* amax_out;  // null, or where |in|'s max is recorded (atomicMax of bits)
  __nv_fp8_interpretation_t fmt;
  float fp8_max;
};

__device__ __forceinline__ unsigned abs_bits(float x) { return __float_as_uint(fabsf(x)); }

// The block's max of m, valid in thread 0 of the block (others get their warp's). Every
// thread of the block must call it (it synchronizes), and at most once a kernel.
__device__ inline unsigned block_max(unsigned m) {
  __shared__ unsigned warp_maxes[32];
  const int tid = threadIdx.x + threadIdx.y * blockDim.x;
  const int lane = tid % kWarp, warp = tid / kWarp, n_warps = int(blockDim.x * blockDim.y) / kWarp;
  m = warp_max(m);
  if (lane == 0) warp_maxes[warp] = m;
  __syncthreads();
  if (warp == 0) m = warp_max(lane < n_warps ? warp_maxes[lane] : 0u);
  return m;
}

constexpr unsigned kInfBits = 0x7f800000u, kNanBits = 0x7fc00000u;

__device__ __forceinline__ bool first_thread() { return threadIdx.x == 0 && threadIdx.y == 0; }

// *out = max(*out, the block's max of m) as bits.
__device__ inline void block_record_max(unsigned* out, unsigned m) {
  m = block_max(m);
  if (first_thread() && m != 0) atomicMax(out, m);
}

// core/fp8.cpp's fp8_scale_for_amax (margin 0), with the same float operations.
__device__ __forceinline__ float scale_for_amax(float amax, float fp8_max) {
  if (!isfinite(amax)) return 0.0f;
  if (amax <= 0.0f) return 1.0f;
  return fminf(__fdiv_rn(fp8_max, amax), kFp8MaxScale);
}

__device__ __forceinline__ uint8_t quantize1(float x, float s, __nv_fp8_interpretation_t fmt) {
  return __nv_cvt_float_to_fp8(x * s, __NV_SATFINITE, fmt);
}

template <class T>
__device__ __forceinline__ Vec<uint8_t, kVec> quantize8(const Vec<T, kVec>& v, float s,
                                                        __nv_fp8_interpretation_t fmt,
                                                        unsigned& m) {
  Vec<uint8_t, kVec> q;
#pragma unroll
  for (int k = 0; k < kVec; ++k) {
    const float x = to_f32(v.v[k]);
    m = max(m, abs_bits(x));
    q.v[k] = quantize1(x, s, fmt);
  }
  return q;
}

__device__ __forceinline__ float inverse(float s) {
  return s > 0.0f ? __fdiv_rn(1.0f, s) : __uint_as_float(kNanBits);
}

// The scale from *a.amax. Without amax_out the first thread of the grid writes scale_inv.
__device__ __forceinline__ float begin_quantize(const QuantizeArgs& a) {
  const float s = scale_for_amax(*a.amax, a.fp8_max);
  if (!a.amax_out && blockIdx.x == 0 && blockIdx.y == 0 && first_thread())
    *a.scale_inv = inverse(s);
  return s;
}

// With amax_out (a scale from other passes' amaxes, so a non-finite value here would only
// saturate): the block's max goes to amax_out, and scale_inv (zeroed by the launcher) takes
// 1/s, or NaN from any block that saw a non-finite value, so the product is NaN and the step
// skipped, as under current scaling. Every block does this (atomicMax of bits: NaN wins).
__device__ __forceinline__ void end_quantize(const QuantizeArgs& a, float s, unsigned m) {
  if (!a.amax_out) return;
  m = block_max(m);
  if (!first_thread()) return;
  if (m != 0) atomicMax(a.amax_out, m);
  atomicMax(reinterpret_cast<unsigned*>(a.scale_inv),
            m >= kInfBits ? kNanBits : __float_as_uint(inverse(s)));
}

// ---- 64 x 64 tiles of codes, for the kernels that also write them transposed ----
constexpr int kTT = 64, kTTStride = kTT + 4, kTTThreads = 256;

// tile[j][cv .. cv + 7] = q (row stride kTTStride is 4-byte aligned only: two 4-byte stores).
__device__ __forceinline__ void stage_tile8(uint8_t* tile, int j, int cv,
                                            const Vec<uint8_t, kVec>& q) {
  uint32_t lo = 0, hi = 0;
#pragma unroll
  for (int k = 0; k < 4; ++k)
    lo |= uint32_t(q.v[k]) << (8 * k), hi |= uint32_t(q.v[k + 4]) << (8 * k);
  uint32_t* dst = reinterpret_cast<uint32_t*>(tile + j * kTTStride + cv);
  dst[0] = lo;
  dst[1] = hi;
}

// The stores of a 64 x 64 tile of codes (tile[row][column], row stride kTTStride) to
// out_t[C,R] transposed: thread t (of 256) writes 16 codes of output row c0 + t/4, its rows
// r0 + 16 (t%4) .. + 15, as one 16-byte store, so a warp writes 8 runs of 64 contiguous
// bytes. R % 16 == 0 and out_t 16-byte aligned.
__device__ __forceinline__ void store_tile_column(uint8_t* out_t, const uint8_t* tile, int t,
                                                  int64_t R, int64_t C, int64_t r0, int64_t c0) {
  const int c = t / 4, k = t % 4;
  if (c0 + c >= C || r0 + 16 * k >= R) return;
  uint32_t w[4];
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    w[q] = 0;
#pragma unroll
    for (int b = 0; b < 4; ++b)
      w[q] |= uint32_t(tile[(16 * k + 4 * q + b) * kTTStride + c]) << (8 * b);
  }
  *reinterpret_cast<uint4*>(out_t + (c0 + c) * R + r0 + 16 * k) =
      make_uint4(w[0], w[1], w[2], w[3]);
}

// The QuantizeArgs of a producer's cast (Fp8Cast) writing `codes` (and `codes_t`, transposed,
// if given), enqueued on stream: with amax_out, scale_inv is zeroed first (end_quantize's
// blocks each raise it).
inline QuantizeArgs begin_fp8_cast(const Fp8Cast& c, Tensor codes, cudaStream_t stream,
                                   Tensor codes_t = {}) {
  QuantizeArgs a{codes.ptr<uint8_t>(),
                 codes_t.empty() ? nullptr : codes_t.ptr<uint8_t>(),
                 c.scale_inv.ptr<float>(),
                 c.scale_amax.ptr<float>(),
                 c.amax_out.empty() ? nullptr : c.amax_out.ptr<unsigned>(),
                 c.format == Fp8Format::E4M3 ? __NV_E4M3 : __NV_E5M2,
                 fp8_max(c.format)};
  if (a.amax_out) TL_CUDA_CHECK(cudaMemsetAsync(a.scale_inv, 0, sizeof(float), stream));
  return a;
}

}  // namespace tl::gpu
