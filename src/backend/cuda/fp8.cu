// FP8 operands of the linear layers (train.precision fp8): amax, quantization and delayed
// scaling's amax history, the twins of backend/cpu/ops/fp8.h (codes bit-identical; the
// product is matmul.cpp's fp8()). Preconditions: backend/fp8_args.h.
//
// Amaxes are kept as the bits of non-negative floats: those order as the values do, and a
// NaN's (|x| clears its sign) lie above infinity's, so an integer max is the float max with
// NaN winning, as on the CPU.
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>

#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/vec.cuh"
#include "backend/fp8_args.h"

namespace tl::gpu {

namespace {

constexpr int kTile = 32, kRowsPerPass = 8;  // element-wise quantize: 32 x 32 tiles, 32 x 8 threads
constexpr int kVec = 8;                      // vectorized paths: 8 elements a thread
constexpr int kTT = 64, kTTStride = kTT + 4, kTTThreads = 256;  // vectorized transposes

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
__device__ unsigned block_max(unsigned m) {
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
__device__ void block_record_max(unsigned* out, unsigned m) {
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

// ---- amax ----

// *out = max |in| over in[0, n) (as bits); *out starts at 0 (memset). Element by element.
template <class T>
__global__ void amax_kernel(unsigned* out, const T* in, int64_t n) {
  unsigned m = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    m = max(m, abs_bits(to_f32(in[i])));
  block_record_max(out, m);
}

// The same with 16-byte loads (in 16-byte aligned), then the n % 8 tail element by element.
template <class T>
__global__ void amax_vec_kernel(unsigned* out, const T* in, int64_t n) {
  const int64_t n8 = n / kVec, stride = int64_t(gridDim.x) * blockDim.x,
                first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  unsigned m = 0;
  for (int64_t i = first; i < n8; i += stride) {
    const Vec<T, kVec> v = load_vec<kVec>(in + i * kVec);
#pragma unroll
    for (int k = 0; k < kVec; ++k) m = max(m, abs_bits(to_f32(v.v[k])));
  }
  for (int64_t i = n8 * kVec + first; i < n; i += stride) m = max(m, abs_bits(to_f32(in[i])));
  block_record_max(out, m);
}

// ---- quantize ----
// The element-wise kernels move 2-4 bytes a thread (~1 TB/s) and stay for odd shapes and
// unaligned views; the vectorized ones move 16 and are what the model's shapes take.

// out (u8 codes) = in[R, C] * s, rounded to nearest even and saturated (satfinite), as
// [R, C] and/or [C, R] (out_t, through a shared-memory tile so both the reads and the
// writes are coalesced). Block (x, y) covers columns 32x .. and rows 32y ..
template <class T>
__global__ void quantize_kernel(QuantizeArgs a, const T* in, int64_t R, int64_t C) {
  __shared__ uint8_t tile[kTile][kTile + 1];
  const float s = begin_quantize(a);
  const int64_t c0 = int64_t(blockIdx.x) * kTile, r0 = int64_t(blockIdx.y) * kTile;
  unsigned m = 0;
  for (int j = threadIdx.y; j < kTile; j += kRowsPerPass) {
    const int64_t r = r0 + j, c = c0 + threadIdx.x;
    if (r < R && c < C) {
      const float x = to_f32(in[r * C + c]);
      m = max(m, abs_bits(x));
      const uint8_t q = quantize1(x, s, a.fmt);
      if (a.out) a.out[r * C + c] = q;
      tile[j][threadIdx.x] = q;
    }
  }
  end_quantize(a, s, m);
  if (!a.out_t) return;  // the same for the whole grid
  __syncthreads();
  for (int j = threadIdx.y; j < kTile; j += kRowsPerPass) {
    const int64_t c = c0 + j, r = r0 + threadIdx.x;  // out_t[c, r] = tile[r - r0][c - c0]
    if (c < C && r < R) a.out_t[c * R + r] = tile[threadIdx.x][j];
  }
}

// quantize_kernel without out_t, over in[0, n) as one flat array: 8 codes (one 8-byte store) a
// thread, the n % 8 tail element by element.
template <class T>
__global__ void quantize_vec_kernel(QuantizeArgs a, const T* in, int64_t n) {
  const float s = begin_quantize(a);
  const int64_t n8 = n / kVec, stride = int64_t(gridDim.x) * blockDim.x,
                first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  unsigned m = 0;
  for (int64_t i = first; i < n8; i += stride)
    store_vec<kVec>(a.out + i * kVec, quantize8(load_vec<kVec>(in + i * kVec), s, a.fmt, m));
  for (int64_t i = n8 * kVec + first; i < n; i += stride) {
    const float x = to_f32(in[i]);
    m = max(m, abs_bits(x));
    a.out[i] = quantize1(x, s, a.fmt);
  }
  end_quantize(a, s, m);
}

// quantize_kernel with out_t, for C % 8 == 0, R % 16 == 0 and 16-byte aligned operands: a
// block of 256 threads takes a 64 x 64 tile. Loads: 8 threads a row, 16 bytes of bf16 each,
// the codes into shared memory (row stride 68 bytes: the column reads below hit each bank at
// most twice) and, with out, straight to out (8 bytes a thread). Stores of out_t: 4 threads
// an output row (a column of the tile), 16 codes each, so a warp writes 8 runs of 64
// contiguous bytes.
template <class T>
__global__ void __launch_bounds__(kTTThreads)
    quantize_t_vec_kernel(QuantizeArgs a, const T* in, int64_t R, int64_t C) {
  __shared__ __align__(16) uint8_t tile[kTT * kTTStride];  // [row r - r0][column c - c0]
  const float s = begin_quantize(a);
  const int t = threadIdx.x;
  const int64_t c0 = int64_t(blockIdx.x) * kTT, r0 = int64_t(blockIdx.y) * kTT;
  const int cv = (t % (kTT / kVec)) * kVec;
  unsigned m = 0;
  if (c0 + cv < C)
    for (int j = t / (kTT / kVec); j < kTT && r0 + j < R; j += kTTThreads / (kTT / kVec)) {
      const int64_t at = (r0 + j) * C + c0 + cv;
      const Vec<uint8_t, kVec> q = quantize8(load_vec<kVec>(in + at), s, a.fmt, m);
      if (a.out) store_vec<kVec>(a.out + at, q);
      uint32_t lo = 0, hi = 0;  // row stride 68 is 4-byte aligned only: two 4-byte stores
#pragma unroll
      for (int k = 0; k < 4; ++k)
        lo |= uint32_t(q.v[k]) << (8 * k), hi |= uint32_t(q.v[k + 4]) << (8 * k);
      uint32_t* dst = reinterpret_cast<uint32_t*>(tile + j * kTTStride + cv);
      dst[0] = lo;
      dst[1] = hi;
    }
  end_quantize(a, s, m);
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
  *reinterpret_cast<uint4*>(a.out_t + (c0 + c) * R + r0 + 16 * k) =
      make_uint4(w[0], w[1], w[2], w[3]);
}

// ---- delayed scaling ----

// One thread a tensor: last[i] = current[i]; history[slot, i] = current[i] where finite
// (amaxes are non-negative: below infinity's bits), else the slot keeps what it held;
// scale_amax[i] = max over history[:, i]; current[i] = 0.
__global__ void amax_roll_kernel(unsigned* history, unsigned* current, unsigned* scale_amax,
                                 unsigned* last, int64_t H, int64_t n, int64_t slot) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const unsigned c = current[i];
  last[i] = c;
  if (c < kInfBits) history[slot * n + i] = c;
  unsigned m = 0;
  for (int64_t h = 0; h < H; ++h) m = max(m, history[h * n + i]);
  scale_amax[i] = m;
  current[i] = 0;
}

template <class F>
void with_input(const Tensor& in, F&& f) {
  if (in.dtype == DType::F32)
    f(in.ptr<float>());
  else
    f(in.ptr<bf16>());
}

}  // namespace

// ---- launchers ----

void amax(Tensor out, Tensor in, cudaStream_t stream) {
  const int64_t n = fp8_args::amax(Device::CUDA, out, in);
  TL_CUDA_CHECK(cudaMemsetAsync(out.data, 0, sizeof(float), stream));
  if (n == 0) return;
  constexpr int kThreads = 256;
  const bool vec = aligned16(in.data);
  const unsigned blocks =
      unsigned(std::min<int64_t>(ceil_div(vec ? ceil_div(n, kVec) : n, kThreads), 1024));
  with_input(in, [&](auto* src) {
    if (vec)
      amax_vec_kernel<<<blocks, kThreads, 0, stream>>>(out.ptr<unsigned>(), src, n);
    else
      amax_kernel<<<blocks, kThreads, 0, stream>>>(out.ptr<unsigned>(), src, n);
  });
  TL_CUDA_LAUNCH_CHECK();
}

void fp8_quantize(Tensor out, Tensor out_t, Tensor scale_inv, Tensor in, Tensor amax, Fp8Format f,
                  Tensor amax_out, cudaStream_t stream) {
  const fp8_args::Rows rows =
      fp8_args::quantize(Device::CUDA, out, out_t, scale_inv, in, amax, amax_out);
  const int64_t R = rows.R, C = rows.C;
  const QuantizeArgs a{out.empty() ? nullptr : out.ptr<uint8_t>(),
                       out_t.empty() ? nullptr : out_t.ptr<uint8_t>(),
                       scale_inv.ptr<float>(),
                       amax.ptr<float>(),
                       amax_out.empty() ? nullptr : amax_out.ptr<unsigned>(),
                       f == Fp8Format::E4M3 ? __NV_E4M3 : __NV_E5M2,
                       fp8_max(f)};
  // 16-byte paths: every operand aligned (out's 8-byte stores from an aligned row start
  // need C % 8 == 0, which tiles64 asks anyway).
  const bool aligned = aligned16(in.data) && (!a.out || aligned16(a.out)) &&
                       (!a.out_t || aligned16(a.out_t));
  const bool flat = aligned && !a.out_t;
  const bool tiles64 = aligned && a.out_t && C % kVec == 0 && R % 16 == 0 && R > 0 && C > 0;
  TL_CHECK(flat || ceil_div(R, tiles64 ? kTT : kTile) <= 65535, "fp8_quantize: ", R,
           " rows are more than one launch covers");
  if (a.amax_out) TL_CUDA_CHECK(cudaMemsetAsync(a.scale_inv, 0, sizeof(float), stream));
  with_input(in, [&](auto* src) {
    if (flat) {
      const int64_t n = R * C;
      const auto blocks = unsigned(std::clamp<int64_t>(ceil_div(ceil_div(n, kVec), 256), 1, 4096));
      quantize_vec_kernel<<<blocks, 256, 0, stream>>>(a, src, n);
    } else if (tiles64) {
      const dim3 grid(unsigned(ceil_div(C, kTT)), unsigned(ceil_div(R, kTT)));
      quantize_t_vec_kernel<<<grid, kTTThreads, 0, stream>>>(a, src, R, C);
    } else {
      const dim3 grid(unsigned(std::max<int64_t>(ceil_div(C, kTile), 1)),
                      unsigned(std::max<int64_t>(ceil_div(R, kTile), 1)));
      quantize_kernel<<<grid, dim3(kTile, kRowsPerPass), 0, stream>>>(a, src, R, C);
    }
  });
  TL_CUDA_LAUNCH_CHECK();
}

void fp8_amax_roll(Tensor history, Tensor current, Tensor scale_amax, Tensor last, int64_t slot,
                   cudaStream_t stream) {
  const int64_t n = fp8_args::amax_roll(Device::CUDA, history, current, scale_amax, last, slot);
  if (n == 0) return;
  amax_roll_kernel<<<unsigned(ceil_div(n, 256)), 256, 0, stream>>>(
      history.ptr<unsigned>(), current.ptr<unsigned>(), scale_amax.ptr<unsigned>(),
      last.ptr<unsigned>(), history.dim(0), n, slot);
  TL_CUDA_LAUNCH_CHECK();
}

}  // namespace tl::gpu
