// What the HTTP layer hands the scheduler (a Job: the sequences of one request) and what it
// reads back. The scheduler thread writes a Job's outputs under the Job's mutex and notifies
// its condition variable; the handler thread waits on it. Cancelling (a client gone, a stop
// string seen) is a flag the scheduler reads between steps.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "generate/generate.h"

namespace tl::serve {

// One sequence to run: a prompt and how to continue it.
struct SeqSpec {
  std::vector<int> prompt;       // non-empty, ids inside the vocabulary
  int max_new = 16;              // new tokens at most (0: score the prompt only)
  SamplingOptions sampling;      // temperature 0 = greedy
  uint64_t seed = 0;             // the sequence samples with Rng(seed)
  int stop_id = -1;              // a sampled stop_id ends the sequence (and is kept as its last)
  int top_logprobs = -1;         // < 0: no logprobs; else also the k most likely tokens (k <= 20)
  bool prompt_logprobs = false;  // logprob of each prompt token given the ones before it

  // Cache positions the sequence needs: the prompt and every new token but the last, which
  // is never fed back.
  int64_t positions() const { return int64_t(prompt.size()) + std::max(max_new, 1) - 1; }
};

// log p(token) under the model's distribution (raw logits, before temperature), and the
// `top` most likely tokens with theirs, most likely first (ties: lower id first).
struct TokenLogprob {
  int id = 0;
  float logprob = 0;
  std::vector<std::pair<int, float>> top;
};

// The TokenLogprob of `id` under logits[V], with the `top` most likely tokens (top <= 0: none).
TokenLogprob logprob_of(const float* logits, int V, int id, int top);

enum class Finish { None, Length, Stop, Cancelled, Error };
const char* finish_name(Finish f);  // "length", "stop", ... as OpenAI spells them

struct SeqOutput {
  bool prefilled = false;               // prompt done (prompt_logprobs filled when asked)
  std::vector<TokenLogprob> prompt_lp;  // entry t: prompt token t + 1 (token 0 has no context)
  std::vector<int> tokens;              // sampled tokens (a final stop_id included)
  std::vector<TokenLogprob> token_lp;   // parallel to tokens when logprobs were asked
  Finish finish = Finish::None;
};

class Job {
 public:
  explicit Job(std::vector<SeqSpec> specs)
      : specs(std::move(specs)), out(this->specs.size()), seq_cancelled(this->specs.size(), 0) {}

  const std::vector<SeqSpec> specs;

  // Guarded by mu; cv is notified after every change.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<SeqOutput> out;
  std::string error;                // set with Finish::Error: what failed
  std::vector<char> seq_cancelled;  // one sequence no longer wanted (a stop string was seen)

  void cancel() { cancelled.store(true); }  // the whole job: the client has gone
  void cancel_seq(size_t i) {
    std::lock_guard lk(mu);
    seq_cancelled[i] = 1;
  }
  bool is_cancelled() const { return cancelled.load(); }
  bool is_cancelled(size_t i) {
    if (is_cancelled()) return true;
    std::lock_guard lk(mu);
    return seq_cancelled[i] != 0;
  }
  bool all_finished_locked() const {
    for (const SeqOutput& o : out)
      if (o.finish == Finish::None) return false;
    return true;
  }
  void wait_finished() {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return all_finished_locked(); });
  }

 private:
  std::atomic<bool> cancelled{false};
};

}  // namespace tl::serve
