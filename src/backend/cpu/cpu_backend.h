// The CPU backend: fp32 reference implementations of every op (backend/cpu/ops/*.h).
#pragma once
#include <memory>

#include "backend/backend.h"

namespace tl {

std::unique_ptr<Backend> make_cpu_backend(int threads);

}  // namespace tl
