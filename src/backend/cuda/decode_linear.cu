// decode_linear (backend.h) for one or two rows: out[M,O] = residual + f(x) @ W[O,I]^T,
// bf16 in and out, f32 sums. With one token a stream the product is pure weight streaming
// (2.2 GB a token at 1.1B, 88 products of 8-46 MB), so the kernel is built around keeping
// HBM busy from the first microsecond:
// - one warp per output row o; its lanes read W[o, :] in 16-byte pieces, a pass of 8 pieces
//   a lane (4 KB a warp: the whole row for I = 2048) issued before any is used;
// - the first pass is issued before pdl_wait(): no kernel of the step writes weights, so they
//   stream while the kernel before (the attention, the previous linear) finishes
//   (programmatic dependent launch, pdl.cuh);
// - no shared memory and no barrier: each warp reads x itself (L1 serves the block's other
//   warps) and applies f lane by lane: SwiGLU element by element, RMSNorm after a warp sum
//   of the row's squares; the residual is added as each output is written.
// Rows beyond two would need x in registers per row (or in shared memory, which made the
// kernel compute-bound at 8 rows, -53% against cuBLASLt): those calls take the separate ops.
// The warp sums are butterflies in a fixed order, so results are deterministic.
#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/vec.cuh"

namespace tl::gpu {

namespace {

constexpr int kWarps = 4;              // output rows per block
constexpr int kMaxRows = 2;            // M
constexpr int kPiece = 8;              // bf16 per 16-byte load
constexpr int kStep = kWarp * kPiece;  // elements a warp covers per piece
constexpr int kNch = 8;                // pieces a lane a pass: I = 2048 in one pass

struct Args {
  bf16* out;             // [M, O]
  const bf16* x;         // [M, I], or [M, 2I] for SwiGlu
  const bf16* w;         // [O, I]
  const bf16* norm_w;    // [I] for RmsNorm
  const bf16* residual;  // [M, O] or null; may be out
  float eps;
  int I, O;
};

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// f(x)[m, i .. i+8), rounded to bf16 as rmsnorm_forward / swiglu_forward round their outputs
// (r: row m's 1/rms for RmsNorm).
template <Backend::LinearIn IN>
__device__ __forceinline__ Vec<bf16, kPiece> input_piece(const Args& a, int m, int i, float r) {
  const int I = a.I;
  if constexpr (IN == Backend::LinearIn::SwiGlu) {
    const bf16* row = a.x + int64_t(m) * 2 * I;
    const Vec<bf16, kPiece> g = load_vec<kPiece>(row + i), u = load_vec<kPiece>(row + I + i);
    Vec<bf16, kPiece> y;
#pragma unroll
    for (int e = 0; e < kPiece; ++e) {
      const float gf = to_f32(g.v[e]);
      y.v[e] = from_f32<bf16>(gf * sigmoid(gf) * to_f32(u.v[e]));
    }
    return y;
  }
  Vec<bf16, kPiece> v = load_vec<kPiece>(a.x + int64_t(m) * I + i);
  if constexpr (IN == Backend::LinearIn::RmsNorm) {
    const Vec<bf16, kPiece> w = load_vec<kPiece>(a.norm_w + i);
#pragma unroll
    for (int e = 0; e < kPiece; ++e) v.v[e] = from_f32<bf16>(to_f32(w.v[e]) * (to_f32(v.v[e]) * r));
  }
  return v;
}

template <int M, Backend::LinearIn IN>
__global__ void __launch_bounds__(kWarps* kWarp) decode_linear_kernel(Args a) {
  pdl_launch_dependents();
  const int lane = threadIdx.x % kWarp;
  const int o = blockIdx.x * kWarps + threadIdx.x / kWarp;
  if (o >= a.O) return;  // no barriers below
  const int I = a.I;
  const bf16* wr = a.w + int64_t(o) * I;
  Vec<bf16, kPiece> wv[kNch];
#pragma unroll
  for (int p = 0; p < kNch; ++p) {  // the first pass, in flight across the wait
    const int i = lane * kPiece + p * kStep;
    if (i < I) wv[p] = load_vec<kPiece>(wr + i);
  }
  pdl_wait();  // x and the residual come from earlier kernels

  float r[M];  // RmsNorm: each row's 1/rms, from a warp sum over the whole row
#pragma unroll
  for (int m = 0; m < M; ++m) {
    r[m] = 1.0f;
    if constexpr (IN == Backend::LinearIn::RmsNorm) {
      float ss = 0.0f;
      for (int i = lane * kPiece; i < I; i += kStep) {
        const Vec<bf16, kPiece> v = load_vec<kPiece>(a.x + int64_t(m) * I + i);
#pragma unroll
        for (int e = 0; e < kPiece; ++e) ss += to_f32(v.v[e]) * to_f32(v.v[e]);
      }
      r[m] = 1.0f / sqrtf(warp_sum(ss) / float(I) + a.eps);
    }
  }
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.0f;
  for (int base = 0; base < I; base += kNch * kStep) {
    if (base > 0) {
#pragma unroll
      for (int p = 0; p < kNch; ++p) {
        const int i = base + lane * kPiece + p * kStep;
        if (i < I) wv[p] = load_vec<kPiece>(wr + i);
      }
    }
#pragma unroll
    for (int p = 0; p < kNch; ++p) {
      const int i = base + lane * kPiece + p * kStep;
      if (i >= I) break;
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const Vec<bf16, kPiece> xv = input_piece<IN>(a, m, i, r[m]);
#pragma unroll
        for (int e = 0; e < kPiece; ++e) acc[m] += to_f32(wv[p].v[e]) * to_f32(xv.v[e]);
      }
    }
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
    float s = warp_sum(acc[m]);
    if (lane == 0) {
      const int64_t at = int64_t(m) * a.O + o;
      if (a.residual) s += to_f32(a.residual[at]);
      a.out[at] = from_f32<bf16>(s);
    }
  }
}

template <int M>
void launch(const Args& a, Backend::LinearIn in, cudaStream_t stream) {
  using In = Backend::LinearIn;
  auto kernel = in == In::RmsNorm  ? decode_linear_kernel<M, In::RmsNorm>
                : in == In::SwiGlu ? decode_linear_kernel<M, In::SwiGlu>
                                   : decode_linear_kernel<M, In::Plain>;
  launch_pdl(kernel, dim3(unsigned(ceil_div(a.O, kWarps))), dim3(kWarps * kWarp), 0, stream, a);
}

}  // namespace

bool decode_linear_fits(Tensor out, Tensor x, Tensor w, const Backend::DecodeLinear& f) {
  const int64_t M = x.dim(0), I = w.dim(1), O = w.dim(0);
  bool aligned = true;  // x, w and the norm weight are read 16 bytes at a time
  for (const void* p : {x.data, w.data, f.norm_weight.data}) aligned = aligned && aligned16(p);
  return aligned && out.data && M >= 1 && M <= kMaxRows && I > 0 && I % kPiece == 0 && O > 0 &&
         O <= int64_t(INT32_MAX) - kWarps && I <= int64_t(INT32_MAX) / 4;
}

void decode_linear(Tensor out, Tensor x, Tensor w, const Backend::DecodeLinear& f,
                   cudaStream_t stream) {
  TL_ASSERT(decode_linear_fits(out, x, w, f));
  const int64_t M = x.dim(0), I = w.dim(1), O = w.dim(0);
  Args a{out.ptr<bf16>(),
         x.ptr<bf16>(),
         w.ptr<bf16>(),
         f.in == Backend::LinearIn::RmsNorm ? f.norm_weight.ptr<bf16>() : nullptr,
         f.residual.empty() ? nullptr : f.residual.ptr<bf16>(),
         f.eps,
         int(I),
         int(O)};
  if (M == 1)
    launch<1>(a, f.in, stream);
  else
    launch<2>(a, f.in, stream);
}

}  // namespace tl::gpu
