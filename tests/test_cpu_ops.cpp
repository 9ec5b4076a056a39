// The CPU op templates in double precision: every forward against an independent naive
// formula, every backward against central finite differences of loss = sum(out * w).
#include <gtest/gtest.h>

#include <complex>

#include "backend/cpu/ops/adamw.h"
#include "backend/cpu/ops/attention.h"
#include "backend/cpu/ops/cross_entropy.h"
#include "backend/cpu/ops/embedding.h"
#include "backend/cpu/ops/matmul.h"
#include "backend/cpu/ops/rmsnorm.h"
#include "backend/cpu/ops/rope.h"
#include "backend/cpu/ops/swiglu.h"
#include "test_util.h"

using namespace tl;
using Vec = std::vector<double>;

namespace {

// out (N, O) = inp (N, I) @ w (O, I)^T, the textbook triple loop.
Vec naive_matmul(const Vec& inp, const Vec& w, int64_t N, int64_t I, int64_t O) {
  Vec out(size_t(N * O), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < I; ++i) out[n * O + o] += inp[n * I + i] * w[o * I + i];
  return out;
}

// Attention through the full (T, T) score matrix with an explicit causal mask.
void naive_attention(Vec& out, Vec& lse, const Vec& qkv, int64_t B, int64_t T, int H, int K,
                     int D) {
  const int64_t row = int64_t(H + 2 * K) * D;
  out.assign(size_t(B * T * H * D), 0.0);
  lse.assign(size_t(B * H * T), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    for (int h = 0; h < H; ++h) {
      const int kvh = h / (H / K);
      auto q = [&](int64_t t, int d) { return qkv[(b * T + t) * row + h * D + d]; };
      auto k = [&](int64_t t, int d) { return qkv[(b * T + t) * row + (H + kvh) * D + d]; };
      auto v = [&](int64_t t, int d) { return qkv[(b * T + t) * row + (H + K + kvh) * D + d]; };
      Vec S(size_t(T * T));
      for (int64_t t = 0; t < T; ++t)
        for (int64_t s = 0; s < T; ++s) {
          double dot = 0;
          for (int d = 0; d < D; ++d) dot += q(t, d) * k(s, d);
          S[t * T + s] = s <= t ? dot / std::sqrt(double(D)) : -INFINITY;
        }
      for (int64_t t = 0; t < T; ++t) {
        double mx = -INFINITY, sum = 0;
        for (int64_t s = 0; s < T; ++s) mx = std::max(mx, S[t * T + s]);
        for (int64_t s = 0; s < T; ++s) sum += std::exp(S[t * T + s] - mx);
        lse[(b * H + h) * T + t] = mx + std::log(sum);
        for (int64_t s = 0; s < T; ++s) {
          const double p = std::exp(S[t * T + s] - mx) / sum;
          for (int d = 0; d < D; ++d) out[(b * T + t) * H * D + h * D + d] += p * v(s, d);
        }
      }
    }
  }
}

// Llama's tables: angle(p, i) = p * base^(-2i/D); cos, sin: (Tmax, D/2).
void rope_tables(Vec& cos, Vec& sin, int64_t Tmax, int D) {
  cos.resize(size_t(Tmax * D / 2));
  sin.resize(size_t(Tmax * D / 2));
  for (int64_t p = 0; p < Tmax; ++p)
    for (int i = 0; i < D / 2; ++i) {
      const double a = double(p) * std::pow(10000.0, -2.0 * i / D);
      cos[p * D / 2 + i] = std::cos(a);
      sin[p * D / 2 + i] = std::sin(a);
    }
}

}  // namespace

TEST(CpuOps, EmbeddingGathersAndScatters) {
  Rng rng(1);
  const int64_t V = 6, C = 5, N = 9;
  std::vector<int32_t> tok = {3, 0, 5, 3, 3, 1, 0, 2, 5};  // repeats must add up
  Vec table = tu_randn(rng, V * C), w = tu_randn(rng, N * C);
  Vec out(size_t(N * C));
  tu_poison(out);
  cpu::embedding_forward(out.data(), table.data(), tok.data(), N, C);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) EXPECT_EQ(out[n * C + c], table[tok[n] * C + c]);

  Vec dtable0 = tu_randn(rng, V * C), dtable = dtable0;
  cpu::embedding_backward(dtable.data(), w.data(), tok.data(), N, C);
  tu_expect_grad(
      tu_sub(dtable, dtable0), table,
      [&] {
        cpu::embedding_forward(out.data(), table.data(), tok.data(), N, C);
        return tu_dot(out, w);
      },
      "dtable");
}

TEST(CpuOps, RmsNormMatchesFormulaAndFiniteDifferences) {
  Rng rng(2);
  const int64_t N = 4, C = 7;
  const double eps = 1e-5;
  Vec x = tu_randn(rng, N * C), weight = tu_randn(rng, C, 0.3), w = tu_randn(rng, N * C);
  for (auto& v : weight) v += 1.0;
  Vec out(size_t(N * C)), rstd(static_cast<size_t>(N));
  tu_poison(out);
  tu_poison(rstd);
  cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), weight.data(), N, C, eps);
  Vec want_out(out.size()), want_rstd(rstd.size());
  for (int64_t n = 0; n < N; ++n) {
    double ms = 0;
    for (int64_t c = 0; c < C; ++c) ms += x[n * C + c] * x[n * C + c] / C;
    want_rstd[n] = 1 / std::sqrt(ms + eps);
    for (int64_t c = 0; c < C; ++c) want_out[n * C + c] = x[n * C + c] * want_rstd[n] * weight[c];
  }
  tu_expect_near(out, want_out, 1e-13, 0, "out");
  tu_expect_near(rstd, want_rstd, 1e-13, 0, "rstd");

  // Both gradients accumulate: start them from random values.
  Vec dx0 = tu_randn(rng, N * C), dw0 = tu_randn(rng, C), dx = dx0, dw = dw0;
  cpu::rmsnorm_backward(dx.data(), dw.data(), w.data(), x.data(), weight.data(), rstd.data(), N, C);
  auto loss = [&] {
    cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), weight.data(), N, C, eps);
    return tu_dot(out, w);
  };
  tu_expect_grad(tu_sub(dx, dx0), x, loss, "dinp");
  tu_expect_grad(tu_sub(dw, dw0), weight, loss, "dweight");
}

TEST(CpuOps, AddRmsNormAddsThenNormalizes) {
  Rng rng(3);
  const int64_t N = 3, C = 9;
  Vec a = tu_randn(rng, N * C), d = tu_randn(rng, N * C), weight = tu_randn(rng, C);
  Vec res(size_t(N * C)), out(size_t(N * C)), rstd(static_cast<size_t>(N));
  Vec sum(size_t(N * C)), want_out(size_t(N * C)), want_rstd(static_cast<size_t>(N));
  for (size_t i = 0; i < sum.size(); ++i) sum[i] = a[i] + d[i];
  cpu::rmsnorm_forward(want_out.data(), want_rstd.data(), sum.data(), weight.data(), N, C, 1e-5);
  tu_poison(res);
  tu_poison(out);
  cpu::add_rmsnorm_forward(res.data(), out.data(), rstd.data(), a.data(), d.data(), weight.data(),
                           N, C, 1e-5);
  EXPECT_EQ(res, sum);
  EXPECT_EQ(out, want_out);
  EXPECT_EQ(rstd, want_rstd);
  // In place on the residual stream.
  cpu::add_rmsnorm_forward(a.data(), out.data(), rstd.data(), a.data(), d.data(), weight.data(), N,
                           C, 1e-5);
  EXPECT_EQ(a, sum);
}

// Shapes that cross the GEMM's KC reduction blocks, MC row blocks and NR column panels.
TEST(CpuOps, MatmulMatchesNaiveAcrossBlockEdges) {
  Rng rng(4);
  for (auto [N, I, O] : {std::array<int64_t, 3>{1, 1, 1},
                         {5, 7, 3},
                         {70, 300, 40},
                         {300, 37, 260},
                         {129, 520, 17}}) {
    SCOPED_TRACE(testing::Message() << "N=" << N << " I=" << I << " O=" << O);
    Vec x = tu_randn(rng, N * I), w = tu_randn(rng, O * I), dy = tu_randn(rng, N * O);
    Vec out(size_t(N * O));
    tu_poison(out);
    cpu::matmul_forward(out.data(), x.data(), w.data(), N, I, O);
    tu_expect_near(out, naive_matmul(x, w, N, I, O), 1e-12, 1e-12, "out");

    // dinp = dy @ w is the naive product with w transposed; dweight = dy^T @ x likewise.
    Vec wt(size_t(O * I)), dyt(size_t(N * O)), xt(size_t(N * I));
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < I; ++i) wt[i * O + o] = w[o * I + i];
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t o = 0; o < O; ++o) dyt[o * N + n] = dy[n * O + o];
      for (int64_t i = 0; i < I; ++i) xt[i * N + n] = x[n * I + i];
    }
    Vec dx(size_t(N * I)), dw0 = tu_randn(rng, O * I), dw = dw0;
    tu_poison(dx);
    cpu::matmul_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), N, I, O, false, true);
    tu_expect_near(dx, naive_matmul(dy, wt, N, O, I), 1e-12, 1e-12, "dinp");
    tu_expect_near(tu_sub(dw, dw0), naive_matmul(dyt, xt, O, N, I), 1e-12, 1e-12, "dweight");
  }
}

TEST(CpuOps, MatmulBackwardFiniteDifferences) {
  Rng rng(5);
  for (const auto& dims : {std::array<int64_t, 3>{5, 7, 3}, {9, 17, 33}}) {
    const int64_t N = dims[0], I = dims[1],
                  O = dims[2];  // (lambdas cannot capture bindings in clang 14)
    Vec x = tu_randn(rng, N * I), w = tu_randn(rng, O * I), dy = tu_randn(rng, N * O);
    Vec out(size_t(N * O));
    auto loss = [&] {
      cpu::matmul_forward(out.data(), x.data(), w.data(), N, I, O);
      return tu_dot(out, dy);
    };
    Vec dx0 = tu_randn(rng, N * I), dx = dx0, dw0 = tu_randn(rng, O * I), dw = dw0;
    cpu::matmul_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), N, I, O, true, true);
    tu_expect_grad(tu_sub(dx, dx0), x, loss, "dinp (accumulated)");
    tu_expect_grad(tu_sub(dw, dw0), w, loss, "dweight");
    // Without accumulate_dinp the old contents are overwritten; null outputs are skipped.
    tu_poison(dx);
    cpu::matmul_backward<double>(dx.data(), nullptr, dy.data(), x.data(), w.data(), N, I, O, false,
                                 false);
    tu_expect_grad(dx, x, loss, "dinp (overwritten)");
    // Without accumulate_dweight likewise (a step's first backward writes its gradients).
    tu_poison(dw);
    cpu::matmul_backward<double>(nullptr, dw.data(), dy.data(), x.data(), w.data(), N, I, O, false,
                                 false);
    tu_expect_grad(dw, w, loss, "dweight (overwritten)");
  }
}

TEST(CpuOps, RopeIsAComplexRotationOfQueriesAndKeys) {
  Rng rng(6);
  const int64_t B = 2, T = 5, Tmax = 11, pos0 = 3;
  const int H = 6, K = 2, D = 8, half = D / 2;
  const int64_t row = (H + 2 * K) * D;
  Vec cos, sin;
  rope_tables(cos, sin, Tmax, D);
  Vec qkv0 = tu_randn(rng, B * T * row), qkv = qkv0;
  cpu::rope_forward(qkv.data(), cos.data(), sin.data(), B, T, H, K, D, pos0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int h = 0; h < H + 2 * K; ++h)
        for (int i = 0; i < half; ++i) {
          const int64_t at = (b * T + t) * row + h * D + i;
          if (h >= H + K) {  // value heads stay exactly as they were
            EXPECT_EQ(qkv[at], qkv0[at]);
            EXPECT_EQ(qkv[at + half], qkv0[at + half]);
            continue;
          }
          const double angle = double(pos0 + t) * std::pow(10000.0, -2.0 * i / D);
          const std::complex<double> z =
              std::complex<double>(qkv0[at], qkv0[at + half]) * std::polar(1.0, angle);
          EXPECT_NEAR(qkv[at], z.real(), 1e-12);
          EXPECT_NEAR(qkv[at + half], z.imag(), 1e-12);
        }
}

TEST(CpuOps, RopeBackwardFiniteDifferences) {
  Rng rng(7);
  const int64_t B = 2, T = 4, pos0 = 2;
  const int H = 3, K = 1, D = 6;
  const int64_t n = B * T * (H + 2 * K) * D;
  Vec cos, sin;
  rope_tables(cos, sin, pos0 + T, D);
  Vec x = tu_randn(rng, n), w = tu_randn(rng, n), y(static_cast<size_t>(n));
  Vec dx = w;
  cpu::rope_backward(dx.data(), cos.data(), sin.data(), B, T, H, K, D, pos0);
  tu_expect_grad(
      dx, x,
      [&] {
        y = x;
        cpu::rope_forward(y.data(), cos.data(), sin.data(), B, T, H, K, D, pos0);
        return tu_dot(y, w);
      },
      "dqkv");
}

struct CpuAttnShape {
  int64_t B, T;
  int H, K, D;
};
const CpuAttnShape kAttnShapes[] = {
    {2, 9, 6, 2, 4}, {1, 7, 2, 2, 6}, {2, 1, 3, 1, 2}, {1, 8, 4, 1, 5}};

TEST(CpuOps, AttentionMatchesFullSoftmax) {
  Rng rng(8);
  for (const auto& s : kAttnShapes) {
    SCOPED_TRACE(testing::Message() << "B" << s.B << " T" << s.T << " H" << s.H << " K" << s.K);
    Vec qkv = tu_randn(rng, s.B * s.T * (s.H + 2 * s.K) * s.D);
    Vec out(size_t(s.B * s.T * s.H * s.D)), lse(size_t(s.B * s.H * s.T)), want_out, want_lse;
    tu_poison(out);
    tu_poison(lse);
    cpu::attention_forward(out.data(), lse.data(), qkv.data(), s.B, s.T, s.H, s.K, s.D);
    naive_attention(want_out, want_lse, qkv, s.B, s.T, s.H, s.K, s.D);
    tu_expect_near(out, want_out, 1e-12, 1e-13, "out");
    tu_expect_near(lse, want_lse, 1e-12, 1e-13, "lse");
  }
}

TEST(CpuOps, AttentionBackwardFiniteDifferences) {
  Rng rng(9);
  for (const auto& s : kAttnShapes) {
    SCOPED_TRACE(testing::Message() << "B" << s.B << " T" << s.T << " H" << s.H << " K" << s.K);
    Vec qkv = tu_randn(rng, s.B * s.T * (s.H + 2 * s.K) * s.D);
    Vec w = tu_randn(rng, s.B * s.T * s.H * s.D);
    Vec out(w.size()), lse(size_t(s.B * s.H * s.T)), dqkv(qkv.size());
    cpu::attention_forward(out.data(), lse.data(), qkv.data(), s.B, s.T, s.H, s.K, s.D);
    tu_poison(dqkv);
    cpu::attention_backward(dqkv.data(), w.data(), qkv.data(), out.data(), lse.data(), s.B, s.T,
                            s.H, s.K, s.D);
    tu_expect_grad(
        dqkv, qkv,
        [&] {
          cpu::attention_forward(out.data(), lse.data(), qkv.data(), s.B, s.T, s.H, s.K, s.D);
          return tu_dot(out, w);
        },
        "dqkv");
  }
}

TEST(CpuOps, SwiGLUForwardAndFiniteDifferences) {
  Rng rng(10);
  const int64_t N = 3, I = 5;
  Vec gu = tu_randn(rng, N * 2 * I, 2.0), w = tu_randn(rng, N * I);
  Vec out(size_t(N * I)), dgu(gu.size());
  tu_poison(out);
  cpu::swiglu_forward(out.data(), gu.data(), N, I);
  Vec want(out.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < I; ++i) {
      const double g = gu[n * 2 * I + i], u = gu[n * 2 * I + I + i];
      want[n * I + i] = g / (1 + std::exp(-g)) * u;
    }
  tu_expect_near(out, want, 1e-14, 0, "out");
  tu_poison(dgu);
  cpu::swiglu_backward(dgu.data(), w.data(), gu.data(), N, I);
  tu_expect_grad(
      dgu, gu,
      [&] {
        cpu::swiglu_forward(out.data(), gu.data(), N, I);
        return tu_dot(out, w);
      },
      "dgate_up");
}

// N spans two 128-token chunks of the fused head; some targets are ignored (-1).
struct CeCase {
  int64_t N = 131, C = 5, V = 7;
  Vec x, weight;
  std::vector<int32_t> targets;
  explicit CeCase(Rng& rng) : x(tu_randn(rng, N * C)), weight(tu_randn(rng, V * C)) {
    for (int64_t n = 0; n < N; ++n) targets.push_back(n % 5 == 3 ? -1 : int32_t(rng.below(V)));
  }
};

TEST(CpuOps, CrossEntropyMatchesExplicitLogits) {
  Rng rng(11);
  CeCase ce(rng);
  Vec losses(static_cast<size_t>(ce.N));
  tu_poison(losses);
  cpu::head_cross_entropy<double>(losses.data(), nullptr, nullptr, ce.x.data(), ce.weight.data(),
                                  ce.targets.data(), ce.N, ce.C, ce.V, 1.0);
  const Vec z = naive_matmul(ce.x, ce.weight, ce.N, ce.C, ce.V);
  Vec want(size_t(ce.N), 0.0);
  for (int64_t n = 0; n < ce.N; ++n) {
    if (ce.targets[n] < 0) continue;
    double sum = 0;
    for (int64_t v = 0; v < ce.V; ++v) sum += std::exp(z[n * ce.V + v]);
    want[n] = std::log(sum) - z[n * ce.V + ce.targets[n]];
  }
  tu_expect_near(losses, want, 1e-12, 1e-13, "losses");
}

TEST(CpuOps, CrossEntropyBackwardFiniteDifferences) {
  Rng rng(12);
  CeCase ce(rng);
  const double scale = 0.37;
  Vec losses(static_cast<size_t>(ce.N)), dx(ce.x.size());
  Vec dw0 = tu_randn(rng, ce.V * ce.C), dw = dw0;
  tu_poison(dx);
  cpu::head_cross_entropy(losses.data(), dx.data(), dw.data(), ce.x.data(), ce.weight.data(),
                          ce.targets.data(), ce.N, ce.C, ce.V, scale);
  auto loss = [&] {
    cpu::head_cross_entropy<double>(losses.data(), nullptr, nullptr, ce.x.data(), ce.weight.data(),
                                    ce.targets.data(), ce.N, ce.C, ce.V, 1.0);
    double s = 0;
    for (double l : losses) s += l;
    return scale * s;
  };
  tu_expect_grad(dx, ce.x, loss, "dx");
  tu_expect_grad(tu_sub(dw, dw0), ce.weight, loss, "dweight");
  for (int64_t n = 0; n < ce.N; ++n) {
    if (ce.targets[n] >= 0) continue;
    for (int64_t c = 0; c < ce.C; ++c) EXPECT_EQ(dx[n * ce.C + c], 0.0) << "ignored token " << n;
  }
}

TEST(CpuOps, ClipScaleFollowsPyTorch) {
  EXPECT_EQ(cpu::clip_scale(4.0, 0.0), 1.0);   // clipping off
  EXPECT_EQ(cpu::clip_scale(0.25, 1.0), 1.0);  // norm 0.5 below the limit
  EXPECT_NEAR(cpu::clip_scale(16.0, 1.0), 1.0 / (4.0 + 1e-6), 1e-15);
}
