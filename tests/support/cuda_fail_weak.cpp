// A weak tl::cuda_fail for the attention-only binaries (tinyllama_attention_tests and
// tinyllama_attention_bench), so that they link before the CUDA backend's own definition
// lands. When the backend defines it, that (strong) definition wins.
#include "backend/cuda/cuda_common.h"

namespace tl {

__attribute__((weak)) void cuda_fail(const char* what, const char* expr, const char* file,
                                     int line) {
  fail("CUDA error: ", what, " in ", expr, " (", file, ":", line, ")");
}

}  // namespace tl
