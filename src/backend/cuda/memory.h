// Device memory for the CUDA backend: cudaMalloc with accounting (bytes in use, peak) and
// out-of-memory errors that say what to change; Scratch, an op's reusable temporary buffer.
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace tl::gpu {

class DeviceMemory {
 public:
  explicit DeviceMemory(int device) : device_(device) {}
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  // Throws tl::Error naming the request, the device's free/total memory and the knobs that
  // reduce memory. `what` names the user of the bytes in that message.
  void* allocate(size_t bytes, const char* what);
  void release(void* p) noexcept;  // nullptr is a no-op; unknown pointers are ignored

  size_t in_use() const;
  size_t peak() const;
  size_t device_total() const;  // cudaMemGetInfo's total, read once
  // How many blocks have been freed so far: a recorded graph may point into any block, so it
  // stays valid only while this count is unchanged.
  uint64_t releases() const { return releases_.load(); }

 private:
  int device_;
  mutable std::mutex mu_;
  std::unordered_map<void*, size_t> sizes_;
  size_t in_use_ = 0, peak_ = 0;
  std::atomic<uint64_t> releases_{0};
  mutable size_t total_ = 0;
};

// Grow-only device buffer, reused by one op across calls so the steady state allocates
// nothing. get() may free and reallocate (after synchronizing `stream`, since kernels still
// in flight may use the old block): contents are not kept.
class Scratch {
 public:
  Scratch(DeviceMemory& mem, const char* name) : mem_(mem), name_(name) {}
  ~Scratch() { mem_.release(ptr_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  void* get(size_t bytes, cudaStream_t stream);
  // Zeroed when (re)allocated, never after: for counters that the kernels using them put
  // back to zero themselves (decode attention's per-row split counts).
  void* get_zeroed(size_t bytes, cudaStream_t stream);
  template <class T>
  T* get_as(size_t count, cudaStream_t stream) {
    return static_cast<T*>(get(count * sizeof(T), stream));
  }

 private:
  DeviceMemory& mem_;
  const char* name_;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace tl::gpu
