// The CPU backend: fp32 reference implementations of every op (backend/cpu/ops/*.h).
// Results are bitwise reproducible for any thread count.
//
// Threads come from OpenMP (threads <= 0: all cores). On cores shared with other busy
// processes, run with OMP_WAIT_POLICY=passive: libgomp's default spin-wait at the end of
// each parallel loop then steals the time slice of the thread it waits for, and ops were
// measured 10-20x slower (with passive they ran at about the speed of the free cores).
#pragma once
#include <memory>

#include "backend/backend.h"

namespace tl {

std::unique_ptr<Backend> make_cpu_backend(int threads);

}  // namespace tl
