// attention_decode and cached generation on the GPU against the CPU twin. Skips without a
// GPU. Inputs are rounded to bf16 before both backends see them; outputs are compared as
// max|gpu - cpu| / max|cpu| (1e-2 for bf16 outputs: a few bf16 ulps plus f32 order effects,
// while a wrong key, position or head shows up as O(1)). Poisoned (NaN) outputs must be
// overwritten.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>

#include "backend/backend.h"
#include "ckpt_test_util.h"
#include "core/rng.h"
#include "model/llama.h"
#include "model/llama_infer.h"
#include "generate/generate.h"

using namespace tl;

namespace {

struct CdArr {
  Buffer buf;
  Tensor t;
};

CdArr cd_alloc(Backend& be, DType dt, Shape s) {
  CdArr a;
  a.buf = Buffer(be, std::max<size_t>(1, size_t(s.numel()) * dtype_size(dt)));
  a.t = a.buf.tensor(dt, s);
  return a;
}

void cd_put(Backend& be, const Tensor& t, const std::vector<float>& v) {
  if (t.dtype == DType::F32) return be.upload(t, v.data());
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
  be.upload(t, h.data());
}

std::vector<float> cd_get(Backend& be, const Tensor& t) {
  std::vector<float> v(size_t(t.numel()));
  if (t.dtype == DType::F32) {
    be.download(v.data(), t);
    return v;
  }
  std::vector<uint16_t> h(v.size());
  be.download(h.data(), t);
  for (size_t i = 0; i < v.size(); ++i) v[i] = bf16_to_f32(h[i]);
  return v;
}

std::vector<float> cd_randn(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = bf16_to_f32(f32_to_bf16(float(rng.normal())));
  return v;
}

::testing::AssertionResult cd_close(const std::string& what, const std::vector<float>& got,
                                    const std::vector<float>& ref, double tol) {
  double max_ref = 0, max_err = 0;
  size_t worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i]))
      return ::testing::AssertionFailure() << what << "[" << i << "] = " << got[i];
    max_ref = std::max(max_ref, double(std::fabs(ref[i])));
    const double e = std::fabs(double(got[i]) - double(ref[i]));
    if (e > max_err) max_err = e, worst = i;
  }
  const double rel = max_err / std::max(max_ref, 1e-30);
  if (rel > tol)
    return ::testing::AssertionFailure()
           << what << ": rel err " << rel << " > " << tol << " (worst " << worst << ": gpu "
           << got[worst] << ", cpu " << ref[worst] << ")";
  return ::testing::AssertionSuccess();
}

#define CD_NEED_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU visible (or built without CUDA)"

struct CdCase {
  int B, Tn, H, K, D, Tmax;
  std::vector<int32_t> pos;
};

}  // namespace

// Decode (Tn = 1) and prefill (Tn > 1) steps at per-row positions, head dims with and
// without the 8-wide path, GQA groups of 1..32 (more than 8 heads per KV head: several head
// blocks), and contexts long enough to split the keys over blocks (flash-decoding).
TEST(CudaDecode, OpMatchesCpu) {
  CD_NEED_GPU();
  auto gpu = make_backend("cuda");
  auto cpu = make_backend("cpu", 0);
  const std::vector<CdCase> cases = {
      {1, 1, 32, 4, 64, 2048, {1500}},         // TinyLlama decode, 12 splits
      {3, 1, 32, 4, 64, 700, {0, 129, 640}},   // rows at different lengths
      {2, 5, 8, 8, 128, 300, {0, 200}},        // prefill-like step, MHA, head dim 128
      {2, 3, 6, 2, 6, 40, {4, 30}},            // head dim 6: the 2-wide path
      {1, 1, 32, 1, 16, 520, {515}},           // 32 heads on one KV head: 4 head blocks
      {4, 17, 4, 2, 64, 64, {0, 10, 20, 47}},  // many query rows: one split each
  };
  for (const CdCase& c : cases) {
    SCOPED_TRACE(
        cat("B=", c.B, " Tn=", c.Tn, " H=", c.H, " K=", c.K, " D=", c.D, " Tmax=", c.Tmax));
    const int64_t Q = int64_t(c.H + 2 * c.K) * c.D, KD = int64_t(c.K) * c.D;
    std::vector<float> cs, sn;
    rope_tables(c.Tmax, c.D, 10000.0f, cs, sn);
    const std::vector<float> qkv = cd_randn(c.B * c.Tn * Q, 1);
    const std::vector<float> kc = cd_randn(c.B * c.Tmax * KD, 2),
                             vc = cd_randn(c.B * c.Tmax * KD, 3);
    int kv_len = 0;
    for (int32_t p : c.pos) kv_len = std::max(kv_len, p + c.Tn);
    std::vector<std::vector<float>> res[2];
    Backend* bes[2] = {gpu.get(), cpu.get()};
    for (int i = 0; i < 2; ++i) {
      Backend& be = *bes[i];
      const DType act = be.compute_dtype();
      CdArr q = cd_alloc(be, act, {c.B, c.Tn, Q}),
            o = cd_alloc(be, act, {c.B, c.Tn, int64_t(c.H) * c.D});
      CdArr k = cd_alloc(be, act, {c.B, c.Tmax, KD}), v = cd_alloc(be, act, {c.B, c.Tmax, KD});
      CdArr co = cd_alloc(be, DType::F32, {c.Tmax, c.D / 2}),
            si = cd_alloc(be, DType::F32, {c.Tmax, c.D / 2});
      CdArr p = cd_alloc(be, DType::I32, {c.B});
      cd_put(be, q.t, qkv);
      cd_put(be, k.t, kc);
      cd_put(be, v.t, vc);
      cd_put(be, co.t, cs);
      cd_put(be, si.t, sn);
      be.upload(p.t, c.pos.data());
      cd_put(be, o.t,
             std::vector<float>(size_t(o.t.numel()), std::numeric_limits<float>::quiet_NaN()));
      be.attention_decode(o.t, q.t, k.t, v.t, co.t, si.t, p.t, kv_len, c.H, c.K);
      res[i] = {cd_get(be, o.t), cd_get(be, q.t), cd_get(be, k.t), cd_get(be, v.t)};
    }
    EXPECT_TRUE(cd_close("out", res[0][0], res[1][0], 1e-2));
    EXPECT_TRUE(cd_close("qkv (rotated)", res[0][1], res[1][1], 1e-2));
    EXPECT_TRUE(cd_close("k_cache", res[0][2], res[1][2], 1e-2));
    EXPECT_TRUE(cd_close("v_cache", res[0][3], res[1][3], 0));  // copies are exact
  }
}

TEST(CudaDecode, OpIsDeterministicAndChecksArguments) {
  CD_NEED_GPU();
  auto gpu = make_backend("cuda");
  const int B = 2, H = 32, K = 4, D = 64, Tmax = 1024;
  const int64_t Q = (H + 2 * K) * D, KD = K * D;
  std::vector<float> cs, sn;
  rope_tables(Tmax, D, 10000.0f, cs, sn);
  CdArr k = cd_alloc(*gpu, DType::BF16, {B, Tmax, KD}),
        v = cd_alloc(*gpu, DType::BF16, {B, Tmax, KD});
  CdArr co = cd_alloc(*gpu, DType::F32, {Tmax, D / 2}),
        si = cd_alloc(*gpu, DType::F32, {Tmax, D / 2});
  CdArr p = cd_alloc(*gpu, DType::I32, {B}), q = cd_alloc(*gpu, DType::BF16, {B, 1, Q});
  CdArr o = cd_alloc(*gpu, DType::BF16, {B, 1, H * D});
  cd_put(*gpu, co.t, cs);
  cd_put(*gpu, si.t, sn);
  const std::vector<int32_t> pos = {1000, 77};
  gpu->upload(p.t, pos.data());
  std::vector<float> first;
  for (int run = 0; run < 3; ++run) {
    cd_put(*gpu, k.t, cd_randn(B * Tmax * KD, 4));
    cd_put(*gpu, v.t, cd_randn(B * Tmax * KD, 5));
    cd_put(*gpu, q.t, cd_randn(B * Q, 6));
    gpu->attention_decode(o.t, q.t, k.t, v.t, co.t, si.t, p.t, 1001, H, K);
    std::vector<float> out = cd_get(*gpu, o.t);
    if (run == 0) first = out;
    EXPECT_EQ(std::memcmp(out.data(), first.data(), out.size() * 4), 0) << "run " << run;
  }
  std::string msg = ckpt_test::error_of(
      [&] { gpu->attention_decode(o.t, q.t, k.t, v.t, co.t, si.t, p.t, Tmax + 1, H, K); });
  EXPECT_TRUE(ckpt_test::has(msg, "attention_decode") && ckpt_test::has(msg, "kv_len")) << msg;
  msg = ckpt_test::error_of(
      [&] { gpu->attention_decode(o.t, q.t, v.t, k.t, co.t, si.t, q.t, 8, H, K); });
  EXPECT_TRUE(ckpt_test::has(msg, "pos")) << msg;
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
  EXPECT_TRUE(cd_close("logits", logits[0], logits[1], 3e-2));
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
