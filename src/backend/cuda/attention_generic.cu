// Causal grouped-query attention for any even head dim (semantics as attention.h): the
// FlashAttention-2 tiling with f32 CUDA-core math, for the shapes the fa2 kernels do not run
// (head dims other than 64 and 128: demo models, D not a multiple of 8, D > 128). Correct
// first; its speed is that of f32 FMAs fed from shared memory, a small fraction of fa2's.
//
// Tiles of 32 query rows x 32 keys, 128 threads; ty = t/8, tx = t%8. In a score tile thread t
// owns rows ty, ty+16 x columns tx, tx+8, tx+16, tx+24 (a row's 8 threads are 8 lanes of one
// warp: row reductions are shuffles); in an output tile, rows ty, ty+16 x columns 4tx..4tx+3
// (+32k). Head dims are cut into chunks of DG = 32, 64 or 128 columns. Scores sum over every
// chunk (staged one at a time in shared memory as f32); each block computes one chunk of the
// outputs (grid z), so D > 128 recomputes the scores once per output chunk. Rows past T and
// columns past D are staged as zeros and never stored. Loads are bf16 pairs: D even and
// 4-byte aligned tensors are all this needs.
//
// Kernels (one launcher each below):
//  forward_kernel  grid (B*H, q tiles, D chunks): online softmax over the key tiles up to the
//                  diagonal; writes its columns of out, and lse (chunk 0).
//  dsum_kernel     Dsum[b,h,t] = sum_d dO*O, one warp per row.
//  bwd_kv_kernel   grid (B*K, kv tiles, D chunks): one tile of keys of one kv head against the
//                  query tiles at or after it, for every query head of the group: dK, dV.
//  bwd_dq_kernel   grid (B*H, q tiles, D chunks): dQ of a query tile, recomputing P and dP.
// No atomics: the backward is deterministic.
#include <cuda_bf16.h>

#include <cmath>

#include "backend/cuda/attention_internal.h"
#include "backend/cuda/cuda_common.h"

namespace tl::gpu {
namespace gen {
namespace {

using bf16 = __nv_bfloat16;
using bf162 = __nv_bfloat162;
constexpr int kThreads = 128, kTile = 32;
constexpr int kLdP = kTile + 4;  // row stride (floats) of the [32][32] P / dS tiles
constexpr float kLog2e = 1.4426950408889634f;

// Row stride (floats) of a staged [32][DG] chunk: DG + 4 puts the rows that 8 lanes read at one
// column into 8 different 4-bank groups.
constexpr int ld(int DG) { return DG + 4; }

struct Params {
  const bf16* qkv;    // [B,T,(H+2K)*D]
  const bf16* dout;   // [B,T,H*D]
  bf16* out;          // [B,T,H*D]
  float* lse;         // [B,H,T]
  const float* dsum;  // [B,H,T]
  bf16* dqkv;         // [B,T,(H+2K)*D]
  int T, H, K, D, n_chunks;
  int64_t qkv_row, out_row;
  float scale, scale_log2;
};

// ---------------------------------------------------------------------------------------------
// tile helpers (all 128 threads call them)

// dst[r][c] = src[(row0 + r) * stride + col0 + c] as f32, r < 32, c < DG; zero where
// row0 + r >= n_rows or col0 + c >= D.
template <int DG>
__device__ __forceinline__ void stage(float* dst, const bf16* src, int64_t stride, int row0,
                                      int n_rows, int col0, int D) {
  constexpr int kPairs = DG / 2;
#pragma unroll
  for (int i = 0; i < kTile * kPairs / kThreads; ++i) {
    const int idx = int(threadIdx.x) + i * kThreads;
    const int r = idx / kPairs, c = 2 * (idx % kPairs);
    float2 v = make_float2(0.f, 0.f);
    if (row0 + r < n_rows && col0 + c < D)
      v = __bfloat1622float2(
          *reinterpret_cast<const bf162*>(src + int64_t(row0 + r) * stride + col0 + c));
    *reinterpret_cast<float2*>(dst + r * ld(DG) + c) = v;
  }
}

// acc[i][j] += A[ty + 16i][:] . B[tx + 8j][:] over one staged chunk (A, B: [32][ld(DG)]).
template <int DG>
__device__ __forceinline__ void dot_tile(float (&acc)[2][4], const float* A, const float* B) {
  const int ty = int(threadIdx.x) >> 3, tx = int(threadIdx.x) & 7;
  const float* a = A + ty * ld(DG);
  const float* b = B + tx * ld(DG);
#pragma unroll 2
  for (int d = 0; d < DG; d += 4) {
    float4 x[2], y[4];
    x[0] = *reinterpret_cast<const float4*>(a + d);
    x[1] = *reinterpret_cast<const float4*>(a + 16 * ld(DG) + d);
#pragma unroll
    for (int j = 0; j < 4; ++j) y[j] = *reinterpret_cast<const float4*>(b + 8 * j * ld(DG) + d);
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
        acc[i][j] =
            fmaf(x[i].w, y[j].w,
                 fmaf(x[i].z, y[j].z, fmaf(x[i].y, y[j].y, fmaf(x[i].x, y[j].x, acc[i][j]))));
  }
}

// acc[i][k][e] += sum_j W[ty + 16i][j] * C[j][4tx + 32k + e] (W: [32][kLdP], C: [32][ld(DG)]).
template <int DG>
__device__ __forceinline__ void acc_tile(float (&acc)[2][DG / 32][4], const float* W,
                                         const float* C) {
  const int ty = int(threadIdx.x) >> 3, tx = int(threadIdx.x) & 7;
  const float* w = W + ty * kLdP;
  const float* c = C + 4 * tx;
#pragma unroll 2
  for (int j = 0; j < kTile; j += 4) {
    const float4 w0 = *reinterpret_cast<const float4*>(w + j);
    const float4 w1 = *reinterpret_cast<const float4*>(w + 16 * kLdP + j);
    const float wv[2][4] = {{w0.x, w0.y, w0.z, w0.w}, {w1.x, w1.y, w1.z, w1.w}};
#pragma unroll
    for (int jj = 0; jj < 4; ++jj)
#pragma unroll
      for (int k = 0; k < DG / 32; ++k) {
        const float4 v = *reinterpret_cast<const float4*>(c + (j + jj) * ld(DG) + 32 * k);
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          acc[i][k][0] = fmaf(wv[i][jj], v.x, acc[i][k][0]);
          acc[i][k][1] = fmaf(wv[i][jj], v.y, acc[i][k][1]);
          acc[i][k][2] = fmaf(wv[i][jj], v.z, acc[i][k][2]);
          acc[i][k][3] = fmaf(wv[i][jj], v.w, acc[i][k][3]);
        }
      }
  }
}

// dst[(row0 + ty + 16i) * stride + col0 + 4tx + 32k + e] = bf16(mul * acc[i][k][e]) for rows
// below n_rows and columns below D (D even: a pair is in or out as a whole).
template <int DG>
__device__ __forceinline__ void store_tile(bf16* dst, int64_t stride, int row0, int n_rows,
                                           int col0, int D, const float (&acc)[2][DG / 32][4],
                                           float mul) {
  const int ty = int(threadIdx.x) >> 3, tx = int(threadIdx.x) & 7;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int row = row0 + ty + 16 * i;
    if (row >= n_rows) continue;
    bf16* d = dst + int64_t(row) * stride + col0 + 4 * tx;
#pragma unroll
    for (int k = 0; k < DG / 32; ++k)
#pragma unroll
      for (int e = 0; e < 4; e += 2)
        if (col0 + 4 * tx + 32 * k + e < D)
          *reinterpret_cast<bf162*>(d + 32 * k + e) =
              __floats2bfloat162_rn(acc[i][k][e] * mul, acc[i][k][e + 1] * mul);
  }
}

// ---------------------------------------------------------------------------------------------
// kernels

template <int DG>
__global__ void __launch_bounds__(kThreads) forward_kernel(const Params p) {
  extern __shared__ __align__(16) float smem[];
  float* sQ = smem;                 // [32][ld] a chunk of Q
  float* sK = sQ + kTile * ld(DG);  // [32][ld] a chunk of K
  float* sV = sK + kTile * ld(DG);  // [32][ld] this block's columns of V
  float* sP = sV + kTile * ld(DG);  // [32][kLdP] probabilities
  const int ty = int(threadIdx.x) >> 3, tx = int(threadIdx.x) & 7;
  const int T = p.T, D = p.D;
  const int bh = int(blockIdx.x), b = bh / p.H, h = bh % p.H, g = h / (p.H / p.K);
  const int qt = int(gridDim.y - 1 - blockIdx.y), q0 = qt * kTile;  // longest rows first
  const int col0 = int(blockIdx.z) * DG;
  const bf16* qg = p.qkv + int64_t(b) * T * p.qkv_row + int64_t(h) * D;
  const bf16* kg = p.qkv + int64_t(b) * T * p.qkv_row + int64_t(p.H + g) * D;
  const bf16* vg = kg + int64_t(p.K) * D;

  float o[2][DG / 32][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // running max (raw scores), partial sums
  for (int kt = 0; kt <= qt; ++kt) {
    const int k0 = kt * kTile;
    float s[2][4] = {};
    for (int c = 0; c < p.n_chunks; ++c) {
      if (c > 0 || kt > 0) __syncthreads();  // the readers of sQ, sK, sV, sP are done
      if (p.n_chunks > 1 || kt == 0) stage<DG>(sQ, qg, p.qkv_row, q0, T, c * DG, D);
      stage<DG>(sK, kg, p.qkv_row, k0, T, c * DG, D);
      __syncthreads();
      dot_tile<DG>(s, sQ, sK);
    }
    stage<DG>(sV, vg, p.qkv_row, k0, T, col0, D);
    // Causal mask; online softmax: rescale by 2^((m_old - m_new) c), add this tile.
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int row = q0 + ty + 16 * i;
      float mx = m[i];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (k0 + tx + 8 * j > row) s[i][j] = -INFINITY;
        mx = fmaxf(mx, s[i][j]);
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
      const float ms = mx == -INFINITY ? 0.f : mx * p.scale_log2;
      const float corr = exp2f(m[i] * p.scale_log2 - ms);
      m[i] = mx;
      l[i] *= corr;
#pragma unroll
      for (int k = 0; k < DG / 32; ++k)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[i][k][e] *= corr;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float pv = exp2f(s[i][j] * p.scale_log2 - ms);
        l[i] += pv;
        sP[(ty + 16 * i) * kLdP + tx + 8 * j] = pv;
      }
    }
    __syncthreads();  // sV and sP complete
    acc_tile<DG>(o, sP, sV);
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float lt = l[i];
    lt += __shfl_xor_sync(0xffffffffu, lt, 1);
    lt += __shfl_xor_sync(0xffffffffu, lt, 2);
    lt += __shfl_xor_sync(0xffffffffu, lt, 4);
    const int row = q0 + ty + 16 * i;
    if (blockIdx.z == 0 && tx == 0 && row < T)
      p.lse[int64_t(bh) * T + row] = m[i] * p.scale + logf(lt);
    const float inv = __frcp_rn(lt);
#pragma unroll
    for (int k = 0; k < DG / 32; ++k)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[i][k][e] *= inv;
  }
  store_tile<DG>(p.out + int64_t(b) * T * p.out_row + int64_t(h) * D, p.out_row, q0, T, col0, D, o,
                 1.f);
}

// dsum[b,h,t] = sum_d dout * out; rows r = (b*T + t)*H + h of D elements; one warp per row.
__global__ void dsum_kernel(const bf16* __restrict__ dout, const bf16* __restrict__ out,
                            float* __restrict__ dsum, int T, int H, int D, int64_t n_rows) {
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = int(threadIdx.x) & 31;
  if (row >= n_rows) return;  // the whole warp
  float acc = 0.f;
  for (int c = 2 * lane; c < D; c += 64) {
    const float2 x = __bfloat1622float2(*reinterpret_cast<const bf162*>(dout + row * D + c));
    const float2 y = __bfloat1622float2(*reinterpret_cast<const bf162*>(out + row * D + c));
    acc = fmaf(x.x, y.x, fmaf(x.y, y.y, acc));
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  if (lane == 0) {
    const int64_t bt = row / H, b = bt / T, t = bt % T;
    const int h = int(row % H);
    dsum[(b * H + h) * T + t] = acc;
  }
}

// dK, dV for keys [k0, k0+32) of kv head g, columns [col0, col0+DG). Scores are computed
// transposed (S^T = K Q^T: rows keys, columns queries) so that P^T and dS^T are the left
// operands of dV += P^T dO and dK += dS^T Q.
template <int DG>
__global__ void __launch_bounds__(kThreads) bwd_kv_kernel(const Params p) {
  extern __shared__ __align__(16) float smem[];
  float* sK = smem;                  // [32][ld]
  float* sV = sK + kTile * ld(DG);   // [32][ld]
  float* sQ = sV + kTile * ld(DG);   // [32][ld]
  float* sdO = sQ + kTile * ld(DG);  // [32][ld]
  float* sP = sdO + kTile * ld(DG);  // [32][kLdP] P^T
  float* sdS = sP + kTile * kLdP;    // [32][kLdP] dS^T
  const int ty = int(threadIdx.x) >> 3, tx = int(threadIdx.x) & 7;
  const int T = p.T, D = p.D, G = p.H / p.K;
  const int b = int(blockIdx.x) / p.K, g = int(blockIdx.x) % p.K;
  const int kt = int(blockIdx.y), k0 = kt * kTile;  // tile 0 first: it has the most work
  const int col0 = int(blockIdx.z) * DG;
  const int per_head = (T + kTile - 1) / kTile - kt, n_iter = G * per_head;
  const bf16* kg = p.qkv + int64_t(b) * T * p.qkv_row + int64_t(p.H + g) * D;
  const bf16* vg = kg + int64_t(p.K) * D;

  float dk[2][DG / 32][4] = {}, dv[2][DG / 32][4] = {};
  for (int it = 0; it < n_iter; ++it) {
    const int h = g * G + it / per_head, q0 = (kt + it % per_head) * kTile;
    const bf16* qg = p.qkv + int64_t(b) * T * p.qkv_row + int64_t(h) * D;
    const bf16* og = p.dout + int64_t(b) * T * p.out_row + int64_t(h) * D;
    float s[2][4] = {}, dp[2][4] = {};  // S^T and dP^T: keys k0 + ty + 16i, queries q0 + tx + 8j
    for (int c = 0; c < p.n_chunks; ++c) {
      if (c > 0 || it > 0) __syncthreads();
      if (p.n_chunks > 1 || it == 0) {
        stage<DG>(sK, kg, p.qkv_row, k0, T, c * DG, D);
        stage<DG>(sV, vg, p.qkv_row, k0, T, c * DG, D);
      }
      stage<DG>(sQ, qg, p.qkv_row, q0, T, c * DG, D);
      stage<DG>(sdO, og, p.out_row, q0, T, c * DG, D);
      __syncthreads();
      dot_tile<DG>(s, sK, sQ);
      dot_tile<DG>(dp, sV, sdO);
    }
    if (p.n_chunks > 1) {  // this block's columns of Q and dO
      __syncthreads();
      stage<DG>(sQ, qg, p.qkv_row, q0, T, col0, D);
      stage<DG>(sdO, og, p.out_row, q0, T, col0, D);
    }
    // P^T = 2^(S^T c - lse log2 e), zero where key > query or query >= T; dS^T = P^T (dP^T - Dsum)
    const float* lse = p.lse + (int64_t(b) * p.H + h) * T;
    const float* dsum = p.dsum + (int64_t(b) * p.H + h) * T;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int q = q0 + tx + 8 * j;
      const bool in = q < T;
      const float l2 = in ? lse[q] * kLog2e : 0.f, dsj = in ? dsum[q] : 0.f;
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int key = k0 + ty + 16 * i;
        float pv = exp2f(fmaf(s[i][j], p.scale_log2, -l2));
        if (key > q || !in) pv = 0.f;
        sP[(ty + 16 * i) * kLdP + tx + 8 * j] = pv;
        sdS[(ty + 16 * i) * kLdP + tx + 8 * j] = pv * (dp[i][j] - dsj);
      }
    }
    __syncthreads();
    acc_tile<DG>(dv, sP, sdO);
    acc_tile<DG>(dk, sdS, sQ);
  }
  // dK carries the softmax scale (S = scale * Q K^T).
  bf16* dst = p.dqkv + int64_t(b) * T * p.qkv_row + int64_t(p.H + g) * D;
  store_tile<DG>(dst, p.qkv_row, k0, T, col0, D, dk, p.scale);
  store_tile<DG>(dst + int64_t(p.K) * D, p.qkv_row, k0, T, col0, D, dv, 1.f);
}

template <int DG>
__global__ void __launch_bounds__(kThreads) bwd_dq_kernel(const Params p) {
  extern __shared__ __align__(16) float smem[];
  float* sQ = smem;                  // [32][ld]
  float* sdO = sQ + kTile * ld(DG);  // [32][ld]
  float* sK = sdO + kTile * ld(DG);  // [32][ld]
  float* sV = sK + kTile * ld(DG);   // [32][ld]
  float* sdS = sV + kTile * ld(DG);  // [32][kLdP]
  const int ty = int(threadIdx.x) >> 3, tx = int(threadIdx.x) & 7;
  const int T = p.T, D = p.D;
  const int bh = int(blockIdx.x), b = bh / p.H, h = bh % p.H, g = h / (p.H / p.K);
  const int qt = int(gridDim.y - 1 - blockIdx.y), q0 = qt * kTile;
  const int col0 = int(blockIdx.z) * DG;
  const bf16* qg = p.qkv + int64_t(b) * T * p.qkv_row + int64_t(h) * D;
  const bf16* og = p.dout + int64_t(b) * T * p.out_row + int64_t(h) * D;
  const bf16* kg = p.qkv + int64_t(b) * T * p.qkv_row + int64_t(p.H + g) * D;
  const bf16* vg = kg + int64_t(p.K) * D;

  float l2[2], dsr[2];  // lse * log2 e and Dsum of rows q0 + ty + 16i
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int row = q0 + ty + 16 * i;
    l2[i] = row < T ? p.lse[int64_t(bh) * T + row] * kLog2e : 0.f;
    dsr[i] = row < T ? p.dsum[int64_t(bh) * T + row] : 0.f;
  }
  float dq[2][DG / 32][4] = {};
  for (int kt = 0; kt <= qt; ++kt) {
    const int k0 = kt * kTile;
    float s[2][4] = {}, dp[2][4] = {};  // rows q0 + ty + 16i, keys k0 + tx + 8j
    for (int c = 0; c < p.n_chunks; ++c) {
      if (c > 0 || kt > 0) __syncthreads();
      if (p.n_chunks > 1 || kt == 0) {
        stage<DG>(sQ, qg, p.qkv_row, q0, T, c * DG, D);
        stage<DG>(sdO, og, p.out_row, q0, T, c * DG, D);
      }
      stage<DG>(sK, kg, p.qkv_row, k0, T, c * DG, D);
      stage<DG>(sV, vg, p.qkv_row, k0, T, c * DG, D);
      __syncthreads();
      dot_tile<DG>(s, sQ, sK);
      dot_tile<DG>(dp, sdO, sV);
    }
    if (p.n_chunks > 1) {  // this block's columns of K
      __syncthreads();
      stage<DG>(sK, kg, p.qkv_row, k0, T, col0, D);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        float pv = exp2f(fmaf(s[i][j], p.scale_log2, -l2[i]));
        if (k0 + tx + 8 * j > q0 + ty + 16 * i) pv = 0.f;
        sdS[(ty + 16 * i) * kLdP + tx + 8 * j] = pv * (dp[i][j] - dsr[i]);
      }
    __syncthreads();
    acc_tile<DG>(dq, sdS, sK);
  }
  store_tile<DG>(p.dqkv + int64_t(b) * T * p.qkv_row + int64_t(h) * D, p.qkv_row, q0, T, col0, D,
                 dq, p.scale);
}

// ---------------------------------------------------------------------------------------------
// launchers

template <class Kernel>
void launch(Kernel kernel, dim3 grid, size_t smem, cudaStream_t stream, const Params& p) {
  // Above 48 KiB a block needs the opt-in; cheap, so set it on every call.
  TL_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  kernel<<<grid, kThreads, smem, stream>>>(p);
  TL_CUDA_LAUNCH_CHECK();
}

int chunk_width(int D) { return D <= 32 ? 32 : D <= 64 ? 64 : 128; }

Params make_params(const AttnShape& s) {
  Params p{};
  p.T = s.T, p.H = s.H, p.K = s.K, p.D = s.D;
  p.n_chunks = (s.D + chunk_width(s.D) - 1) / chunk_width(s.D);
  p.qkv_row = s.qkv_row(), p.out_row = s.out_row();
  p.scale = 1.f / std::sqrt(float(s.D));
  p.scale_log2 = p.scale * kLog2e;
  return p;
}

unsigned n_tiles(int T) { return unsigned((T + kTile - 1) / kTile); }

template <int DG>
void forward_dg(const AttnShape& s, const Params& p, cudaStream_t stream) {
  const size_t smem = (3 * kTile * ld(DG) + kTile * kLdP) * sizeof(float);
  launch(forward_kernel<DG>, dim3(unsigned(s.B * s.H), n_tiles(s.T), unsigned(p.n_chunks)), smem,
         stream, p);
}

template <int DG>
void backward_dg(const AttnShape& s, const Params& p, cudaStream_t stream) {
  const size_t smem_kv = (4 * kTile * ld(DG) + 2 * kTile * kLdP) * sizeof(float);
  launch(bwd_kv_kernel<DG>, dim3(unsigned(s.B * s.K), n_tiles(s.T), unsigned(p.n_chunks)), smem_kv,
         stream, p);
  const size_t smem_dq = (4 * kTile * ld(DG) + kTile * kLdP) * sizeof(float);
  launch(bwd_dq_kernel<DG>, dim3(unsigned(s.B * s.H), n_tiles(s.T), unsigned(p.n_chunks)), smem_dq,
         stream, p);
}

}  // namespace
}  // namespace gen

int generic_max_T() { return 65535 * gen::kTile; }

size_t generic_workspace_bytes(const AttnShape& s) {
  return size_t(s.B) * s.H * s.T * sizeof(float);
}

void generic_forward(const AttnShape& s, void* out, float* lse, const void* qkv,
                     cudaStream_t stream) {
  gen::Params p = gen::make_params(s);
  p.qkv = static_cast<const gen::bf16*>(qkv);
  p.out = static_cast<gen::bf16*>(out);
  p.lse = lse;
  switch (gen::chunk_width(s.D)) {
    case 32: gen::forward_dg<32>(s, p, stream); break;
    case 64: gen::forward_dg<64>(s, p, stream); break;
    default: gen::forward_dg<128>(s, p, stream); break;
  }
}

void generic_backward(const AttnShape& s, void* dqkv, const void* dout, const void* qkv,
                      const void* out, const float* lse, void* workspace, cudaStream_t stream) {
  float* dsum = static_cast<float*>(workspace);
  const int64_t n_rows = int64_t(s.B) * s.T * s.H;
  gen::dsum_kernel<<<unsigned((n_rows + 7) / 8), 256, 0, stream>>>(
      static_cast<const gen::bf16*>(dout), static_cast<const gen::bf16*>(out), dsum, s.T, s.H, s.D,
      n_rows);
  TL_CUDA_LAUNCH_CHECK();
  gen::Params p = gen::make_params(s);
  p.qkv = static_cast<const gen::bf16*>(qkv);
  p.dout = static_cast<const gen::bf16*>(dout);
  p.lse = const_cast<float*>(lse);  // the backward only reads it
  p.dsum = dsum;
  p.dqkv = static_cast<gen::bf16*>(dqkv);
  switch (gen::chunk_width(s.D)) {
    case 32: gen::backward_dg<32>(s, p, stream); break;
    case 64: gen::backward_dg<64>(s, p, stream); break;
    default: gen::backward_dg<128>(s, p, stream); break;
  }
}

}  // namespace tl::gpu
