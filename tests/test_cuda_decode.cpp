// Cached generation on the GPU beyond the backend-ops table (test_backend_ops.cpp runs
// attention_decode against the CPU at many shapes): determinism and argument checks of the
// op, the cached model's logits against the CPU, and a quick decode speed. Skips without a
// GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "backend/backend.h"
#include "backend_test_util.h"
#include "ckpt_test_util.h"
#include "decode_test_util.h"
#include "generate/generate.h"
#include "model/llama.h"
#include "model/llama_infer.h"

using namespace tl;
using namespace backend_test;

namespace {

std::vector<float> randn_bf16(int64_t n, uint64_t seed) { return round_bf16(randn(n, seed)); }

#define CD_NEED_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU visible (or built without CUDA)"

// One decode step's operands at the TinyLlama head shape (H 32, K 4, D 64) over a cache of
// Tmax 1024, for B rows at positions pos, in bf16 (f32 on the CPU backend, which takes only
// f32: the same bf16-rounded values). run() uploads the caches and q afresh (the op appends
// into the caches), runs attention_decode and returns its output.
struct DecodeStep {
  static constexpr int H = 32, K = 4, D = 64, Tmax = 1024;
  static constexpr int64_t Q = (H + 2 * K) * D, KD = K * D;
  Backend& gpu;
  int B;
  Arr k, v, co, si, p, q, o;
  DecodeStep(Backend& g, const std::vector<int32_t>& pos, DType act = DType::BF16)
      : gpu(g),
        B(int(pos.size())),
        k(alloc(g, act, {B, Tmax, KD})),
        v(alloc(g, act, {B, Tmax, KD})),
        co(alloc(g, DType::F32, {Tmax, D / 2})),
        si(alloc(g, DType::F32, {Tmax, D / 2})),
        p(alloc(g, DType::I32, {B})),
        q(alloc(g, act, {B, 1, Q})),
        o(alloc(g, act, {B, 1, H * D})) {
    std::vector<float> cs, sn;
    rope_tables(Tmax, D, 10000.0f, cs, sn);
    upload(g, co.t, cs);
    upload(g, si.t, sn);
    g.upload(p.t, pos.data());
  }
  std::vector<float> run(int kv_len) {
    upload(gpu, k.t, randn_bf16(B * Tmax * KD, 4));
    upload(gpu, v.t, randn_bf16(B * Tmax * KD, 5));
    upload(gpu, q.t, randn_bf16(B * Q, 6));
    gpu.attention_decode(o.t, q.t, k.t, v.t, co.t, si.t, p.t, kv_len, H, K);
    return download(gpu, o.t);
  }
};

}  // namespace

TEST(CudaDecode, OpIsDeterministicAndChecksArguments) {
  CD_NEED_GPU();
  auto gpu = make_backend("cuda");
  DecodeStep d(*gpu, {1000, 77});
  const std::vector<float> first = d.run(1001);
  for (int run = 1; run < 3; ++run) {
    const std::vector<float> out = d.run(1001);
    EXPECT_EQ(std::memcmp(out.data(), first.data(), out.size() * 4), 0) << "run " << run;
  }
  const int H = DecodeStep::H, K = DecodeStep::K;
  std::string msg = ckpt_test::error_of([&] {
    gpu->attention_decode(d.o.t, d.q.t, d.k.t, d.v.t, d.co.t, d.si.t, d.p.t, DecodeStep::Tmax + 1,
                          H, K);
  });
  EXPECT_TRUE(ckpt_test::has(msg, "attention_decode") && ckpt_test::has(msg, "kv_len")) << msg;
  msg = ckpt_test::error_of(
      [&] { gpu->attention_decode(d.o.t, d.q.t, d.v.t, d.k.t, d.co.t, d.si.t, d.q.t, 8, H, K); });
  EXPECT_TRUE(ckpt_test::has(msg, "pos")) << msg;
}

// The kernel takes 8, 2 or 1 query heads a block (by how many rows there are to fill the GPU
// with; TL_DECODE_ATTN_HEADS fixes it): each choice, with the splits it brings, gives the
// same attention up to f32 summation order, and each is deterministic.
TEST(CudaDecode, HeadsPerBlockChoicesAgree) {
  CD_NEED_GPU();
  auto gpu = make_backend("cuda");
  DecodeStep d(*gpu, {700, 3, 383});
  for (const char* wide : {"0", "1"}) {  // 128 or 512 keys a pass
    const ScopedEnv w("TL_DECODE_ATTN_WIDE", wide);
    const auto run = [&](const char* heads) {
      const ScopedEnv env("TL_DECODE_ATTN_HEADS", heads);
      return d.run(701);
    };
    const std::vector<float> eight = run("8");
    for (const char* heads : {"2", "1", "1+"}) {  // 1+: one head, block-wide softmax
      SCOPED_TRACE(cat("wide ", wide, ", heads per block ", heads));
      const ScopedEnv sm("TL_DECODE_ATTN_BLOCK_SOFTMAX", heads[1] == '+' ? "1" : "0");
      const std::string h(heads, 1);
      const std::vector<float> out = run(h.c_str());
      EXPECT_TRUE(close("against 8 heads a block", out, eight, 1e-2));
      EXPECT_EQ(std::memcmp(out.data(), run(h.c_str()).data(), out.size() * 4), 0);
    }
  }
}

// Wide blocks (512 keys a pass, the default for few rows, forced by TL_DECODE_ATTN_WIDE=1:
// a batch-1 row at a short context is one block a head and no split merge) against the CPU's
// attention_decode: batch 1 at a context of one pass (no merge) and of two (merged), and several
// rows whose contexts end inside, at and just past a pass, at each choice of heads a block, each
// row against its own output's size. The CPU sums in another order, so the bar is the one the
// other choices meet against each other. (The caches are uploaded before each launch: reads
// across steps, which the early cache loads rely on, are CachedLogitsMatchCpu's.)
TEST(CudaDecode, WideBlocksMatchCpu) {
  CD_NEED_GPU();
  auto gpu = make_backend("cuda");
  auto cpu = make_backend("cpu");
  const ScopedEnv wide("TL_DECODE_ATTN_WIDE", "1");
  const std::vector<std::vector<int32_t>> cases = {{383}, {1000}, {0, 3, 511, 512, 700, 1000}};
  for (const auto& pos : cases) {
    const int kv_len = pos.back() + 1;
    DecodeStep ref(*cpu, pos, DType::F32);
    const std::vector<float> want = ref.run(kv_len);
    double rms = 0;
    for (float v : want) rms += double(v) * v;
    ASSERT_GT(rms, 0.0);
    DecodeStep d(*gpu, pos);
    for (const char* heads : {"1+", "1", "2", "8"}) {  // 1+: one head, block-wide softmax
      SCOPED_TRACE(cat(pos.size(), " rows, the last at ", pos.back(), ", heads per block ", heads));
      const ScopedEnv h("TL_DECODE_ATTN_HEADS", std::string(heads, 1));
      const ScopedEnv sm("TL_DECODE_ATTN_BLOCK_SOFTMAX", heads[1] == '+' ? "1" : "0");
      const std::vector<float> out = d.run(kv_len);
      const size_t row = size_t(DecodeStep::H) * DecodeStep::D;  // each row against its own size
      for (size_t b = 0; b < pos.size(); ++b)
        EXPECT_TRUE(close(cat("wide blocks against the CPU, row at ", pos[b]),
                          std::vector<float>(out.begin() + b * row, out.begin() + (b + 1) * row),
                          std::vector<float>(want.begin() + b * row, want.begin() + (b + 1) * row),
                          1e-2));
      EXPECT_EQ(std::memcmp(out.data(), d.run(kv_len).data(), out.size() * 4), 0);
    }
  }
}

// A row's key splits merge through global memory and a counter (the default) or in one
// thread block cluster on sm_90 (distributed shared memory, TL_DECODE_ATTN_CLUSTER=1): the
// same sums in the same order, so the outputs agree bit for bit. Rows whose
// keys fill several splits of two chunks each, one whose keys fill only the first split (the
// cluster's other blocks have none), one whose new token is the only key of its split (256:
// the first key of the second split of 256 and of the third of 128), at 1, 2 and 8 heads a
// block and two sizes of split; the splits are capped (at 8 at most, where clusters are used)
// so that both paths split alike.
TEST(CudaDecode, ClusterMergeIsBitIdentical) {
  CD_NEED_GPU();
  auto gpu = make_backend("cuda");
  DecodeStep d(*gpu, {1000, 77, 383, 256});
  for (const char* heads : {"1", "2", "8"})
    for (const char* splits : {"4", "8"}) {
      SCOPED_TRACE(cat("heads per block ", heads, ", splits at most ", splits));
      // 128 keys a pass (the cluster merge's only width)
      const ScopedEnv h("TL_DECODE_ATTN_HEADS", heads), sp("TL_DECODE_ATTN_SPLITS", splits),
          w("TL_DECODE_ATTN_WIDE", "0");
      std::vector<float> out[2];
      for (int cluster : {0, 1}) {
        const ScopedEnv c("TL_DECODE_ATTN_CLUSTER", cluster ? "1" : "0");
        out[cluster] = d.run(1001);
      }
      double rms = 0;
      for (float v : out[0]) rms += double(v) * v;
      ASSERT_GT(rms, 0.0);
      size_t differ = 0;
      for (size_t k = 0; k < out[0].size(); ++k)
        differ += std::memcmp(&out[0][k], &out[1][k], 4) != 0;
      EXPECT_EQ(differ, 0u) << "of " << out[0].size();
    }
}

// The cached model on the GPU against the CPU: logits of a prefill and of decode steps,
// for a head dim the training attention kernels do not support (8).
TEST(CudaDecode, CachedLogitsMatchCpu) {
  CD_NEED_GPU();
  const ModelConfig cfg = ckpt_test::small_config();
  const std::vector<float> params = ckpt_test::random_params(cfg, 3);
  const int B = 3, T = 10, V = cfg.vocab_size;
  std::vector<int32_t> tokens(size_t(B * T));
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 11 + 5) % size_t(V));
  std::vector<float> logits[2];
  int i = 0;
  for (const char* dev : {"cuda", "cpu"}) {
    auto be = make_backend(dev, 0);
    LlamaModel model(cfg, *be);
    model.set_params(params);
    LlamaInference inf(model, B, T);
    std::vector<int32_t> pos(B, 0), pick(B, 0), one(B);
    std::vector<float> all(size_t(B * 6 * V)), step(size_t(B * V));
    std::vector<int32_t> head;
    for (int b = 0; b < B; ++b)
      head.insert(head.end(), tokens.begin() + b * T, tokens.begin() + b * T + 6);
    inf.forward(head.data(), 6, pos.data(), nullptr, all.data());
    logits[i] = all;
    for (int t = 6; t < T; ++t) {
      for (int b = 0; b < B; ++b) {
        one[size_t(b)] = tokens[size_t(b * T + t)];
        pos[size_t(b)] = t;
      }
      inf.forward(one.data(), 1, pos.data(), pick.data(), step.data());
      logits[i].insert(logits[i].end(), step.begin(), step.end());
    }
    ++i;
  }
  EXPECT_TRUE(close("logits", logits[0], logits[1], 3e-2));
}

// Decode steps replayed from recorded CUDA graphs give exactly the op-by-op results: greedy
// ids and logits over 560 steps (three key buckets), different row ranges, and memory moved
// in between (the arena grows, a buffer is freed), which must drop the recordings.
TEST(CudaDecode, GraphReplayIsBitIdenticalToOpByOp) {
  CD_NEED_GPU();
  ModelConfig cfg = ckpt_test::small_config();
  cfg.dim = 64;
  cfg.max_seq_len = 600;
  const std::vector<float> params = ckpt_test::random_params(cfg, 5);
  const int B = 4, P = 5, steps = 560, V = cfg.vocab_size;
  struct Trace {
    std::vector<float> logits;
    std::vector<int32_t> ids;
    int64_t replays = 0;
    LlamaInference::GraphStats stats;
  };
  const auto run = [&](bool graphs) {
    auto be = make_backend("cuda");
    LlamaModel model(cfg, *be);
    model.set_params(params);
    LlamaInference inf(model, B, cfg.max_seq_len);
    inf.set_graphs(graphs);
    Trace tr;
    std::vector<int32_t> prompt(size_t(B * P)), pos(B, 0), pick(B, P - 1), tok(B), ids(B);
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 7 + 3) % size_t(V));
    std::vector<float> logits(size_t(B * V));
    inf.forward(prompt.data(), P, pos.data(), pick.data(), logits.data());
    tr.logits = logits;
    for (int b = 0; b < B; ++b) {
      pos[size_t(b)] = P;
      tok[size_t(b)] = int32_t(b);
    }
    for (int t = 0; t < steps; ++t) {
      if (t == 40) {  // the arena grows: recordings that point into it must go
        std::vector<int32_t> more(32, 1), p1 = {pos[3]}, k1 = {31};
        inf.forward(more.data(), 32, p1.data(), k1.data(), logits.data(), 1, 3);
        pos[3] += 32;
      }
      if (t == 90) Buffer(*be, 1 << 20).release();  // a freed block moves the epoch
      if (t % 3 == 2) {                             // rows 1..2, logits
        inf.forward(tok.data() + 1, 1, pos.data() + 1, nullptr, logits.data(), 2, 1);
        tr.logits.insert(tr.logits.end(), logits.begin(), logits.begin() + 2 * V);
        for (int b = 1; b < 3; ++b) ++pos[size_t(b)];
      } else {  // every row, greedy ids fed back
        inf.forward_argmax(tok.data(), 1, pos.data(), nullptr, ids.data());
        tr.ids.insert(tr.ids.end(), ids.begin(), ids.end());
        tok = ids;
        for (int b = 0; b < B; ++b) ++pos[size_t(b)];
      }
    }
    tr.replays = inf.graph_replays();
    tr.stats = inf.graph_stats();
    return tr;
  };
  const Trace plain = run(false), graphs = run(true);
  EXPECT_EQ(plain.replays, 0);
  EXPECT_GT(graphs.replays, steps / 2) << "the decode steps should mostly replay graphs";
  EXPECT_EQ(graphs.stats.replays, graphs.replays);
  // Two shapes (every row with ids, rows 1..2 with logits) per key bucket, recorded again
  // after each invalidation: the two above (the arena grew at t = 40, a block was freed at
  // t = 90), and any scratch growth of the backend's.
  EXPECT_GE(graphs.stats.invalidations, 2);
  EXPECT_GE(graphs.stats.recordings, 6);
  EXPECT_EQ(plain.stats.recordings, 0);
  ASSERT_EQ(plain.ids, graphs.ids);
  ASSERT_EQ(plain.logits.size(), graphs.logits.size());
  EXPECT_EQ(std::memcmp(plain.logits.data(), graphs.logits.data(), plain.logits.size() * 4), 0);
}

namespace {

// Logits of decode steps of a small model (dim 64, ffn 96): a prompt of 3 tokens a row, then
// `steps` steps of one token a row with fixed tokens (no feedback), every `every`-th step's
// logits kept. `setup` sets the inference object's levers before the first step.
std::vector<float> small_decode_logits(const ModelConfig& cfg, const std::vector<float>& params,
                                       int B, int steps, int every,
                                       const std::function<void(LlamaInference&)>& setup) {
  const int P = 3, V = cfg.vocab_size;
  auto be = make_backend("cuda");
  LlamaModel model(cfg, *be);
  model.set_params(params);
  LlamaInference inf(model, B, cfg.max_seq_len);
  setup(inf);
  std::vector<int32_t> prompt(size_t(B * P)), pos(B, 0), pick(B, P - 1), tok(B);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 5 + 1) % size_t(V));
  std::vector<float> step(size_t(B * V)), kept;
  inf.forward(prompt.data(), P, pos.data(), pick.data(), step.data());
  const std::vector<int32_t> first(B, 0);
  for (int t = 0; t < steps; ++t) {
    for (int b = 0; b < B; ++b) {
      tok[size_t(b)] = int32_t((t * 3 + b * 7) % V);
      pos[size_t(b)] = P + t;
    }
    inf.forward(tok.data(), 1, pos.data(), first.data(), step.data());
    if (t % every == every - 1) kept.insert(kept.end(), step.begin(), step.end());
  }
  return kept;
}

ModelConfig small_decode_config(int max_seq_len) {
  ModelConfig cfg = ckpt_test::small_config();
  cfg.dim = 64;
  cfg.ffn_dim = 96;
  cfg.max_seq_len = max_seq_len;
  return cfg;
}

}  // namespace

// argmax_rows writes host_ids from its kernel, so it must refuse memory that is not pinned
// (the kernel would fault on it) with a message naming the argument, before any launch.
TEST(CudaDecode, ArgmaxRefusesHostIdsNotPinned) {
  CD_NEED_GPU();
  auto gpu = make_backend("cuda");
  Arr x = alloc(*gpu, DType::BF16, {2, 40}), ids = alloc(*gpu, DType::I32, {2});
  upload(*gpu, x.t, randn_bf16(80, 9));
  std::vector<int32_t> pageable(2, -1);
  const std::string msg =
      ckpt_test::error_of([&] { gpu->argmax_rows(ids.t, x.t, Tensor(), pageable.data()); });
  EXPECT_TRUE(ckpt_test::has(msg, "host_ids must be pinned")) << msg;
  EXPECT_EQ(pageable, (std::vector<int32_t>{-1, -1})) << "written despite the refusal";
}

// Steps submitted ahead on the GPU (pinned copies, events, graphs recorded and replayed while
// a step is in flight) give forward_argmax's ids, bit for bit.
TEST(CudaDecode, SubmittedStepsEqualForwardArgmax) {
  CD_NEED_GPU();
  ModelConfig cfg = ckpt_test::small_config();
  cfg.dim = 64;
  cfg.max_seq_len = 320;
  auto be = make_backend("cuda");
  LlamaModel model(cfg, *be);
  model.set_params(ckpt_test::random_params(cfg, 5));
  decode_test::expect_submitted_steps_equal_forward_argmax(model);
}

// Decode steps of one token a row run each layer as five ops (decode_linear with the norms,
// SwiGLU and residual adds fused, attention_decode in one launch, all launched as programmatic
// dependents). They must give the separate ops' logits: both round f(x) to bf16 the same
// way, so they differ by summation order and the residual add's one rounding fewer. Rows
// 1 and 2 (the fused kernel) and 5 (decode_linear's separate-op fallback), 160 steps (two splits of
// the keys, so the last split's merge runs), replayed as graphs and not, the fused runs with
// the weights' prefetches on.
TEST(CudaDecode, FusedLayersMatchTheSeparateOps) {
  CD_NEED_GPU();
  const ModelConfig cfg = small_decode_config(300);
  const std::vector<float> params = ckpt_test::random_params(cfg, 9);
  for (int B : {1, 2, 5})
    for (bool graphs : {false, true}) {
      SCOPED_TRACE(cat("rows ", B, graphs ? ", graphs" : ", op by op"));
      std::vector<float> logits[2];
      for (int fused : {0, 1})
        logits[fused] = small_decode_logits(cfg, params, B, 160, 8, [&](LlamaInference& inf) {
          inf.set_graphs(graphs);
          inf.set_fused_rows(fused ? 8 : 0);
          // The weights' prefetches (off by default) with the fused ops, budgets that end
          // inside gate_up (wo is 8 KiB here): hints only, the logits must not change.
          if (fused) inf.set_prefetch_bytes(16 << 10, 4 << 10);
        });
      EXPECT_TRUE(close("logits", logits[1], logits[0], 2e-2));
    }
}

// Tokens/s of cached greedy decoding at the TinyLlama-1.1B shape (random weights), batch 1
// and 32, prompt 128, 128 new tokens: a quick look (bench/generate_bench.sh is the benchmark).
TEST(CudaDecode, TinyLlamaSpeed) {
  CD_NEED_GPU();
  auto be = make_backend("cuda");
  LlamaModel model(ModelConfig::from_preset("tinyllama-1.1b"), *be);
  model.init_weights(1);
  for (int B : {1, 32}) {
    std::vector<std::vector<int>> prompts;
    for (int b = 0; b < B; ++b) {
      std::vector<int> p(128);
      for (int t = 0; t < 128; ++t) p[size_t(t)] = (b * 131 + t * 7) % 32000;
      prompts.push_back(p);
    }
    BatchOptions bo;
    bo.max_new = 128;
    bo.sampling.temperature = 0;
    GenerateStats st;
    generate_batch(model, prompts, bo, nullptr, &st);
    EXPECT_EQ(st.new_tokens, int64_t(B) * 128);
    std::printf(
        "[tinyllama-1.1b, batch %d] prefill %.1f ms, decode %.1f tokens/s, overall %.1f tokens/s\n",
        B, st.prefill_seconds * 1e3, st.decode_tokens_per_s(), st.tokens_per_s());
  }
}
