#include "serve/metrics.h"

#include <algorithm>
#include <sstream>

namespace tl::serve {

namespace {
constexpr double kRateWindowS = 10.0;  // tokens/s is measured over this many recent seconds
}

void Metrics::count_request(const std::string& endpoint, int status) {
  std::lock_guard lk(mu_);
  ++requests_[{endpoint, status}];
}

void Metrics::add_prompt_tokens(int64_t n) {
  std::lock_guard lk(mu_);
  prompt_tokens_ += n;
}

void Metrics::add_generated_tokens(int64_t n) {
  std::lock_guard lk(mu_);
  generated_tokens_ += n;
  const auto now = Clock::now();
  if (!recent_.empty() && now - recent_.back().first < std::chrono::milliseconds(100))
    recent_.back().second += n;  // one entry per 100 ms keeps the window short
  else
    recent_.emplace_back(now, n);
}

void Metrics::set_gauges(int64_t queued, int decoding, int prefilling, int max_batch,
                         int64_t kv_used, int64_t kv_capacity) {
  std::lock_guard lk(mu_);
  queued_ = queued;
  decoding_ = decoding;
  prefilling_ = prefilling;
  max_batch_ = max_batch;
  kv_used_ = kv_used;
  kv_capacity_ = kv_capacity;
}

void Metrics::set_cache_bytes(size_t bytes) {
  std::lock_guard lk(mu_);
  cache_bytes_ = bytes;
}

void Metrics::add_step(bool prefill, int rows, double seconds) {
  std::lock_guard lk(mu_);
  Steps& st = prefill ? prefill_ : decode_;
  ++st.n;
  st.rows += rows;
  st.seconds += seconds;
  busy_s_ += seconds;
  iteration_steps_s_ += seconds;
}

void Metrics::end_busy_iteration(double seconds) {
  std::lock_guard lk(mu_);
  busy_s_ += std::max(0.0, seconds - iteration_steps_s_);
  iteration_steps_s_ = 0;
}

void Metrics::set_decode_graphs(int64_t replays, int64_t recordings, int64_t invalidations) {
  std::lock_guard lk(mu_);
  graph_replays_ = replays;
  graph_recordings_ = recordings;
  graph_invalidations_ = invalidations;
}

void Metrics::set_decode_steps_ahead(int64_t steps) {
  std::lock_guard lk(mu_);
  steps_ahead_ = steps;
}

std::string Metrics::prometheus() const {
  std::lock_guard lk(mu_);
  const auto now = Clock::now();
  const auto horizon = now - std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(kRateWindowS));
  while (!recent_.empty() && recent_.front().first < horizon) recent_.pop_front();
  int64_t window_tokens = 0;
  for (const auto& r : recent_) window_tokens += r.second;

  std::ostringstream o;
  auto head = [&](const char* name, const char* type, const char* help) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  };
  // A metric of one value: its name is written once, so help and sample cannot disagree.
  auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    head(name, type, help);
    o << name << ' ' << value << '\n';
  };
  head("tinyllama_requests_total", "counter", "HTTP requests by endpoint and status code.");
  for (const auto& [key, n] : requests_)
    o << "tinyllama_requests_total{endpoint=\"" << key.first << "\",status=\"" << key.second
      << "\"} " << n << '\n';
  metric("tinyllama_prompt_tokens_total", "counter", "Prompt tokens prefilled.", prompt_tokens_);
  metric("tinyllama_generation_tokens_total", "counter", "Tokens generated.", generated_tokens_);
  metric("tinyllama_generation_tokens_per_second", "gauge",
         "Tokens generated per second over the last 10 seconds.",
         double(window_tokens) / kRateWindowS);
  metric("tinyllama_queue_depth", "gauge", "Sequences waiting for admission.", queued_);
  metric("tinyllama_batch_decoding", "gauge", "Sequences in the decode batch.", decoding_);
  metric("tinyllama_batch_prefilling", "gauge", "Sequences being prefilled.", prefilling_);
  metric("tinyllama_batch_occupancy", "gauge", "Cache rows in use over all rows (0..1).",
         max_batch_ > 0 ? double(decoding_ + prefilling_) / max_batch_ : 0.0);
  metric("tinyllama_kv_cache_used_tokens", "gauge", "KV positions reserved by admitted sequences.",
         kv_used_);
  metric("tinyllama_kv_cache_capacity_tokens", "gauge", "KV positions the budget allows.",
         kv_capacity_);
  metric("tinyllama_kv_cache_usage_ratio", "gauge", "Reserved over budgeted KV positions (0..1).",
         kv_capacity_ > 0 ? double(kv_used_) / double(kv_capacity_) : 0.0);
  metric("tinyllama_kv_cache_bytes", "gauge", "Bytes of the KV cache, allocated at start.",
         cache_bytes_);
  // Rates come from differences of these counters: mean decode batch = rows / steps; seconds
  // a decode step = seconds / steps; host time between calls = busy - prefill - decode.
  auto steps = [&](const char* name, const char* type, const char* help, auto value) {
    head(name, type, help);
    for (const auto& [kind, st] : {std::pair{"prefill", &prefill_}, std::pair{"decode", &decode_}})
      o << name << "{kind=\"" << kind << "\"} " << value(*st) << '\n';
  };
  steps("tinyllama_scheduler_steps_total", "counter", "Model calls of the scheduler by kind.",
        [](const Steps& st) { return st.n; });
  steps("tinyllama_scheduler_step_rows_total", "counter",
        "Sequences in those calls, summed (rows / steps = mean batch).",
        [](const Steps& st) { return st.rows; });
  steps("tinyllama_scheduler_step_seconds_total", "counter",
        "Seconds in those calls until their results were on the host.",
        [](const Steps& st) { return st.seconds; });
  metric("tinyllama_scheduler_busy_seconds_total", "counter",
         "Wall seconds of scheduler iterations with work (model calls and host work).", busy_s_);
  // Decode steps replayed as recorded graphs (CUDA): a step that is not replays op by op.
  metric("tinyllama_decode_graph_replays_total", "counter", "Decode steps replayed from a graph.",
         graph_replays_);
  metric("tinyllama_decode_graph_recordings_total", "counter", "Decode step graphs recorded.",
         graph_recordings_);
  metric("tinyllama_decode_graph_invalidations_total", "counter",
         "Times all recorded graphs were dropped (device memory was freed or moved).",
         graph_invalidations_);
  metric("tinyllama_decode_steps_ahead_total", "counter",
         "Greedy decode steps enqueued before the previous step's ids were read (the device "
         "ran them while the host published tokens).",
         steps_ahead_);
  return o.str();
}

}  // namespace tl::serve
