// decode_linear (backend.h) for a few rows: out[M,O] = residual + f(x) @ W[O,I]^T, M <= 8,
// bf16 in and out, f32 sums. With one token a stream the product is pure weight streaming
// (2.2 GB a token at 1.1B), so the kernel is built around keeping HBM busy:
// - a warp owns `rows_per_warp` consecutive output rows and streams them as a chain of
//   chunks (a chunk: one row's 2048-element pass, kNch = 8 16-byte pieces a lane, 4 KB a
//   warp). Two ways to keep chunks in flight (TL_DECODE_STAGES):
//   - in registers (0, the default): the chunk in hand and the next one, whose loads are in
//     flight while the one in hand is summed (two chunks of registers a lane: ~120
//     registers a thread, 2 blocks an SM);
//   - staged (2 or 4): a ring of that many chunk slots a warp in shared memory, filled by
//     cp.async (each lane copies, and later reads, only its own pieces, so no barrier); a
//     slot is refilled with the chunk S ahead as soon as it is summed (32-48 registers);
// - the grid is one wave (every block resident at once): the blocks build f(x) once and
//   stream without a gap until their rows are done. TL_DECODE_BLOCKS_PER_SM caps the blocks
//   an SM (default: as many as fit; 1 when staged, leaving the SM to the next kernel's blocks
//   under programmatic dependent launch). Staged with one block an SM was built to let the
//   next kernels' first chunks stream during this one and the attention; on an H100 it lost
//   (bench/RESULTS.md, 2026-12-06 19:24: batch 1 773.9 tokens/s staged against 805.3 in
//   registers, 677.3 against 862.8 with PDL), so it stays a lever. One row a warp with as
//   many blocks as rows need (TL_DECODE_ROWS_PER_WARP=1) is the layout before 2026-12-06:
//   ~5 waves for gate_up at one row, so HBM saw bursts (1.0-1.7 TB/s under Nsight Compute);
// - the first chunks' loads (one in registers, S staged) are issued before pdl_wait() and
//   f(x): weights are written by no kernel of the step, so with programmatic dependent launch
//   (pdl.cuh) they overlap the previous kernel's tail. Loading more before the wait (a second
//   chunk in registers or parked in shared memory), the residual right after it, or SwiGLU's
//   pieces three at once all lost on an H100 (bench/RESULTS.md, 2026-12-07 23:2x UTC).
//   Each block also asks L2 for its share of DecodeLinear::prefetch (the next kernel's
//   weights; off by default);
// - every block builds f(x) for all M rows in shared memory after the wait (the RMSNorm of a
//   2048-wide row or the SwiGLU of a 2 x 5632 one), and the residual is added as each output
//   is written.
// At one row it beats cuBLASLt's kernels plus the separate norm, SwiGLU and add kernels; from
// two rows on the inner loop (x re-read from shared memory for every row) is compute-bound
// and cuBLASLt wins, so LlamaInference fuses one-row steps only (bench/RESULTS.md).
// The warp sums are butterflies in a fixed order, so results are deterministic and do not
// depend on rows_per_warp, the stages or the blocks an SM.
#include <algorithm>
#include <cstdlib>

#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/vec.cuh"

namespace tl::gpu {

namespace {

constexpr int kWarps = 8;               // warps a block
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

// The layout levers, read at every launch (a recorded decode graph does not launch, and
// tests switch them): a value, or `fallback` when unset or not a number >= 0.
int lever(const char* name, int fallback) {
  const char* e = std::getenv(name);
  if (!e || !*e) return fallback;
  char* end = nullptr;
  const long v = std::strtol(e, &end, 10);
  return *end == 0 && v >= 0 && v <= 1 << 20 ? int(v) : fallback;
}
constexpr int kStagesDefault = 0;  // registers: see the note at the top

// cp.async of 16 bytes into shared memory, cached in L2 only (weights are read once a step).
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
  const unsigned d = unsigned(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
// Returns once at most N of this thread's groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

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
      const int i = (threadIdx.x + q * blockDim.x) * kPiece;
      if (i < a.I) n.w[q] = load_vec<kPiece>(a.norm_w + i);
    }
  }
  return n;
}

// xs[m, :] = f(x[m, :]) for m < M, rounded to bf16 as rmsnorm_forward / swiglu_forward round
// their outputs. All threads; ends with a barrier. A row's RMSNorm reads x once: a thread's
// first kNormPre pieces stay in registers between the sum of squares and the scaling.
template <int M, Backend::LinearIn In>
__device__ void build_input(bf16* xs, const Args& a, const NormPieces& nw, float* red) {
  const int I = a.I;
  const int stride = blockDim.x * kPiece;
  for (int m = 0; m < M; ++m) {
    if constexpr (In == Backend::LinearIn::SwiGlu) {
      const bf16* g_row = a.x + int64_t(m) * 2 * I;
      for (int i = threadIdx.x * kPiece; i < I; i += stride) {
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
    if constexpr (In == Backend::LinearIn::RmsNorm) {
      const int first = threadIdx.x * kPiece;
      Vec<bf16, kPiece> xv[kNormPre];
      float ss = 0.0f;
#pragma unroll
      for (int q = 0; q < kNormPre; ++q)
        if (first + q * stride < I) xv[q] = load_vec<kPiece>(row + first + q * stride);
#pragma unroll
      for (int q = 0; q < kNormPre; ++q)
        if (first + q * stride < I)
#pragma unroll
          for (int e = 0; e < kPiece; ++e) ss += to_f32(xv[q].v[e]) * to_f32(xv[q].v[e]);
      for (int i = first + kNormPre * stride; i < I; i += stride) {
        const Vec<bf16, kPiece> v = load_vec<kPiece>(row + i);
#pragma unroll
        for (int e = 0; e < kPiece; ++e) ss += to_f32(v.v[e]) * to_f32(v.v[e]);
      }
      ss = block_sum(ss, red);
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
        scale(load_vec<kPiece>(row + i), load_vec<kPiece>(a.norm_w + i), i);
    } else {
      for (int i = threadIdx.x * kPiece; i < I; i += stride)
        store_vec<kPiece>(xs + m * I + i, load_vec<kPiece>(row + i));
    }
  }
  __syncthreads();
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

// Row o is summed (acc over all its passes): lane 0 writes it, plus the residual.
template <int M>
__device__ __forceinline__ void write_row(float (&acc)[M], const Args& a, int64_t o, int lane) {
#pragma unroll
  for (int m = 0; m < M; ++m) {
    float s = warp_sum(acc[m]);
    acc[m] = 0.0f;
    if (lane == 0) {
      const int64_t at = int64_t(m) * a.O + o;
      if (a.residual) s += to_f32(a.residual[at]);
      a.out[at] = from_f32<bf16>(s);
    }
  }
}

// S = 0: chunks in registers, the first loaded before pdl_wait(); S > 0: a ring of S chunk
// slots a warp in shared memory, after f(x) (dynamic shared memory: [M, I] bf16, then
// [kWarps][S][kNch][kWarp] 16-byte pieces).
template <int M, Backend::LinearIn In, int S>
__global__ void __launch_bounds__(kWarps* kWarp) decode_linear_kernel(Args a) {
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* xs = reinterpret_cast<bf16*>(smem);  // f(x) [M, I]
  __shared__ float red[kWarp];
  pdl_launch_dependents();
  const int lane = threadIdx.x % kWarp;
  const int I = a.I;
  const int64_t first = (int64_t(blockIdx.x) * kWarps + threadIdx.x / kWarp) * a.rows_per_warp;
  const int64_t end = min(first + a.rows_per_warp, int64_t(a.O));
  const int passes = (I + kPass - 1) / kPass;
  const int chunks = first < end ? int(end - first) * passes : 0;
  // No kernel of the step writes weights: the first chunks stream while the kernel before
  // ends and while f(x) is built.
  constexpr int kSlots = S > 0 ? S : 1;
  // S = 0: two chunks in registers: the one in hand and the next.
  Vec<bf16, kPiece> regs[2][S > 0 ? 1 : kNch];
  const auto load_chunk = [&](Vec<bf16, kPiece>(&r)[S > 0 ? 1 : kNch], int c) {
    if constexpr (S == 0)
      if (c < chunks) load_pass(r, a.w + (first + c / passes) * I, (c % passes) * kPass, I, lane);
  };
  Vec<bf16, kPiece>* ring = nullptr;  // this warp's slots, [kSlots][kNch][kWarp]
  if constexpr (S > 0)
    ring = reinterpret_cast<Vec<bf16, kPiece>*>(smem + size_t(M) * I * sizeof(bf16)) +
           (threadIdx.x / kWarp) * kSlots * kNch * kWarp;
  // Chunk c into slot c % S; every lane commits one group a chunk, even past the last, so
  // cp_async_wait<S - 1> always means "chunk c has landed".
  const auto issue = [&](int c) {
    if (c < chunks) {
      const int base = (c % passes) * kPass;
      const bf16* wr = a.w + (first + c / passes) * I;
      Vec<bf16, kPiece>* slot = ring + (c % kSlots) * kNch * kWarp + lane;
#pragma unroll
      for (int p = 0; p < kNch; ++p) {
        const int i = base + lane * kPiece + p * kStep;
        if (i < I) cp_async16(slot + p * kWarp, wr + i);
      }
    }
    cp_async_commit();
  };
  if constexpr (S > 0) {
#pragma unroll
    for (int c = 0; c < S; ++c) issue(c);
  } else {
    load_chunk(regs[0], 0);
  }
  // And this block's share of the next kernel's weights.
  if (a.prefetch && threadIdx.x == 0) {
    const int64_t share = ((a.prefetch_bytes + gridDim.x - 1) / gridDim.x + 15) / 16 * 16;
    const int64_t at = share * blockIdx.x;
    if (at < a.prefetch_bytes)
      bulk_prefetch_l2(a.prefetch + at, unsigned(min(share, a.prefetch_bytes - at)));
  }
  const NormPieces nw = load_norm<In>(a);
  pdl_wait();
  build_input<M, In>(xs, a, nw, red);

  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.0f;
  int64_t o = first;  // the chunk in hand: row o, elements from base
  int base = 0;
  // Sums the chunk in hand, writes its row when that is complete, and moves on.
  const auto summed = [&](auto piece) {
    sum_chunk<M>(acc, piece, xs, base, I, lane);
    base += kPass;
    if (base >= I) {  // row o is summed: write it
      write_row<M>(acc, a, o, lane);
      ++o;
      base = 0;
    }
  };
  if constexpr (S > 0) {
    for (int c = 0; c < chunks; ++c) {
      cp_async_wait<S - 1>();
      const Vec<bf16, kPiece>* slot = ring + (c % kSlots) * kNch * kWarp + lane;
      summed([&](int p) { return slot[p * kWarp]; });
      issue(c + S);  // this lane's reads of the slot are done (same thread, in order)
    }
  } else {
    // While chunk c is summed, c + 1 is in flight; then c + 1 moves into hand (waiting for
    // its loads).
    for (int c = 0; c < chunks; ++c) {
      load_chunk(regs[1], c + 1);
      summed([&](int p) { return regs[0][p]; });
#pragma unroll
      for (int p = 0; p < kNch; ++p) regs[0][p] = regs[1][p];
    }
  }
  if constexpr (S > 0) cp_async_wait<0>();  // no copy may outlive the block's shared memory
}

// Rows a warp takes so that the grid is one wave: the warps of blocks_per_sm blocks on every
// SM share the O rows. TL_DECODE_ROWS_PER_WARP overrides it.
int rows_per_warp(int blocks_per_sm, int O, int sm_count) {
  if (const int n = lever("TL_DECODE_ROWS_PER_WARP", 0); n > 0) return n;
  const int64_t warps = int64_t(std::max(blocks_per_sm, 1)) * std::max(sm_count, 1) * kWarps;
  return int(std::max<int64_t>(ceil_div(O, warps), 1));
}

template <int M, Backend::LinearIn In, int S>
void launch(Args a, int sm_count, cudaStream_t stream) {
  const size_t smem = size_t(M) * size_t(a.I) * sizeof(bf16) +
                      size_t(kWarps) * S * kNch * kWarp * sizeof(Vec<bf16, kPiece>);
  auto kernel = decode_linear_kernel<M, In, S>;
  // More than 48 KiB of shared memory needs an opt-in, which belongs to the current device:
  // set on every call (cheap, not a stream operation), as the attention kernels do.
  if (smem > 48 * 1024)
    TL_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  // Blocks an SM holds at this shared memory, asked once per kernel and size (a step run op
  // by op would otherwise ask ~110 times a token).
  thread_local size_t seen_smem = 0;
  thread_local int fit = 0;
  if (fit == 0 || seen_smem != smem) {
    TL_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, kernel, kWarps * kWarp, smem));
    seen_smem = smem;
  }
  const int cap = lever("TL_DECODE_BLOCKS_PER_SM", S > 0 ? 1 : 0);
  a.rows_per_warp = rows_per_warp(cap > 0 ? std::min(fit, cap) : fit, a.O, sm_count);
  const int64_t blocks = ceil_div(a.O, int64_t(kWarps) * a.rows_per_warp);
  launch_pdl(kernel, dim3(unsigned(blocks)), dim3(kWarps * kWarp), smem, stream, a);
}

// TL_DECODE_STAGES: 2 or 4 chunk slots a warp in shared memory, 0 (default) for registers;
// the ring goes to registers when f(x) leaves it no room.
template <int M, Backend::LinearIn In>
void launch_staged(const Args& a, int sm_count, cudaStream_t stream) {
  const int want = lever("TL_DECODE_STAGES", kStagesDefault);
  const size_t ring_bytes = size_t(kWarps) * kNch * kWarp * sizeof(Vec<bf16, kPiece>);
  const size_t xs_bytes = size_t(M) * size_t(a.I) * sizeof(bf16);
  const int stages = want >= 4 && xs_bytes + 4 * ring_bytes <= kSmemLimit   ? 4
                     : want >= 2 && xs_bytes + 2 * ring_bytes <= kSmemLimit ? 2
                                                                            : 0;
  if (stages == 4) return launch<M, In, 4>(a, sm_count, stream);
  if (stages == 2) return launch<M, In, 2>(a, sm_count, stream);
  launch<M, In, 0>(a, sm_count, stream);
}

template <int M>
void launch_in(const Args& a, int sm_count, cudaStream_t stream) {
  using In = Backend::LinearIn;
  switch (In(a.in)) {
    case In::Plain: return launch_staged<M, In::Plain>(a, sm_count, stream);
    case In::RmsNorm: return launch_staged<M, In::RmsNorm>(a, sm_count, stream);
    case In::SwiGlu: return launch_staged<M, In::SwiGlu>(a, sm_count, stream);
  }
}

void launch_rows(int M, const Args& a, int sm_count, cudaStream_t stream) {
  switch (M) {
    case 1: return launch_in<1>(a, sm_count, stream);
    case 2: return launch_in<2>(a, sm_count, stream);
    case 3: return launch_in<3>(a, sm_count, stream);
    case 4: return launch_in<4>(a, sm_count, stream);
    case 5: return launch_in<5>(a, sm_count, stream);
    case 6: return launch_in<6>(a, sm_count, stream);
    case 7: return launch_in<7>(a, sm_count, stream);
    default: return launch_in<8>(a, sm_count, stream);
  }
}

}  // namespace

bool decode_linear_fits(Tensor out, Tensor x, Tensor w, const Backend::DecodeLinear& f) {
  const int64_t M = x.dim(0), I = w.dim(1), O = w.dim(0);
  bool aligned = true;  // x, w and the norm weight are read 16 bytes at a time
  for (const void* p : {x.data, w.data, f.norm_weight.data}) aligned = aligned && aligned16(p);
  return aligned && out.data && M >= 1 && M <= kMaxRows && I > 0 && I % kPiece == 0 && O > 0 &&
         O <= int64_t(INT32_MAX) - kWarps && M * I * int64_t(sizeof(bf16)) <= kSmemLimit;
}

void decode_linear(Tensor out, Tensor x, Tensor w, const Backend::DecodeLinear& f, int sm_count,
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
         1};
  if (!f.prefetch.empty()) {
    const AlignedBytes pf = aligned16_part(f.prefetch);
    a.prefetch = pf.bytes > 0 ? pf.data : nullptr;
    a.prefetch_bytes = pf.bytes;
  }
  launch_rows(int(M), a, sm_count, stream);
}

}  // namespace tl::gpu
