// One trainer per run folder: an exclusive flock on RUN_DIR/.lock, held for the trainer's
// life. The kernel drops it when the process dies in any way (kill -9 included), so a
// restarted trainer never waits for a stale lock, while two live ones never write the same
// checkpoints and metrics.
#pragma once
#include <string>

namespace tl {

class RunLock {
 public:
  explicit RunLock(const std::string& run_dir);  // throws naming the holder's pid
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace tl
