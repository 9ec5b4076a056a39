// RMSNorm: forward (optionally fused with the residual add) and backward.
// Forward: a team of warps per row, the row held in registers, so it is read once and
// written once.
// Backward: blocks own a contiguous range of rows and threads own columns, so dweight is
// summed per block in registers, written as per-block partials, and reduced in a fixed
// order by a second kernel: bitwise reproducible, no float atomics.
#include <algorithm>
#include <type_traits>

#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/fp8_codes.cuh"
#include "backend/cuda/ops.h"
#include "backend/cuda/vec.cuh"
#include "backend/fp8_args.h"

namespace tl::gpu {

// ---- kernels ----

// A team of `wpr` warps per row (blocks of 8 warps); thread t of the team holds W-wide
// slices t, t + team, ... (NV at most) in registers, so the row is read once. With ADD,
// x = bf16(inp + delta) goes to res_out and the norm is taken of that rounded x (the value
// the backward sees). out = weight * (x * rstd), as Hugging Face orders it. All loads
// precede the stores, so res_out may alias inp. NV <= 4 keeps registers low (<= ~80) so
// several blocks share an SM and enough loads are in flight. With FP8 the output goes to
// q.out as codes instead (Fp8Cast: the bf16 value cast as fp8_quantize casts it).
template <int W, int NV, bool ADD, bool FP8>
__global__ void rmsnorm_forward_kernel(bf16* out, float* rstd, bf16* res_out, const bf16* inp,
                                       const bf16* delta, const bf16* weight, int64_t N, int C,
                                       float eps, int wpr, QuantizeArgs q) {
  __shared__ float shared[kWarp];
  float s = 0;
  unsigned m = 0;
  if constexpr (FP8) s = begin_quantize(q);
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int team = wpr * kWarp;
  const int t = (warp % wpr) * kWarp + lane;
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / team) + warp / wpr;
  const bool live = row < N;  // dead rows still reach the barrier below
  const int nv = live ? C / W : 0;
  const int64_t off = row * C;
  Vec<bf16, W> x[NV];
  if constexpr (ADD) {
    Vec<bf16, W> d[NV];
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      const int j = t + k * team;
      if (j < nv) {
        x[k] = load_vec<W>(inp + off + j * W);
        d[k] = load_vec<W>(delta + off + j * W);
      }
    }
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      const int j = t + k * team;
      if (j < nv) {
#pragma unroll
        for (int e = 0; e < W; ++e)
          x[k].v[e] = from_f32<bf16>(to_f32(x[k].v[e]) + to_f32(d[k].v[e]));
        store_vec<W>(res_out + off + j * W, x[k]);
      }
    }
  } else {
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      const int j = t + k * team;
      if (j < nv) x[k] = load_vec<W>(inp + off + j * W);
    }
  }
  float ss = 0;
#pragma unroll
  for (int k = 0; k < NV; ++k) {
    const int j = t + k * team;
    if (j < nv) {
#pragma unroll
      for (int e = 0; e < W; ++e) ss += to_f32(x[k].v[e]) * to_f32(x[k].v[e]);
    }
  }
  ss = warp_sum(ss);
  if (wpr > 1) {  // the team's warp sums, in warp order
    if (lane == 0) shared[warp] = ss;
    __syncthreads();
    const int first = warp - warp % wpr;
    ss = 0;
    for (int w = first; w < first + wpr; ++w) ss += shared[w];
  }
  if constexpr (!FP8) {
    if (!live) return;
  }
  if (live) {  // with FP8 every thread goes on to end_quantize's barrier
    const float r = 1.0f / sqrtf(ss / float(C) + eps);
    if (t == 0) rstd[row] = r;
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      const int j = t + k * team;
      if (j < nv) {
        const Vec<bf16, W> w = load_vec<W>(weight + j * W);
        Vec<bf16, W> y;
#pragma unroll
        for (int e = 0; e < W; ++e)
          y.v[e] = from_f32<bf16>(to_f32(w.v[e]) * (to_f32(x[k].v[e]) * r));
        if constexpr (FP8) {
          Vec<uint8_t, W> c;
#pragma unroll
          for (int e = 0; e < W; ++e) {
            const float v = to_f32(y.v[e]);
            m = max(m, abs_bits(v));
            c.v[e] = quantize1(v, s, q.fmt);
          }
          store_vec<W>(q.out + off + j * W, c);
        } else {
          store_vec<W>(out + off + j * W, y);
        }
      }
    }
  }
  if constexpr (FP8) end_quantize(q, s, m);
}

// Block b: rows [b*rows_per_block, ...); thread t owns slices t, t+blockDim, ... (NV at most).
// With g = dout * w:  dinp += r * g - x * (r^3 / C) * sum(g * x);  dweight += dout * x * r.
// dinp or dw_partial may be null (that output is skipped).
template <int W, int NV>
__global__ void rmsnorm_backward_kernel(bf16* dinp, float* dw_partial, const bf16* dout,
                                        const bf16* inp, const bf16* weight, const float* rstd,
                                        int64_t N, int C, int rows_per_block) {
  __shared__ float shared[kWarp];
  const int nv = C / W;
  float w[NV][W], acc[NV][W];
#pragma unroll
  for (int k = 0; k < NV; ++k) {
    const int j = threadIdx.x + k * blockDim.x;
    Vec<bf16, W> wv;
    if (j < nv) wv = load_vec<W>(weight + j * W);
#pragma unroll
    for (int e = 0; e < W; ++e) {
      w[k][e] = j < nv ? to_f32(wv.v[e]) : 0.0f;
      acc[k][e] = 0.0f;
    }
  }
  const int64_t r0 = int64_t(blockIdx.x) * rows_per_block;
  const int64_t r1 = r0 + rows_per_block < N ? r0 + rows_per_block : N;
  for (int64_t row = r0; row < r1; ++row) {
    const int64_t off = row * C;
    Vec<bf16, W> dy[NV], x[NV], di[NV];
    float dot = 0;
#pragma unroll
    for (int k = 0; k < NV; ++k) {  // every load of the row issued before the reduction
      const int j = threadIdx.x + k * blockDim.x;
      if (j < nv) {
        dy[k] = load_vec<W>(dout + off + j * W);
        x[k] = load_vec<W>(inp + off + j * W);
        if (dinp) di[k] = load_vec<W>(dinp + off + j * W);
      }
    }
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      const int j = threadIdx.x + k * blockDim.x;
      if (j < nv) {
#pragma unroll
        for (int e = 0; e < W; ++e) dot += to_f32(dy[k].v[e]) * w[k][e] * to_f32(x[k].v[e]);
      }
    }
    const float r = rstd[row];
    if (dinp) {
      dot = block_sum(dot, shared);  // every thread of the block reaches this
      const float kf = dot * r * r * r / float(C);
#pragma unroll
      for (int k = 0; k < NV; ++k) {
        const int j = threadIdx.x + k * blockDim.x;
        if (j < nv) {
#pragma unroll
          for (int e = 0; e < W; ++e)
            di[k].v[e] = from_f32<bf16>(to_f32(di[k].v[e]) + r * to_f32(dy[k].v[e]) * w[k][e] -
                                        to_f32(x[k].v[e]) * kf);
          store_vec<W>(dinp + off + j * W, di[k]);
        }
      }
    }
    if (dw_partial) {
#pragma unroll
      for (int k = 0; k < NV; ++k) {
        const int j = threadIdx.x + k * blockDim.x;
        if (j < nv) {
#pragma unroll
          for (int e = 0; e < W; ++e) acc[k][e] += to_f32(dy[k].v[e]) * (to_f32(x[k].v[e]) * r);
        }
      }
    }
  }
  if (!dw_partial) return;
#pragma unroll
  for (int k = 0; k < NV; ++k) {
    const int j = threadIdx.x + k * blockDim.x;
    if (j < nv) {
      Vec<float, W> a;
#pragma unroll
      for (int e = 0; e < W; ++e) a.v[e] = acc[k][e];
      store_vec<W>(dw_partial + int64_t(blockIdx.x) * C + j * W, a);
    }
  }
}

// dweight[c] += sum_b partial[b, c]: lane y of 16 sums b = y, y+16, ... in order, then the
// 16 lane sums are added in order. blockDim = (32, 16).
__global__ void column_sum_kernel(float* dweight, const float* partial, int G, int C) {
  __shared__ float s[16][kWarp + 1];
  const int c = blockIdx.x * kWarp + threadIdx.x;
  float acc = 0;
  if (c < C)
    for (int b = threadIdx.y; b < G; b += 16) acc += partial[int64_t(b) * C + c];
  s[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y != 0 || c >= C) return;
  float total = 0;
  for (int y = 0; y < 16; ++y) total += s[y][threadIdx.x];
  dweight[c] += total;
}

// ---- launchers ----

// Checks inp [rows..., C], weight [C], out like inp, rstd [rows...]; returns C.
static int check_norm(const char* op, const char* out_name, const Tensor& out, const Tensor& rstd,
                      const Tensor& inp, const Tensor& weight) {
  check_cuda(op, "inp", inp, DType::BF16);
  check_rows(op, "inp", inp);
  const int64_t C = inp.dim(-1);
  check_int_range(op, "C", C);
  check_cuda(op, "weight", weight, DType::BF16);
  check_shape(op, "weight", weight, Shape{C});
  if (out_name) {  // null: the caller checks its output (FP8 codes)
    check_cuda(op, out_name, out, DType::BF16);
    check_shape(op, out_name, out, inp.shape);
  }
  check_cuda(op, "rstd", rstd, DType::F32);
  check_shape(op, "rstd", rstd, leading(inp.shape));
  return int(C);
}

constexpr int kNormWarps = 8;  // forward: warps per block

template <int W, int NV, bool ADD, bool FP8>
static void launch_forward(int wpr, bf16* out, float* rstd, bf16* res_out, const bf16* inp,
                           const bf16* delta, const bf16* weight, int64_t N, int C, float eps,
                           const QuantizeArgs& q, cudaStream_t stream) {
  const int rows_per_block = kNormWarps / wpr;
  rmsnorm_forward_kernel<W, NV, ADD, FP8>
      <<<unsigned(ceil_div(N, rows_per_block)), kNormWarps * kWarp, 0, stream>>>(
          out, rstd, res_out, inp, delta, weight, N, C, eps, wpr, q);
  TL_CUDA_LAUNCH_CHECK();
}

template <int W, bool ADD, bool FP8>
static void dispatch_forward(int NV, int wpr, bf16* out, float* rstd, bf16* res_out,
                             const bf16* inp, const bf16* delta, const bf16* weight, int64_t N,
                             int C, float eps, const QuantizeArgs& q, cudaStream_t s) {
  switch (NV) {
    case 1:
      return launch_forward<W, 1, ADD, FP8>(wpr, out, rstd, res_out, inp, delta, weight, N, C, eps,
                                            q, s);
    case 2:
      return launch_forward<W, 2, ADD, FP8>(wpr, out, rstd, res_out, inp, delta, weight, N, C, eps,
                                            q, s);
    default:
      return launch_forward<W, 4, ADD, FP8>(wpr, out, rstd, res_out, inp, delta, weight, N, C, eps,
                                            q, s);
  }
}

static int pow2_ceil(int64_t v) {
  int p = 1;
  while (p < v) p *= 2;
  return p;
}

void rmsnorm_forward(Tensor res_out, Tensor out, Tensor rstd, Tensor inp, Tensor delta,
                     Tensor weight, float eps, const char* op, cudaStream_t stream,
                     const Fp8Cast* cast) {
  const bool add = !delta.empty(), fp8 = cast != nullptr;
  const int C = check_norm(op, fp8 ? nullptr : "out", out, rstd, inp, weight);
  const int64_t N = rows_of(inp);
  if (fp8) {  // out: codes [N, C]
    TL_CHECK(N > 0 && C > 0, op, ": FP8 codes of an empty tensor");
    fp8_args::cast(Device::CUDA, op, *cast, out, N, C);
  }
  if (add) {
    check_cuda(op, "delta", delta, DType::BF16);
    check_shape(op, "delta", delta, inp.shape);
    check_cuda(op, "res_out", res_out, DType::BF16);
    check_shape(op, "res_out", res_out, inp.shape);
  }
  const QuantizeArgs q = fp8 ? begin_fp8_cast(*cast, out, stream) : QuantizeArgs{};
  if (N == 0 || C == 0) return;
  const bool vec = C % 8 == 0 && aligned16(out.data) && aligned16(inp.data) &&
                   aligned16(weight.data) &&
                   (!add || (aligned16(delta.data) && aligned16(res_out.data)));
  const int W = vec ? 8 : 1;
  const int nv = C / W;
  // Team size: aim at 2 slices per thread (C = 2048: 4 warps per row, 2 rows per block).
  const int wpr = std::min(kNormWarps, pow2_ceil(ceil_div(nv, 2 * kWarp)));
  const int NV = pow2_ceil(ceil_div(nv, int64_t(wpr) * kWarp));
  TL_CHECK(NV <= 4, op, ": C = ", C, " is too wide (at most ", 4 * kNormWarps * kWarp * 8,
           " with C % 8 == 0 and 16-byte aligned tensors, else ", 4 * kNormWarps * kWarp, ")");
  bf16* ro = add ? res_out.ptr<bf16>() : nullptr;
  const bf16* d = add ? delta.ptr<bf16>() : nullptr;
  bf16* o = fp8 ? nullptr : out.ptr<bf16>();
  const bf16 *x = inp.ptr<bf16>(), *w = weight.ptr<bf16>();
  float* r = rstd.ptr<float>();
  const auto go = [&](auto fp8_c) {
    constexpr bool P = decltype(fp8_c)::value;
    if (vec && add) dispatch_forward<8, true, P>(NV, wpr, o, r, ro, x, d, w, N, C, eps, q, stream);
    if (vec && !add)
      dispatch_forward<8, false, P>(NV, wpr, o, r, ro, x, d, w, N, C, eps, q, stream);
    if (!vec && add) dispatch_forward<1, true, P>(NV, wpr, o, r, ro, x, d, w, N, C, eps, q, stream);
    if (!vec && !add)
      dispatch_forward<1, false, P>(NV, wpr, o, r, ro, x, d, w, N, C, eps, q, stream);
  };
  if (fp8)
    go(std::true_type{});
  else
    go(std::false_type{});
}

template <int W, int NV>
static void launch_backward(int G, int threads, bf16* dinp, float* partial, const bf16* dout,
                            const bf16* inp, const bf16* weight, const float* rstd, int64_t N,
                            int C, int rows_per_block, cudaStream_t stream) {
  rmsnorm_backward_kernel<W, NV><<<unsigned(G), threads, 0, stream>>>(
      dinp, partial, dout, inp, weight, rstd, N, C, rows_per_block);
  TL_CUDA_LAUNCH_CHECK();
}

template <int W>
static void dispatch_backward(int NV, int G, int threads, bf16* dinp, float* partial,
                              const bf16* dout, const bf16* inp, const bf16* weight,
                              const float* rstd, int64_t N, int C, int rpb, cudaStream_t s) {
  switch (NV) {
    case 1:
      return launch_backward<W, 1>(G, threads, dinp, partial, dout, inp, weight, rstd, N, C, rpb,
                                   s);
    case 2:
      return launch_backward<W, 2>(G, threads, dinp, partial, dout, inp, weight, rstd, N, C, rpb,
                                   s);
    default:
      return launch_backward<W, 4>(G, threads, dinp, partial, dout, inp, weight, rstd, N, C, rpb,
                                   s);
  }
}

template <int W>
static const void* backward_kernel(int NV) {
  switch (NV) {
    case 1: return reinterpret_cast<const void*>(rmsnorm_backward_kernel<W, 1>);
    case 2: return reinterpret_cast<const void*>(rmsnorm_backward_kernel<W, 2>);
    default: return reinterpret_cast<const void*>(rmsnorm_backward_kernel<W, 4>);
  }
}

// Resident blocks per SM of the backward kernel at this block size (a host-side query).
static int backward_blocks_per_sm(bool vec, int NV, int threads) {
  int n = 0;
  TL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &n, vec ? backward_kernel<8>(NV) : backward_kernel<1>(NV), threads, 0));
  return std::max(1, n);
}

void rmsnorm_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight,
                      Tensor rstd, int sm_count, Scratch& scratch, cudaStream_t stream) {
  const char* op = "rmsnorm_backward";
  const int C = check_norm(op, "dout", dout, rstd, inp, weight);
  const bool with_dinp = !dinp.empty(), with_dw = !dweight.empty();
  if (with_dinp) {
    check_cuda(op, "dinp", dinp, DType::BF16);
    check_shape(op, "dinp", dinp, inp.shape);
  }
  if (with_dw) {
    check_cuda(op, "dweight", dweight, DType::F32);
    check_shape(op, "dweight", dweight, Shape{C});
  }
  const int64_t N = rows_of(inp);
  if (N == 0 || C == 0 || (!with_dinp && !with_dw)) return;
  const bool vec = C % 8 == 0 && aligned16(dout.data) && aligned16(inp.data) &&
                   aligned16(weight.data) && (!with_dinp || aligned16(dinp.data));
  const int W = vec ? 8 : 1;
  const int nv = C / W;
  int NV = 1;
  while (NV < 4 && ceil_div(nv, NV) > 1024) NV *= 2;
  TL_CHECK(ceil_div(nv, NV) <= 1024, op, ": C = ", C, " is too wide (at most ", 4 * 1024 * 8,
           " with C % 8 == 0 and 16-byte aligned tensors, else ", 4 * 1024, ")");
  const int threads = int(ceil_div(ceil_div(nv, NV), kWarp) * kWarp);
  // One wave of blocks, each owning a contiguous range of rows. The grid (and so the
  // summation order) depends only on N, C, the build and the GPU model: same inputs, same bits.
  const int per_sm = backward_blocks_per_sm(vec, NV, threads);
  const int64_t target = int64_t(std::max(1, sm_count)) * per_sm;
  const int rows_per_block = int(ceil_div(N, target));
  const int G = int(ceil_div(N, rows_per_block));
  float* partial = with_dw ? scratch.get_as<float>(size_t(G) * C, stream) : nullptr;
  bf16* di = with_dinp ? dinp.ptr<bf16>() : nullptr;
  if (vec)
    dispatch_backward<8>(NV, G, threads, di, partial, dout.ptr<bf16>(), inp.ptr<bf16>(),
                         weight.ptr<bf16>(), rstd.ptr<float>(), N, C, rows_per_block, stream);
  else
    dispatch_backward<1>(NV, G, threads, di, partial, dout.ptr<bf16>(), inp.ptr<bf16>(),
                         weight.ptr<bf16>(), rstd.ptr<float>(), N, C, rows_per_block, stream);
  if (with_dw) {
    column_sum_kernel<<<unsigned(ceil_div(C, kWarp)), dim3(kWarp, 16), 0, stream>>>(
        dweight.ptr<float>(), partial, G, C);
    TL_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace tl::gpu
