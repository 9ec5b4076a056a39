// Progress of a long data job on stderr: on a terminal, one line redrawn in place (a bar,
// percent, MB/s, documents/s, tokens/s, ETA); otherwise a plain line every `period`
// seconds, so logs stay readable. Counters are atomics the workers bump.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace tl {

struct ProgressCounters {
  std::atomic<uint64_t> text_bytes{0}, documents{0}, tokens{0};
};

class Progress {
 public:
  // disk_done() reports the input bytes (on disk) consumed; disk_total the bytes to read.
  Progress(std::string label, uint64_t disk_total, std::function<uint64_t()> disk_done,
           const ProgressCounters& counters, double period_seconds, bool enabled);
  ~Progress();  // stop()
  void stop();  // ends the line (terminal) and the thread; idempotent

  // "1.5 GB", "12.3k", "2m05s": formatting shared with the summary.
  static std::string bytes(double b);
  static std::string count(double n);
  static std::string duration(double seconds);

 private:
  void run();
  std::string line(double seconds) const;
  std::string label_;
  uint64_t total_;
  std::function<uint64_t()> done_;
  const ProgressCounters& c_;
  double period_;
  bool tty_;
  size_t width_ = 120;  // terminal columns
  bool stop_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace tl
