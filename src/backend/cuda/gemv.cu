// Linear layers for a few rows (decode: one token per stream): out[M,O] = x[M,I] @ W[O,I]^T
// with M <= 8, bf16 in and out, f32 sums. Pure weight streaming: each warp owns one output
// row o, its lanes read W[o, :] in 16-byte pieces (four in flight each) and dot them with
// the M rows of x held in shared memory; a warp sum gives out[:, o]. Reading the weights
// once is the whole cost (2.2 GB at 1.1B), which cuBLASLt's kernels for one row do not
// reach (bench/NOTES.md). Off unless TL_GEMV=1 until a GPU run has measured it (#13).
#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/vec.cuh"

namespace tl::gpu {

namespace {

constexpr int kGemvWarps = 8;              // rows of W per block
constexpr int kGemvMaxRows = 8;            // M
constexpr int kGemvSmemBytes = 48 * 1024;  // x [M, I] must fit (no opt-in needed)
constexpr int kPieces = 4;                 // 16-byte W loads in flight per lane

template <int M>
__global__ void __launch_bounds__(kGemvWarps* kWarp)
    gemv_kernel(bf16* __restrict__ out, const bf16* __restrict__ x, const bf16* __restrict__ w,
                int I, int O) {
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* xs = reinterpret_cast<bf16*>(smem);  // [M, I]
  for (int i = threadIdx.x * 8; i < M * I; i += blockDim.x * 8)
    store_vec<8>(xs + i, load_vec<8>(x + i));
  __syncthreads();
  const int lane = threadIdx.x % kWarp;
  const int o = blockIdx.x * kGemvWarps + threadIdx.x / kWarp;
  if (o >= O) return;
  const bf16* wr = w + int64_t(o) * I;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.0f;
  constexpr int kStep = kWarp * 8;  // elements a warp covers per piece
  for (int base = lane * 8; base < I; base += kStep * kPieces) {
    Vec<bf16, 8> wv[kPieces];
#pragma unroll
    for (int p = 0; p < kPieces; ++p)  // the loads first: kPieces requests in flight
      if (base + p * kStep < I) wv[p] = load_vec<8>(wr + base + p * kStep);
#pragma unroll
    for (int p = 0; p < kPieces; ++p) {
      const int i = base + p * kStep;
      if (i >= I) break;
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const Vec<bf16, 8> xv = load_vec<8>(xs + m * I + i);
#pragma unroll
        for (int k = 0; k < 8; ++k) acc[m] += to_f32(wv[p].v[k]) * to_f32(xv.v[k]);
      }
    }
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
    float s = acc[m];
    for (int d = kWarp / 2; d > 0; d /= 2) s += __shfl_xor_sync(0xffffffffu, s, d);
    if (lane == 0) out[int64_t(m) * O + o] = from_f32<bf16>(s);
  }
}

template <int M>
void launch(bf16* out, const bf16* x, const bf16* w, int I, int O, cudaStream_t stream) {
  const size_t smem = size_t(M) * size_t(I) * sizeof(bf16);
  gemv_kernel<M>
      <<<unsigned(ceil_div(O, kGemvWarps)), kGemvWarps * kWarp, smem, stream>>>(out, x, w, I, O);
}

}  // namespace

bool gemv_fits(int64_t rows, int64_t I, int64_t O, const void* out, const void* x, const void* w) {
  const auto a16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return rows >= 1 && rows <= kGemvMaxRows && I % 8 == 0 && I > 0 && O > 0 &&
         rows * I * int64_t(sizeof(bf16)) <= kGemvSmemBytes && O <= int64_t(INT32_MAX) && a16(x) &&
         a16(w) && out != nullptr;
}

void gemv(Tensor out, Tensor x, Tensor w, cudaStream_t stream) {
  const int64_t M = rows_of(x), I = w.dim(1), O = w.dim(0);
  TL_ASSERT(gemv_fits(M, I, O, out.data, x.data, w.data));
  bf16* o = out.ptr<bf16>();
  const bf16* xp = x.ptr<bf16>();
  const bf16* wp = w.ptr<bf16>();
  switch (M) {
    case 1: launch<1>(o, xp, wp, int(I), int(O), stream); break;
    case 2: launch<2>(o, xp, wp, int(I), int(O), stream); break;
    case 3: launch<3>(o, xp, wp, int(I), int(O), stream); break;
    case 4: launch<4>(o, xp, wp, int(I), int(O), stream); break;
    case 5: launch<5>(o, xp, wp, int(I), int(O), stream); break;
    case 6: launch<6>(o, xp, wp, int(I), int(O), stream); break;
    case 7: launch<7>(o, xp, wp, int(I), int(O), stream); break;
    default: launch<8>(o, xp, wp, int(I), int(O), stream); break;
  }
  TL_CUDA_LAUNCH_CHECK();
}

}  // namespace tl::gpu
