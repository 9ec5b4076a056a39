// The scorer (eval/scorer.h: batches, prefix reuse over the KV cache, head_logprob) against
// an independent path: the training forward (LlamaModel::forward_loss, full causal
// attention, fused cross-entropy head) on each request alone, and forward_last_logits for
// the greedy flags. Requests cover shared contexts (HellaSwag-like), one-token
// continuations (MMLU-like), different contexts with a shared continuation
// (WinoGrande-like), windows filled to the brim, and single-choice examples.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "backend/backend.h"
#include "core/rng.h"
#include "eval/scorer.h"

using namespace tl;
using namespace tl::eval;

namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 61;
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.ffn_dim = 64;
  c.max_seq_len = 40;
  c.init_std = 0.3;  // logits far from uniform: clear argmaxes, varied log-likelihoods
  return c;
}

std::vector<int32_t> random_tokens(Rng& rng, int n, int V) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back(int32_t(rng.below(uint64_t(V))));
  return t;
}

std::vector<std::vector<TokenRequest>> make_groups(int V, int window) {
  Rng rng(7);
  std::vector<std::vector<TokenRequest>> groups;
  for (int g = 0; g < 24; ++g) {
    std::vector<TokenRequest> reqs;
    const int kind = g % 4, n = 2 + g % 3;
    const std::vector<int32_t> ctx =
        random_tokens(rng, 1 + int(rng.below(uint64_t(g % 5 == 4 ? window : 25))), V);
    const std::vector<int32_t> shared = random_tokens(rng, 1 + int(rng.below(6)), V);
    for (int c = 0; c < n; ++c) {
      TokenRequest r;
      if (kind == 2) {  // WinoGrande-like: contexts differ after a common start
        r.tokens = ctx;
        for (int32_t t : random_tokens(rng, 1 + c, V)) r.tokens.push_back(t);
        r.tokens.insert(r.tokens.end(), shared.begin(), shared.end());
        r.contlen = int(shared.size());
      } else {
        const int len = kind == 1 ? 1 : 1 + int(rng.below(9));  // MMLU-like: one token
        r.tokens = ctx;
        for (int32_t t : random_tokens(rng, len, V)) r.tokens.push_back(t);
        r.contlen = len;
      }
      if (int(r.tokens.size()) > window + 1)  // left truncation, as make_request does
        r.tokens.erase(r.tokens.begin(), r.tokens.end() - (window + 1));
      r.contlen = std::min(r.contlen, int(r.tokens.size()) - 1);
      reqs.push_back(r);
    }
    groups.push_back(reqs);
  }
  groups.push_back({TokenRequest{{3, 4, 5}, 2, false}});  // a single-choice example
  return groups;
}

}  // namespace

TEST(EvalScoring, MatchesTheTrainingForwardPerRequest) {
  auto be = make_backend("cpu", 2);
  LlamaModel model(tiny_config(), *be);
  model.init_weights(3);
  const int V = model.config().vocab_size, window = model.config().max_seq_len;
  const auto groups = make_groups(V, window);

  // Reference: each request alone, through forward_loss and forward_last_logits.
  std::vector<std::vector<ScoreResult>> ref(groups.size());
  std::vector<float> logits(static_cast<size_t>(V));
  for (size_t g = 0; g < groups.size(); ++g)
    for (const TokenRequest& r : groups[g]) {
      const int T = int(r.tokens.size()) - 1;
      std::vector<int32_t> targets(size_t(T), -1);
      bool greedy = true;
      for (int t = T - r.contlen; t < T; ++t) {
        targets[size_t(t)] = r.tokens[size_t(t + 1)];
        model.forward_last_logits(r.tokens.data(), 1, t + 1, logits.data());
        greedy = greedy && std::max_element(logits.begin(), logits.end()) - logits.begin() ==
                               r.tokens[size_t(t + 1)];
      }
      LossSum s = model.forward_loss(r.tokens.data(), targets.data(), 1, T);
      ASSERT_EQ(s.count, r.contlen);
      ref[g].push_back({-s.sum, greedy});
    }

  struct Setting {
    ScorerOptions opts;
    const char* name;
  };
  const Setting settings[] = {{{64, 4096, true}, "prefix reuse"},
                              {{64, 4096, false}, "no prefix reuse"},
                              {{1, 16, true}, "tiny batches"},
                              {{7, 90, true}, "uneven batches"}};
  int greedy_seen = 0;
  for (const Setting& s : settings) {
    ScorerStats st;
    const auto got = score_requests(model, groups, s.opts, &st);
    ASSERT_EQ(got.size(), groups.size());
    for (size_t g = 0; g < groups.size(); ++g)
      for (size_t c = 0; c < groups[g].size(); ++c) {
        const double want = ref[g][c].ll;
        EXPECT_NEAR(got[g][c].ll, want, 1e-4 * std::max(1.0, std::fabs(want)))
            << s.name << ": group " << g << " choice " << c;
        EXPECT_EQ(got[g][c].greedy, ref[g][c].greedy)
            << s.name << ": group " << g << " choice " << c;
        greedy_seen += got[g][c].greedy;
      }
    if (s.opts.prefix_reuse) {
      EXPECT_GT(st.shared_tokens, 0) << s.name;
    } else {
      EXPECT_EQ(st.shared_tokens, 0) << s.name;
    }
  }
  EXPECT_GT(greedy_seen, 0);  // the greedy flag was exercised both ways
}

TEST(EvalScoring, HeadLogprobMatchesCrossEntropy) {
  auto be = make_backend("cpu", 2);
  Rng rng(5);
  const int N = 9, C = 8, V = 37;
  std::vector<float> x(static_cast<size_t>(N * C)), w(static_cast<size_t>(V * C)),
      logp(static_cast<size_t>(N)), loss(static_cast<size_t>(N));
  for (auto& v : x) v = float(rng.normal());
  for (auto& v : w) v = float(rng.normal());
  std::vector<int32_t> tgt(static_cast<size_t>(N)), greedy(static_cast<size_t>(N));
  for (auto& t : tgt) t = int32_t(rng.below(V));
  auto logit = [&](int n, int v) {
    double z = 0;
    for (int c = 0; c < C; ++c) z += double(x[size_t(n * C + c)]) * double(w[size_t(v * C + c)]);
    return z;
  };
  for (int v = 0; v < V; ++v)  // row 1's target: its argmax, so greedy is seen set
    if (logit(1, v) > logit(1, tgt[1])) tgt[1] = v;
  Tensor tx(x.data(), DType::F32, Device::CPU, {N, C}),
      tw(w.data(), DType::F32, Device::CPU, {V, C});
  Tensor tt(tgt.data(), DType::I32, Device::CPU, {N});
  be->head_logprob(Tensor(logp.data(), DType::F32, Device::CPU, {N}),
                   Tensor(greedy.data(), DType::I32, Device::CPU, {N}), tx, tw, tt);
  be->head_cross_entropy(Tensor(loss.data(), DType::F32, Device::CPU, {N}), Tensor(), Tensor(), tx,
                         tw, tt, 1.0f);
  for (int n = 0; n < N; ++n) {
    EXPECT_NEAR(logp[size_t(n)], -loss[size_t(n)], 1e-5) << n;
    // greedy: the target is the first maximum of its row of logits
    int arg = 0;
    for (int v = 1; v < V; ++v)
      if (logit(n, v) > logit(n, arg)) arg = v;
    EXPECT_EQ(greedy[size_t(n)], arg == tgt[size_t(n)] ? 1 : 0) << n;
  }
  EXPECT_EQ(greedy[1], 1);
  tgt[0] = V;  // out of range
  EXPECT_THROW(be->head_logprob(Tensor(logp.data(), DType::F32, Device::CPU, {N}),
                                Tensor(greedy.data(), DType::I32, Device::CPU, {N}), tx, tw, tt),
               Error);
}

// The CUDA path (bf16; head_logprob's kernel, copy_prefix's gathers, attention_decode over
// partial rows) against the CPU's fp32 scores of the same weights: within bf16 tolerance,
// and the same prediction wherever the CPU's margin is clear of it.
TEST(EvalScoring, CudaMatchesCpuWithinBf16) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  auto cpu = make_backend("cpu", 2);
  auto gpu = make_backend("cuda");
  LlamaModel a(tiny_config(), *cpu), b(tiny_config(), *gpu);
  a.init_weights(3);
  b.set_params(a.get_params());
  const auto groups = make_groups(a.config().vocab_size, a.config().max_seq_len);
  const auto want = score_requests(a, groups, {64, 4096, true});
  for (const ScorerOptions& o : {ScorerOptions{64, 4096, true}, ScorerOptions{5, 64, true},
                                 ScorerOptions{64, 4096, false}}) {
    const auto got = score_requests(b, groups, o);
    for (size_t g = 0; g < groups.size(); ++g) {
      int best = 0;
      for (size_t c = 0; c < groups[g].size(); ++c) {
        const double w = want[g][c].ll, tol = 3e-2 * std::max(1.0, std::fabs(w));
        EXPECT_NEAR(got[g][c].ll, w, tol) << "group " << g << " choice " << c;
        if (w > want[g][size_t(best)].ll) best = int(c);
      }
      double margin = INFINITY;
      for (size_t c = 0; c < groups[g].size(); ++c)
        if (int(c) != best) margin = std::min(margin, want[g][size_t(best)].ll - want[g][c].ll);
      int pred = 0;
      for (size_t c = 0; c < groups[g].size(); ++c)
        if (got[g][c].ll > got[g][size_t(pred)].ll) pred = int(c);
      if (margin > 6e-2 * std::max(1.0, std::fabs(want[g][size_t(best)].ll))) {
        EXPECT_EQ(pred, best) << "group " << g;
      }
    }
  }
}
