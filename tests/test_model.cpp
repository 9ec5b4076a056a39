// The Llama model on the CPU backend: gradients against finite differences, recompute
// equivalence, determinism, inference consistency, init statistics, schedule, sampling.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "backend/backend.h"
#include "core/rng.h"
#include "generate/generate.h"
#include "model/llama.h"
#include "optim/adamw.h"
#include "optim/schedule.h"
#include "train/train_step.h"

using namespace tl;

namespace {

ModelConfig micro_config() {
  ModelConfig c;
  c.vocab_size = 37;
  c.dim = 24;
  c.n_layers = 2;
  c.n_heads = 6;
  c.n_kv_heads = 2;
  c.ffn_dim = 40;
  c.max_seq_len = 16;
  c.validate();
  return c;
}

struct Batch {
  int B, T;
  std::vector<int32_t> tokens, targets;
};

Batch random_batch(int B, int T, int V, uint64_t seed) {
  Rng rng(seed);
  Batch b{B, T, {}, {}};
  for (int i = 0; i < B * T; ++i) {
    b.tokens.push_back(int32_t(rng.below(uint64_t(V))));
    b.targets.push_back(int32_t(rng.below(uint64_t(V))));
  }
  return b;
}

// Perturbs norm weights away from 1 so their gradients are exercised.
void perturb_norms(LlamaModel& m, uint64_t seed) {
  std::vector<float> p = m.get_params();
  Rng rng(seed);
  for (const auto& info : m.layout().params())
    if (info.shape.ndim == 1)
      for (int64_t j = 0; j < info.numel(); ++j)
        p[size_t(info.offset + j)] = float(1.0 + 0.3 * rng.normal());
  m.set_params(p);
}

}  // namespace

TEST(Model, GradientsMatchFiniteDifferences) {
  auto be = make_backend("cpu", 1);
  ModelConfig c = micro_config();
  LlamaModel m(c, *be);
  m.init_weights(3);
  perturb_norms(m, 4);
  Batch b = random_batch(2, 7, c.vocab_size, 5);
  b.targets[3] = -1;  // an ignored position
  m.zero_grads();
  m.forward_backward(b.tokens.data(), b.targets.data(), b.B, b.T, 1.0f);
  std::vector<float> grads(size_t(m.layout().total()));
  be->download(grads.data(), m.grads());
  std::vector<float> p = m.get_params();

  auto loss_at = [&](size_t i, float value) {
    std::vector<float> q = p;
    q[i] = value;
    m.set_params(q);
    return m.forward_loss(b.tokens.data(), b.targets.data(), b.B, b.T).sum;
  };
  // For each tensor: the 3 entries with the largest gradient, checked by central differences.
  int checked = 0;
  for (const auto& info : m.layout().params()) {
    std::vector<int64_t> idx(size_t(info.numel()));
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + 3, idx.end(), [&](int64_t x, int64_t y) {
      return std::fabs(grads[size_t(info.offset + x)]) > std::fabs(grads[size_t(info.offset + y)]);
    });
    for (int k = 0; k < 3; ++k) {
      size_t i = size_t(info.offset + idx[size_t(k)]);
      const float h = 1e-2f * std::max(1.0f, std::fabs(p[i]));
      double fd = (loss_at(i, p[i] + h) - loss_at(i, p[i] - h)) / (2.0 * double(h));
      EXPECT_NEAR(grads[i], fd, 2e-2 * std::fabs(fd) + 2e-4)
          << info.name << "[" << idx[size_t(k)] << "]";
      ++checked;
    }
  }
  EXPECT_EQ(checked, 3 * int(m.layout().params().size()));
}

TEST(Model, RecomputeGivesIdenticalGradients) {
  auto be = make_backend("cpu", 2);
  ModelConfig c = micro_config();
  ModelOptions keep, recompute;
  recompute.recompute = true;
  LlamaModel a(c, *be, keep), r(c, *be, recompute);
  a.init_weights(11);
  r.init_weights(11);
  Batch b = random_batch(3, 9, c.vocab_size, 12);
  a.zero_grads();
  r.zero_grads();
  LossSum la = a.forward_backward(b.tokens.data(), b.targets.data(), b.B, b.T, 0.01f);
  LossSum lr = r.forward_backward(b.tokens.data(), b.targets.data(), b.B, b.T, 0.01f);
  EXPECT_EQ(la.sum, lr.sum);
  std::vector<float> ga(size_t(a.layout().total())), gr(ga.size());
  be->download(ga.data(), a.grads());
  be->download(gr.data(), r.grads());
  EXPECT_EQ(ga, gr);
  EXPECT_LT(LlamaModel::activation_bytes(c, 8, 16, DType::F32, true),
            LlamaModel::activation_bytes(c, 8, 16, DType::F32, false));
}

TEST(Model, GradientsAccumulateAcrossMicroBatches) {
  auto be = make_backend("cpu", 2);
  ModelConfig c = micro_config();
  LlamaModel m(c, *be);
  m.init_weights(1);
  Batch b = random_batch(2, 8, c.vocab_size, 2);
  m.zero_grads();
  m.forward_backward(b.tokens.data(), b.targets.data(), b.B, b.T, 1.0f);
  std::vector<float> once(size_t(m.layout().total())), twice(once.size());
  be->download(once.data(), m.grads());
  m.forward_backward(b.tokens.data(), b.targets.data(), b.B, b.T, 1.0f);
  be->download(twice.data(), m.grads());
  for (size_t i = 0; i < once.size(); ++i)
    ASSERT_NEAR(twice[i], 2 * once[i], 1e-5f * (1 + std::fabs(once[i]))) << i;
}

// zero_grads() leaves the linears' gradients to the next backward to write: whatever a step
// left in them (here: NaN everywhere but the padding) must not reach the next step's
// gradients, which equal those accumulated onto zeros, and the padding stays zero.
TEST(Model, FirstBackwardAfterZeroGradsWritesTheLinearsGradients) {
  auto be = make_backend("cpu", 2);
  ModelConfig c = micro_config();
  LlamaModel fresh(c, *be), reused(c, *be);
  fresh.init_weights(21);
  reused.init_weights(21);
  perturb_norms(fresh, 22);
  perturb_norms(reused, 22);
  Batch b1 = random_batch(2, 8, c.vocab_size, 23), b2 = random_batch(2, 8, c.vocab_size, 24);
  const size_t P = size_t(fresh.layout().total());
  std::vector<bool> padding(P, true);
  for (const auto& info : fresh.layout().params())
    for (int64_t j = 0; j < info.numel(); ++j) padding[size_t(info.offset + j)] = false;
  // The reference: gradients accumulated onto the zeros the model starts with.
  fresh.forward_backward(b1.tokens.data(), b1.targets.data(), b1.B, b1.T, 0.5f);
  fresh.forward_backward(b2.tokens.data(), b2.targets.data(), b2.B, b2.T, 0.5f);
  std::vector<float> want(P), got(P);
  be->download(want.data(), fresh.grads());
  // A step's leftovers: NaN in every parameter's gradient.
  std::vector<float> stale(P, 0.0f);
  for (size_t i = 0; i < P; ++i)
    if (!padding[i]) stale[i] = std::numeric_limits<float>::quiet_NaN();
  be->upload(reused.grads(), stale.data());
  reused.zero_grads();
  reused.forward_backward(b1.tokens.data(), b1.targets.data(), b1.B, b1.T, 0.5f);
  reused.forward_backward(b2.tokens.data(), b2.targets.data(), b2.B, b2.T, 0.5f);
  be->download(got.data(), reused.grads());
  size_t nonzero = 0;
  for (size_t i = 0; i < P; ++i) {
    ASSERT_EQ(got[i], want[i]) << "gradient element " << i << (padding[i] ? " (padding)" : "");
    nonzero += got[i] != 0.0f;
  }
  EXPECT_GT(nonzero, P / 2);  // the comparison is not between two zero arrays
}

TEST(Model, LastLogitsAgreeWithTheLoss) {
  auto be = make_backend("cpu", 2);
  ModelConfig c = micro_config();
  LlamaModel m(c, *be);
  m.init_weights(21);
  Batch b = random_batch(2, 6, c.vocab_size, 22);
  std::vector<float> logits(size_t(2 * c.vocab_size));
  m.forward_last_logits(b.tokens.data(), 2, 6, logits.data());
  // Loss with a target only at each row's last position = logsumexp - logit[target].
  std::vector<int32_t> targets(12, -1);
  targets[5] = 4;
  targets[11] = 9;
  LossSum s = m.forward_loss(b.tokens.data(), targets.data(), 2, 6);
  double expect = 0;
  for (int row = 0; row < 2; ++row) {
    const float* z = logits.data() + row * c.vocab_size;
    double mx = *std::max_element(z, z + c.vocab_size), se = 0;
    for (int v = 0; v < c.vocab_size; ++v) se += std::exp(double(z[v]) - mx);
    expect += mx + std::log(se) - z[row == 0 ? 4 : 9];
  }
  EXPECT_EQ(s.count, 2);
  EXPECT_NEAR(s.sum, expect, 1e-4);
  // Causality: changing the last token must not change the loss of earlier positions.
  std::vector<int32_t> t2 = b.targets;
  t2[5] = t2[11] = -1;
  double before = m.forward_loss(b.tokens.data(), t2.data(), 2, 6).sum;
  b.tokens[5] = (b.tokens[5] + 1) % c.vocab_size;
  double after = m.forward_loss(b.tokens.data(), t2.data(), 2, 6).sum;
  EXPECT_EQ(before, after);
}

TEST(Model, InitFollowsTinyLlama) {
  auto be = make_backend("cpu", 2);
  ModelConfig c = ModelConfig::from_preset("tiny");
  LlamaModel m(c, *be);
  m.init_weights(7);
  std::vector<float> p = m.get_params();
  auto stddev = [&](ParamKind k, int layer) {
    const ParamInfo& info = m.layout().get(k, layer);
    double s = 0;
    for (int64_t j = 0; j < info.numel(); ++j)
      s += double(p[size_t(info.offset + j)]) * p[size_t(info.offset + j)];
    return std::sqrt(s / double(info.numel()));
  };
  const double base = std::sqrt(2.0 / (5.0 * c.dim)),
               out = 1.0 / (std::sqrt(double(c.dim)) * c.n_layers);
  EXPECT_NEAR(stddev(ParamKind::Embed, -1), base, 0.02 * base);
  EXPECT_NEAR(stddev(ParamKind::Wqkv, 0), base, 0.02 * base);
  EXPECT_NEAR(stddev(ParamKind::WGateUp, 1), base, 0.02 * base);
  EXPECT_NEAR(stddev(ParamKind::Head, -1), base, 0.02 * base);
  EXPECT_NEAR(stddev(ParamKind::Wo, 2), out, 0.03 * out);
  EXPECT_NEAR(stddev(ParamKind::WDown, 3), out, 0.03 * out);
  EXPECT_EQ(stddev(ParamKind::FinalNorm, -1), 1.0);
  // Padding between tensors stays zero; the same seed gives the same weights.
  const ParamInfo& e = m.layout().get(ParamKind::Embed);
  for (int64_t j = e.offset + e.numel(); j < m.layout().get(ParamKind::AttnNorm, 0).offset; ++j)
    EXPECT_EQ(p[size_t(j)], 0.0f);
  LlamaModel m2(c, *be);
  m2.init_weights(7);
  EXPECT_EQ(m2.get_params(), p);
}

TEST(Model, AdamWOverfitsAFixedBatchDeterministically) {
  auto run = [](int threads) {
    auto be = make_backend("cpu", threads);
    ModelConfig c = micro_config();
    LlamaModel m(c, *be);
    m.init_weights(31);
    AdamW opt(*be, m.layout().total(), AdamWConfig{});
    Batch b = random_batch(4, 12, c.vocab_size, 32);
    std::vector<double> losses;
    for (int s = 0; s < 40; ++s) {
      m.zero_grads();
      LossSum l = m.forward_backward(b.tokens.data(), b.targets.data(), b.B, b.T, 1.0f / 48);
      losses.push_back(l.mean());
      StepResult r = optimizer_step(opt, m, 1e-2f);
      EXPECT_TRUE(r.applied);
      EXPECT_GT(r.grad_norm, 0);
    }
    return losses;
  };
  std::vector<double> a = run(1), b = run(2);
  EXPECT_EQ(a, b) << "results depend on the thread count";
  EXPECT_LT(a.back(), 0.5 * a.front());
}

TEST(Model, NonFiniteGradientSkipsTheUpdate) {
  auto be = make_backend("cpu", 1);
  ModelConfig c = micro_config();
  LlamaModel m(c, *be);
  m.init_weights(41);
  AdamW opt(*be, m.layout().total(), AdamWConfig{});
  std::vector<float> g(size_t(m.layout().total()), 0.0f);
  g[5] = NAN;
  be->upload(m.grads(), g.data());
  std::vector<float> before = m.get_params();
  StepResult r = optimizer_step(opt, m, 1e-2f);
  EXPECT_FALSE(r.applied);
  EXPECT_EQ(opt.steps_taken(), 0);
  EXPECT_EQ(m.get_params(), before);
}

TEST(Model, RejectsTokensOutsideTheVocabulary) {
  auto be = make_backend("cpu", 1);
  ModelConfig c = micro_config();
  LlamaModel m(c, *be);
  m.init_weights(1);
  std::vector<int32_t> tokens(4, 1), targets(4, 1);
  tokens[2] = c.vocab_size;
  EXPECT_THROW(m.forward_loss(tokens.data(), targets.data(), 1, 4), Error);
  tokens[2] = 0;
  targets[1] = c.vocab_size + 3;
  EXPECT_THROW(m.forward_loss(tokens.data(), targets.data(), 1, 4), Error);
  EXPECT_THROW(m.forward_loss(tokens.data(), targets.data(), 1, c.max_seq_len + 1), Error);
}

TEST(Schedule, WarmupThenCosineToMinimum) {
  LrSchedule s{4e-4, 4e-5, 100, 1100};
  EXPECT_DOUBLE_EQ(s.at(50), 2e-4);
  EXPECT_DOUBLE_EQ(s.at(100), 4e-4);
  EXPECT_NEAR(s.at(600), 0.5 * (4e-4 + 4e-5), 1e-12);  // cosine midpoint
  EXPECT_NEAR(s.at(1100), 4e-5, 1e-15);
  EXPECT_DOUBLE_EQ(s.at(5000), 4e-5);
  EXPECT_GT(s.at(300), s.at(301));
}

TEST(Sampling, GreedyTopKTopPAndTemperature) {
  std::vector<float> z = {0.1f, 2.0f, 1.0f, 2.0f, -1.0f};
  Rng rng(1);
  SamplingOptions greedy;
  greedy.temperature = 0;
  EXPECT_EQ(sample_token(z.data(), 5, greedy, rng), 1);  // first of the tied maxima
  SamplingOptions k1;
  k1.top_k = 1;
  EXPECT_EQ(sample_token(z.data(), 5, k1, rng), 1);
  SamplingOptions p_small;
  p_small.top_p = 0.01f;
  EXPECT_EQ(sample_token(z.data(), 5, p_small, rng), 1);
  // Frequencies follow softmax(z / T).
  SamplingOptions t;
  t.temperature = 0.7f;
  t.top_p = 1.0f;
  std::vector<int> counts(5, 0);
  const int n = 100000;
  for (int i = 0; i < n; ++i) counts[size_t(sample_token(z.data(), 5, t, rng))]++;
  double zsum = 0;
  for (float v : z) zsum += std::exp(v / 0.7);
  for (int v = 0; v < 5; ++v)
    EXPECT_NEAR(counts[size_t(v)] / double(n), std::exp(z[size_t(v)] / 0.7) / zsum, 0.01) << v;
  // top_k = 3 never samples outside the three largest.
  SamplingOptions k3;
  k3.top_k = 3;
  k3.temperature = 5.0f;
  for (int i = 0; i < 2000; ++i) {
    int s = sample_token(z.data(), 5, k3, rng);
    EXPECT_TRUE(s == 1 || s == 2 || s == 3) << s;
  }
}
