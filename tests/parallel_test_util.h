// Runs one function per rank on its own thread, as the ranks of a job would run; an
// exception on a rank aborts its communicator (as the trainer does) so the others stop
// too, and is reported per rank.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/fake_communicator.h"

namespace tl {

struct RankOutcome {
  bool ok = true;
  std::string error;
};

inline std::vector<RankOutcome> run_ranks(
    std::vector<std::unique_ptr<Communicator>>& comms,
    const std::function<void(int rank, Communicator& comm)>& body) {
  const size_t n = comms.size();
  std::vector<RankOutcome> out(n);
  std::vector<std::thread> threads;
  for (size_t r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        body(int(r), *comms[r]);
      } catch (const std::exception& e) {
        out[r] = {false, e.what()};
        comms[r]->abort(e.what());
      }
    });
  for (auto& t : threads) t.join();
  return out;
}

inline std::string rank_errors(const std::vector<RankOutcome>& o) {
  std::string s;
  for (size_t r = 0; r < o.size(); ++r)
    if (!o[r].ok) s += cat("rank ", r, ": ", o[r].error, "\n");
  return s;
}

}  // namespace tl
