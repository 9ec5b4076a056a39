// The continuous-batching scheduler on the CPU: sequences that join and leave a running
// batch, prefilled in chunks between decode steps, produce exactly what each produces alone
// and what generate_batch produces; prompt logprobs equal the training forward's
// log-softmax; the KV budget makes sequences wait; a full queue refuses; cancelling frees rows.
#include <gtest/gtest.h>

#include <cmath>

#include "generate/generate.h"
#include "serve_test_util.h"

using namespace tl;
using serve::Finish;
using serve::SeqSpec;

namespace {

std::vector<int> without_stop(std::vector<int> t, int stop_id) {
  if (!t.empty() && t.back() == stop_id) t.pop_back();
  return t;
}

SeqSpec spec(std::vector<int> prompt, int max_new, float temperature, uint64_t seed,
             int stop_id = -1) {
  SeqSpec s;
  s.prompt = std::move(prompt);
  s.max_new = max_new;
  s.sampling.temperature = temperature;
  s.seed = seed;
  s.stop_id = stop_id;
  return s;
}

// Submits every spec as its own job at once, then waits for all.
std::vector<serve::SeqOutput> run_concurrently(serve::Scheduler& s,
                                               const std::vector<SeqSpec>& specs) {
  std::vector<std::shared_ptr<serve::Job>> jobs;
  for (const SeqSpec& sp : specs) {
    jobs.push_back(std::make_shared<serve::Job>(std::vector<SeqSpec>{sp}));
    const auto r = s.submit(jobs.back());
    EXPECT_EQ(int(r.status), int(serve::SubmitStatus::Ok)) << r.message;
  }
  std::vector<serve::SeqOutput> out;
  for (auto& j : jobs) {
    j->wait_finished();
    std::lock_guard lk(j->mu);
    out.push_back(j->out[0]);
  }
  return out;
}

}  // namespace

// Greedy: prompts longer than a prefill chunk, more sequences than rows, different lengths.
TEST(ServeScheduler, GreedyEqualsGenerateBatch) {
  st::TestModel m(st::small_cfg(), 7, 6.0f);
  const int lens[] = {3, 9, 17, 30, 5, 12}, news[] = {12, 7, 20, 3, 15, 1};
  std::vector<SeqSpec> specs;
  std::vector<std::vector<int>> want;
  for (int i = 0; i < 6; ++i) {
    specs.push_back(spec(st::prompt_ids(lens[i], m.cfg.vocab_size, 100 + i), news[i], 0, 0));
    BatchOptions bo;
    bo.max_new = news[i];
    bo.sampling.temperature = 0;
    want.push_back(generate_batch(*m.model, {specs.back().prompt}, bo, nullptr)[0]);
  }
  serve::SchedulerOptions so;
  so.max_batch = 3;
  so.prefill_tokens = 8;
  serve::Scheduler sched(*m.model, so);
  const auto got = run_concurrently(sched, specs);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(got[size_t(i)].tokens, want[size_t(i)]) << "sequence " << i;
    EXPECT_EQ(int(got[size_t(i)].finish), int(Finish::Length));
  }
  EXPECT_GT(sched.decode_steps_ahead(), 0) << "greedy decode steps should run ahead";
}

// Greedy steps that run ahead of the host leave every output as it is without them: rows that
// meet their stop id (a token ahead of them is dropped), rows that reach the cache's end,
// rows cancelled mid-way and rows joining a running batch give what the scheduler gives with
// run-ahead off, and what generate_batch gives.
TEST(ServeScheduler, GreedyRunAheadChangesNoOutput) {
  const int ctx = 48;
  st::TestModel m(st::small_cfg(ctx), 11, 6.0f);
  std::vector<SeqSpec> specs;
  for (int i = 0; i < 10; ++i) {
    const int plen = 2 + (i * 5) % 13;
    // Every third row ends at the context (prompt + max_new = ctx); the others by length.
    SeqSpec s = spec(st::prompt_ids(plen, m.cfg.vocab_size, 500 + i),
                     i % 3 == 0 ? ctx - plen : 3 + (i * 7) % 17, 0, 0);
    if (i % 2 == 1) {  // a stop id it meets: its 4th greedy token (if it gets that far)
      BatchOptions bo;
      bo.max_new = s.max_new;
      bo.sampling.temperature = 0;
      const std::vector<int> free_run = generate_batch(*m.model, {s.prompt}, bo, nullptr)[0];
      if (free_run.size() > 3) s.stop_id = free_run[3];
    }
    specs.push_back(s);
  }
  serve::SchedulerOptions so;
  so.max_batch = 4;
  so.prefill_tokens = 8;
  std::vector<serve::SeqOutput> ahead, plain;
  int64_t steps_ahead = 0;
  for (bool on : {true, false}) {
    so.run_ahead = on;
    serve::Metrics metrics;
    serve::Scheduler sched(*m.model, so, &metrics);
    (on ? ahead : plain) = run_concurrently(sched, specs);
    if (on) steps_ahead = sched.decode_steps_ahead();
    const std::string prom = metrics.prometheus();
    EXPECT_TRUE(ckpt_test::has(
        prom, cat("tinyllama_decode_steps_ahead_total ", on ? sched.decode_steps_ahead() : 0)))
        << prom;
  }
  EXPECT_GT(steps_ahead, 0);
  int stopped = 0, at_end = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(ahead[i].tokens, plain[i].tokens) << "sequence " << i;
    EXPECT_EQ(int(ahead[i].finish), int(plain[i].finish)) << "sequence " << i;
    stopped += ahead[i].finish == Finish::Stop;
    at_end += int(specs[i].prompt.size() + ahead[i].tokens.size()) == ctx;
    BatchOptions bo;
    bo.max_new = specs[i].max_new;
    bo.sampling.temperature = 0;
    bo.stop_id = specs[i].stop_id;
    EXPECT_EQ(without_stop(ahead[i].tokens, specs[i].stop_id),
              generate_batch(*m.model, {specs[i].prompt}, bo, nullptr)[0])
        << "sequence " << i;
  }
  EXPECT_GT(stopped, 0) << "no sequence met its stop id: the test does not cover stopping";
  EXPECT_GT(at_end, 0) << "no sequence reached the context: the test does not cover the end";

  // Cancelled while its steps run ahead: it ends cancelled, the other row is untouched (a
  // context long enough that it cannot end first).
  st::TestModel big(st::small_cfg(4096), 11, 6.0f);
  so.run_ahead = true;
  so.max_batch = 2;
  serve::Scheduler sched(*big.model, so);
  auto longer =
      std::make_shared<serve::Job>(std::vector<SeqSpec>{spec(specs[0].prompt, 4000, 0, 0)});
  auto other = std::make_shared<serve::Job>(std::vector<SeqSpec>{spec(specs[3].prompt, 60, 0, 0)});
  ASSERT_EQ(int(sched.submit(longer).status), int(serve::SubmitStatus::Ok));
  ASSERT_EQ(int(sched.submit(other).status), int(serve::SubmitStatus::Ok));
  {
    std::unique_lock lk(longer->mu);
    longer->cv.wait(lk, [&] { return longer->out[0].tokens.size() >= 5; });
  }
  longer->cancel();
  longer->wait_finished();
  other->wait_finished();
  EXPECT_EQ(int(longer->out[0].finish), int(Finish::Cancelled));
  EXPECT_LT(longer->out[0].tokens.size(), 4000u);
  BatchOptions bo;
  bo.max_new = 60;
  bo.sampling.temperature = 0;
  EXPECT_EQ(other->out[0].tokens, generate_batch(*big.model, {specs[3].prompt}, bo, nullptr)[0]);
}

// 16 sampled streams of different lengths and seeds, run together on 6 rows, equal each
// alone (a one-row scheduler) and generate_batch with the same seed; a stop id ends some.
TEST(ServeScheduler, ConcurrentSampledStreamsEqualEachAlone) {
  st::TestModel m(st::small_cfg(), 9, 3.0f);
  std::vector<SeqSpec> specs;
  for (int i = 0; i < 16; ++i) {
    SeqSpec s = spec(st::prompt_ids(2 + (i * 7) % 23, m.cfg.vocab_size, 300 + i), 4 + (i * 5) % 19,
                     0.9f, 1000 + 17 * i, i % 3 == 0 ? 5 : -1);
    s.sampling.top_k = i % 2 ? 0 : 20;
    s.sampling.top_p = i % 4 == 1 ? 0.8f : 1.0f;
    specs.push_back(s);
  }
  serve::SchedulerOptions so;
  so.max_batch = 6;
  so.prefill_tokens = 16;
  std::vector<serve::SeqOutput> together;
  {
    serve::Scheduler sched(*m.model, so);
    together = run_concurrently(sched, specs);
  }
  so.max_batch = 1;
  serve::Scheduler alone(*m.model, so);
  int stopped = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto one = st::run_job(alone, {specs[i]});
    ASSERT_EQ(one.size(), 1u);
    EXPECT_EQ(together[i].tokens, one[0].tokens) << "sequence " << i;
    EXPECT_EQ(int(together[i].finish), int(one[0].finish)) << "sequence " << i;
    stopped += together[i].finish == Finish::Stop;
    BatchOptions bo;
    bo.max_new = specs[i].max_new;
    bo.sampling = specs[i].sampling;
    bo.seed = specs[i].seed;
    bo.stop_id = specs[i].stop_id;
    EXPECT_EQ(without_stop(together[i].tokens, specs[i].stop_id),
              generate_batch(*m.model, {specs[i].prompt}, bo, nullptr)[0])
        << "sequence " << i;
  }
  EXPECT_GT(stopped, 0) << "no sequence met its stop id: the test does not cover stopping";
}

// A prompt admitted while a step runs ahead: the flush before its prefill can end a row at
// the very end of its cache row (prompt + max_new - 1 = the context, as a chat request
// without max_tokens asks); that row must leave before the next decode step, not be fed at
// a position past the cache (which failed every sequence of the batch).
TEST(ServeScheduler, RunAheadFlushedByAPrefillEndsRowsCleanly) {
  const int ctx = 15;
  st::TestModel m(st::small_cfg(ctx), 11, 6.0f);
  std::vector<serve::SeqOutput> out[2];
  for (bool on : {false, true}) {
    serve::SchedulerOptions so;
    so.max_batch = 2;
    so.prefill_tokens = 1;  // the second prompt prefills one token an iteration
    so.run_ahead = on;
    serve::Scheduler sched(*m.model, so);
    auto job = std::make_shared<serve::Job>(
        std::vector<SeqSpec>{spec(st::prompt_ids(1, m.cfg.vocab_size, 1), ctx, 0, 0),
                             spec(st::prompt_ids(10, m.cfg.vocab_size, 2), 1, 0, 0)});
    ASSERT_EQ(int(sched.submit(job).status), int(serve::SubmitStatus::Ok));
    job->wait_finished();
    std::lock_guard lk(job->mu);
    EXPECT_EQ(job->error, "") << "run_ahead " << on;
    out[on] = job->out;
  }
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(int(out[1][i].finish), int(Finish::Length)) << "sequence " << i;
    EXPECT_EQ(out[1][i].tokens, out[0][i].tokens) << "sequence " << i;
  }
  EXPECT_EQ(out[1][0].tokens.size(), size_t(ctx));
}

// Echo + logprobs: each prompt token's logprob (and the top alternatives) equal the
// log-softmax of the training forward's logits at the position before it.
TEST(ServeScheduler, PromptLogprobsEqualTheTrainingForward) {
  st::TestModel m(st::small_cfg(), 5, 4.0f);
  const std::vector<int> prompt = st::prompt_ids(21, m.cfg.vocab_size, 77);
  SeqSpec s = spec(prompt, 1, 0, 0);
  s.prompt_logprobs = true;
  s.top_logprobs = 3;
  serve::SchedulerOptions so;
  so.prefill_tokens = 8;  // three chunks
  std::vector<serve::SeqOutput> out;
  {
    serve::Scheduler sched(*m.model, so);
    out = st::run_job(sched, {s});
  }
  ASSERT_EQ(out[0].prompt_lp.size(), prompt.size() - 1);
  const int V = m.cfg.vocab_size;
  std::vector<float> logits(static_cast<size_t>(V));
  for (size_t t = 0; t + 1 < prompt.size(); ++t) {
    std::vector<int32_t> prefix(prompt.begin(), prompt.begin() + ptrdiff_t(t) + 1);
    m.model->forward_last_logits(prefix.data(), 1, int(prefix.size()), logits.data());
    double mx = -INFINITY, z = 0;
    for (float x : logits) mx = std::max(mx, double(x));
    for (float x : logits) z += std::exp(double(x) - mx);
    auto lp = [&](int id) { return double(logits[size_t(id)]) - mx - std::log(z); };
    const serve::TokenLogprob& got = out[0].prompt_lp[t];
    EXPECT_EQ(got.id, prompt[t + 1]);
    EXPECT_NEAR(got.logprob, lp(prompt[t + 1]), 1e-5) << "position " << t;
    ASSERT_EQ(got.top.size(), 3u);
    std::vector<int> order(static_cast<size_t>(V));
    for (int i = 0; i < V; ++i) order[size_t(i)] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return logits[size_t(a)] > logits[size_t(b)]; });
    for (int k = 0; k < 3; ++k) {
      EXPECT_EQ(got.top[size_t(k)].first, order[size_t(k)]) << "position " << t << " rank " << k;
      EXPECT_NEAR(got.top[size_t(k)].second, lp(order[size_t(k)]), 1e-5);
    }
  }
  ASSERT_EQ(out[0].tokens.size(), 1u);
  ASSERT_EQ(out[0].token_lp.size(), 1u);
  EXPECT_EQ(out[0].token_lp[0].top[0].first, out[0].tokens[0]) << "greedy picks the top token";
  EXPECT_EQ(out[0].token_lp[0].top[0].second, out[0].token_lp[0].logprob);
}

TEST(ServeScheduler, LogprobOfBreaksTiesByLowerId) {
  const float logits[] = {1, 3, 2, 3, -1};
  const serve::TokenLogprob r = serve::logprob_of(logits, 5, 4, 3);
  double z = 0;
  for (float x : logits) z += std::exp(double(x));
  EXPECT_NEAR(r.logprob, -1 - std::log(z), 1e-6);
  ASSERT_EQ(r.top.size(), 3u);
  EXPECT_EQ(r.top[0].first, 1);
  EXPECT_EQ(r.top[1].first, 3);
  EXPECT_EQ(r.top[2].first, 2);
  EXPECT_TRUE(serve::logprob_of(logits, 5, 0, 0).top.empty());
}

// A budget of 40 positions holds one 30-position sequence at a time: the others wait, then
// run, with the tokens they get alone. A sequence larger than the budget is refused.
TEST(ServeScheduler, KvBudgetMakesSequencesWait) {
  st::TestModel m(st::small_cfg(), 7, 6.0f);
  serve::SchedulerOptions so;
  so.max_batch = 4;
  so.max_tokens_in_flight = 40;
  std::vector<SeqSpec> specs;
  for (int i = 0; i < 4; ++i)
    specs.push_back(spec(st::prompt_ids(10, m.cfg.vocab_size, 50 + i), 21, 0, 0));
  serve::Metrics metrics;
  serve::Scheduler sched(*m.model, so, &metrics);
  const auto got = run_concurrently(sched, specs);
  for (int i = 0; i < 4; ++i) {
    BatchOptions bo;
    bo.max_new = 21;
    bo.sampling.temperature = 0;
    EXPECT_EQ(got[size_t(i)].tokens,
              generate_batch(*m.model, {specs[size_t(i)].prompt}, bo, nullptr)[0]);
  }
  auto big =
      std::make_shared<serve::Job>(std::vector<SeqSpec>{spec(st::prompt_ids(10, 48, 1), 40, 0, 0)});
  const auto r = sched.submit(big);
  EXPECT_EQ(int(r.status), int(serve::SubmitStatus::Invalid));
  EXPECT_TRUE(ckpt_test::has(r.message, "--max-tokens-in-flight")) << r.message;
  EXPECT_TRUE(ckpt_test::has(metrics.prometheus(), "tinyllama_kv_cache_capacity_tokens 40"));
}

// One row, a queue of two: a third waiting sequence is refused; cancelling the running one
// frees its row for the queued ones.
TEST(ServeScheduler, FullQueueRefusesAndCancelFreesTheRow) {
  st::TestModel m(st::small_cfg(4096), 7, 6.0f);  // long enough to outlast the test's steps
  serve::SchedulerOptions so;
  so.max_batch = 1;
  so.max_queue = 2;
  serve::Scheduler sched(*m.model, so);
  auto running = std::make_shared<serve::Job>(
      std::vector<SeqSpec>{spec(st::prompt_ids(4, 48, 1), 4000, 0, 0)});
  ASSERT_EQ(int(sched.submit(running).status), int(serve::SubmitStatus::Ok));
  {
    std::unique_lock lk(running->mu);  // admitted once it has a token
    running->cv.wait(lk, [&] { return !running->out[0].tokens.empty(); });
  }
  std::vector<std::shared_ptr<serve::Job>> queued;
  for (int i = 0; i < 3; ++i)
    queued.push_back(std::make_shared<serve::Job>(
        std::vector<SeqSpec>{spec(st::prompt_ids(4, 48, 2 + i), 3, 0, 0)}));
  EXPECT_EQ(int(sched.submit(queued[0]).status), int(serve::SubmitStatus::Ok));
  EXPECT_EQ(int(sched.submit(queued[1]).status), int(serve::SubmitStatus::Ok));
  const auto full = sched.submit(queued[2]);
  EXPECT_EQ(int(full.status), int(serve::SubmitStatus::QueueFull));
  EXPECT_TRUE(ckpt_test::has(full.message, "queue is full")) << full.message;
  running->cancel();
  running->wait_finished();
  EXPECT_EQ(int(running->out[0].finish), int(Finish::Cancelled));
  EXPECT_LT(running->out[0].tokens.size(), 4000u);
  for (int i = 0; i < 2; ++i) {
    queued[size_t(i)]->wait_finished();
    EXPECT_EQ(queued[size_t(i)]->out[0].tokens.size(), 3u);
  }
}

// Shutdown lets running work finish within the grace period, cancels what is left, and
// refuses new work.
TEST(ServeScheduler, ShutdownFinishesOrCancels) {
  st::TestModel m(st::small_cfg(4096), 7, 6.0f);  // long enough to outlast the test's steps
  serve::SchedulerOptions so;
  so.max_batch = 2;
  serve::Scheduler sched(*m.model, so);
  auto quick =
      std::make_shared<serve::Job>(std::vector<SeqSpec>{spec(st::prompt_ids(4, 48, 1), 2, 0, 0)});
  ASSERT_EQ(int(sched.submit(quick).status), int(serve::SubmitStatus::Ok));
  quick->wait_finished();
  SeqSpec huge = spec(st::prompt_ids(4, 48, 3), 4000, 0.5f, 1);
  // Enough work that a zero grace period cannot let it finish.
  auto slow = std::make_shared<serve::Job>(std::vector<SeqSpec>(2, huge));
  ASSERT_EQ(int(sched.submit(slow).status), int(serve::SubmitStatus::Ok));
  sched.shutdown(0);
  slow->wait_finished();
  EXPECT_EQ(int(slow->out[0].finish), int(Finish::Cancelled));
  auto late =
      std::make_shared<serve::Job>(std::vector<SeqSpec>{spec(st::prompt_ids(4, 48, 1), 2, 0, 0)});
  EXPECT_EQ(int(sched.submit(late).status), int(serve::SubmitStatus::ShuttingDown));
}

// The scheduler on the GPU: concurrent sequences (joining, chunked prefill, moved rows) run
// to their lengths, and their greedy tokens follow generate_batch on the same GPU (bf16: other
// GEMM shapes round differently, so a near tie may flip late; the first token and most of the
// rest must agree).
TEST(ServeScheduler, CudaConcurrentGreedyFollowsGenerateBatch) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU visible (or built without CUDA)";
  ModelConfig cfg = st::small_cfg();
  auto be = make_backend("cuda", 0);
  LlamaModel model(cfg, *be);
  std::vector<float> p = ckpt_test::random_params(cfg, 7);
  for (float& x : p) x *= 6.0f;
  model.set_params(p);
  std::vector<SeqSpec> specs;
  for (int i = 0; i < 8; ++i)
    specs.push_back(spec(st::prompt_ids(3 + 5 * i, cfg.vocab_size, 700 + i), 6 + 3 * i, 0, 0));
  serve::SchedulerOptions so;
  so.max_batch = 3;
  so.prefill_tokens = 16;
  std::vector<serve::SeqOutput> got;
  {
    serve::Scheduler sched(model, so);
    got = run_concurrently(sched, specs);
  }
  size_t same = 0, all = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    BatchOptions bo;
    bo.max_new = specs[i].max_new;
    bo.sampling.temperature = 0;
    const std::vector<int> want = generate_batch(model, {specs[i].prompt}, bo, nullptr)[0];
    ASSERT_EQ(got[i].tokens.size(), want.size()) << "sequence " << i;
    EXPECT_EQ(got[i].tokens[0], want[0]) << "sequence " << i;
    for (size_t t = 0; t < want.size(); ++t) same += got[i].tokens[t] == want[t];
    all += want.size();
  }
  EXPECT_GE(double(same) / double(all), 0.8) << same << " of " << all << " tokens agree";
}
