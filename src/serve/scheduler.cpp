#include "serve/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/log.h"
#include "core/rng.h"

namespace tl::serve {

namespace {
using Clock = std::chrono::steady_clock;
using std::chrono::duration;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
}  // namespace

const char* finish_name(Finish f) {
  switch (f) {
    case Finish::Length: return "length";
    case Finish::Stop: return "stop";
    case Finish::Cancelled: return "cancelled";
    case Finish::Error: return "error";
    default: return "";
  }
}

TokenLogprob logprob_of(const float* logits, int V, int id, int top) {
  double mx = logits[0];
  for (int i = 1; i < V; ++i) mx = std::max(mx, double(logits[i]));
  double sum = 0;
  for (int i = 0; i < V; ++i) sum += std::exp(double(logits[i]) - mx);
  const double lse = mx + std::log(sum);
  TokenLogprob r;
  r.id = id;
  r.logprob = float(double(logits[id]) - lse);
  // The top k by insertion into a short sorted list: (logit descending, id ascending).
  const int k = std::min(std::max(top, 0), V);
  std::vector<int> best;
  best.reserve(size_t(k) + 1);
  for (int i = 0; i < V && k > 0; ++i) {
    if (int(best.size()) == k && !(logits[i] > logits[best.back()])) continue;
    auto at = std::find_if(best.begin(), best.end(), [&](int b) { return logits[i] > logits[b]; });
    best.insert(at, i);
    if (int(best.size()) > k) best.pop_back();
  }
  for (int b : best) r.top.emplace_back(b, float(double(logits[b]) - lse));
  return r;
}

struct Scheduler::Seq {
  std::shared_ptr<Job> job;
  size_t idx = 0;
  const SeqSpec* spec = nullptr;
  Rng rng;
  int len = 0;    // cache positions filled
  int last = -1;  // the last sampled token: fed at the next decode step
  int generated = 0;
  bool done = false;  // finished: its row is freed at the next compaction
  std::vector<TokenLogprob> prompt_lp;
  int prompt_len() const { return int(spec->prompt.size()); }
};

Scheduler::Scheduler(LlamaModel& model, const SchedulerOptions& opts, Metrics* metrics)
    : opts_(opts),
      metrics_(metrics),
      inf_(model, opts.max_batch, opts.max_len > 0 ? opts.max_len : model.config().max_seq_len),
      V_(model.config().vocab_size) {
  opts_.max_len = inf_.max_len();
  const int64_t all = int64_t(opts_.max_batch) * opts_.max_len;
  if (opts_.max_tokens_in_flight <= 0 || opts_.max_tokens_in_flight > all)
    opts_.max_tokens_in_flight = all;
  TL_CHECK(opts_.prefill_tokens > 0, "serve: prefill_tokens must be positive, got ",
           opts_.prefill_tokens);
  TL_CHECK(opts_.max_queue > 0, "serve: max_queue must be positive, got ", opts_.max_queue);
  opts_.run_ahead = opts_.run_ahead && inf_.run_ahead();
  rows_.resize(size_t(opts_.max_batch));
  // Host logits of the largest call: a prefill chunk with every token's logits.
  logits_.resize(size_t(opts_.prefill_tokens + opts_.max_batch) * size_t(V_));
  // Activations are sized by the tokens of a call and by its rows; one call with every row
  // and at least prefill_tokens tokens allocates what any later call needs, before serving.
  const int B = opts_.max_batch;
  const int Tn =
      std::min((std::min(opts_.prefill_tokens, opts_.max_len) + B - 1) / B, opts_.max_len);
  std::vector<int32_t> toks(size_t(B) * Tn, 0), pos(size_t(B), 0);
  inf_.forward(toks.data(), Tn, pos.data(), nullptr, logits_.data(), B);
  if (metrics_) metrics_->set_cache_bytes(inf_.cache_bytes());
  publish_gauges();
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { shutdown(0); }

int64_t Scheduler::queued() const {
  std::lock_guard lk(mu_);
  return int64_t(incoming_.size() + waiting_.size());
}

SubmitResult Scheduler::submit(const std::shared_ptr<Job>& job) {
  SubmitResult r;
  const int64_t n = int64_t(job->specs.size());
  if (n > opts_.max_queue)
    return {SubmitStatus::Invalid,
            cat("the request asks for ", n,
                " sequences (prompts x n), more than the server's "
                "queue of ",
                opts_.max_queue),
            -1};
  for (size_t i = 0; i < job->specs.size(); ++i) {
    const SeqSpec& s = job->specs[i];
    auto bad = [&](const std::string& m) { return SubmitResult{SubmitStatus::Invalid, m, int(i)}; };
    if (s.prompt.empty()) return bad("the prompt is empty");
    for (int id : s.prompt)
      if (id < 0 || id >= V_)
        return bad(cat("token id ", id, " is outside the model's vocabulary of ", V_));
    if (s.max_new < 0) return bad(cat("max_tokens ", s.max_new, " is negative"));
    if (s.positions() > opts_.max_len)
      return bad(cat("the prompt has ", s.prompt.size(), " tokens and max_tokens is ", s.max_new,
                     ": together ", s.positions(), " positions, more than the context of ",
                     opts_.max_len));
    if (s.positions() > opts_.max_tokens_in_flight)
      return bad(cat("the sequence needs ", s.positions(),
                     " KV positions, more than the server's budget of ", opts_.max_tokens_in_flight,
                     " (--max-tokens-in-flight)"));
  }
  std::lock_guard lk(mu_);
  if (!accepting_) return {SubmitStatus::ShuttingDown, "the server is shutting down", -1};
  if (int64_t(incoming_.size() + waiting_.size()) + n > opts_.max_queue)
    return {SubmitStatus::QueueFull,
            cat("the queue is full (", opts_.max_queue, " sequences waiting)"), -1};
  for (size_t i = 0; i < job->specs.size(); ++i) {
    auto s = std::make_unique<Seq>();
    s->job = job;
    s->idx = i;
    s->spec = &job->specs[i];
    s->rng = Rng(s->spec->seed);
    incoming_.push_back(std::move(s));
  }
  idle_ = false;
  cv_.notify_one();
  return r;
}

void Scheduler::shutdown(double grace_s) {
  {
    std::unique_lock lk(mu_);
    if (!thread_.joinable()) return;
    accepting_ = false;
    idle_cv_.wait_for(lk, std::chrono::duration<double>(std::max(grace_s, 0.0)),
                      [&] { return idle_ && incoming_.empty(); });
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Scheduler::loop() {
  for (;;) {
    {
      std::unique_lock lk(mu_);
      const bool busy = !waiting_.empty() || n_dec_ > 0 || group_end_ > group_begin_;
      if (!busy && incoming_.empty()) {
        idle_ = true;
        idle_cv_.notify_all();
      }
      cv_.wait(lk, [&] { return stop_ || busy || !incoming_.empty(); });
      if (stop_) break;
      idle_ = false;
      while (!incoming_.empty()) {
        waiting_.push_back(std::move(incoming_.front()));
        incoming_.pop_front();
      }
    }
    const auto t0 = iteration_start_ = Clock::now();
    try {
      drop_cancelled();
      admit();
      if (group_end_ > group_begin_) prefill_step();
      if (n_dec_ > 0) decode_step();
    } catch (const std::exception& e) {
      log_warn("serve: a model step failed: ", e.what());
      fail_all(e.what());
    }
    if (metrics_) metrics_->end_busy_iteration(seconds_since(t0));
    publish_gauges();
  }
  // Stopped: whatever remains is cancelled (a step that ran ahead is dropped).
  drop_steps_in_flight();
  std::lock_guard lk(mu_);
  for (auto* q : {&incoming_, &waiting_})
    for (auto& s : *q) finish(*s, Finish::Cancelled);
  incoming_.clear();
  waiting_.clear();
  for (auto& s : rows_)
    if (s && !s->done) finish(*s, Finish::Cancelled);
}

void Scheduler::finish(Seq& s, Finish f) {
  s.done = true;
  std::lock_guard lk(s.job->mu);
  SeqOutput& o = s.job->out[s.idx];
  if (o.finish == Finish::None) o.finish = f;
  s.job->cv.notify_all();
}

void Scheduler::fail_all(const std::string& what) {
  auto fail = [&](Seq& s) {
    {
      std::lock_guard lk(s.job->mu);
      s.job->error = what;
    }
    finish(s, Finish::Error);
  };
  for (auto& s : rows_)
    if (s && !s->done) fail(*s);
  for (auto& s : rows_) s.reset();
  drop_steps_in_flight();
  n_dec_ = group_begin_ = group_end_ = group_pos_ = 0;
  reserved_ = 0;
}

void Scheduler::drop_cancelled() {
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->job->is_cancelled((*it)->idx)) {
      finish(**it, Finish::Cancelled);
      std::lock_guard lk(mu_);
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  for (int r = 0; r < group_end_; ++r)
    if (rows_[size_t(r)] && !rows_[size_t(r)]->done &&
        rows_[size_t(r)]->job->is_cancelled(rows_[size_t(r)]->idx))
      finish(*rows_[size_t(r)], Finish::Cancelled);
  compact();
}

void Scheduler::admit() {
  if (group_end_ > group_begin_) return;
  const int row0 = n_dec_;
  int k = 0, longest = 0;
  while (!waiting_.empty() && row0 + k < opts_.max_batch) {
    Seq& s = *waiting_.front();
    const int64_t need = s.spec->positions();
    if (reserved_ + need > opts_.max_tokens_in_flight) break;  // FIFO: it waits, nobody skips it
    const int longer = std::max(longest, s.prompt_len());
    if (k > 0 && int64_t(k + 1) * std::min(longer, opts_.prefill_tokens) > opts_.prefill_tokens)
      break;
    reserved_ += need;
    longest = longer;
    std::lock_guard lk(mu_);
    rows_[size_t(row0 + k)] = std::move(waiting_.front());
    waiting_.pop_front();
    ++k;
  }
  group_begin_ = row0;
  group_end_ = row0 + k;
  group_pos_ = 0;
}

void Scheduler::prefill_step() {
  if (ahead_) {  // the prefill's forward needs the device to itself
    flush_ahead();
    compact();  // rows the flush ended leave now, before the next decode step
  }
  const int k = group_end_ - group_begin_;
  int longest = 0;
  bool all_logits = false, any_live = false;
  for (int b = 0; b < k; ++b) {
    const Seq& s = *rows_[size_t(group_begin_ + b)];
    longest = std::max(longest, s.prompt_len());
    any_live = any_live || !s.done;
    all_logits = all_logits || (!s.done && s.spec->prompt_logprobs);
  }
  const int p0 = group_pos_;
  if (any_live && p0 < longest) {
    const int Tn = std::min(std::max(1, opts_.prefill_tokens / k), longest - p0);
    std::vector<int32_t> toks(size_t(k) * Tn, 0), pos(static_cast<size_t>(k), p0),
        pick(static_cast<size_t>(k));
    for (int b = 0; b < k; ++b) {
      const Seq& s = *rows_[size_t(group_begin_ + b)];
      for (int t = 0; t < Tn && p0 + t < s.prompt_len(); ++t)
        toks[size_t(b) * Tn + t] = s.spec->prompt[size_t(p0 + t)];
      const int last = s.prompt_len() - 1 - p0;
      pick[size_t(b)] = last >= 0 && last < Tn ? last : Tn - 1;
    }
    const auto t0 = Clock::now();
    inf_.forward(toks.data(), Tn, pos.data(), all_logits ? nullptr : pick.data(), logits_.data(), k,
                 group_begin_);
    if (metrics_) metrics_->add_step(true, k, seconds_since(t0));
    for (int b = 0; b < k; ++b) {
      Seq& s = *rows_[size_t(group_begin_ + b)];
      if (s.done) continue;
      auto row_logits = [&](int t) {
        return logits_.data() + (all_logits ? size_t(b) * Tn + size_t(t) : size_t(b)) * V_;
      };
      if (s.spec->prompt_logprobs) {  // a pass over the vocabulary per position: in parallel
        const int n = std::max(0, std::min(Tn, s.prompt_len() - 1 - p0));
        const size_t at = s.prompt_lp.size();
        s.prompt_lp.resize(at + size_t(n));
#pragma omp parallel for schedule(dynamic, 8) if (n > 16)
        for (int t = 0; t < n; ++t)
          s.prompt_lp[at + size_t(t)] =
              logprob_of(row_logits(t), V_, s.spec->prompt[size_t(p0 + t + 1)],
                         std::max(s.spec->top_logprobs, 0));
      }
      const int last = s.prompt_len() - 1 - p0;
      if (last < 0 || last >= Tn) continue;
      s.len = s.prompt_len();
      if (metrics_) metrics_->add_prompt_tokens(s.len);  // counted before the client can see it
      {
        std::lock_guard lk(s.job->mu);
        SeqOutput& o = s.job->out[s.idx];
        o.prefilled = true;
        o.prompt_lp = std::move(s.prompt_lp);
        s.job->cv.notify_all();
      }
      if (s.spec->max_new == 0)
        finish(s, Finish::Length);
      else
        take_token(s, row_logits(last));
    }
    group_pos_ += Tn;
    if (group_pos_ < longest) return;
  }
  // The group is prefilled (or all of it ended): its live rows join the decode batch.
  for (int r = group_begin_; r < group_end_; ++r) {
    std::unique_ptr<Seq>& s = rows_[size_t(r)];
    if (s->done) {
      reserved_ -= s->spec->positions();
      s.reset();
      continue;
    }
    if (r != n_dec_) {
      inf_.move_row(r, n_dec_, s->len);
      rows_[size_t(n_dec_)] = std::move(s);
    }
    ++n_dec_;
  }
  group_begin_ = group_end_ = group_pos_ = 0;
}

bool Scheduler::take_token(Seq& s, const float* logits) {
  return emit_token(s, sample_token(logits, V_, s.spec->sampling, s.rng), logits);
}

bool Scheduler::emit_token(Seq& s, int id, const float* logits) {
  const SeqSpec& sp = *s.spec;
  ++s.generated;
  s.last = id;
  Finish f = Finish::None;
  if (id == sp.stop_id)
    f = Finish::Stop;
  else if (s.generated >= sp.max_new || s.len >= inf_.max_len())
    f = Finish::Length;
  if (metrics_) metrics_->add_generated_tokens(1);
  {
    std::lock_guard lk(s.job->mu);
    SeqOutput& o = s.job->out[s.idx];
    o.tokens.push_back(id);
    if (sp.top_logprobs >= 0) o.token_lp.push_back(logprob_of(logits, V_, id, sp.top_logprobs));
    if (f != Finish::None) o.finish = f;
    s.job->cv.notify_all();
  }
  if (f != Finish::None) s.done = true;
  return f == Finish::None;
}

void Scheduler::decode_step() {
  const int n = n_dec_;
  // Every live row greedy and without logprobs: the argmax is taken on the device and only
  // n ids come back (the same ids: sample_token's greedy pick is the first maximum too).
  bool greedy = true;
  for (int r = 0; r < n && greedy; ++r) {
    const Seq& s = *rows_[size_t(r)];
    greedy = s.done || (s.spec->sampling.temperature <= 0 && s.spec->top_logprobs < 0);
  }
  // Each row's last token at its next position; an ended row (compaction frees it) rewrites
  // position 0.
  std::vector<int32_t> toks(static_cast<size_t>(n)), pos(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) {
    const Seq& s = *rows_[size_t(r)];
    toks[size_t(r)] = s.done ? 0 : s.last;
    pos[size_t(r)] = s.done ? 0 : s.len;
  }
  if (greedy) {
    // Pipelined: the step after this one is submitted (its tokens are this step's ids, still
    // on the device) before this step's ids are read, so the device runs it while the host
    // publishes tokens and goes round the loop. A step that ran ahead is collected at the
    // next decode step, or before anything changes the batch (flush_ahead).
    Clock::time_point submitted = ahead_submitted_;
    if (!ahead_) {  // else this step is already in flight
      submitted = Clock::now();
      inf_.submit_argmax(toks.data(), pos.data(), n);
    }
    ahead_ = false;
    if (can_run_ahead(n)) {
      for (int r = 0; r < n; ++r) pos[size_t(r)] = rows_[size_t(r)]->len + 1;
      inf_.submit_argmax(nullptr, pos.data(), n);
      ahead_submitted_ = Clock::now();
      ahead_ = true;
      ++steps_ahead_;
    }
    collect_greedy(n, submitted);
  } else {
    const auto t0 = Clock::now();
    inf_.forward(toks.data(), 1, pos.data(), nullptr, logits_.data(), n);
    if (metrics_) {
      metrics_->add_step(false, n, seconds_since(t0));
      const LlamaInference::GraphStats& g = inf_.graph_stats();
      metrics_->set_decode_graphs(g.replays, g.recordings, g.invalidations);
    }
    for (int r = 0; r < n; ++r) {
      Seq& s = *rows_[size_t(r)];
      ++s.len;
      if (!s.done) take_token(s, logits_.data() + size_t(r) * V_);
    }
  }
  compact();
}

// Running ahead is only worth it when every row will still be decoding after this step: a
// row that ends by length now would have its next token computed for nothing (and past the
// cache's end if it ends there). A row may still end by its stop id: its token ahead is then
// dropped.
bool Scheduler::can_run_ahead(int n) const {
  if (!opts_.run_ahead) return false;
  for (int r = 0; r < n; ++r) {
    const Seq& s = *rows_[size_t(r)];
    if (s.done || s.generated + 1 >= s.spec->max_new || s.len + 1 >= inf_.max_len()) return false;
  }
  return true;
}

void Scheduler::collect_greedy(int n, Clock::time_point submitted) {
  greedy_ids_.resize(size_t(n));
  inf_.collect_argmax(greedy_ids_.data());
  // The step's seconds count from its submission, or from the last collection where it was
  // submitted before that (the device was still busy with the step before it), within this
  // loop iteration (the time before it was counted with the last one).
  const auto now = Clock::now();
  if (metrics_) {
    const auto from = std::max({submitted, last_collect_, iteration_start_});
    metrics_->add_step(false, n, duration<double>(now - from).count());
    const LlamaInference::GraphStats& g = inf_.graph_stats();
    metrics_->set_decode_graphs(g.replays, g.recordings, g.invalidations);
    metrics_->set_decode_steps_ahead(steps_ahead_.load());
  }
  last_collect_ = now;
  for (int r = 0; r < n; ++r) {
    Seq& s = *rows_[size_t(r)];
    ++s.len;
    if (!s.done) emit_token(s, greedy_ids_[size_t(r)], nullptr);
  }
}

void Scheduler::drop_steps_in_flight() {
  ahead_ = false;
  while (inf_.steps_in_flight() > 0) {  // collect_argmax counts a step out before waiting
    try {
      inf_.collect_argmax(nullptr);
    } catch (const std::exception& e) {
      log_warn("serve: a model step failed: ", e.what());
    }
  }
}

void Scheduler::flush_ahead() {
  if (!ahead_) return;
  ahead_ = false;
  collect_greedy(n_dec_, ahead_submitted_);
}

void Scheduler::compact() {
  for (int r = 0; r < n_dec_ && ahead_; ++r)  // rows are about to move: collect the step ahead
    if (rows_[size_t(r)]->done) flush_ahead();
  int r = 0;
  while (r < n_dec_) {
    if (!rows_[size_t(r)]->done) {
      ++r;
      continue;
    }
    reserved_ -= rows_[size_t(r)]->spec->positions();
    rows_[size_t(r)].reset();
    --n_dec_;
    if (r < n_dec_) {  // the top row comes down (if it ended too, the loop frees it next)
      std::unique_ptr<Seq>& top = rows_[size_t(n_dec_)];
      if (!top->done) inf_.move_row(n_dec_, r, top->len);
      rows_[size_t(r)] = std::move(top);
    }
  }
  // A prefill group above the decode rows stays where it is; it joins at row n_dec_ later.
}

void Scheduler::publish_gauges() {
  if (!metrics_) return;
  int64_t q;
  {
    std::lock_guard lk(mu_);
    q = int64_t(incoming_.size() + waiting_.size());
  }
  metrics_->set_gauges(q, n_dec_, group_end_ - group_begin_, opts_.max_batch, reserved_,
                       opts_.max_tokens_in_flight);
}

}  // namespace tl::serve
