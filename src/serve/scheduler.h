// Continuous batching over one LlamaInference cache, on one scheduler thread.
//
// Rows of the cache hold running sequences. Between decode steps, waiting sequences are
// admitted as a prefill group (FIFO, while rows and the KV budget allow) into the rows above
// the decoding ones; the group's prompts run in chunks of at most prefill_tokens tokens per
// call, one chunk between two decode steps, so running streams keep flowing. When the whole
// group is prefilled its rows join the decode batch. A sequence that ends frees its row at
// once: the highest decoding row moves into the hole (LlamaInference::move_row), keeping the
// decode batch contiguous.
//
// Memory is fixed at construction: the cache (max_batch rows of max_len positions) and the
// activations of the largest prefill and decode calls are allocated up front. Admission
// also budgets KV positions (max_tokens_in_flight over the admitted sequences), so a request
// that does not fit waits in the queue; a full queue refuses new work.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "model/llama_infer.h"
#include "serve/job.h"
#include "serve/metrics.h"

namespace tl::serve {

struct SchedulerOptions {
  int max_batch = 16;                // cache rows: sequences decoding at once
  int max_len = 0;                   // positions per row; 0 = the model's context
  int64_t max_tokens_in_flight = 0;  // KV positions reserved by admitted sequences; 0 = all rows
  int prefill_tokens = 512;          // prompt tokens per prefill call, over the group's rows
  int max_queue = 256;               // sequences waiting for admission before refusals
  // Greedy decode steps are submitted one ahead of the host (see Scheduler::decode_step);
  // TL_DECODE_RUN_AHEAD=0 turns it off too.
  bool run_ahead = true;
};

enum class SubmitStatus { Ok, QueueFull, ShuttingDown, Invalid };

struct SubmitResult {
  SubmitStatus status = SubmitStatus::Ok;
  std::string message;  // why, for Invalid (names the field), QueueFull and ShuttingDown
  int param_seq = -1;   // Invalid: which sequence
};

class Scheduler {
 public:
  // Allocates everything (throws tl::Error when the cache does not fit) and starts the thread.
  Scheduler(LlamaModel& model, const SchedulerOptions& opts, Metrics* metrics = nullptr);
  ~Scheduler();  // cancels what runs and joins the thread
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues every sequence of the job, or none. Thread-safe.
  SubmitResult submit(const std::shared_ptr<Job>& job);

  // Stops admitting new jobs; lets the queued and running ones finish for up to grace_s
  // seconds, then cancels the rest. Returns when the thread has stopped.
  void shutdown(double grace_s);

  const SchedulerOptions& options() const { return opts_; }
  int max_len() const { return opts_.max_len; }
  int vocab_size() const { return V_; }
  int64_t queued() const;  // sequences waiting for admission
  size_t cache_bytes() const { return inf_.cache_bytes(); }
  // Greedy decode steps enqueued before the previous step's ids were read (they overlap the
  // host's work between steps with the device's). Thread-safe.
  int64_t decode_steps_ahead() const { return steps_ahead_.load(); }

 private:
  struct Seq;
  using Clock = std::chrono::steady_clock;
  void loop();
  void admit();
  void prefill_step();
  void decode_step();
  // Greedy decode steps are pipelined (see decode_step); these collect a submitted step and
  // publish its ids, and collect the one that ran ahead before the batch changes.
  void collect_greedy(int n, Clock::time_point submitted);
  void flush_ahead();
  void drop_steps_in_flight();  // collects every submitted step, dropping its ids and errors
  bool can_run_ahead(int n) const;
  void drop_cancelled();
  void compact();
  void finish(Seq& s, Finish f);
  void fail_all(const std::string& what);
  void publish_gauges();
  // Samples the next token of s from logits[V] and publishes it; false when s ended.
  bool take_token(Seq& s, const float* logits);
  // Publishes token id as s's next; logits[V] (null when s wants no logprobs) give its
  // logprobs. false when s ended.
  bool emit_token(Seq& s, int id, const float* logits);

  SchedulerOptions opts_;
  Metrics* metrics_;
  LlamaInference inf_;
  int V_;

  // Shared with submitters, under mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<std::unique_ptr<Seq>> incoming_;
  bool accepting_ = true, stop_ = false, idle_ = true;

  // The scheduler thread's own state.
  std::deque<std::unique_ptr<Seq>> waiting_;
  std::vector<std::unique_ptr<Seq>> rows_;  // [max_batch]; rows [0, n_dec_) decode
  int n_dec_ = 0;
  int group_begin_ = 0, group_end_ = 0;  // the prefill group's rows; empty when equal
  int group_pos_ = 0;                    // prompt positions the group has filled
  int64_t reserved_ = 0;                 // KV positions of admitted sequences
  std::vector<float> logits_;            // host logits of the largest call
  std::vector<int32_t> greedy_ids_;      // [max_batch]: a decode step's ids when all are greedy
  // A greedy step for every decode row at positions len, its tokens the last step's ids on
  // the device, was submitted before the last step's ids were read (run ahead); not yet
  // collected. While set, the decode rows stay as they are.
  bool ahead_ = false;
  Clock::time_point ahead_submitted_;    // when the step ahead was submitted
  Clock::time_point last_collect_;       // when the last greedy step's ids were read
  Clock::time_point iteration_start_;    // of the loop's current iteration
  std::atomic<int64_t> steps_ahead_{0};  // decode steps submitted ahead
  std::thread thread_;
};

}  // namespace tl::serve
