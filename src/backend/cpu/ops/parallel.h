// When a loop is worth a thread team. Forking and joining costs microseconds (far more when
// other processes share the cores), so small ops run on the calling thread alone. Which
// thread computes an element never changes its value, so this is free for determinism.
#pragma once
#include <cstdint>

namespace tl::cpu {

inline bool worth_threads(int64_t work) { return work >= (int64_t(1) << 15); }

}  // namespace tl::cpu
