// The pieces of decode_linear's kernel (decode_linear.cu has the design at its top) that
// decode_layers_kernel (a one-row decode step in one launch) shares, so that the two give the
// same bits: the arguments, f(x) built in shared memory, a pass of a row summed against it,
// and a summed row written with its residual.
#pragma once
#include "backend/backend.h"
#include "backend/cuda/vec.cuh"

namespace tl::gpu::linear {

constexpr int kWarps = 8;  // warps a block
constexpr int kThreads = kWarps * kWarp;
constexpr int kMaxRows = 8;             // M
constexpr int kPiece = 8;               // bf16 per 16-byte load
constexpr int kStep = kWarp * kPiece;   // elements a warp covers per piece
constexpr int kSmemLimit = 160 * 1024;  // f(x) [M, I] in shared memory
constexpr int kNch = 8;                 // pieces a lane a pass: I = 2048 in one pass
constexpr int kPass = kNch * kStep;     // elements of a row a warp covers in a pass

struct Args {
  bf16* out;             // [M, O]
  const bf16* x;         // [M, I], or [M, 2I] for SwiGlu
  const bf16* w;         // [O, I]
  const bf16* norm_w;    // [I] for RmsNorm
  const bf16* residual;  // [M, O] or null; may be out
  float eps;
  int I, O, in;            // in: Backend::LinearIn as int
  const char* prefetch;    // DecodeLinear::prefetch's 16-byte aligned part, or null
  int64_t prefetch_bytes;  // a multiple of 16
  int rows_per_warp;       // consecutive output rows of a warp
};

// The lane's pieces of row wr's pass starting at element base (pieces past I are not read).
__device__ __forceinline__ void load_pass(Vec<bf16, kPiece> (&wv)[kNch], const bf16* wr, int base,
                                          int I, int lane) {
#pragma unroll
  for (int p = 0; p < kNch; ++p) {
    const int i = base + lane * kPiece + p * kStep;
    if (i < I) wv[p] = load_vec<kPiece>(wr + i);
  }
}

// The first kNormPre pieces of the RMSNorm weight a thread uses in build_input (I up to
// kNormPre * 2048 at 256 threads), loaded before pdl_wait(): no kernel of the step writes
// weights, so the load is off the path that starts when the previous kernel ends.
constexpr int kNormPre = 2;
struct NormPieces {
  Vec<bf16, kPiece> w[kNormPre];
};
template <Backend::LinearIn In>
__device__ __forceinline__ NormPieces load_norm(const Args& a) {
  NormPieces n{};
  if constexpr (In == Backend::LinearIn::RmsNorm) {
#pragma unroll
    for (int q = 0; q < kNormPre; ++q) {
      const int i = (threadIdx.x + q * kThreads) * kPiece;
      if (i < a.I) n.w[q] = load_vec<kPiece>(a.norm_w + i);
    }
  }
  return n;
}

// xs[m, :] = f(x[m, :]) for m < M, rounded to bf16 as rmsnorm_forward / swiglu_forward round
// their outputs. Threads [0, kThreads), which `sync` is a barrier of; ends with it. A row's
// RMSNorm reads x once: a thread's first kNormPre pieces stay in registers between the sum
// of squares and the scaling. x is read through L2 (ld.cg): in decode_layers_kernel another
// SM wrote it during the same launch.
template <int M, Backend::LinearIn In, class Sync>
__device__ void build_input(bf16* xs, const Args& a, const NormPieces& nw, float* red, Sync sync) {
  const int I = a.I;
  const int stride = kThreads * kPiece;
  for (int m = 0; m < M; ++m) {
    if constexpr (In == Backend::LinearIn::SwiGlu) {
      // kSwiGluAtOnce pieces of gate and up a thread loaded at once: one round trip for
      // I <= 3 * 2048, not one a piece (the stores to xs keep the compiler from hoisting).
      constexpr int kSwiGluAtOnce = 3;
      const bf16* g_row = a.x + int64_t(m) * 2 * I;
      for (int i0 = threadIdx.x * kPiece; i0 < I; i0 += kSwiGluAtOnce * stride) {
        Vec<bf16, kPiece> g[kSwiGluAtOnce], u[kSwiGluAtOnce];
#pragma unroll
        for (int q = 0; q < kSwiGluAtOnce; ++q)
          if (i0 + q * stride < I) {
            g[q] = load_vec_cg<kPiece>(g_row + i0 + q * stride);
            u[q] = load_vec_cg<kPiece>(g_row + I + i0 + q * stride);
          }
#pragma unroll
        for (int q = 0; q < kSwiGluAtOnce; ++q)
          if (i0 + q * stride < I) {
            Vec<bf16, kPiece> y;
#pragma unroll
            for (int e = 0; e < kPiece; ++e)
              y.v[e] = from_f32<bf16>(swiglu1(to_f32(g[q].v[e]), to_f32(u[q].v[e])));
            store_vec<kPiece>(xs + m * I + i0 + q * stride, y);
          }
      }
      continue;
    }
    const bf16* row = a.x + int64_t(m) * I;
    if constexpr (In == Backend::LinearIn::RmsNorm) {
      const int first = threadIdx.x * kPiece;
      Vec<bf16, kPiece> xv[kNormPre];
      float ss = 0.0f;
#pragma unroll
      for (int q = 0; q < kNormPre; ++q)
        if (first + q * stride < I) xv[q] = load_vec_cg<kPiece>(row + first + q * stride);
#pragma unroll
      for (int q = 0; q < kNormPre; ++q)
        if (first + q * stride < I)
#pragma unroll
          for (int e = 0; e < kPiece; ++e) ss += to_f32(xv[q].v[e]) * to_f32(xv[q].v[e]);
      for (int i = first + kNormPre * stride; i < I; i += stride) {
        const Vec<bf16, kPiece> v = load_vec_cg<kPiece>(row + i);
#pragma unroll
        for (int e = 0; e < kPiece; ++e) ss += to_f32(v.v[e]) * to_f32(v.v[e]);
      }
      ss = warp_sum(ss);  // block_sum's order, over kWarps warps and `sync`
      if (threadIdx.x % kWarp == 0) red[threadIdx.x / kWarp] = ss;
      sync();
      ss = 0.0f;
      for (int w = 0; w < kWarps; ++w) ss += red[w];
      sync();
      const float r = 1.0f / sqrtf(ss / float(I) + a.eps);
      const auto scale = [&](Vec<bf16, kPiece> v, const Vec<bf16, kPiece>& w, int i) {
#pragma unroll
        for (int e = 0; e < kPiece; ++e)
          v.v[e] = from_f32<bf16>(to_f32(w.v[e]) * (to_f32(v.v[e]) * r));
        store_vec<kPiece>(xs + m * I + i, v);
      };
#pragma unroll
      for (int q = 0; q < kNormPre; ++q)
        if (first + q * stride < I) scale(xv[q], nw.w[q], first + q * stride);
      for (int i = first + kNormPre * stride; i < I; i += stride)
        scale(load_vec_cg<kPiece>(row + i), load_vec<kPiece>(a.norm_w + i), i);
    } else {
      for (int i = threadIdx.x * kPiece; i < I; i += stride)
        store_vec<kPiece>(xs + m * I + i, load_vec_cg<kPiece>(row + i));
    }
  }
  sync();
}

// Sums chunk `pieces` (this lane's kNch pieces of a row's pass from element base) against
// f(x) into acc[M].
template <int M, class Piece>
__device__ __forceinline__ void sum_chunk(float (&acc)[M], Piece piece, const bf16* xs, int base,
                                          int I, int lane) {
#pragma unroll
  for (int p = 0; p < kNch; ++p) {
    const int i = base + lane * kPiece + p * kStep;
    if (i >= I) break;
    const Vec<bf16, kPiece> wv = piece(p);
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const Vec<bf16, kPiece> xv = load_vec<kPiece>(xs + m * I + i);
#pragma unroll
      for (int e = 0; e < kPiece; ++e) acc[m] += to_f32(wv.v[e]) * to_f32(xv.v[e]);
    }
  }
}

// write_row<1> with the residual's value (lane 0's; when a.residual) loaded by the caller.
__device__ __forceinline__ void write_row_loaded(float acc, const Args& a, int64_t o,
                                                 float residual, int lane) {
  float s = warp_sum(acc);
  if (lane == 0) {
    if (a.residual) s += residual;
    a.out[o] = from_f32<bf16>(s);
  }
}

// Row o is summed (acc over all its passes): lane 0 writes it, plus the residual.
template <int M>
__device__ __forceinline__ void write_row(float (&acc)[M], const Args& a, int64_t o, int lane) {
#pragma unroll
  for (int m = 0; m < M; ++m) {
    float s = warp_sum(acc[m]);
    acc[m] = 0.0f;
    if (lane == 0) {
      const int64_t at = int64_t(m) * a.O + o;
      if (a.residual) s += to_f32(__ldcg(a.residual + at));
      a.out[at] = from_f32<bf16>(s);
    }
  }
}

}  // namespace tl::gpu::linear
