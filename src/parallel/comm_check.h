// `tinyllama comm-check`: are the collectives right on this job's GPUs, and how fast?
// Every collective FSDP uses, with exactly representable values (small integers), on the
// world group and on hybrid groups; buffers written by the compute stream just before the
// collective (so a missing stream dependency shows as wrong data); then the bandwidth of
// all-gather (bf16) and reduce-scatter (f32) at the size of one TinyLlama-1.1B layer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "parallel/communicator.h"

namespace tl {

struct CommCheckResult {
  std::vector<std::string> passed;  // checks that passed, in order
  double all_gather_busbw = 0;      // GB/s, bf16, bus bandwidth (x (world-1)/world)
  double reduce_scatter_busbw = 0;  // GB/s, f32
  int64_t bench_elements = 0;       // elements per collective in the bandwidth runs
};

// Collective over `world`; hybrid_group > 1 also checks groups of that many ranks.
// Throws naming the check, the rank and the first wrong element.
CommCheckResult run_comm_check(Backend& be, Communicator& world, int hybrid_group,
                               int64_t bench_elements, int bench_iters);

}  // namespace tl
