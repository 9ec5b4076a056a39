// This process's peak resident memory (VmHWM of /proc/self/status): the high-water mark of
// the current address space only, unlike getrusage's ru_maxrss, which also carries what a
// parent had when it forked and exec'd us.
#pragma once
#include <cstdint>

namespace tl {

uint64_t peak_resident_bytes();  // 0 where /proc is unavailable

}  // namespace tl
