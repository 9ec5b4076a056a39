// Elementwise dtype conversion (f32 <-> bf16), same-dtype copies, and f32 += f32/bf16.
#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/vec.cuh"

namespace tl::gpu {

// ---- kernels ----

// dst[n] = src[n] (Add: dst[n] += src[n]); thread i converts elements [i*W, i*W + W), the
// last one the ragged tail.
template <int W, bool Add, class Dst, class Src>
__global__ void convert_kernel(Dst* dst, const Src* src, int64_t n) {
  const int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * W;
  if (i + W <= n) {
    const Vec<Src, W> a = load_vec<W>(src + i);
    Vec<Dst, W> b;
    if constexpr (Add) b = load_vec<W>(dst + i);
#pragma unroll
    for (int k = 0; k < W; ++k)
      b.v[k] = from_f32<Dst>(Add ? to_f32(b.v[k]) + to_f32(a.v[k]) : to_f32(a.v[k]));
    store_vec<W>(dst + i, b);
  } else {
    for (int64_t j = i; j < n; ++j)
      dst[j] = from_f32<Dst>(Add ? to_f32(dst[j]) + to_f32(src[j]) : to_f32(src[j]));
  }
}

// ---- launchers ----

template <bool Add = false, class Dst, class Src>
static void launch_convert(Dst* dst, const Src* src, int64_t n, cudaStream_t stream) {
  constexpr int kThreads = 256;
  if (aligned16(dst) && aligned16(src)) {
    constexpr int W = 8;
    convert_kernel<W, Add>
        <<<unsigned(ceil_div(n, kThreads * W)), kThreads, 0, stream>>>(dst, src, n);
  } else {
    convert_kernel<1, Add><<<unsigned(ceil_div(n, kThreads)), kThreads, 0, stream>>>(dst, src, n);
  }
  TL_CUDA_LAUNCH_CHECK();
}

namespace {
// dst and src on the GPU, of one size and with memory unless empty; returns that size.
int64_t check_elementwise(const char* op, const Tensor& dst, const Tensor& src) {
  check_device(op, "dst", dst, Device::CUDA);
  check_device(op, "src", src, Device::CUDA);
  TL_CHECK(dst.numel() == src.numel(), op, ": dst ", dst.str(), " and src ", src.str(),
           " differ in size");
  TL_CHECK(dst.numel() == 0 || (!dst.empty() && !src.empty()), op, ": dst ", dst.str(), " or src ",
           src.str(), " has no memory");
  return dst.numel();
}
}  // namespace

void accumulate(Tensor dst, Tensor src, cudaStream_t stream) {
  const char* op = "accumulate";
  const int64_t n = check_elementwise(op, dst, src);
  TL_CHECK(dst.dtype == DType::F32 && (src.dtype == DType::F32 || src.dtype == DType::BF16), op,
           ": dst must be f32 and src f32 or bf16; got ", src.str(), " -> ", dst.str());
  if (n == 0) return;
  if (src.dtype == DType::F32)
    launch_convert<true>(dst.ptr<float>(), src.ptr<float>(), n, stream);
  else
    launch_convert<true>(dst.ptr<float>(), src.ptr<bf16>(), n, stream);
}

void convert(Tensor dst, Tensor src, cudaStream_t stream) {
  const char* op = "convert";
  const int64_t n = check_elementwise(op, dst, src);
  if (n == 0) return;
  if (dst.dtype == src.dtype) {
    TL_CUDA_CHECK(
        cudaMemcpyAsync(dst.data, src.data, dst.nbytes(), cudaMemcpyDeviceToDevice, stream));
  } else if (dst.dtype == DType::BF16 && src.dtype == DType::F32) {
    launch_convert(dst.ptr<bf16>(), src.ptr<float>(), n, stream);
  } else if (dst.dtype == DType::F32 && src.dtype == DType::BF16) {
    launch_convert(dst.ptr<float>(), src.ptr<bf16>(), n, stream);
  } else {
    fail(op, ": the CUDA backend converts f32 <-> bf16 (or copies equal dtypes); got ", src.str(),
         " -> ", dst.str());
  }
}

}  // namespace tl::gpu
