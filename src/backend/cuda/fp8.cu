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
#include "backend/cuda/fp8_codes.cuh"
#include "backend/cuda/ops.h"
#include "backend/cuda/vec.cuh"
#include "backend/fp8_args.h"

namespace tl::gpu {

namespace {

constexpr int kTile = 32, kRowsPerPass = 8;  // element-wise quantize: 32 x 32 tiles, 32 x 8 threads

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
// contiguous bytes (store_tile_column).
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
      stage_tile8(tile, j, cv, q);
    }
  end_quantize(a, s, m);
  __syncthreads();
  store_tile_column(a.out_t, tile, t, R, C, r0, c0);
}

// ---- transposes of codes ----

// out_t[C,R] = in[R,C] (u8), element by element through a 32 x 32 tile (any shape).
__global__ void transpose_u8_kernel(uint8_t* out_t, const uint8_t* in, int64_t R, int64_t C) {
  __shared__ uint8_t tile[kTile][kTile + 1];
  const int64_t c0 = int64_t(blockIdx.x) * kTile, r0 = int64_t(blockIdx.y) * kTile;
  for (int j = threadIdx.y; j < kTile; j += kRowsPerPass) {
    const int64_t r = r0 + j, c = c0 + threadIdx.x;
    if (r < R && c < C) tile[j][threadIdx.x] = in[r * C + c];
  }
  __syncthreads();
  for (int j = threadIdx.y; j < kTile; j += kRowsPerPass) {
    const int64_t c = c0 + j, r = r0 + threadIdx.x;
    if (c < C && r < R) out_t[c * R + r] = tile[threadIdx.x][j];
  }
}

// The same for C % 16 == 0, R % 16 == 0 and 16-byte aligned operands: 64 x 64 tiles, a
// 16-byte load a thread (4 threads a row), stores as quantize_t_vec_kernel's.
__global__ void __launch_bounds__(kTTThreads)
    transpose_u8_vec_kernel(uint8_t* out_t, const uint8_t* in, int64_t R, int64_t C) {
  __shared__ __align__(16) uint8_t tile[kTT * kTTStride];  // [row r - r0][column c - c0]
  const int t = threadIdx.x;
  const int64_t c0 = int64_t(blockIdx.x) * kTT, r0 = int64_t(blockIdx.y) * kTT;
  const int j = t / 4, cv = (t % 4) * 16;
  if (r0 + j < R && c0 + cv < C) {
    const uint4 v = *reinterpret_cast<const uint4*>(in + (r0 + j) * C + c0 + cv);
    uint32_t* dst = reinterpret_cast<uint32_t*>(tile + j * kTTStride + cv);  // 4-byte aligned
    dst[0] = v.x, dst[1] = v.y, dst[2] = v.z, dst[3] = v.w;
  }
  __syncthreads();
  store_tile_column(out_t, tile, t, R, C, r0, c0);
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
  const bool aligned =
      aligned16(in.data) && (!a.out || aligned16(a.out)) && (!a.out_t || aligned16(a.out_t));
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

void fp8_transpose(Tensor out_t, Tensor in, cudaStream_t stream) {
  const fp8_args::Rows rows = fp8_args::transpose(Device::CUDA, out_t, in);
  const int64_t R = rows.R, C = rows.C;
  if (R == 0 || C == 0) return;
  const bool vec = aligned16(in.data) && aligned16(out_t.data) && C % 16 == 0 && R % 16 == 0;
  const int tile = vec ? kTT : kTile;
  TL_CHECK(ceil_div(R, tile) <= 65535, "fp8_transpose: ", R,
           " rows are more than one launch covers");
  const dim3 grid(unsigned(ceil_div(C, tile)), unsigned(ceil_div(R, tile)));
  if (vec)
    transpose_u8_vec_kernel<<<grid, kTTThreads, 0, stream>>>(out_t.ptr<uint8_t>(),
                                                             in.ptr<uint8_t>(), R, C);
  else
    transpose_u8_kernel<<<grid, dim3(kTile, kRowsPerPass), 0, stream>>>(out_t.ptr<uint8_t>(),
                                                                        in.ptr<uint8_t>(), R, C);
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
