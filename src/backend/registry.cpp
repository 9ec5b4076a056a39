// make_backend: picks the CPU or CUDA backend.
#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#ifdef TL_WITH_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace tl {

bool cuda_available() {
#ifdef TL_WITH_CUDA
  return gpu::cuda_device_count() > 0;
#else
  return false;
#endif
}

int cuda_visible_device_count() {
#ifdef TL_WITH_CUDA
  return gpu::cuda_device_count();
#else
  return 0;
#endif
}

std::unique_ptr<Backend> make_backend(const std::string& device, int threads) {
  if (device == "cpu") return make_cpu_backend(threads);
  if (device.rfind("cuda:", 0) == 0) {
    const std::string n = device.substr(5);
    TL_CHECK(!n.empty() && n.find_first_not_of("0123456789") == std::string::npos,
             "unknown device '", device, "' (expected cuda:N with N a GPU number)");
#ifdef TL_WITH_CUDA
    return gpu::make_cuda_backend(std::stoi(n));
#else
    fail("--device ", device, ": this tinyllama was built without the CUDA backend");
#endif
  }
  if (device == "cuda" || device == "auto") {
#ifdef TL_WITH_CUDA
    if (gpu::cuda_device_count() > 0) return gpu::make_cuda_backend(0);
    TL_CHECK(device == "auto", "--device cuda: no CUDA GPU is visible to this process");
#else
    TL_CHECK(device == "auto",
             "--device cuda: this tinyllama was built without the CUDA backend (no nvcc found at "
             "build time)");
#endif
    return make_cpu_backend(threads);
  }
  fail("unknown device '", device, "' (expected cpu, cuda or auto)");
}

}  // namespace tl
