// Generation with a KV cache on the CPU: the attention_decode op reproduces the full causal
// forward bit for bit, the cached model gives the uncached model's logits, batched and
// chunked generation equal one-prompt-at-a-time generation, and sampling follows the seed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <set>

#include "backend/backend.h"
#include "ckpt_test_util.h"
#include "core/rng.h"
#include "decode_test_util.h"
#include "generate/generate.h"
#include "model/llama.h"
#include "model/llama_infer.h"

using namespace tl;

namespace {

std::vector<float> dec_randn(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = float(rng.normal());
  return v;
}

Tensor dec_t(std::vector<float>& v, Shape s) {
  return Tensor(v.data(), DType::F32, Device::CPU, s);
}
Tensor dec_t(std::vector<int32_t>& v, Shape s) {
  return Tensor(v.data(), DType::I32, Device::CPU, s);
}

bool dec_same(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * 4) == 0; }

// A small GQA model with random weights (head dim 8, 4 query heads over 2 KV heads).
struct DecModel {
  std::unique_ptr<Backend> be = make_backend("cpu", 2);
  ModelConfig cfg;
  std::unique_ptr<LlamaModel> model;
  explicit DecModel(int ctx = 40) {
    cfg = ckpt_test::small_config();
    cfg.max_seq_len = ctx;
    model = std::make_unique<LlamaModel>(cfg, *be);
    model->set_params(ckpt_test::random_params(cfg, 7));
    // Larger weights than init, so logits are far apart and greedy choices are clear.
    std::vector<float> p = model->get_params();
    for (float& x : p) x *= 6.0f;
    model->set_params(p);
  }
};

std::vector<int> dec_prompt(int n, int vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int> p(static_cast<size_t>(n));
  for (int& x : p) x = int(rng.below(uint64_t(vocab)));
  return p;
}

}  // namespace

// Feeding a sequence to attention_decode in pieces (3 tokens, then 1, then 2, ...) gives the
// outputs of rope_forward + attention_forward over the whole sequence, bit for bit; rows at
// different positions are independent.
TEST(Decode, OpEqualsFullCausalAttention) {
  auto be = make_backend("cpu", 2);
  for (int D : {8, 6}) {
    const int H = 4, K = 2, B = 2, T = 11, Tmax = 16;
    SCOPED_TRACE(cat("D=", D));
    const int64_t Q = int64_t(H + 2 * K) * D, KD = int64_t(K) * D;
    std::vector<float> cs, sn;
    rope_tables(Tmax, D, 10000.0f, cs, sn);
    Tensor cos = dec_t(cs, {Tmax, D / 2}), sin = dec_t(sn, {Tmax, D / 2});
    const std::vector<float> raw = dec_randn(B * T * Q, 3);  // [B,T,Q] before RoPE

    std::vector<float> qkv = raw, ref(size_t(B * T * H * D)), lse(size_t(B * H * T));
    be->rope_forward(dec_t(qkv, {B, T, Q}), cos, sin, H, K, 0);
    be->attention_forward(dec_t(ref, {B, T, int64_t(H) * D}), dec_t(lse, {B, H, T}),
                          dec_t(qkv, {B, T, Q}), H, K);

    // Row 1 re-feeds its last token on every call (rewriting the same cache values), so
    // the two rows sit at different positions.
    std::vector<float> kc(size_t(B * Tmax * KD), -7.0f), vc = kc;
    std::vector<float> got(ref.size(), std::nanf(""));
    const int pieces[] = {3, 1, 2, 1, 4};
    int done[2] = {0, 0};
    for (int step = 0; done[0] < T || done[1] < T; ++step) {
      const int n = pieces[step % 5];
      std::vector<int32_t> pos = {std::min(done[0], T - n),
                                  std::min(std::max(done[1] - 1, 0), T - n)};
      std::vector<float> in(size_t(B * n * Q)), out(size_t(B * n * H * D));
      for (int b = 0; b < B; ++b)
        std::copy_n(raw.begin() + (int64_t(b) * T + pos[size_t(b)]) * Q, n * Q,
                    in.begin() + int64_t(b) * n * Q);
      be->attention_decode(dec_t(out, {B, n, int64_t(H) * D}), dec_t(in, {B, n, Q}),
                           dec_t(kc, {B, Tmax, KD}), dec_t(vc, {B, Tmax, KD}), cos, sin,
                           dec_t(pos, {B}), std::max(pos[0], pos[1]) + n, H, K);
      for (int b = 0; b < B; ++b) {
        std::copy_n(out.begin() + int64_t(b) * n * H * D, n * H * D,
                    got.begin() + (int64_t(b) * T + pos[size_t(b)]) * H * D);
        // qkv is only read (the rotation happens in a copy).
        EXPECT_TRUE(dec_same(in.data() + int64_t(b) * n * Q,
                             raw.data() + (int64_t(b) * T + pos[size_t(b)]) * Q, size_t(n * Q)));
        done[b] = std::max(done[b], pos[size_t(b)] + n);
      }
    }
    EXPECT_TRUE(dec_same(got.data(), ref.data(), ref.size()));
    // The cache holds the rotated keys and the values, position by position.
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) {
        const float* row = qkv.data() + (int64_t(b) * T + t) * Q;
        EXPECT_TRUE(dec_same(kc.data() + (int64_t(b) * Tmax + t) * KD, row + H * D, size_t(KD)));
        EXPECT_TRUE(
            dec_same(vc.data() + (int64_t(b) * Tmax + t) * KD, row + (H + K) * D, size_t(KD)));
      }
    EXPECT_EQ(kc[size_t((int64_t(0) * Tmax + T) * KD)], -7.0f) << "wrote past the tokens";
  }
}

TEST(Decode, OpRejectsBadArgumentsNamingThem) {
  auto be = make_backend("cpu", 1);
  const int H = 4, K = 2, D = 8, B = 1, Tmax = 8;
  const int64_t Q = (H + 2 * K) * D;
  std::vector<float> qkv(Q), out(H * D), kc(Tmax * K * D), vc = kc, cs, sn;
  rope_tables(Tmax, D, 10000.0f, cs, sn);
  std::vector<int32_t> pos = {7};
  auto call = [&](Shape kshape, int kv_len) {
    return ckpt_test::error_of([&] {
      be->attention_decode(dec_t(out, {B, 1, H * D}), dec_t(qkv, {B, 1, Q}), dec_t(kc, kshape),
                           dec_t(vc, kshape), dec_t(cs, {Tmax, D / 2}), dec_t(sn, {Tmax, D / 2}),
                           dec_t(pos, {B}), kv_len, H, K);
    });
  };
  EXPECT_EQ(call({B, Tmax, K * D}, 8), "<no tl::Error thrown>");
  std::string msg = call({B, Tmax / 2, 2 * K * D}, 8);
  EXPECT_TRUE(ckpt_test::has(msg, "attention_decode") && ckpt_test::has(msg, "k_cache")) << msg;
  msg = call({B, Tmax, K * D}, 9);
  EXPECT_TRUE(ckpt_test::has(msg, "kv_len")) << msg;
  pos[0] = 8;
  msg = call({B, Tmax, K * D}, 8);
  EXPECT_TRUE(ckpt_test::has(msg, "pos[0]")) << msg;
}

// The cached forward (prefill of a whole batch, then single tokens) gives the logits of
// the training forward at every position: the same arithmetic, so the same bits.
TEST(Decode, CachedLogitsEqualTheFullForward) {
  DecModel m;
  const int B = 2, T = 9, V = m.cfg.vocab_size;
  std::vector<int32_t> tokens(size_t(B * T));
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 7 + 3) % size_t(V));
  std::vector<float> ref(size_t(B * T * V)), last(size_t(B * V));
  std::vector<int32_t> prefix;
  for (int t = 0; t < T; ++t) {
    prefix.clear();
    for (int b = 0; b < B; ++b)
      prefix.insert(prefix.end(), tokens.begin() + b * T, tokens.begin() + b * T + t + 1);
    m.model->forward_last_logits(prefix.data(), B, t + 1, last.data());
    for (int b = 0; b < B; ++b)
      std::copy_n(last.begin() + b * V, V, ref.begin() + (int64_t(b) * T + t) * V);
  }
  LlamaInference inf(*m.model, B, T);
  std::vector<int32_t> pos(B, 0);
  std::vector<float> all(ref.size());
  inf.forward(tokens.data(), T, pos.data(), nullptr, all.data());  // one prefill, every logit
  EXPECT_TRUE(dec_same(all.data(), ref.data(), ref.size()));

  // Prefill 4, then one token at a time, picking each row's only token.
  const int P = 4;
  std::vector<int32_t> head(size_t(B * P)), pick(B, P - 1), one(B);
  for (int b = 0; b < B; ++b) std::copy_n(tokens.begin() + b * T, P, head.begin() + b * P);
  inf.forward(head.data(), P, pos.data(), pick.data(), last.data());
  for (int b = 0; b < B; ++b)
    EXPECT_TRUE(
        dec_same(last.data() + b * V, ref.data() + (int64_t(b) * T + P - 1) * V, size_t(V)));
  std::fill(pick.begin(), pick.end(), 0);
  for (int t = P; t < T; ++t) {
    for (int b = 0; b < B; ++b) {
      one[size_t(b)] = tokens[size_t(b * T + t)];
      pos[size_t(b)] = t;
    }
    inf.forward(one.data(), 1, pos.data(), pick.data(), last.data());
    for (int b = 0; b < B; ++b)
      EXPECT_TRUE(dec_same(last.data() + b * V, ref.data() + (int64_t(b) * T + t) * V, size_t(V)))
          << "t=" << t << " b=" << b;
  }
  std::fill(pos.begin(), pos.end(), T);  // one past the cache
  const std::string msg = ckpt_test::error_of(
      [&] { inf.forward(one.data(), 1, pos.data(), pick.data(), last.data()); });
  EXPECT_TRUE(ckpt_test::has(msg, "outside the cache")) << msg;
}

// forward_argmax gives the first maximum of the logits forward() gives, for every token (no
// pick), for picked tokens, and for one-token decode steps; a tie goes to the lower id.
TEST(Decode, ArgmaxIdsAreTheFirstMaximumOfTheLogits) {
  DecModel m;
  const int B = 3, T = 6, V = m.cfg.vocab_size;
  std::vector<int32_t> tokens(size_t(B * T));
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 5 + 1) % size_t(V));
  auto first_max = [&](const float* z) { return int32_t(std::max_element(z, z + V) - z); };
  for (int mode = 0; mode < 3; ++mode) {  // 0: every token, 1: picked, 2: decode steps
    LlamaInference a(*m.model, B, T), b(*m.model, B, T);
    std::vector<int32_t> pos(B, 0), pick{5, 0, 3}, ids(size_t(B * T), -1);
    std::vector<float> logits(size_t(B * T) * size_t(V));
    if (mode < 2) {
      const int32_t* pk = mode == 1 ? pick.data() : nullptr;
      a.forward(tokens.data(), T, pos.data(), pk, logits.data());
      b.forward_argmax(tokens.data(), T, pos.data(), pk, ids.data());
      const int n = mode == 1 ? B : B * T;
      for (int r = 0; r < n; ++r)
        EXPECT_EQ(ids[size_t(r)], first_max(logits.data() + size_t(r) * size_t(V)))
            << "mode " << mode << " row " << r;
      for (int r = n; r < B * T; ++r) EXPECT_EQ(ids[size_t(r)], -1) << "written past the rows";
      continue;
    }
    std::vector<int32_t> one(B), zero(B, 0);
    for (int t = 0; t < T; ++t) {
      for (int i = 0; i < B; ++i) {
        one[size_t(i)] = tokens[size_t(i * T + t)];
        pos[size_t(i)] = t;
      }
      a.forward(one.data(), 1, pos.data(), zero.data(), logits.data());
      b.forward_argmax(one.data(), 1, pos.data(), zero.data(), ids.data());
      for (int i = 0; i < B; ++i)
        EXPECT_EQ(ids[size_t(i)], first_max(logits.data() + size_t(i) * size_t(V)))
            << "t=" << t << " row " << i;
    }
  }
  // The op itself: ties and one column, on the backend directly.
  std::vector<float> x{1, 3, 3, 2, 5, 5, 7, 7, 7, -1, 7, 7};
  std::vector<int32_t> got(4, -1);
  m.be->argmax_rows(dec_t(got, {4}), dec_t(x, {4, 3}), Tensor(), nullptr);
  EXPECT_EQ(got, (std::vector<int32_t>{1, 1, 0, 1}));
  std::vector<int32_t> bad(3);
  const std::string msg = ckpt_test::error_of([&] {
    m.be->argmax_rows(dec_t(bad, {3}), dec_t(x, {4, 3}), Tensor(), nullptr);
  });
  EXPECT_TRUE(ckpt_test::has(msg, "argmax_rows")) << msg;
}

// Greedy steps run ahead of the host (the default) change no row: rows that meet the stop id
// while the others go on, rows that reach the context, rows of other lengths give what they
// give with run-ahead off, and what they give alone.
TEST(Decode, GreedyRunAheadChangesNoRow) {
  DecModel m(40);
  SamplingOptions greedy;
  greedy.temperature = 0;
  std::vector<std::vector<int>> prompts;
  for (int r = 0; r < 5; ++r) prompts.push_back(dec_prompt(3 + 7 * r, 48, 20 + uint64_t(r)));
  std::vector<int> ids = prompts[1];
  generate(*m.model, ids, 6, greedy, 0, -1, nullptr);
  BatchOptions bo;
  bo.max_new = 25;
  bo.sampling = greedy;
  bo.stop_id = ids[prompts[1].size() + 4];  // row 1's fifth new token
  std::vector<std::vector<int>> out[2];
  for (int on : {0, 1}) {
    bo.run_ahead = on;
    out[on] = generate_batch(*m.model, prompts, bo, nullptr);
  }
  int stopped = 0, at_context = 0;
  for (size_t r = 0; r < prompts.size(); ++r) {
    EXPECT_EQ(out[1][r], out[0][r]) << "row " << r;
    EXPECT_EQ(out[1][r], generate_batch(*m.model, {prompts[r]}, bo, nullptr)[0]) << "row " << r;
    // At the context a row has fed ctx positions and samples one more token.
    const int total = int(prompts[r].size() + out[1][r].size());
    stopped += int(out[1][r].size()) < bo.max_new && total <= m.cfg.max_seq_len;
    at_context += total == m.cfg.max_seq_len + 1;
  }
  EXPECT_GT(stopped, 0) << "no row met the stop id: the test does not cover stopping";
  EXPECT_GT(at_context, 0) << "no row reached the context: the test does not cover its end";
}

// Steps submitted ahead (the server's pipelined greedy decoding) give forward_argmax's ids.
TEST(Decode, SubmittedStepsEqualForwardArgmax) {
  DecModel m(320);
  decode_test::expect_submitted_steps_equal_forward_argmax(*m.model);
}

// Greedy generation with the cache equals the uncached reference token for token, for
// prompts of different lengths run as one batch, with and without a chunked prefill.
TEST(Decode, BatchedCachedGreedyEqualsUncached) {
  DecModel m;
  const std::vector<std::vector<int>> prompts = {dec_prompt(5, 48, 1), dec_prompt(1, 48, 2),
                                                 dec_prompt(12, 48, 3)};
  SamplingOptions greedy;
  greedy.temperature = 0;
  const int max_new = 20;
  std::vector<std::vector<int>> ref;
  for (const auto& p : prompts) {
    std::vector<int> ids = p;
    generate(*m.model, ids, max_new, greedy, 0, -1, nullptr);
    ref.emplace_back(ids.begin() + ptrdiff_t(p.size()), ids.end());
    ASSERT_EQ(ref.back().size(), size_t(max_new));
  }
  std::set<int> distinct(ref[2].begin(), ref[2].end());
  EXPECT_GT(distinct.size(), 2u) << "a degenerate model would make this test weak";
  for (int prefill : {4096, 7, 3}) {
    SCOPED_TRACE(cat("prefill_tokens=", prefill));
    BatchOptions bo;
    bo.max_new = max_new;
    bo.sampling = greedy;
    bo.prefill_tokens = prefill;
    std::vector<std::pair<int, int>> streamed;
    GenerateStats st;
    auto out = generate_batch(
        *m.model, prompts, bo,
        [&](int row, int id) {
          streamed.push_back({row, id});
        },
        &st);
    EXPECT_EQ(out, ref);
    EXPECT_EQ(streamed.size(), size_t(3 * max_new));
    EXPECT_EQ(st.new_tokens, 3 * max_new);
    EXPECT_EQ(st.prompt_tokens, 18);
    EXPECT_EQ(st.steps, max_new - 1);
    for (size_t r = 0; r < prompts.size(); ++r) {  // one prompt alone: the same tokens
      auto alone = generate_batch(*m.model, {prompts[r]}, bo, nullptr);
      EXPECT_EQ(alone[0], ref[r]) << "row " << r;
    }
  }
}

// A row ends at the stop id or at the model's context; the others carry on.
TEST(Decode, RowsStopAtTheStopIdOrTheContext) {
  DecModel m(16);
  SamplingOptions greedy;
  greedy.temperature = 0;
  const std::vector<int> p = dec_prompt(6, 48, 4);
  std::vector<int> ids = p;
  generate(*m.model, ids, 5, greedy, 0, -1, nullptr);
  const int stop = ids[p.size() + 2];  // the third new token
  BatchOptions bo;
  bo.max_new = 30;
  bo.sampling = greedy;
  bo.stop_id = stop;
  auto out = generate_batch(*m.model, {p, dec_prompt(14, 48, 5)}, bo, nullptr);
  const auto first_stop = std::find(ids.begin() + ptrdiff_t(p.size()), ids.end(), stop);
  EXPECT_EQ(out[0], std::vector<int>(ids.begin() + ptrdiff_t(p.size()), first_stop));
  // Row 1: 14 prompt tokens, context 16: it may feed 2 more and then samples a last one.
  EXPECT_LE(out[1].size(), 3u);
  if (std::find(out[1].begin(), out[1].end(), stop) == out[1].end()) {
    EXPECT_EQ(out[1].size(), 3u);
  }
  std::string msg =
      ckpt_test::error_of([&] { generate_batch(*m.model, {dec_prompt(17, 48, 6)}, bo, nullptr); });
  EXPECT_TRUE(ckpt_test::has(msg, "context")) << msg;
  msg = ckpt_test::error_of([&] { generate_batch(*m.model, {p, {}}, bo, nullptr); });
  EXPECT_TRUE(ckpt_test::has(msg, "prompt 1 is empty")) << msg;
}

// Sampling: the same seed gives the same tokens; row b of a batch uses seed + b, so it
// matches that prompt run alone with seed + b; other seeds give other tokens.
TEST(Decode, SamplingFollowsTheSeed) {
  DecModel m;
  BatchOptions bo;
  bo.max_new = 24;
  bo.sampling.temperature = 1.5f;
  bo.sampling.top_k = 20;
  bo.sampling.top_p = 0.95f;
  bo.seed = 11;
  const std::vector<int> p = dec_prompt(4, 48, 8);
  auto a = generate_batch(*m.model, {p, p}, bo, nullptr);
  auto b = generate_batch(*m.model, {p, p}, bo, nullptr);
  EXPECT_EQ(a, b);
  EXPECT_NE(a[0], a[1]) << "rows of one batch draw from different streams";
  BatchOptions alone = bo;
  alone.seed = 12;
  EXPECT_EQ(generate_batch(*m.model, {p}, alone, nullptr)[0], a[1]);
  std::vector<int> ids = p;  // the uncached reference draws the same stream
  generate(*m.model, ids, bo.max_new, bo.sampling, 11, -1, nullptr);
  EXPECT_EQ(std::vector<int>(ids.begin() + 4, ids.end()), a[0]);
}

// The partially sorted sampler draws from exactly the nucleus a full sort defines, with
// renormalized probabilities, alone and combined with top_k, over a realistic vocabulary.
TEST(Decode, NucleusSamplingMatchesAFullSort) {
  const int V = 3000;
  std::vector<float> z = dec_randn(V, 21);
  for (float& x : z) x *= 2.5f;
  for (int k : {0, 40}) {
    SCOPED_TRACE(cat("top_k=", k));
    SamplingOptions o;
    o.temperature = 0.9f;
    o.top_p = 0.8f;
    o.top_k = k;
    std::vector<int> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return z[size_t(a)] > z[size_t(b)]; });
    const size_t keep = k ? size_t(k) : size_t(V);
    std::vector<double> p(keep);
    double sum = 0;
    for (size_t i = 0; i < keep; ++i)
      sum += p[i] = std::exp((z[size_t(order[i])] - z[size_t(order[0])]) / 0.9);
    size_t n = 0;
    for (double cum = 0; n < keep && cum < 0.8;) cum += p[n++] / sum;
    double nsum = 0;
    for (size_t i = 0; i < n; ++i) nsum += p[i];
    std::vector<int> counts(V, 0);
    Rng rng(5);
    const int draws = 40000;
    for (int i = 0; i < draws; ++i) counts[size_t(sample_token(z.data(), V, o, rng))]++;
    int outside = draws;
    for (size_t i = 0; i < n; ++i) outside -= counts[size_t(order[i])];
    EXPECT_EQ(outside, 0) << "nucleus of " << n << " tokens";
    for (size_t i = 0; i < std::min<size_t>(n, 3); ++i)
      EXPECT_NEAR(counts[size_t(order[i])] / double(draws), p[i] / nsum, 0.01) << "rank " << i;
  }
}
