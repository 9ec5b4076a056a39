// Optional device timing of ops by category, with CUDA events on the backend's stream.
// Off: a Scope costs one branch. On: each scope records two events; take() synchronizes
// and sums the elapsed times.
#pragma once
#include <cuda_runtime.h>

#include <string>
#include <utility>
#include <vector>

namespace tl::gpu {

// Copy: device-to-device copies and memsets (e.g. FSDP's gradient buffers).
enum class ProfCat : int { Matmul = 0, Attention, Optimizer, Other, Copy, Count };

class Profiler {
 public:
  explicit Profiler(cudaStream_t stream) : stream_(stream) {}
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  void set(bool on) { on_ = on; }
  bool on() const { return on_; }

  // Times the device work enqueued between its construction and destruction.
  class Scope {
   public:
    Scope(Profiler* p, ProfCat cat);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Profiler* p_;  // null when profiling is off
    size_t rec_ = 0;
  };
  Scope scope(ProfCat cat) { return Scope(on_ ? this : nullptr, cat); }

  // Seconds per category since the last call ("matmul", "attention", "optimizer", "other",
  // "copy").
  std::vector<std::pair<std::string, double>> take();

 private:
  struct Record {
    ProfCat cat;
    cudaEvent_t start, stop;
  };
  size_t begin(ProfCat cat);
  void end(size_t rec) noexcept;
  void fold();  // waits for the recorded events and adds them to the sums

  cudaStream_t stream_;
  bool on_ = false;
  std::vector<Record> records_;    // pending, in order
  std::vector<cudaEvent_t> pool_;  // free events for reuse
  double seconds_[int(ProfCat::Count)] = {};
  cudaError_t deferred_ = cudaSuccess;  // an error from a destructor, raised by take()
};

}  // namespace tl::gpu
