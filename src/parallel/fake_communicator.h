// N ranks as threads of one process, over host memory: the communicator the CPU backend
// uses, so tests exercise the whole FSDP path (and its failure handling) without GPUs.
//
// Collectives are synchronous (done when the call returns) and deterministic: reductions
// add the ranks' values in rank order, the same on every rank. Each call checks that all
// ranks issued the same collective (op, element count, dtype), so a bookkeeping bug is an
// error that names the ranks, not a silent wrong answer. A rank that does not arrive
// within the timeout fails the group with a message naming it.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace tl {

// Collectives issued by one rank, by op name ("all_gather", ...): for bookkeeping tests.
using CommCounts = std::map<std::string, int64_t>;

// world communicators, one per rank; give communicator r to the thread playing rank r.
std::vector<std::unique_ptr<Communicator>> make_fake_communicators(int world,
                                                                   double timeout_seconds);
// The counts of a communicator made above (children included), or throws.
CommCounts fake_comm_counts(const Communicator& c);

}  // namespace tl
