// Softmax cross-entropy over one chunk of logits, with the gradient written in place:
// the heart of the fused output head (head.cpp does the GEMMs around it).
#include <cfloat>

#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/vec.cuh"

namespace tl::gpu {

// ---- kernels ----

// (max, sum of exp(z - max)) pairs merge exactly like one online softmax; the merge is
// symmetric, so warp butterflies give the same bits on every lane.
struct MaxSum {
  float m, s;
};
__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

// Block = one row z = logits[row, :V]. Pass 1: max and sum of exp in f32 (online); the
// loss lse - z[target]. Pass 2 (with_grad): z overwritten by scale * (softmax - onehot), or
// zeros when the target is ignored (< 0). The second read of the row (64 KB at V = 32000)
// comes from L2, just after the first.
template <int W>
__global__ void cross_entropy_kernel(bf16* logits, float* losses, const int32_t* targets, int V,
                                     float scale, bool with_grad) {
  __shared__ MaxSum shared[kWarp];
  const int64_t row = blockIdx.x;
  bf16* z = logits + row * V;
  const int32_t tgt = targets[row];
  const bool valid = tgt >= 0 && tgt < V;
  // Read before the barrier below, so before any thread overwrites the row in pass 2.
  const float target_logit = (threadIdx.x == 0 && valid) ? to_f32(z[tgt]) : 0.0f;

  MaxSum acc{-FLT_MAX, 0.0f};
#pragma unroll 4
  for (int c = threadIdx.x * W; c < V; c += blockDim.x * W) {
    const Vec<bf16, W> v = load_vec<W>(z + c);
    float m = acc.m;
#pragma unroll
    for (int e = 0; e < W; ++e) m = fmaxf(m, to_f32(v.v[e]));
    float s = acc.s * expf(acc.m - m);
#pragma unroll
    for (int e = 0; e < W; ++e) s += expf(to_f32(v.v[e]) - m);
    acc = {m, s};
  }
  // Block merge: warp butterflies, then every thread merges the warp results in warp order.
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) {
    MaxSum other{__shfl_xor_sync(0xffffffffu, acc.m, o), __shfl_xor_sync(0xffffffffu, acc.s, o)};
    acc = merge(acc, other);
  }
  if (threadIdx.x % kWarp == 0) shared[threadIdx.x / kWarp] = acc;
  __syncthreads();
  MaxSum total = shared[0];
  for (int w = 1; w < int(blockDim.x / kWarp); ++w) total = merge(total, shared[w]);
  const float lse = total.m + logf(total.s);
  if (threadIdx.x == 0) losses[row] = valid ? lse - target_logit : 0.0f;
  if (!with_grad) return;

  for (int c = threadIdx.x * W; c < V; c += blockDim.x * W) {
    Vec<bf16, W> v = load_vec<W>(z + c);
#pragma unroll
    for (int e = 0; e < W; ++e) {
      float g = 0.0f;
      if (valid) g = scale * expf(to_f32(v.v[e]) - lse) - (c + e == tgt ? scale : 0.0f);
      v.v[e] = from_f32<bf16>(g);
    }
    store_vec<W>(z + c, v);
  }
}

// ---- launchers ----

void cross_entropy_rows(Tensor losses, Tensor logits, Tensor targets, float loss_scale,
                        bool with_grad, cudaStream_t stream) {
  const char* op = "head_cross_entropy";
  check_cuda(op, "logits", logits, DType::BF16);
  TL_CHECK(logits.ndim() == 2, op, ": logits must be [n, V], got ", logits.str());
  const int64_t n = logits.dim(0);
  check_int_range(op, "V", logits.dim(1));
  check_int_range(op, "rows", n);
  const int V = int(logits.dim(1));
  check_cuda(op, "losses", losses, DType::F32);
  check_shape(op, "losses", losses, Shape{n});
  check_cuda(op, "targets", targets, DType::I32);
  check_shape(op, "targets", targets, Shape{n});
  if (n == 0 || V == 0) return;
  constexpr int kThreads = 512;
  if (V % 8 == 0 && aligned16(logits.data)) {
    cross_entropy_kernel<8><<<unsigned(n), kThreads, 0, stream>>>(
        logits.ptr<bf16>(), losses.ptr<float>(), targets.ptr<int32_t>(), V, loss_scale, with_grad);
  } else {
    cross_entropy_kernel<1><<<unsigned(n), kThreads, 0, stream>>>(
        logits.ptr<bf16>(), losses.ptr<float>(), targets.ptr<int32_t>(), V, loss_scale, with_grad);
  }
  TL_CUDA_LAUNCH_CHECK();
}

}  // namespace tl::gpu
