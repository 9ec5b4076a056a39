// Failure detection for a multi-process job, over the rendezvous links (rank 0 in the
// middle). A thread on every rank sends a heartbeat with its progress (collectives
// issued, age of the oldest one not yet complete) every interval; rank 0 decides:
//   - a rank whose link closes without saying goodbye died (seen at once);
//   - a rank that reports an error (its exception, an NCCL error) failed, with its message;
//   - a rank that sends nothing for `timeout` is frozen or cut off;
//   - when some rank has waited on a collective for `timeout`, the ranks that have issued
//     fewer collectives than the others are hung (and if none is behind, the collective
//     itself is stuck);
// and tells every rank. Other ranks watch rank 0 the same way. On failure each rank calls
// on_failure(reason) (which aborts its NCCL communicators so blocked work returns), and,
// if the process has not ended `exit_grace` seconds later, prints the reason and exits
// with status 1: no rank waits forever.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "parallel/socket.h"

namespace tl {

struct HealthProbe {
  uint64_t issued = 0;          // collectives issued so far
  double oldest_pending_s = 0;  // age of the oldest issued collective not complete (0: none)
  std::string local_error;      // an error found on this rank (e.g. NCCL's); "" when fine
};

struct HealthOptions {
  double timeout_s = 300;
  double interval_s = 0;     // heartbeat period; 0 = min(1 s, timeout / 10)
  double exit_grace_s = 10;  // after a failure, exit the process if still running; <= 0: never
};

class HealthMonitor {
 public:
  // links as the rendezvous leaves them (rank 0: one per rank; others: one to rank 0).
  HealthMonitor(std::vector<Socket> links, int rank, int world, HealthOptions opts,
                std::function<HealthProbe()> probe,
                std::function<void(const std::string&)> on_failure);
  ~HealthMonitor();  // without finish(), the others learn that this rank stopped
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  // This rank's own error, sent to every rank (through rank 0).
  void report_failure(const std::string& reason);
  // A clean end: this rank's link closing is then not a failure.
  void finish();
  std::string failure() const;  // "" while healthy

 private:
  struct Peer;
  void run();
  void tick_rank0(double now);
  void tick_other(double now);
  void read_frames(Peer& p, double now);
  void fail(const std::string& reason, bool tell_others);
  std::string closed_links_note();  // rank 0: " (link closed: rank 2 3)" or empty
  void send_frame(Peer& p, uint32_t type, uint64_t a, uint64_t b, const std::string& text);

  int rank_, world_;
  HealthOptions opts_;
  std::function<HealthProbe()> probe_;
  std::function<void(const std::string&)> on_failure_;
  std::vector<std::unique_ptr<Peer>> peers_;  // rank 0: index = rank (0 unused); others: [0]
  mutable std::mutex mu_;
  std::string failure_;
  std::string pending_report_;  // this rank's own error, sent by the thread
  std::atomic<bool> stop_{false}, finished_{false};
  std::thread thread_;
};

}  // namespace tl
