// decode_linear (backend.h) for a few rows: out[M,O] = residual + f(x) @ W[O,I]^T, M <= 8,
// bf16 in and out, f32 sums. With one token a stream the product is pure weight streaming
// (2.2 GB a token at 1.1B), so the kernel is built around keeping HBM busy:
// - one warp per output row o; its lanes read W[o, :] in 16-byte pieces, all of a pass
//   (kNch = 8 pieces a lane: 4 KB a warp, a whole row for I = 2048) issued before any is
//   used; with ~16 warps an SM that keeps far more bytes in flight than HBM's latency needs;
// - first of all each warp issues its first pass's loads into registers and asks for the
//   rest of its row in L2 (one bulk prefetch), so the weights stream while the block builds
//   f(x) below; weights are written by no kernel of the step, so with programmatic dependent
//   launch (pdl.cuh, TL_PDL=1) this happens before pdl_wait(), during the previous kernel's
//   tail (a later pass's loads come from L2 then). Each block also
//   asks for its share of DecodeLinear::prefetch (the next kernel's weights, off by default).
//   TL_DECODE_LOAD_FIRST=0 restores the order measured before 2026-12-06 (the whole row to
//   L2 first, the loads after f(x)), for A/B;
// - after the wait every block builds f(x) for all M rows in shared memory (the RMSNorm of a
//   2048-wide row or the SwiGLU of a 2 x 5632 one costs far less than a launch), and the
//   residual is added as each output is written.
// Measured on an H100 (bench/RESULTS.md, 2026-12-06): at one row it beats cuBLASLt's kernels
// plus the separate norm, SwiGLU and add kernels (+11% a token); from two rows on the inner
// loop (x re-read from shared memory for every row) is compute-bound and cuBLASLt wins
// (-10% at 2, -53% at 8), so LlamaInference fuses one-row steps only. A variant without
// shared memory (x read and f applied lane by lane, r from a warp sum) was slower still
// (-15% against cuBLASLt at one row: each warp's x loads form a chain of L2 round trips).
// The warp sums are butterflies in a fixed order, so results are deterministic.
#include <cstdlib>

#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/vec.cuh"

namespace tl::gpu {

namespace {

constexpr int kWarps = 8;               // output rows per block
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
  int load_first;          // first pass's loads before f(x) (else the row to L2 only)
  int min_blocks;          // 3: the register-capped variant (one row only)
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

// xs[m, :] = f(x[m, :]) for m < M, rounded to bf16 as rmsnorm_forward / swiglu_forward round
// their outputs. All threads; ends with a barrier.
template <int M, Backend::LinearIn In>
__device__ void build_input(bf16* xs, const Args& a, float* red) {
  const int I = a.I;
  for (int m = 0; m < M; ++m) {
    if constexpr (In == Backend::LinearIn::SwiGlu) {
      const bf16* g_row = a.x + int64_t(m) * 2 * I;
      for (int i = threadIdx.x * kPiece; i < I; i += blockDim.x * kPiece) {
        const Vec<bf16, kPiece> g = load_vec<kPiece>(g_row + i),
                                u = load_vec<kPiece>(g_row + I + i);
        Vec<bf16, kPiece> y;
#pragma unroll
        for (int e = 0; e < kPiece; ++e)
          y.v[e] = from_f32<bf16>(swiglu1(to_f32(g.v[e]), to_f32(u.v[e])));
        store_vec<kPiece>(xs + m * I + i, y);
      }
      continue;
    }
    const bf16* row = a.x + int64_t(m) * I;
    float r = 1.0f;
    if constexpr (In == Backend::LinearIn::RmsNorm) {
      float ss = 0.0f;
      for (int i = threadIdx.x * kPiece; i < I; i += blockDim.x * kPiece) {
        const Vec<bf16, kPiece> v = load_vec<kPiece>(row + i);
#pragma unroll
        for (int e = 0; e < kPiece; ++e) ss += to_f32(v.v[e]) * to_f32(v.v[e]);
      }
      ss = block_sum(ss, red);
      r = 1.0f / sqrtf(ss / float(I) + a.eps);
    }
    for (int i = threadIdx.x * kPiece; i < I; i += blockDim.x * kPiece) {
      Vec<bf16, kPiece> v = load_vec<kPiece>(row + i);
      if constexpr (In == Backend::LinearIn::RmsNorm) {
        const Vec<bf16, kPiece> w = load_vec<kPiece>(a.norm_w + i);
#pragma unroll
        for (int e = 0; e < kPiece; ++e)
          v.v[e] = from_f32<bf16>(to_f32(w.v[e]) * (to_f32(v.v[e]) * r));
      }
      store_vec<kPiece>(xs + m * I + i, v);
    }
  }
  __syncthreads();
}

// MinBlocks 3 caps registers so three blocks fit an SM (~80, some spilled); 1 leaves them to
// the compiler (~100 at one row: two blocks an SM).
template <int M, Backend::LinearIn In, int MinBlocks>
__global__ void __launch_bounds__(kWarps* kWarp, MinBlocks) decode_linear_kernel(Args a) {
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* xs = reinterpret_cast<bf16*>(smem);  // f(x) [M, I]
  __shared__ float red[kWarp];
  pdl_launch_dependents();
  const int lane = threadIdx.x % kWarp;
  const int o = blockIdx.x * kWarps + threadIdx.x / kWarp;
  const bool live = o < a.O;
  const int I = a.I;
  const bf16* wr = a.w + int64_t(live ? o : 0) * I;
  // No kernel of the step writes weights: start this warp's row while the kernel before ends
  // and while f(x) is built.
  Vec<bf16, kPiece> wv[kNch];  // the pass being summed (held through f(x) for the first)
  if (live && a.load_first) {
    load_pass(wv, wr, 0, I, lane);
    if (lane == 0 && I > kPass)
      bulk_prefetch_l2(wr + kPass, unsigned(I - kPass) * unsigned(sizeof(bf16)));
  } else if (live && lane == 0) {
    bulk_prefetch_l2(wr, unsigned(I) * unsigned(sizeof(bf16)));
  }
  // And this block's share of the next kernel's weights, after its own rows.
  if (a.prefetch && threadIdx.x == 0) {
    const int64_t share = ((a.prefetch_bytes + gridDim.x - 1) / gridDim.x + 15) / 16 * 16;
    const int64_t at = share * blockIdx.x;
    if (at < a.prefetch_bytes)
      bulk_prefetch_l2(a.prefetch + at, unsigned(min(share, a.prefetch_bytes - at)));
  }
  pdl_wait();
  build_input<M, In>(xs, a, red);
  if (!live) return;
  if (!a.load_first) load_pass(wv, wr, 0, I, lane);

  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.0f;
  for (int base = 0; base < I; base += kPass) {
    if (base > 0) load_pass(wv, wr, base, I, lane);  // from L2 (the bulk prefetch above)
#pragma unroll
    for (int p = 0; p < kNch; ++p) {
      const int i = base + lane * kPiece + p * kStep;
      if (i >= I) break;
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const Vec<bf16, kPiece> xv = load_vec<kPiece>(xs + m * I + i);
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

template <int M, Backend::LinearIn In>
void launch(const Args& a, cudaStream_t stream) {
  const size_t smem = size_t(M) * size_t(a.I) * sizeof(bf16);
  auto kernel = decode_linear_kernel<M, In, 1>;
  if constexpr (M == 1)  // the default fused case; TL_DECODE_MIN_BLOCKS=3 for A/B
    if (a.min_blocks == 3) kernel = decode_linear_kernel<M, In, 3>;
  // More than 48 KiB of shared memory needs an opt-in, which belongs to the current device:
  // set on every call (cheap, not a stream operation), as the attention kernels do.
  if (smem > 48 * 1024)
    TL_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemLimit));
  launch_pdl(kernel, dim3(unsigned(ceil_div(a.O, kWarps))), dim3(kWarps * kWarp), smem, stream, a);
}

template <int M>
void launch_in(const Args& a, cudaStream_t stream) {
  switch (Backend::LinearIn(a.in)) {
    case Backend::LinearIn::Plain: return launch<M, Backend::LinearIn::Plain>(a, stream);
    case Backend::LinearIn::RmsNorm: return launch<M, Backend::LinearIn::RmsNorm>(a, stream);
    case Backend::LinearIn::SwiGlu: return launch<M, Backend::LinearIn::SwiGlu>(a, stream);
  }
}

void launch_rows(int M, const Args& a, cudaStream_t stream) {
  switch (M) {
    case 1: return launch_in<1>(a, stream);
    case 2: return launch_in<2>(a, stream);
    case 3: return launch_in<3>(a, stream);
    case 4: return launch_in<4>(a, stream);
    case 5: return launch_in<5>(a, stream);
    case 6: return launch_in<6>(a, stream);
    case 7: return launch_in<7>(a, stream);
    default: return launch_in<8>(a, stream);
  }
}

// Levers for A/B, read once: TL_DECODE_LOAD_FIRST=0 (the order before 2026-12-06),
// TL_DECODE_MIN_BLOCKS=3 (registers capped for three blocks an SM).
int env_int(const char* name, int fallback) {
  const char* e = std::getenv(name);
  return e && *e ? std::atoi(e) : fallback;
}
int load_first() {
  static const int on = env_int("TL_DECODE_LOAD_FIRST", 1) != 0;
  return on;
}
int min_blocks() {
  static const int n = env_int("TL_DECODE_MIN_BLOCKS", 1);
  return n;
}

}  // namespace

bool decode_linear_fits(Tensor out, Tensor x, Tensor w, const Backend::DecodeLinear& f) {
  const int64_t M = x.dim(0), I = w.dim(1), O = w.dim(0);
  bool aligned = true;  // x, w and the norm weight are read 16 bytes at a time
  for (const void* p : {x.data, w.data, f.norm_weight.data}) aligned = aligned && aligned16(p);
  return aligned && out.data && M >= 1 && M <= kMaxRows && I > 0 && I % kPiece == 0 && O > 0 &&
         O <= int64_t(INT32_MAX) - kWarps && M * I * int64_t(sizeof(bf16)) <= kSmemLimit;
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
         int(O),
         int(f.in),
         nullptr,
         0,
         load_first(),
         min_blocks()};
  if (!f.prefetch.empty()) {
    const AlignedBytes pf = aligned16_part(f.prefetch);
    a.prefetch = pf.bytes > 0 ? pf.data : nullptr;
    a.prefetch_bytes = pf.bytes;
  }
  launch_rows(int(M), a, stream);
}

}  // namespace tl::gpu
