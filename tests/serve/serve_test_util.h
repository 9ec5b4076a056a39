// Helpers for the server tests: small models with random weights, running jobs on a
// scheduler, and (with cpp-httplib) an in-process server on an ephemeral port.
#pragma once
#include <gtest/gtest.h>

#include <memory>
#include <thread>

#include "backend/backend.h"
#include "ckpt_test_util.h"
#include "model/llama.h"
#include "serve/scheduler.h"

namespace st {

using namespace tl;

// A model with random weights. scale > 1 spreads the logits so greedy choices are clear.
struct TestModel {
  std::unique_ptr<Backend> be;
  ModelConfig cfg;
  std::unique_ptr<LlamaModel> model;
  TestModel(const ModelConfig& c, uint64_t seed, float scale, int threads = 2)
      : be(make_backend("cpu", threads)), cfg(c) {
    model = std::make_unique<LlamaModel>(cfg, *be);
    std::vector<float> p = ckpt_test::random_params(cfg, seed);
    for (float& x : p) x *= scale;
    model->set_params(p);
  }
};

// The small GQA config (vocab 48) with a longer context.
inline ModelConfig small_cfg(int ctx = 64) {
  ModelConfig c = ckpt_test::small_config();
  c.max_seq_len = ctx;
  return c;
}

// A Llama-2-vocabulary model small enough for CPU tests.
inline ModelConfig llama_vocab_cfg() {
  ModelConfig c;
  c.vocab_size = 32000;
  c.dim = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.ffn_dim = 128;
  c.max_seq_len = 256;
  return c;
}

inline std::vector<int> prompt_ids(int n, int vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int> p(static_cast<size_t>(n));
  for (int& x : p) x = int(rng.below(uint64_t(vocab)));
  return p;
}

// Runs the specs as one job and waits; returns its outputs.
inline std::vector<serve::SeqOutput> run_job(serve::Scheduler& s,
                                             std::vector<serve::SeqSpec> specs) {
  auto job = std::make_shared<serve::Job>(std::move(specs));
  const serve::SubmitResult r = s.submit(job);
  EXPECT_EQ(int(r.status), int(serve::SubmitStatus::Ok)) << r.message;
  if (r.status != serve::SubmitStatus::Ok) return {};
  job->wait_finished();
  std::lock_guard lk(job->mu);
  return job->out;
}

}  // namespace st
