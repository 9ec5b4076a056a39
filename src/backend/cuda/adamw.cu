// The optimizer's passes over the flat f32 arrays: sum of squares (for global-norm
// clipping) and the fused AdamW update.
#include <cmath>

#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/vec.cuh"

namespace tl::gpu {

// ---- kernels ----

// Stage 1: block b sums g^2 over a fixed grid-stride set of elements (float4 loads when
// aligned), in f32 per thread, then the block in double: partial[b]. Thread 0 of block 0
// also takes the n % W tail. Fixed grid and order: same bits every run.
template <int W>
__global__ void sum_squares_kernel(double* partial, const float* g, int64_t n) {
  __shared__ double shared[kWarp];
  const int64_t n_vec = n / W;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  float acc[W] = {};
#pragma unroll 4
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n_vec; i += stride) {
    const Vec<float, W> v = load_vec<W>(g + i * W);
#pragma unroll
    for (int e = 0; e < W; ++e) acc[e] += v.v[e] * v.v[e];
  }
  double s = 0;
#pragma unroll
  for (int e = 0; e < W; ++e) s += double(acc[e]);
  if (blockIdx.x == 0 && threadIdx.x == 0)
    for (int64_t i = n_vec * W; i < n; ++i) s += double(g[i]) * double(g[i]);
  s = block_sum(s, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// Stage 2, one block: out[0] = sum of the partials in a fixed order.
__global__ void sum_partials_kernel(float* out, const double* partial, int G) {
  __shared__ double shared[kWarp];
  double s = 0;
  for (int i = threadIdx.x; i < G; i += blockDim.x) s += partial[i];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) out[0] = float(s);
}

// Scalars of one step, derived on the host in double and rounded to f32 like the CPU twin.
struct AdamWScalars {
  float b1, b2, one_b1, one_b2, decay, step_size, bc2_sqrt, eps;
  double max_norm;  // > 0: clip by min(1, max_norm / (sqrt(*norm_sq) + 1e-6))
};

// Thread = W consecutive elements; the last thread also takes the n % W tail. PyTorch's
// order: p *= 1 - lr*wd, moments, then p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps).
template <int W>
__global__ void adamw_kernel(float* params, const float* grads, float* m, float* v, bf16* compute,
                             const float* norm_sq, int64_t n, AdamWScalars a) {
  const int64_t i0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * W;
  if (i0 >= n) return;
  float scale = 1.0f;
  if (norm_sq && a.max_norm > 0)  // clip factor, as torch.nn.utils.clip_grad_norm_
    scale = float(fmin(1.0, a.max_norm / (sqrt(double(*norm_sq)) + 1e-6)));
  auto step = [&](float& p, float g, float& mm, float& vv) {
    g *= scale;
    mm = a.b1 * mm + a.one_b1 * g;
    vv = a.b2 * vv + a.one_b2 * g * g;
    p = p * a.decay - a.step_size * mm / (sqrtf(vv) / a.bc2_sqrt + a.eps);
  };
  if (i0 + W <= n) {
    Vec<float, W> p = load_vec<W>(params + i0), g = load_vec<W>(grads + i0);
    Vec<float, W> mv = load_vec<W>(m + i0), vv = load_vec<W>(v + i0);
#pragma unroll
    for (int e = 0; e < W; ++e) step(p.v[e], g.v[e], mv.v[e], vv.v[e]);
    store_vec<W>(params + i0, p);
    store_vec<W>(m + i0, mv);
    store_vec<W>(v + i0, vv);
    if (compute) {
      Vec<bf16, W> c;
#pragma unroll
      for (int e = 0; e < W; ++e) c.v[e] = from_f32<bf16>(p.v[e]);
      store_vec<W>(compute + i0, c);
    }
  } else {
    for (int64_t i = i0; i < n; ++i) {
      step(params[i], grads[i], m[i], v[i]);
      if (compute) compute[i] = from_f32<bf16>(params[i]);
    }
  }
}

// ---- launchers ----

void sum_squares(Tensor out, Tensor g, Scratch& scratch, cudaStream_t stream) {
  const char* op = "sum_squares";
  check_cuda(op, "out", out, DType::F32);
  TL_CHECK(out.numel() == 1, op, ": out must hold 1 element, got ", out.str());
  check_cuda(op, "g", g, DType::F32);
  const int64_t n = g.numel();
  if (n == 0) {
    TL_CUDA_CHECK(cudaMemsetAsync(out.data, 0, 4, stream));
    return;
  }
  // The grid depends only on n: about 16 float4s per thread at least, at most 1024 blocks.
  constexpr int kThreads = 256, kMaxBlocks = 1024;
  const int G = int(std::min<int64_t>(kMaxBlocks, ceil_div(n, int64_t(kThreads) * 4 * 16)));
  double* partial = scratch.get_as<double>(size_t(G), stream);
  if (aligned16(g.data))
    sum_squares_kernel<4><<<G, kThreads, 0, stream>>>(partial, g.ptr<float>(), n);
  else
    sum_squares_kernel<1><<<G, kThreads, 0, stream>>>(partial, g.ptr<float>(), n);
  TL_CUDA_LAUNCH_CHECK();
  sum_partials_kernel<<<1, 1024, 0, stream>>>(out.ptr<float>(), partial, G);
  TL_CUDA_LAUNCH_CHECK();
}

void adamw_update(Tensor params, Tensor grads, Tensor m, Tensor v, Tensor params_compute,
                  Tensor grad_norm_sq, const AdamWArgs& args, cudaStream_t stream) {
  const char* op = "adamw_update";
  check_cuda(op, "params", params, DType::F32);
  check_cuda(op, "grads", grads, DType::F32);
  check_shape(op, "grads", grads, params.shape);
  check_cuda(op, "m", m, DType::F32);
  check_shape(op, "m", m, params.shape);
  check_cuda(op, "v", v, DType::F32);
  check_shape(op, "v", v, params.shape);
  const bool with_compute = !params_compute.empty();
  if (with_compute) {
    check_cuda(op, "params_compute", params_compute, DType::BF16);
    TL_CHECK(params_compute.numel() == params.numel(), op, ": params_compute must hold ",
             params.numel(), " elements, got ", params_compute.str());
  }
  const bool clip = !grad_norm_sq.empty();
  if (clip) {
    check_cuda(op, "grad_norm_sq", grad_norm_sq, DType::F32);
    TL_CHECK(grad_norm_sq.numel() == 1, op, ": grad_norm_sq must hold 1 element, got ",
             grad_norm_sq.str());
  }
  TL_CHECK(args.step >= 1, op, ": step must be >= 1 (1-based), got ", args.step);
  TL_CHECK(args.beta1 >= 0 && args.beta1 < 1 && args.beta2 >= 0 && args.beta2 < 1, op,
           ": betas must be in [0, 1), got ", args.beta1, ", ", args.beta2);
  const int64_t n = params.numel();
  if (n == 0) return;

  const double bc1 = 1.0 - std::pow(double(args.beta1), double(args.step));
  const double bc2 = 1.0 - std::pow(double(args.beta2), double(args.step));
  AdamWScalars a;
  a.b1 = args.beta1;
  a.b2 = args.beta2;
  a.one_b1 = float(1.0 - double(args.beta1));
  a.one_b2 = float(1.0 - double(args.beta2));
  a.decay = float(1.0 - double(args.lr) * double(args.weight_decay));
  a.step_size = float(double(args.lr) / bc1);
  a.bc2_sqrt = float(std::sqrt(bc2));
  a.eps = args.eps;
  a.max_norm = double(args.max_grad_norm);

  bf16* compute = with_compute ? params_compute.ptr<bf16>() : nullptr;
  const float* nsq = clip ? grad_norm_sq.ptr<float>() : nullptr;
  constexpr int kThreads = 256;
  const bool vec = aligned16(params.data) && aligned16(grads.data) && aligned16(m.data) &&
                   aligned16(v.data) &&
                   (!compute || (reinterpret_cast<uintptr_t>(compute) & 7) == 0);
  if (vec)
    adamw_kernel<4><<<unsigned(ceil_div(n, kThreads * 4)), kThreads, 0, stream>>>(
        params.ptr<float>(), grads.ptr<float>(), m.ptr<float>(), v.ptr<float>(), compute, nsq, n,
        a);
  else
    adamw_kernel<1><<<unsigned(ceil_div(n, kThreads)), kThreads, 0, stream>>>(
        params.ptr<float>(), grads.ptr<float>(), m.ptr<float>(), v.ptr<float>(), compute, nsq, n,
        a);
  TL_CUDA_LAUNCH_CHECK();
}

}  // namespace tl::gpu
