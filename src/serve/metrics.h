// Server counters and gauges, rendered as Prometheus text (exposition format 0.0.4).
// Thread-safe: handlers count requests, the scheduler counts tokens and sets gauges.
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace tl::serve {

class Metrics {
 public:
  void count_request(const std::string& endpoint, int status);
  void add_prompt_tokens(int64_t n);
  void add_generated_tokens(int64_t n);
  void set_gauges(int64_t queued, int decoding, int prefilling, int max_batch, int64_t kv_used,
                  int64_t kv_capacity);
  void set_cache_bytes(size_t bytes);
  // One model call of the scheduler: rows in it, and the seconds from its start until its
  // results were on the host (kernels, transfers and the sync; not the sampling after it).
  void add_step(bool prefill, int rows, double seconds);
  // The end of a scheduler iteration that had work: its wall seconds (model calls + host work
  // around them). Its steps were counted as busy when they were added, so that a scrape in the
  // middle of an iteration never sees busy seconds below the sum of step seconds.
  void end_busy_iteration(double seconds);
  // LlamaInference::graph_stats() of the scheduler's cache, as counters.
  void set_decode_graphs(int64_t replays, int64_t recordings, int64_t invalidations);
  // Greedy decode steps submitted before the previous step's ids were read (run ahead).
  void set_decode_steps_ahead(int64_t steps);
  std::string prometheus() const;

 private:
  using Clock = std::chrono::steady_clock;
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_;  // (endpoint, status) -> count
  int64_t prompt_tokens_ = 0, generated_tokens_ = 0;
  mutable std::deque<std::pair<Clock::time_point, int64_t>> recent_;  // generated, last window
  int64_t queued_ = 0, kv_used_ = 0, kv_capacity_ = 0;
  int decoding_ = 0, prefilling_ = 0, max_batch_ = 0;
  size_t cache_bytes_ = 0;
  struct Steps {
    int64_t n = 0, rows = 0;
    double seconds = 0;
  } prefill_, decode_;
  double busy_s_ = 0;
  double iteration_steps_s_ = 0;  // step seconds of the running iteration, already in busy_s_
  int64_t graph_replays_ = 0, graph_recordings_ = 0, graph_invalidations_ = 0;
  int64_t steps_ahead_ = 0;
};

}  // namespace tl::serve
