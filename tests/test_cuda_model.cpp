// The whole model on the CUDA backend (bf16 compute, f32 master weights) against the CPU
// reference twin (f32): loss and every parameter's gradient within bf16 tolerance, and a
// 200-step training run whose loss curve tracks the CPU run's.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/backend.h"
#include "core/rng.h"
#include "model/llama.h"
#include "optim/adamw.h"
#include "train/train_step.h"

using namespace tl;

namespace {

// Head dim 64 (the fused attention kernels' size), GQA 2:1, odd-ish sizes elsewhere.
ModelConfig cuda_test_config() {
  ModelConfig c;
  c.vocab_size = 259;
  c.dim = 128;
  c.n_layers = 2;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.ffn_dim = 344;
  c.max_seq_len = 128;
  c.validate();
  return c;
}

// A learnable stream: each row follows t' = (5 t + 3) mod V from a random start, with 10%
// of the tokens replaced by noise.
void pattern_batch(int B, int T, int V, Rng& rng, std::vector<int32_t>& tokens,
                   std::vector<int32_t>& targets) {
  tokens.assign(size_t(B) * T, 0);
  targets.assign(size_t(B) * T, 0);
  for (int b = 0; b < B; ++b) {
    int32_t t = int32_t(rng.below(uint64_t(V)));
    std::vector<int32_t> row(size_t(T) + 1);
    for (int i = 0; i <= T; ++i) {
      row[size_t(i)] = rng.below(10) == 0 ? int32_t(rng.below(uint64_t(V))) : t;
      t = (5 * t + 3) % V;
    }
    for (int i = 0; i < T; ++i) {
      tokens[size_t(b * T + i)] = row[size_t(i)];
      targets[size_t(b * T + i)] = row[size_t(i + 1)];
    }
  }
}

double rel_l2(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace

TEST(CudaModel, LossAndGradientsMatchTheCpuTwin) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU visible (or built without CUDA)";
  const ModelConfig c = cuda_test_config();
  auto cpu = make_backend("cpu", 2), gpu = make_backend("cuda");
  LlamaModel mc(c, *cpu), mg(c, *gpu);
  mc.init_weights(17);
  mg.set_params(mc.get_params());
  Rng rng(3);
  std::vector<int32_t> tokens, targets;
  pattern_batch(4, 96, c.vocab_size, rng, tokens, targets);
  const float scale = 1.0f / float(tokens.size());
  mc.zero_grads();
  mg.zero_grads();
  LossSum lc = mc.forward_backward(tokens.data(), targets.data(), 4, 96, scale);
  LossSum lg = mg.forward_backward(tokens.data(), targets.data(), 4, 96, scale);
  // bf16 activations (8 bits of mantissa) through 2 layers: ~1e-2 relative on the loss.
  EXPECT_NEAR(lg.mean(), lc.mean(), 1e-2 * lc.mean());
  std::vector<float> gc(size_t(mc.layout().total())), gg(gc.size());
  cpu->download(gc.data(), mc.grads());
  gpu->download(gg.data(), mg.grads());
  for (const ParamInfo& p : mc.layout().params()) {
    const double err = rel_l2(gg.data() + p.offset, gc.data() + p.offset, size_t(p.numel()));
    // Gradients pass through every bf16 activation of the backward: a few percent in L2.
    EXPECT_LE(err, 5e-2) << p.name;
  }
}

TEST(CudaModel, TrainingTracksTheCpuCurve) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU visible (or built without CUDA)";
  const ModelConfig c = cuda_test_config();
  auto run = [&](const std::string& device) {
    auto be = make_backend(device, 2);
    LlamaModel m(c, *be);
    m.init_weights(23);
    AdamW opt(*be, m.layout().total(), AdamWConfig{});
    Rng rng(5);
    std::vector<int32_t> tokens, targets;
    std::vector<double> losses;
    for (int step = 0; step < 200; ++step) {
      pattern_batch(4, 64, c.vocab_size, rng, tokens, targets);
      m.zero_grads();
      LossSum l = m.forward_backward(tokens.data(), targets.data(), 4, 64, 1.0f / 256);
      losses.push_back(l.mean());
      float lr = step < 20 ? 3e-3f * float(step + 1) / 20 : 3e-3f;
      EXPECT_TRUE(optimizer_step(opt, m, lr).applied) << device << " step " << step;
    }
    return losses;
  };
  std::vector<double> cpu = run("cpu"), gpu = run("cuda");
  ASSERT_EQ(cpu.size(), gpu.size());
  // Compare 20-step means: single steps are noisy, the curve is what must agree.
  for (size_t s = 0; s < cpu.size(); s += 20) {
    double a = 0, b = 0;
    for (size_t i = s; i < s + 20; ++i) a += cpu[i] / 20, b += gpu[i] / 20;
    EXPECT_NEAR(b, a, 0.05 + 0.05 * a) << "steps " << s << ".." << s + 19;
  }
  EXPECT_LT(cpu.back(), 0.4 * cpu.front());
  EXPECT_LT(gpu.back(), 0.4 * gpu.front());
  std::printf("[cuda model] loss step 0: cpu %.4f gpu %.4f; step 199: cpu %.4f gpu %.4f\n", cpu[0],
              gpu[0], cpu.back(), gpu.back());
}

// train.precision fp8 on the GPU (cuBLASLt FP8 products, the CUDA cast kernels) against its
// CPU twin (the same codes and scales from f32 inputs) and against the GPU's bf16 path. The
// widths are multiples of 16, as FP8 products need. The codes of the GPU and CPU runs differ
// where a bf16 activation rounds across an FP8 step, so the comparison is by direction
// (cosine) rather than element by element; one E5M2 step is 1/8 relative, averaged over sums
// of 128+ terms.
TEST(CudaModel, Fp8LinearsMatchTheCpuFp8TwinAndTheBf16Path) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU visible (or built without CUDA)";
  ModelConfig c = cuda_test_config();
  c.ffn_dim = 352;
  c.validate();
  const int B = 4, T = 96;
  check_fp8_shapes(c, B * T);
  auto cpu = make_backend("cpu", 2), gpu = make_backend("cuda");
  ModelOptions fp8;
  fp8.fp8 = true;
  LlamaModel mc8(c, *cpu, fp8), mg8(c, *gpu, fp8), mg(c, *gpu);
  mc8.init_weights(17);
  mg8.set_params(mc8.get_params());
  mg.set_params(mc8.get_params());
  Rng rng(3);
  std::vector<int32_t> tokens, targets;
  pattern_batch(B, T, c.vocab_size, rng, tokens, targets);
  const float scale = 1.0f / float(tokens.size());
  struct Pass {
    double loss;
    std::vector<float> grads;
  };
  auto pass = [&](LlamaModel& m, Backend& be) {
    m.zero_grads();
    const double loss = m.forward_backward(tokens.data(), targets.data(), B, T, scale).mean();
    Pass p{loss, std::vector<float>(size_t(m.layout().total()))};
    be.download(p.grads.data(), m.grads());
    return p;
  };
  const Pass c8 = pass(mc8, *cpu), g8 = pass(mg8, *gpu), g = pass(mg, *gpu);
  EXPECT_NEAR(g8.loss, c8.loss, 1e-2 * c8.loss);
  EXPECT_NEAR(g8.loss, g.loss, 1e-2 * g.loss);
  EXPECT_NE(g8.loss, g.loss) << "the FP8 products did not run";
  auto cosine = [](const float* a, const float* b, int64_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < n; ++i)
      ab += double(a[i]) * b[i], aa += double(a[i]) * a[i], bb += double(b[i]) * b[i];
    return ab / std::sqrt(aa * bb);
  };
  for (const ParamInfo& p : mc8.layout().params()) {
    const float *a = g8.grads.data() + p.offset, *cpu8 = c8.grads.data() + p.offset,
                *bf = g.grads.data() + p.offset;
    EXPECT_GT(cosine(a, cpu8, p.numel()), 0.98) << p.name << " against the CPU FP8 twin";
    EXPECT_GT(cosine(a, bf, p.numel()), 0.98) << p.name << " against the GPU bf16 path";
  }
  // The amaxes the GPU measured are the CPU twin's. The weights are the same (bf16 rounding
  // apart); an activation's max is one element, moved by the FP8 rounding of every product
  // before it, where GPU and CPU codes differ (one E4M3 step is 1/16, one E5M2 step 1/8):
  // on an H100 (2026-12-06) up to 5.2% for x and 9.8% for dy. What this still catches: an
  // amax not recorded, or of a tensor scaled otherwise (a lost or doubled factor).
  const std::vector<Fp8Amax> ag = mg8.fp8()->amaxes(), ac = mc8.fp8()->amaxes();
  ASSERT_EQ(ag.size(), ac.size());
  for (size_t i = 0; i < ag.size(); ++i) {
    EXPECT_NEAR(ag[i].x, ac[i].x, 0.10 * ac[i].x) << "slot " << i;
    EXPECT_NEAR(ag[i].w, ac[i].w, 1e-2 * ac[i].w) << "slot " << i;
    EXPECT_NEAR(ag[i].dy, ac[i].dy, 0.16 * ac[i].dy) << "slot " << i;
    EXPECT_GT(ag[i].dy, 0.0f) << "slot " << i;
  }
}
