// Backend::prefetch: tensors asked into L2 ahead of the kernels that read them. A decode step
// issues it before attention, whose chain of dependent steps leaves HBM idle for ~20 us a
// layer, so the weights of the linears after it stream in meanwhile. The kernel only issues
// bulk prefetches (TMA engine, fire and forget) and exits: spread over many blocks so that
// many SMs' copy engines issue them at once.
#include <algorithm>

#include "backend/cuda/cuda_common.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/vec.cuh"

namespace tl::gpu {

namespace {

constexpr int kRegions = 8;            // tensors one launch takes
constexpr int64_t kChunk = 16 * 1024;  // bytes one prefetch asks for
constexpr int kThreads = 128;
constexpr int64_t kMaxBlocks = 264;  // two an SM on an H100 is plenty to issue them

struct Regions {
  const char* base[kRegions];         // 16-byte aligned
  int64_t bytes[kRegions];            // a multiple of 16
  int64_t first_chunk[kRegions + 1];  // chunks of the regions before, summed
  int n;
};

__global__ void __launch_bounds__(kThreads) prefetch_kernel(Regions r) {
  const int64_t total = r.first_chunk[r.n];
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int i = 0;
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < total; c += stride) {
    while (c >= r.first_chunk[i + 1]) ++i;  // c only grows
    const int64_t off = (c - r.first_chunk[i]) * kChunk;
    bulk_prefetch_l2(r.base[i] + off, unsigned(min(kChunk, r.bytes[i] - off)));
  }
}

}  // namespace

AlignedBytes aligned16_part(const Tensor& t) {
  const auto lo = (reinterpret_cast<uintptr_t>(t.data) + 15) / 16 * 16;
  const auto hi = (reinterpret_cast<uintptr_t>(t.data) + t.nbytes()) / 16 * 16;
  if (t.data == nullptr || hi <= lo) return {nullptr, 0};
  return {reinterpret_cast<const char*>(lo), int64_t(hi - lo)};
}

void prefetch_l2(const std::vector<Tensor>& tensors, cudaStream_t stream) {
  for (size_t at = 0; at < tensors.size(); at += kRegions) {
    Regions r{};
    for (size_t j = at; j < std::min(tensors.size(), at + kRegions); ++j) {
      // What is left out at either end is at most two 16-byte pieces, read from memory.
      const AlignedBytes part = aligned16_part(tensors[j]);
      if (part.bytes == 0) continue;
      r.base[r.n] = part.data;
      r.bytes[r.n] = part.bytes;
      r.first_chunk[r.n + 1] = r.first_chunk[r.n] + ceil_div(r.bytes[r.n], kChunk);
      ++r.n;
    }
    const int64_t chunks = r.first_chunk[r.n];
    if (chunks == 0) continue;
    const int64_t blocks = std::min(ceil_div(chunks, kThreads), kMaxBlocks);
    prefetch_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(r);
    TL_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace tl::gpu
