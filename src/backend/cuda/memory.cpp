#include "backend/cuda/memory.h"

#include "backend/cuda/cuda_common.h"

namespace tl::gpu {
namespace {
double gib(size_t b) { return double(b) / double(size_t(1) << 30); }
}  // namespace

void* DeviceMemory::allocate(size_t bytes, const char* what) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear it: an allocation failure does not poison the context
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail("cuda: out of memory allocating ", bytes, " bytes (", gib(bytes), " GiB) for ", what,
         " on device ", device_, ": ", gib(free_b), " GiB free of ", gib(total_b),
         " GiB; this backend holds ", gib(in_use()), " GiB (peak ", gib(peak()),
         " GiB). To use less memory, lower batch.micro_batch or turn on train.recompute.");
  }
  TL_CUDA_CHECK(err);
  std::lock_guard<std::mutex> lock(mu_);
  sizes_[p] = bytes;
  in_use_ += bytes;
  if (in_use_ > peak_) peak_ = in_use_;
  return p;
}

void DeviceMemory::release(void* p) noexcept {
  if (!p) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sizes_.find(p);
    if (it == sizes_.end()) return;
    in_use_ -= it->second;
    sizes_.erase(it);
  }
  releases_.fetch_add(1);
  cudaFree(p);  // noexcept: an error here (a dying context) has no one to report to
}

size_t DeviceMemory::in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_use_;
}

size_t DeviceMemory::peak() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peak_;
}

size_t DeviceMemory::device_total() const {
  if (total_ == 0) {
    size_t free_b = 0;
    if (cudaMemGetInfo(&free_b, &total_) != cudaSuccess) total_ = 0;
  }
  return total_;
}

void* Scratch::get(size_t bytes, cudaStream_t stream) {
  if (bytes <= bytes_) return ptr_;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  TL_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  TL_CHECK(capture == cudaStreamCaptureStatusNone, "cuda: ", name_, " must grow from ", bytes_,
           " to ", bytes,
           " bytes while a graph is being recorded (run the ops once unrecorded "
           "first)");
  if (ptr_) {
    TL_CUDA_CHECK(cudaStreamSynchronize(stream));
    mem_.release(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  ptr_ = mem_.allocate(bytes, name_);
  bytes_ = bytes;
  return ptr_;
}

void* Scratch::get_zeroed(size_t bytes, cudaStream_t stream) {
  if (bytes <= bytes_) return ptr_;
  void* p = get(bytes, stream);
  TL_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream));
  return p;
}

}  // namespace tl::gpu
