// Log-probability of one target token per row of logits, and whether it is the argmax:
// the reduction behind head_logprob (evaluation scoring).
#include <cfloat>

#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/logprob.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/vec.cuh"

namespace tl::gpu {

namespace {

// Online softmax state plus the first index of the maximum. merge() is symmetric, so warp
// butterflies leave the same state on every lane; ties keep the lower index (torch's and
// numpy's argmax).
struct State {
  float m, s;
  int arg;
};
__device__ __forceinline__ State merge(State a, State b) {
  const float m = fmaxf(a.m, b.m);
  const int arg = a.m > b.m ? a.arg : b.m > a.m ? b.arg : min(a.arg, b.arg);
  return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m), arg};
}

// Block = one row z = logits[row, :V]; each thread walks its W-wide slices in index order,
// so within a thread a strict '>' keeps the first maximum.
template <int W>
__global__ void logprob_kernel(const bf16* logits, float* logp, int32_t* greedy,
                               const int32_t* targets, int V) {
  __shared__ State shared[kWarp];
  const int64_t row = blockIdx.x;
  const bf16* z = logits + row * V;
  State acc{-FLT_MAX, 0.0f, V};
  for (int c = threadIdx.x * W; c < V; c += blockDim.x * W) {
    const Vec<bf16, W> v = load_vec<W>(z + c);
    float m = acc.m;
    int arg = acc.arg;
#pragma unroll
    for (int e = 0; e < W; ++e) {
      const float x = to_f32(v.v[e]);
      if (x > m) {
        m = x;
        arg = c + e;
      }
    }
    float s = acc.s * expf(acc.m - m);
#pragma unroll
    for (int e = 0; e < W; ++e) s += expf(to_f32(v.v[e]) - m);
    acc = {m, s, arg};
  }
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) {
    State other{__shfl_xor_sync(0xffffffffu, acc.m, o), __shfl_xor_sync(0xffffffffu, acc.s, o),
                __shfl_xor_sync(0xffffffffu, acc.arg, o)};
    acc = merge(acc, other);
  }
  if (threadIdx.x % kWarp == 0) shared[threadIdx.x / kWarp] = acc;
  __syncthreads();
  if (threadIdx.x != 0) return;
  State total = shared[0];
  for (int w = 1; w < int(blockDim.x / kWarp); ++w) total = merge(total, shared[w]);
  const int32_t t = targets[row];
  if (t < 0 || t >= V) {                     // a broken precondition reads nothing outside the row
    logp[row] = __int_as_float(0x7fc00000);  // NaN
    greedy[row] = 0;
    return;
  }
  logp[row] = to_f32(z[t]) - (total.m + logf(total.s));
  greedy[row] = total.arg == t ? 1 : 0;
}

// Block = one row x = logits[row, :V] -> ids[row], its first maximum. A thread takes the
// first value it sees, then only strictly larger ones (its slices are in index order); the
// merges keep the lower index of equal maxima. Rows of -inf still give a valid index.
struct Best {
  float m;
  int arg;
};
__device__ __forceinline__ Best better(Best a, Best b) {
  return a.m > b.m ? a : b.m > a.m ? b : (a.arg < b.arg ? a : b);
}

// kUnroll slices a thread are loaded before any is compared (one round trip for a 32k
// vocabulary at 512 threads, instead of one a slice). Launched as a programmatic dependent:
// its launch overlaps the end of the head's product. positions (or null): the row's
// position += 1, after the wait, so every earlier kernel of the step, which may read it, has
// finished. host_ids (or null): pinned host memory, written over the bus (UVA: the host
// pointer is valid here), so that no copy follows the kernel.
template <int W>
__global__ void argmax_kernel(const bf16* logits, int32_t* ids, int32_t* positions,
                              int32_t* host_ids, int V) {
  constexpr int kUnroll = 8;
  __shared__ Best shared[kWarp];
  pdl_launch_dependents();
  pdl_wait();  // the logits come from the kernel before
  const int64_t row = blockIdx.x;
  const bf16* z = logits + row * V;
  const int stride = blockDim.x * W;
  Best acc{-INFINITY, V};
  for (int c0 = threadIdx.x * W; c0 < V; c0 += stride * kUnroll) {
    Vec<bf16, W> v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (c0 + u * stride < V) v[u] = load_vec<W>(z + c0 + u * stride);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (c0 + u * stride < V)
#pragma unroll
        for (int e = 0; e < W; ++e) {
          const float x = to_f32(v[u].v[e]);
          if (acc.arg == V || x > acc.m) acc = {x, c0 + u * stride + e};
        }
  }
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2)
    acc = better(
        acc, {__shfl_xor_sync(0xffffffffu, acc.m, o), __shfl_xor_sync(0xffffffffu, acc.arg, o)});
  if (threadIdx.x % kWarp == 0) shared[threadIdx.x / kWarp] = acc;
  __syncthreads();
  if (threadIdx.x != 0) return;
  Best total = shared[0];
  for (int w = 1; w < int(blockDim.x / kWarp); ++w) total = better(total, shared[w]);
  ids[row] = total.arg;
  if (positions) positions[row] += 1;
  if (host_ids) host_ids[row] = total.arg;
}

}  // namespace

void argmax_rows(Tensor ids, Tensor logits, Tensor positions, int32_t* host_ids,
                 cudaStream_t stream) {
  const char* op = "argmax_rows";
  check_cuda(op, "x", logits, DType::BF16);
  check_rows(op, "x", logits);
  TL_CHECK(logits.ndim() >= 1 && logits.shape[logits.ndim() - 1] > 0, op,
           ": x must be [N, V] with V > 0, got ", logits.str());
  const int64_t V64 = logits.shape[logits.ndim() - 1], n = logits.numel() / V64;
  check_int_range(op, "V", V64);
  check_int_range(op, "rows", n);
  const int V = int(V64);
  check_cuda(op, "ids", ids, DType::I32);
  check_shape(op, "ids", ids, leading(logits.shape));
  const bool advance = !positions.empty();
  if (advance) {
    check_cuda(op, "positions", positions, DType::I32);
    check_shape(op, "positions", positions, ids.shape);
  }
  // The kernel writes host_ids: it must be pinned (pageable memory would fault). Checked
  // outside recordings only, where no query may break the capture (a decode step's first run
  // is never recorded, so LlamaInference's slots are checked before).
  if (host_ids) {
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    TL_CUDA_CHECK(cudaStreamIsCapturing(stream, &capturing));
    if (capturing == cudaStreamCaptureStatusNone) {
      cudaPointerAttributes at{};
      const cudaError_t err = cudaPointerGetAttributes(&at, host_ids);
      if (err != cudaSuccess) cudaGetLastError();
      TL_CHECK(err == cudaSuccess && at.type == cudaMemoryTypeHost, op,
               ": host_ids must be pinned host memory (Backend::host_allocate)");
    }
  }
  if (n == 0) return;
  constexpr int kThreads = 512;
  const auto kernel = V % 8 == 0 && aligned16(logits.data) ? argmax_kernel<8> : argmax_kernel<1>;
  launch_pdl(kernel, dim3(unsigned(n)), dim3(kThreads), 0, stream, logits.ptr<bf16>(),
             ids.ptr<int32_t>(), advance ? positions.ptr<int32_t>() : nullptr, host_ids, V);
}

void logprob_rows(Tensor logp, Tensor greedy, Tensor logits, Tensor targets, cudaStream_t stream) {
  const char* op = "head_logprob";
  check_cuda(op, "logits", logits, DType::BF16);
  TL_CHECK(logits.ndim() == 2, op, ": logits must be [n, V], got ", logits.str());
  const int64_t n = logits.dim(0);
  check_int_range(op, "V", logits.dim(1));
  check_int_range(op, "rows", n);
  const int V = int(logits.dim(1));
  check_cuda(op, "logp", logp, DType::F32);
  check_shape(op, "logp", logp, Shape{n});
  check_cuda(op, "greedy", greedy, DType::I32);
  check_shape(op, "greedy", greedy, Shape{n});
  check_cuda(op, "targets", targets, DType::I32);
  check_shape(op, "targets", targets, Shape{n});
  if (n == 0 || V == 0) return;
  constexpr int kThreads = 512;
  if (V % 8 == 0 && aligned16(logits.data)) {
    logprob_kernel<8><<<unsigned(n), kThreads, 0, stream>>>(
        logits.ptr<bf16>(), logp.ptr<float>(), greedy.ptr<int32_t>(), targets.ptr<int32_t>(), V);
  } else {
    logprob_kernel<1><<<unsigned(n), kThreads, 0, stream>>>(
        logits.ptr<bf16>(), logp.ptr<float>(), greedy.ptr<int32_t>(), targets.ptr<int32_t>(), V);
  }
  TL_CUDA_LAUNCH_CHECK();
}

}  // namespace tl::gpu
