// Device helpers shared by the kernels: W-wide vectors moved as one access (16 bytes for
// 8 x bf16 or 4 x f32), bf16 <-> f32 element access, and deterministic warp/block sums.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace tl::gpu {

using bf16 = __nv_bfloat16;

constexpr int kWarp = 32;

// W elements of T as one aligned access; above 16 bytes the compiler splits it into
// 16-byte accesses, so alignment is capped at 16.
template <class T, int W>
struct alignas(sizeof(T) * W < 16 ? sizeof(T) * W : 16) Vec {
  T v[W];
};

template <int W, class T>
__device__ __forceinline__ Vec<T, W> load_vec(const T* p) {
  return *reinterpret_cast<const Vec<T, W>*>(p);
}
template <int W, class T>
__device__ __forceinline__ void store_vec(T* p, const Vec<T, W>& v) {
  *reinterpret_cast<Vec<T, W>*>(p) = v;
}

__device__ __forceinline__ float to_f32(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(float x) { return x; }
template <class T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ bf16 from_f32<bf16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ float from_f32<float>(float x) {
  return x;
}

// Butterfly sum: every lane ends with the same bits (each step adds a pair in both orders,
// and float addition is commutative), so results do not depend on timing.
template <class T>
__device__ __forceinline__ T warp_sum(T x) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

template <class T>
__device__ __forceinline__ T warp_max(T x) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) x = max(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// Sum over the block, returned to every thread; fixed order (warp butterflies, then the
// warp sums in warp order). `shared` holds >= 32 values; blockDim.x is a multiple of 32.
// Ends with a barrier so `shared` may be reused at once.
template <class T>
__device__ __forceinline__ T block_sum(T x, T* shared) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int n_warps = blockDim.x / kWarp;
  x = warp_sum(x);
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < n_warps; ++w) total += shared[w];
  __syncthreads();
  return total;
}

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
// SwiGLU of one element, silu(g) * u, in the one evaluation order every kernel uses (so a
// fused consumer rounds exactly as swiglu_forward does).
__device__ __forceinline__ float swiglu1(float g, float u) { return g * sigmoid(g) * u; }
// Its gradient for one element, in the one order every kernel uses: with s = sigmoid(g),
// dg = dy * u * s * (1 + g * (1 - s)), du = dy * g * s.
__device__ __forceinline__ void swiglu_grad1(float g, float u, float dy, float& dg, float& du) {
  const float s = sigmoid(g);
  dg = dy * u * s * (1.0f + g * (1.0f - s));
  du = dy * g * s;
}

// Asks L2 for `bytes` at p (16-byte aligned, a multiple of 16): one bulk prefetch on the TMA
// engine, no registers, nothing waits for it. sm_90 and newer; a no-op before.
__device__ __forceinline__ void bulk_prefetch_l2(const void* p, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#endif
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace tl::gpu
