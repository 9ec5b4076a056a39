// The CPU backend (fp32) through the Backend interface: every op against the double
// templates with poisoned outputs, AdamW against a scalar derivation, bitwise determinism
// across thread counts, and precondition errors.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <map>
#include <string>

#include "backend/backend.h"
#include "backend/cpu/ops/adamw.h"
#include "backend/cpu/ops/attention.h"
#include "backend/cpu/ops/cross_entropy.h"
#include "backend/cpu/ops/embedding.h"
#include "backend/cpu/ops/matmul.h"
#include "backend/cpu/ops/rmsnorm.h"
#include "backend/cpu/ops/rope.h"
#include "backend/cpu/ops/swiglu.h"
#include "backend_test_util.h"
#include "test_util.h"

using namespace tl;
using Vec = std::vector<double>;
using FVec = std::vector<float>;

namespace {

// Shapes that cross the GEMM's blocks (I > 256 reduction steps) and the head's 128-token
// chunks, and are big enough for every op to use threads (cpu/ops/parallel.h).
constexpr int64_t B = 2, T = 67, N = B * T, C = 256, V = 300, I = 300;
constexpr int H = 6, K = 2, D = 32;
constexpr int64_t QKV = (H + 2 * K) * D;

// Random f32 data and the same values in double, so references differ only in arithmetic.
struct Data {
  FVec f;
  Vec d;
  Data(Rng& rng, int64_t n, double scale = 1.0) : f(tu_to_f32(tu_randn(rng, n, scale))) {
    d = tu_to_f64(f);
  }
};

FVec poisoned(int64_t n) {
  FVec v(static_cast<size_t>(n));
  tu_poison(v);
  return v;
}

std::vector<int32_t> random_ids(Rng& rng, int64_t n, int64_t below) {
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(int32_t(rng.below(uint64_t(below))));
  return ids;
}

// Every op the model runs, on fixed inputs; returns each output by name.
std::map<std::string, FVec> run_every_op(Backend& be) {
  Rng rng(99);
  std::map<std::string, FVec> r;
  auto ids = random_ids(rng, N, V / 4);  // many repeats for the scatter-add
  FVec table = tu_to_f32(tu_randn(rng, V * C)), dtable(size_t(V * C), 0.5f);
  FVec emb = poisoned(N * C), dy = tu_to_f32(tu_randn(rng, N * C));
  be.embedding_forward(tu_tensor(emb, {N, C}), tu_tensor(table, {V, C}), tu_tensor(ids, {N}));
  be.embedding_backward(tu_tensor(dtable, {V, C}), tu_tensor(dy, {N, C}), tu_tensor(ids, {N}));
  r["emb"] = emb, r["dtable"] = dtable;

  FVec nw = tu_to_f32(tu_randn(rng, C)), out = poisoned(N * C), rstd = poisoned(N);
  FVec dx(size_t(N * C), 0.25f), dnw(size_t(C), 0.5f);
  be.rmsnorm_forward(tu_tensor(out, {N, C}), tu_tensor(rstd, {N}), tu_tensor(emb, {N, C}),
                     tu_tensor(nw, {C}), 1e-5f);
  be.rmsnorm_backward(tu_tensor(dx, {N, C}), tu_tensor(dnw, {C}), tu_tensor(dy, {N, C}),
                      tu_tensor(emb, {N, C}), tu_tensor(nw, {C}), tu_tensor(rstd, {N}));
  r["norm"] = out, r["rstd"] = rstd, r["dnorm_x"] = dx, r["dnorm_w"] = dnw;

  FVec x = tu_to_f32(tu_randn(rng, N * I)), w = tu_to_f32(tu_randn(rng, QKV * I));
  FVec qkv = poisoned(N * QKV), dqkv_in = tu_to_f32(tu_randn(rng, N * QKV));
  FVec dmx = poisoned(N * I), dmw(size_t(QKV * I), 1.0f);
  be.matmul_forward(tu_tensor(qkv, {B, T, QKV}), tu_tensor(x, {B, T, I}), tu_tensor(w, {QKV, I}));
  be.matmul_backward(tu_tensor(dmx, {N, I}), tu_tensor(dmw, {QKV, I}), tu_tensor(dqkv_in, {N, QKV}),
                     tu_tensor(x, {N, I}), tu_tensor(w, {QKV, I}), false, true);
  r["qkv"] = qkv, r["dmatmul_x"] = dmx, r["dmatmul_w"] = dmw;

  FVec cos(size_t(2 * T * D / 2)), sin(cos.size());
  for (size_t i = 0; i < cos.size(); ++i) cos[i] = std::cos(0.1f * i), sin[i] = std::sin(0.1f * i);
  be.rope_forward(tu_tensor(qkv, {B, T, QKV}), tu_tensor(cos, {2 * T, D / 2}),
                  tu_tensor(sin, {2 * T, D / 2}), H, K, 5);
  FVec att = poisoned(N * H * D), lse = poisoned(B * H * T),
       datt = tu_to_f32(tu_randn(rng, N * H * D));
  FVec dqkv = poisoned(N * QKV);
  be.attention_forward(tu_tensor(att, {B, T, H * D}), tu_tensor(lse, {B, H, T}),
                       tu_tensor(qkv, {B, T, QKV}), H, K);
  be.attention_backward(tu_tensor(dqkv, {B, T, QKV}), tu_tensor(datt, {B, T, H * D}),
                        tu_tensor(qkv, {B, T, QKV}), tu_tensor(att, {B, T, H * D}),
                        tu_tensor(lse, {B, H, T}), H, K);
  be.rope_backward(tu_tensor(dqkv, {B, T, QKV}), tu_tensor(cos, {2 * T, D / 2}),
                   tu_tensor(sin, {2 * T, D / 2}), H, K, 5);
  r["rope"] = qkv, r["att"] = att, r["lse"] = lse, r["dqkv"] = dqkv;

  FVec gu = tu_to_f32(tu_randn(rng, N * 2 * C)), sw = poisoned(N * C), dgu = poisoned(N * 2 * C);
  be.swiglu_forward(tu_tensor(sw, {N, C}), tu_tensor(gu, {N, 2 * C}));
  be.swiglu_backward(tu_tensor(dgu, {N, 2 * C}), tu_tensor(dy, {N, C}), tu_tensor(gu, {N, 2 * C}));
  r["swiglu"] = sw, r["dswiglu"] = dgu;

  auto targets = random_ids(rng, N, V);
  targets[3] = -1;
  FVec losses = poisoned(N), dh = poisoned(N * C), dhw(size_t(V * C), 0.5f);
  be.head_cross_entropy(tu_tensor(losses, {N}), tu_tensor(dh, {N, C}), tu_tensor(dhw, {V, C}),
                        tu_tensor(emb, {N, C}), tu_tensor(table, {V, C}), tu_tensor(targets, {N}),
                        1.0f / N);
  r["losses"] = losses, r["dhead_x"] = dh, r["dhead_w"] = dhw;

  constexpr int64_t P = 100003;
  FVec big = tu_to_f32(tu_randn(rng, P)), ss = poisoned(1), p = tu_to_f32(tu_randn(rng, P));
  FVec m = tu_to_f32(Vec(size_t(P), 0.0)), v = m;
  be.sum_squares(tu_tensor(ss, {1}), tu_tensor(big, {P}));
  AdamWArgs args;
  args.lr = 1e-3f;
  be.adamw_update(tu_tensor(p, {P}), tu_tensor(big, {P}), tu_tensor(m, {P}), tu_tensor(v, {P}),
                  Tensor(), tu_tensor(ss, {1}), args);
  r["sum_squares"] = ss, r["adamw_p"] = p, r["adamw_v"] = v;
  return r;
}

}  // namespace

TEST(CpuBackend, DescribesItselfAndAllocatesAligned) {
  auto be = make_backend("cpu", 2);
  EXPECT_EQ(be->describe(), "cpu (2 threads)");
  EXPECT_EQ(be->device(), Device::CPU);
  EXPECT_EQ(be->compute_dtype(), DType::F32);
  EXPECT_NE(make_backend("cpu", 0)->describe().find("cpu ("), std::string::npos);
  for (size_t bytes : {size_t(1), size_t(100), size_t(1) << 20}) {
    Buffer buf(*be, bytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(buf.data()) % 64, 0u) << bytes;
  }
  EXPECT_THROW(be->allocate(size_t(1) << 62), Error);
}

// A Buffer over memory the backend did not allocate (a communicator's registered buffers):
// its own free runs exactly once, when the last owner lets go, and never the backend's.
TEST(CpuBackend, BufferOfForeignMemoryIsFreedOnceByItsOwnFree) {
  auto be = make_backend("cpu", 1);
  std::vector<float> mem(8, 1.5f);
  int frees = 0;
  {
    Buffer a(*be, mem.data(), mem.size() * sizeof(float), [&] { ++frees; });
    EXPECT_EQ(a.tensor(DType::F32, {8}).ptr<float>()[7], 1.5f);
    Buffer b = std::move(a);  // ownership moves; a holds nothing
    EXPECT_EQ(a.data(), nullptr);
    EXPECT_EQ(b.data(), mem.data());
    b = Buffer(*be, 64);  // replacing it frees the foreign memory once
    EXPECT_EQ(frees, 1);
  }
  EXPECT_EQ(frees, 1);  // b's backend memory went back to the backend, not to our free
  Buffer c(*be, mem.data(), 4, [&] { ++frees; });
  c.release();
  c.release();
  EXPECT_EQ(frees, 2);
}

TEST(CpuBackend, AccumulatesF32AndBf16IntoF32) {
  auto be = make_backend("cpu", 1);
  Buffer buf(*be, 64);
  Tensor dst = buf.tensor(DType::F32, {3}), f = buf.tensor(DType::F32, {3}, 16);
  Tensor bf = buf.tensor(DType::BF16, {3}, 32);
  const float d0[3] = {1.0f, -2.0f, 1024.0f}, add[3] = {0.5f, 0.25f, 1.0f};
  be->upload(dst, d0);
  be->upload(f, add);
  be->accumulate(dst, f);                          // {1.5, -1.75, 1025}: f32 keeps the 1
  const uint16_t b[3] = {0x3F80, 0xBF80, 0x4000};  // bf16 1, -1, 2
  be->upload(bf, b);
  be->accumulate(dst, bf);  // {2.5, -2.75, 1027}
  float got[3];
  be->download(got, dst);
  EXPECT_EQ(got[0], 2.5f);
  EXPECT_EQ(got[1], -2.75f);
  EXPECT_EQ(got[2], 1027.0f);
  EXPECT_THROW(be->accumulate(bf, f), Error);                             // dst must be f32
  EXPECT_THROW(be->accumulate(dst, buf.tensor(DType::F32, {2})), Error);  // sizes differ
}

// The FP8 operand ops (#16) against values worked out by hand from the OFP8 spec.
TEST(CpuBackend, Fp8OperandsAreScaledQuantizedAndMultipliedAsSpecified) {
  auto be = make_backend("cpu", 1);
  Buffer buf(*be, 1024);
  Tensor in = buf.tensor(DType::F32, {2, 3}), amax = buf.tensor(DType::F32, {1}, 64);
  Tensor inv = buf.tensor(DType::F32, {1}, 128), codes = buf.tensor(DType::U8, {3, 2}, 192);
  const float x[6] = {1.0f, -2.0f, 0.5f, 56.0f, 112.0f, -0.001f};
  be->upload(in, x);
  be->amax(amax, in);
  float got = 0;
  be->download(&got, amax);
  EXPECT_EQ(got, 112.0f);
  // E4M3 max 448 = 112 * 4: s = 4, so 1 -> 4 (0x48), -2 -> -8 (0xD0), 0.5 -> 2 (0x40),
  // 56 -> 224 (0x76), 112 -> 448 (0x7E), -0.001 -> -0.004 -> -2^-8 (the nearest
  // subnormal: 2 x 2^-9; 0x82); transposed to [3, 2].
  be->fp8_quantize(Tensor(), codes, inv, in, amax, Fp8Format::E4M3, Tensor());  // [C, R]
  uint8_t c[6];
  be->download(c, codes);
  const uint8_t want[6] = {0x48, 0x76, 0xD0, 0x7E, 0x40, 0x82};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(int(c[i]), int(want[i])) << i;
  be->download(&got, inv);
  EXPECT_EQ(got, 0.25f);
  // Both layouts from one call: the same codes, [2, 3] and [3, 2].
  Tensor rows = buf.tensor(DType::U8, {2, 3}, 960);
  be->zero(codes);
  be->fp8_quantize(rows, codes, inv, in, amax, Fp8Format::E4M3, Tensor());
  uint8_t r[6];
  be->download(r, rows);
  be->download(c, codes);
  const uint8_t want_rows[6] = {0x48, 0xD0, 0x40, 0x76, 0x7E, 0x82};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(int(r[i]), int(want_rows[i])) << i;
  for (int i = 0; i < 6; ++i) EXPECT_EQ(int(c[i]), int(want[i])) << i;
  EXPECT_THROW(be->fp8_quantize(Tensor(), Tensor(), inv, in, amax, Fp8Format::E4M3, Tensor()),
               Error);  // neither layout
  // A NaN anywhere: amax NaN, scale 0 (codes of zero) and scale_inv NaN: the product is NaN.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  be->upload(in.rows(1, 2), std::vector<float>{nan, 1.0f, 2.0f}.data());
  be->amax(amax, in);
  be->download(&got, amax);
  EXPECT_TRUE(std::isnan(got));
  be->fp8_quantize(codes.view({2, 3}), Tensor(), inv, in, amax, Fp8Format::E4M3, Tensor());
  be->download(c, codes);
  for (int i = 0; i < 6; ++i) {  // +-0, and NaN where the NaN was
    const float q = fp8_to_f32(c[i], Fp8Format::E4M3);
    EXPECT_TRUE(q == 0.0f || (i == 3 && std::isnan(q))) << i << ": " << q;
  }
  be->download(&got, inv);
  EXPECT_TRUE(std::isnan(got));
  // out[2,3] = (a[2,2] . b[3,2]^T) * 0.5 * 0.25 with E4M3 codes 1 (0x38), 2 (0x40), 0.5 (0x30).
  Tensor a = buf.tensor(DType::U8, {2, 2}, 256), b = buf.tensor(DType::U8, {3, 2}, 320);
  Tensor sa = buf.tensor(DType::F32, {1}, 384), sb = buf.tensor(DType::F32, {1}, 448);
  Tensor out = buf.tensor(DType::F32, {2, 3}, 512);
  const uint8_t ac[4] = {0x38, 0x40, 0x30, 0x38};              // [[1, 2], [0.5, 1]]
  const uint8_t bc[6] = {0x38, 0x38, 0x40, 0x30, 0x30, 0x40};  // [[1, 1], [2, 0.5], [0.5, 2]]
  const float half = 0.5f, quarter = 0.25f;
  be->upload(a, ac);
  be->upload(b, bc);
  be->upload(sa, &half);
  be->upload(sb, &quarter);
  be->fp8_matmul(out, a, b, sa, sb, Fp8Format::E4M3, Fp8Format::E4M3, false);
  float o[6];
  be->download(o, out);
  const float prod[6] = {3, 3, 4.5f, 1.5f, 1.5f, 2.25f};  // a . b^T
  for (int i = 0; i < 6; ++i) EXPECT_EQ(o[i], prod[i] * 0.125f) << i;
  be->fp8_matmul(out, a, b, sa, sb, Fp8Format::E4M3, Fp8Format::E4M3, /*accumulate=*/true);
  be->download(o, out);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(o[i], prod[i] * 0.25f) << i;
  EXPECT_THROW(be->fp8_matmul(out, a, b, sa, sb, Fp8Format::E5M2, Fp8Format::E5M2, false), Error);
}

// Delayed scaling's two ops, on the CPU and (where one is visible) the GPU, with values
// worked out by hand: fp8_quantize's amax_out takes the max with what it held (never
// overwrites it, never changes the codes); fp8_amax_roll writes the pass's amaxes into one
// history row (a non-finite one as 0, so a skipped pass cannot scale the next H), keeps
// them unfiltered in `last` (what the fallback looks at), and zeroes `current`.
TEST(Fp8Ops, DelayedScalingRecordsAmaxesAndRollsTheHistory) {
  std::vector<std::string> devices{"cpu"};
  if (cuda_available()) devices.push_back("cuda");
  const float inf = std::numeric_limits<float>::infinity();
  for (const std::string& dev : devices) {
    SCOPED_TRACE(dev);
    auto be = make_backend(dev, 1);
    Buffer buf(*be, 4096);
    // Rows of 16 floats (64 bytes) apart so every tensor is aligned as the kernels like.
    Tensor in = buf.tensor(DType::F32, {2, 8}), amax = buf.tensor(DType::F32, {1}, 64);
    Tensor inv = buf.tensor(DType::F32, {1}, 128), rec = buf.tensor(DType::F32, {1}, 192);
    Tensor codes = buf.tensor(DType::U8, {2, 8}, 256), plain = buf.tensor(DType::U8, {2, 8}, 320);
    std::vector<float> x(16, 0.25f);
    x[3] = -112.0f;
    x[12] = 7.0f;
    be->upload(in, x.data());
    const float one = 112.0f;
    be->upload(amax, &one);
    be->fp8_quantize(plain, Tensor(), inv, in, amax, Fp8Format::E4M3, Tensor());
    for (const auto& [start, want] : {std::pair{0.0f, 112.0f}, {300.0f, 300.0f}}) {
      be->upload(rec, &start);
      be->fp8_quantize(codes, Tensor(), inv, in, amax, Fp8Format::E4M3, rec);
      float got = -1;
      be->download(&got, rec);
      EXPECT_EQ(got, want) << "amax_out starting at " << start;
      uint8_t a[16], b[16];
      be->download(a, codes);
      be->download(b, plain);
      EXPECT_EQ(std::vector<uint8_t>(a, a + 16), std::vector<uint8_t>(b, b + 16));
    }
    // History of 3 passes x 2 tensors.
    Tensor hist = buf.tensor(DType::F32, {3, 2}, 512), cur = buf.tensor(DType::F32, {2}, 576);
    Tensor scale = buf.tensor(DType::F32, {2}, 640), last = buf.tensor(DType::F32, {2}, 704);
    be->zero(hist);
    const auto roll = [&](std::vector<float> c, int64_t slot) {
      be->upload(cur, c.data());
      be->fp8_amax_roll(hist, cur, scale, last, slot);
      std::vector<float> s(2), l(2), z(2), h(6);
      be->download(s.data(), scale);
      be->download(l.data(), last);
      be->download(z.data(), cur);
      be->download(h.data(), hist);
      EXPECT_EQ(z, (std::vector<float>{0, 0})) << "current is zeroed";
      return std::tuple{s, l, h};
    };
    {
      const auto [s, l, h] = roll({4.0f, inf}, 1);
      EXPECT_EQ(s, (std::vector<float>{4, 0}));
      EXPECT_EQ(l[0], 4.0f);
      EXPECT_TRUE(std::isinf(l[1]));
      EXPECT_EQ(h, (std::vector<float>{0, 0, 4, 0, 0, 0}));
    }
    {
      const auto [s, l, h] = roll({2.0f, 7.0f}, 2);
      EXPECT_EQ(s, (std::vector<float>{4, 7}));
      EXPECT_EQ(l, (std::vector<float>{2, 7}));
    }
    {
      const auto [s, l, h] = roll({1.0f, std::numeric_limits<float>::quiet_NaN()}, 2);
      EXPECT_EQ(s, (std::vector<float>{4, 7})) << "slot 2 keeps its 7 where the NaN came";
      EXPECT_TRUE(std::isnan(l[1]));
      EXPECT_EQ(h, (std::vector<float>{0, 0, 4, 0, 1, 7}));
    }
    {
      const auto [s, l, h] = roll({3.0f, 5.0f}, 1);
      EXPECT_EQ(s, (std::vector<float>{3, 7})) << "the 4 of slot 1 is overwritten";
      EXPECT_EQ(h, (std::vector<float>{0, 0, 3, 5, 1, 7}));
    }
    // A cast scaled by another pass's amax that meets a non-finite value: scale_inv NaN (the
    // product is NaN, the step skipped), not codes saturated to a finite, wrong product.
    x[12] = inf;
    be->upload(in, x.data());
    const float zero = 0;
    be->upload(rec, &zero);
    be->fp8_quantize(codes, Tensor(), inv, in, amax, Fp8Format::E4M3, rec);
    float got_inv = 0, got_rec = 0;
    be->download(&got_inv, inv);
    be->download(&got_rec, rec);
    EXPECT_TRUE(std::isnan(got_inv));
    EXPECT_TRUE(std::isinf(got_rec));
    be->fp8_quantize(codes, Tensor(), inv, in, amax, Fp8Format::E4M3, Tensor());
    be->download(&got_inv, inv);
    EXPECT_EQ(got_inv, 0.25f) << "without amax_out the scale is amax's alone (448 / 112)";
  }
}

// A producer that writes FP8 codes itself (Fp8Cast: SwiGLU's forward and backward under
// delayed scaling) gives bit for bit what the plain op followed by fp8_quantize gives on the
// same backend: codes, scale_inv and the recorded amax, for finite values and for an
// overflow (scale_inv NaN, so the product is NaN and the step skipped). Together with the
// op table (plain op and cast each against the CPU twin) this ties the GPU's producers to
// the CPU. SwiGLU's producers also write the codes transposed when asked (fp8_quantize's
// out_t). Shapes: I = 40 (the vectorized CUDA path; with N = 80 and the transposed codes the
// 64 x 64 tiles, partial ones included) and I = 13 (element by element, then a transpose).
TEST(Fp8Ops, ProducersWriteTheCodesThePlainOpAndTheCastWould) {
  std::vector<std::string> devices{"cpu"};
  if (cuda_available()) devices.push_back("cuda");
  for (const std::string& dev : devices)
    for (int64_t I : {int64_t(40), int64_t(13)})
      for (int64_t N : {int64_t(24), int64_t(80)})
        for (bool overflow : {false, true}) {
          SCOPED_TRACE(dev + " I=" + std::to_string(I) + " N=" + std::to_string(N) +
                       (overflow ? " overflow" : ""));
          auto be = make_backend(dev, 1);
          const DType act = be->compute_dtype();
          Rng rng(uint64_t(I) * 7 + overflow);
          std::vector<float> gu = tu_to_f32(tu_randn(rng, N * 2 * I, 2.0));
          std::vector<float> dy = tu_to_f32(tu_randn(rng, N * I, 0.5));
          if (overflow) gu[size_t(5 * 2 * I + 3)] = std::numeric_limits<float>::infinity();
          const size_t big = size_t(N * 2 * I) * 4 + 256;
          Buffer gu_b(*be, big), dy_b(*be, big), y_b(*be, big), a_b(*be, big), b_b(*be, big);
          Buffer s_b(*be, 8 * 256);
          auto scalar = [&](int i) { return s_b.tensor(DType::F32, {1}, size_t(i) * 256); };
          auto read = [&](int i) {
            float x = 0;
            be->download(&x, scalar(i));
            return x;
          };
          Tensor gate_up = gu_b.tensor(act, {N, 2 * I}), dout = dy_b.tensor(act, {N, I});
          backend_test::upload(*be, gate_up, gu);
          backend_test::upload(*be, dout, dy);
          const float history_amax = 3.0f, start = 0.5f;  // values past 3 saturate
          for (int i = 0; i < 8; ++i) be->upload(scalar(i), i == 0 ? &history_amax : &start);
          for (bool backward : {false, true})
            for (bool both : {false, true}) {
              SCOPED_TRACE(std::string(backward ? "backward" : "forward") +
                           (both ? ", both layouts" : ""));
              const int64_t W = backward ? 2 * I : I;
              Tensor y = y_b.tensor(act, {N, W});
              // codes at 0, transposed codes after them (16-byte aligned)
              const size_t at_t = (size_t(N * W) + 15) / 16 * 16;
              Tensor want = a_b.tensor(DType::U8, {N, W}), got = b_b.tensor(DType::U8, {N, W});
              Tensor want_t = both ? a_b.tensor(DType::U8, {W, N}, at_t) : Tensor();
              Tensor got_t = both ? b_b.tensor(DType::U8, {W, N}, at_t) : Tensor();
              const Fp8Format f = backward ? Fp8Format::E5M2 : Fp8Format::E4M3;
              // plain op, then the cast: scale_inv at 1, amax recorded at 2
              if (backward)
                be->swiglu_backward(y, dout, gate_up);
              else
                be->swiglu_forward(y, gate_up);
              be->fp8_quantize(want, want_t, scalar(1), y, scalar(0), f, scalar(2));
              // the producer: scale_inv at 3, amax at 4
              const Fp8Cast c{scalar(0), scalar(3), scalar(4), f};
              if (backward)
                be->swiglu_backward_fp8(got, got_t, dout, gate_up, c);
              else
                be->swiglu_forward_fp8(got, got_t, gate_up, c);
              std::vector<uint8_t> w(size_t(N * W)), g(size_t(N * W));
              be->download(w.data(), want);
              be->download(g.data(), got);
              EXPECT_EQ(g, w);
              if (both) {
                be->download(w.data(), want_t);
                be->download(g.data(), got_t);
                EXPECT_EQ(g, w) << "transposed";
                if (!overflow) {  // and they are the codes transposed
                  std::vector<uint8_t> rows(size_t(N * W));
                  be->download(rows.data(), want);
                  int64_t off = 0;
                  for (int64_t n = 0; n < N; ++n)
                    for (int64_t i = 0; i < W; ++i)
                      off += rows[size_t(n * W + i)] != w[size_t(i * N + n)];
                  EXPECT_EQ(off, 0);
                }
              }
              const float si[2] = {read(1), read(3)}, am[2] = {read(2), read(4)};
              EXPECT_EQ(std::isnan(si[1]), overflow) << si[1];
              if (!overflow) {
                EXPECT_EQ(si[1], si[0]);
              }
              EXPECT_TRUE(am[1] == am[0] || (std::isnan(am[0]) && std::isnan(am[1])))
                  << am[1] << " vs " << am[0];
              if (!overflow) {
                EXPECT_GT(am[1], start);  // recorded: max with what it held
              }
              for (int i : {1, 2, 3, 4}) be->upload(scalar(i), &start);
            }
          // RMSNorm (qkv's and gate_up's input), plain and with the residual add: inp = the
          // first N x I values of gate_up, delta = dout, weight = the first I values of dout.
          for (bool add : {false, true}) {
            Tensor inp = gu_b.tensor(act, {N, I}), delta = dy_b.tensor(act, {N, I});
            Tensor weight = s_b.tensor(act, {I}, 5 * 256),
                   rstd = s_b.tensor(DType::F32, {N}, 6 * 256);
            Tensor y = y_b.tensor(act, {N, I}), res = y_b.tensor(act, {N, I}, size_t(N * I) * 4);
            backend_test::upload(*be, weight, std::vector<float>(dy.begin(), dy.begin() + I));
            Tensor want = a_b.tensor(DType::U8, {N, I}), got = b_b.tensor(DType::U8, {N, I});
            if (add)
              be->add_rmsnorm_forward(res, y, rstd, inp, delta, weight, 1e-5f);
            else
              be->rmsnorm_forward(y, rstd, inp, weight, 1e-5f);
            be->fp8_quantize(want, Tensor(), scalar(1), y, scalar(0), Fp8Format::E4M3, scalar(2));
            be->rmsnorm_forward_fp8(add ? res : Tensor(), got, rstd, inp, add ? delta : Tensor(),
                                    weight, 1e-5f,
                                    {scalar(0), scalar(3), scalar(4), Fp8Format::E4M3});
            std::vector<uint8_t> w(size_t(N * I)), g(size_t(N * I));
            be->download(w.data(), want);
            be->download(g.data(), got);
            EXPECT_EQ(g, w) << (add ? "add_rmsnorm" : "rmsnorm");
            const float si[2] = {read(1), read(3)}, am[2] = {read(2), read(4)};
            EXPECT_TRUE(si[1] == si[0] || (std::isnan(si[0]) && std::isnan(si[1]))) << si[1];
            EXPECT_TRUE(am[1] == am[0] || (std::isnan(am[0]) && std::isnan(am[1])));
            for (int i : {1, 2, 3, 4}) be->upload(scalar(i), &start);
          }
          // Refused: codes of the wrong shape, transposed codes of the wrong shape or over the
          // codes or the input, a missing scale.
          const Fp8Cast cast{scalar(0), scalar(3), {}, Fp8Format::E4M3};
          Tensor bad = a_b.tensor(DType::U8, {N, I + 1}), codes = a_b.tensor(DType::U8, {N, I});
          EXPECT_THROW(be->swiglu_forward_fp8(bad, Tensor(), gate_up, cast), Error);
          EXPECT_THROW(be->swiglu_forward_fp8(codes, b_b.tensor(DType::U8, {N, I}), gate_up, cast),
                       Error);
          EXPECT_THROW(
              be->swiglu_forward_fp8(codes, a_b.tensor(DType::U8, {I, N}, 16), gate_up, cast),
              Error);
          EXPECT_THROW(  // over the input
              be->swiglu_forward_fp8(codes, gu_b.tensor(DType::U8, {I, N}), gate_up, cast), Error);
          EXPECT_THROW(be->swiglu_forward_fp8(codes, Tensor(), gate_up,
                                              {Tensor(), scalar(3), {}, Fp8Format::E4M3}),
                       Error);
        }
}

TEST(CpuBackend, CopiesAndConvertsBetweenFloatTypes) {
  auto be = make_backend("cpu", 1);
  Buffer buf(*be, 64);
  Tensor f = buf.tensor(DType::F32, {3});
  const float src[3] = {1.5f, -2.25f, 3.0f + 1.0f / 512};  // last is exact in f16, not in bf16
  be->upload(f, src);
  Tensor h = buf.tensor(DType::F16, {3}, 16), bf = buf.tensor(DType::BF16, {3}, 32);
  Tensor back = buf.tensor(DType::F32, {3}, 48);
  be->convert(bf, f);
  be->convert(h, bf);  // bf16 -> f16 through f32
  be->convert(back, h);
  float got[3];
  be->download(got, back);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(got[i], bf16_to_f32(f32_to_bf16(src[i]))) << i;
  be->convert(h, f);
  be->convert(back, h);
  be->download(got, back);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(got[i], src[i]) << i;  // all exact in f16
  be->zero(back);
  be->download(got, back);
  EXPECT_EQ(got[1], 0.0f);
  EXPECT_THROW(be->convert(buf.tensor(DType::I32, {3}), f), Error);
  EXPECT_THROW(be->copy(h, f), Error);
}

// Each float op against the double template on the same (float-representable) inputs.
TEST(CpuBackend, EveryOpMatchesTheDoubleTemplates) {
  auto be = make_backend("cpu", 2);
  Rng rng(5);
  const double rt = 2e-5, at = 2e-5;  // fp32 vs fp64 arithmetic
  {  // RMSNorm with residual add, and its backward (accumulating, dinp skipped once)
    Data a(rng, N * C), d(rng, N * C), w(rng, C), dy(rng, N * C);
    FVec res = poisoned(N * C), out = poisoned(N * C), rstd = poisoned(N);
    be->add_rmsnorm_forward(tu_tensor(res, {B, T, C}), tu_tensor(out, {B, T, C}),
                            tu_tensor(rstd, {B, T}), tu_tensor(a.f, {B, T, C}),
                            tu_tensor(d.f, {B, T, C}), tu_tensor(w.f, {C}), 1e-5f);
    Vec rres(a.d.size()), rout(a.d.size()), rrstd(static_cast<size_t>(N));
    cpu::add_rmsnorm_forward(rres.data(), rout.data(), rrstd.data(), a.d.data(), d.d.data(),
                             w.d.data(), N, C, 1e-5);
    tu_expect_near(res, rres, 1e-7, 0, "add_rmsnorm res_out");
    tu_expect_near(out, rout, rt, at, "add_rmsnorm out");
    tu_expect_near(rstd, rrstd, rt, at, "add_rmsnorm rstd");
    FVec dw(size_t(C), 1.0f);
    Vec rdx(a.d.size(), 0.0), rdw(size_t(C), 1.0);
    be->rmsnorm_backward(Tensor(), tu_tensor(dw, {C}), tu_tensor(dy.f, {B, T, C}),
                         tu_tensor(res, {B, T, C}), tu_tensor(w.f, {C}), tu_tensor(rstd, {B, T}));
    cpu::rmsnorm_backward(rdx.data(), rdw.data(), dy.d.data(), tu_to_f64(res).data(), w.d.data(),
                          tu_to_f64(rstd).data(), N, C);
    tu_expect_near(dw, rdw, rt, at, "rmsnorm dweight");
  }
  {  // matmul, dinp accumulated
    Data x(rng, N * I), w(rng, C * I), dy(rng, N * C), dx0(rng, N * I);
    FVec out = poisoned(N * C), dx = dx0.f, dw(size_t(C * I), 0.0f);
    be->matmul_forward(tu_tensor(out, {N, C}), tu_tensor(x.f, {N, I}), tu_tensor(w.f, {C, I}));
    be->matmul_backward(tu_tensor(dx, {N, I}), tu_tensor(dw, {C, I}), tu_tensor(dy.f, {N, C}),
                        tu_tensor(x.f, {N, I}), tu_tensor(w.f, {C, I}), true, true);
    Vec rout(out.size()), rdx = dx0.d, rdw(dw.size(), 0.0);
    cpu::matmul_forward(rout.data(), x.d.data(), w.d.data(), N, I, C);
    cpu::matmul_backward(rdx.data(), rdw.data(), dy.d.data(), x.d.data(), w.d.data(), N, I, C, true,
                         true);
    tu_expect_near(out, rout, rt, 1e-4, "matmul out");
    tu_expect_near(dx, rdx, rt, 1e-4, "matmul dinp");
    tu_expect_near(dw, rdw, rt, 1e-3, "matmul dweight");
  }
  {  // attention (GQA 3:1) and its backward
    Data qkv(rng, N * QKV), dy(rng, N * H * D);
    FVec out = poisoned(N * H * D), lse = poisoned(B * H * T), dqkv = poisoned(N * QKV);
    be->attention_forward(tu_tensor(out, {B, T, H * D}), tu_tensor(lse, {B, H, T}),
                          tu_tensor(qkv.f, {B, T, QKV}), H, K);
    be->attention_backward(tu_tensor(dqkv, {B, T, QKV}), tu_tensor(dy.f, {B, T, H * D}),
                           tu_tensor(qkv.f, {B, T, QKV}), tu_tensor(out, {B, T, H * D}),
                           tu_tensor(lse, {B, H, T}), H, K);
    Vec rout(out.size()), rlse(lse.size()), rdqkv(dqkv.size());
    cpu::attention_forward(rout.data(), rlse.data(), qkv.d.data(), B, T, H, K, D);
    cpu::attention_backward(rdqkv.data(), dy.d.data(), qkv.d.data(), rout.data(), rlse.data(), B, T,
                            H, K, D);
    tu_expect_near(out, rout, rt, at, "attention out");
    tu_expect_near(lse, rlse, rt, at, "attention lse");
    tu_expect_near(dqkv, rdqkv, 1e-4, 1e-4, "attention dqkv");
  }
  {  // SwiGLU
    Data gu(rng, N * 2 * C, 2.0), dy(rng, N * C);
    FVec out = poisoned(N * C), dgu = poisoned(N * 2 * C);
    be->swiglu_forward(tu_tensor(out, {N, C}), tu_tensor(gu.f, {N, 2 * C}));
    be->swiglu_backward(tu_tensor(dgu, {N, 2 * C}), tu_tensor(dy.f, {N, C}),
                        tu_tensor(gu.f, {N, 2 * C}));
    Vec rout(out.size()), rdgu(dgu.size());
    cpu::swiglu_forward(rout.data(), gu.d.data(), N, C);
    cpu::swiglu_backward(rdgu.data(), dy.d.data(), gu.d.data(), N, C);
    tu_expect_near(out, rout, rt, at, "swiglu out");
    tu_expect_near(dgu, rdgu, rt, at, "swiglu dgate_up");
  }
  {  // head + cross-entropy over two chunks, and rope forward/backward
    Data x(rng, N * C), w(rng, V * C);
    auto targets = random_ids(rng, N, V);
    targets[0] = targets[N - 1] = -1;
    FVec losses = poisoned(N), dx = poisoned(N * C), dw(size_t(V * C), 0.0f);
    be->head_cross_entropy(tu_tensor(losses, {B, T}), tu_tensor(dx, {B, T, C}),
                           tu_tensor(dw, {V, C}), tu_tensor(x.f, {B, T, C}), tu_tensor(w.f, {V, C}),
                           tu_tensor(targets, {B, T}), 0.5f);
    Vec rl(losses.size()), rdx(dx.size()), rdw(dw.size(), 0.0);
    cpu::head_cross_entropy(rl.data(), rdx.data(), rdw.data(), x.d.data(), w.d.data(),
                            targets.data(), N, C, V, 0.5);
    tu_expect_near(losses, rl, rt, at, "losses");
    tu_expect_near(dx, rdx, rt, at, "head dx");
    tu_expect_near(dw, rdw, rt, at, "head dweight");
  }
}

TEST(CpuBackend, AdamWMatchesScalarDerivationWithClipping) {
  auto be = make_backend("cpu", 2);
  Rng rng(6);
  const int64_t P = 5000;
  FVec p = tu_to_f32(tu_randn(rng, P)), m(size_t(P), 0.0f), v(size_t(P), 0.0f);
  FVec pc(static_cast<size_t>(P));
  std::vector<uint16_t> pbf(static_cast<size_t>(P));
  Vec rp = tu_to_f64(p), rm(size_t(P), 0.0), rv(size_t(P), 0.0);
  AdamWArgs a;
  a.lr = 0.01f, a.beta1 = 0.9f, a.beta2 = 0.95f, a.eps = 1e-8f, a.weight_decay = 0.1f;
  a.max_grad_norm = 1.0f;
  for (int step = 1; step <= 4; ++step) {
    // Steps 1-2 clip (norm ~70), step 3 has a small gradient (no clip), step 4 passes no norm.
    FVec g = tu_to_f32(tu_randn(rng, P, step == 3 ? 1e-3 : 1.0));
    FVec nsq(1);
    be->sum_squares(tu_tensor(nsq, {1}), tu_tensor(g, {P}));
    double want_nsq = 0;
    for (float x : g) want_nsq += double(x) * x;
    ASSERT_NEAR(nsq[0], want_nsq, want_nsq * 1e-6);
    a.step = step;
    const bool pass_norm = step != 4;
    Tensor compute =
        step == 2 ? tu_tensor(pc, {P}) : Tensor(pbf.data(), DType::BF16, Device::CPU, {P});
    be->adamw_update(tu_tensor(p, {P}), tu_tensor(g, {P}), tu_tensor(m, {P}), tu_tensor(v, {P}),
                     compute, pass_norm ? tu_tensor(nsq, {1}) : Tensor(), a);
    // The textbook form: bias-corrected moments, decoupled decay first.
    const double c = pass_norm ? std::min(1.0, 1.0 / (std::sqrt(double(nsq[0])) + 1e-6)) : 1.0;
    if (step <= 2) {
      EXPECT_LT(c, 0.1);
    } else if (step == 3) {
      EXPECT_EQ(c, 1.0);
    }
    const double b1 = a.beta1, b2 = a.beta2, lr = a.lr;
    for (int64_t i = 0; i < P; ++i) {
      const double gi = c * g[i];
      rm[i] = b1 * rm[i] + (1 - b1) * gi;
      rv[i] = b2 * rv[i] + (1 - b2) * gi * gi;
      const double mhat = rm[i] / (1 - std::pow(b1, step)), vhat = rv[i] / (1 - std::pow(b2, step));
      rp[i] -= lr * double(a.weight_decay) * rp[i];
      rp[i] -= lr * mhat / (std::sqrt(vhat) + double(a.eps));
    }
    tu_expect_near(m, rm, 1e-5, 1e-9, "m");
    tu_expect_near(v, rv, 1e-5, 1e-12, "v");
    tu_expect_near(p, rp, 1e-6, 1e-6, "params");
    if (step == 2) {
      EXPECT_EQ(pc, p);
    } else {
      for (int64_t i = 0; i < P; ++i) ASSERT_EQ(pbf[i], f32_to_bf16(p[i])) << i;
    }
  }
}

TEST(CpuBackend, BitwiseDeterministicAcrossThreadCountsAndRuns) {
  auto one = make_backend("cpu", 1), two = make_backend("cpu", 2);
  const auto a = run_every_op(*one), b = run_every_op(*two), c = run_every_op(*two);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, v] : a) {
    EXPECT_TRUE(tu_bitwise_equal(v, b.at(name))) << name << ": 1 vs 2 threads";
    EXPECT_TRUE(tu_bitwise_equal(b.at(name), c.at(name))) << name << ": run to run";
    for (float x : v)
      ASSERT_TRUE(std::isfinite(x)) << name << " has a non-finite (unwritten?) element";
  }
}

TEST(CpuBackend, RejectsBadInputsWithNamedErrors) {
  auto be = make_backend("cpu", 2);
  auto expect_error = [](const std::function<void()>& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  FVec table(12), out(8), big(64), w(16), lse(8), one(1), nw(4);
  std::vector<uint16_t> half(12);
  std::vector<int32_t> ids = {0, 2}, bad_hi = {0, 3}, bad_lo = {-1, 0};
  Tensor tab = tu_tensor(table, {3, 4}), o = tu_tensor(out, {2, 4});
  expect_error([&] { be->embedding_forward(o, tab, tu_tensor(bad_hi, {2})); }, "tokens[1] = 3");
  expect_error([&] { be->embedding_forward(o, tab, tu_tensor(bad_lo, {2})); }, "tokens[0] = -1");
  expect_error([&] { be->embedding_backward(tab, o, tu_tensor(bad_hi, {2})); },
               "embedding_backward");
  expect_error(
      [&] {
        be->embedding_forward(o, Tensor(half.data(), DType::BF16, Device::CPU, {3, 4}),
                              tu_tensor(ids, {2}));
      },
      "table must be f32");
  expect_error(
      [&] { be->embedding_forward(o, tab, Tensor(ids.data(), DType::F32, Device::CPU, {2})); },
      "tokens must be i32");
  expect_error(
      [&] {
        be->matmul_forward(o, tu_tensor(table, {2, 6}), tu_tensor(w, {4, 4}));
      },
      "matmul_forward: inp");
  expect_error(
      [&] {
        be->matmul_forward(tu_tensor(big, {2, 32}), tu_tensor(out, {2, 4}), tu_tensor(w, {4, 4}));
      },
      "matmul_forward: out");
  expect_error([&] { be->rmsnorm_forward(o, tu_tensor(one, {1}), o, tu_tensor(nw, {4}), 1e-5f); },
               "rstd");
  expect_error(
      [&] {
        be->swiglu_forward(tu_tensor(table, {4, 3}), tu_tensor(table, {2, 6}));
      },
      "swiglu_forward: out");
  // qkv [B=1, T=2, (H + 2K) * D = 32]: H = 2, K = 1, D = 8.
  Tensor qkv = tu_tensor(big, {1, 2, 32});
  FVec cs(8);
  expect_error(
      [&] {
        be->rope_forward(qkv, tu_tensor(cs, {2, 4}), tu_tensor(cs, {2, 4}), 2, 1, 1);
      },
      "exceed the tables");
  expect_error(
      [&] {
        be->attention_forward(tu_tensor(w, {1, 2, 8}), tu_tensor(lse, {1, 4, 2}), qkv, 3, 2);
      },
      "n_kv_head");
  expect_error(
      [&] {
        be->attention_forward(tu_tensor(w, {1, 2, 8}), tu_tensor(lse, {1, 2, 4}), qkv, 2, 1);
      },
      "attention_forward: out");
  FVec losses(2), x(8), hw(12);
  std::vector<int32_t> tgt = {1, 3};
  expect_error(
      [&] {
        be->head_cross_entropy(tu_tensor(losses, {2}), Tensor(), Tensor(), tu_tensor(x, {2, 4}),
                               tu_tensor(hw, {3, 4}), tu_tensor(tgt, {2}), 1.0f);
      },
      "targets[1] = 3");
  expect_error(
      [&] {
        be->adamw_update(tu_tensor(w, {16}), tu_tensor(out, {8}), tu_tensor(w, {16}),
                         tu_tensor(w, {16}), Tensor(), Tensor(), AdamWArgs{});
      },
      "adamw_update: grads");
  // A negative target is simply ignored.
  tgt = {1, -1};
  be->head_cross_entropy(tu_tensor(losses, {2}), Tensor(), Tensor(), tu_tensor(x, {2, 4}),
                         tu_tensor(hw, {3, 4}), tu_tensor(tgt, {2}), 1.0f);
  EXPECT_EQ(losses[1], 0.0f);
}

// The model's buffers keep their offsets run to run, but a vectorizer that peeled loops by
// alignment could still change sums between buffers; check the ops with reductions.
TEST(CpuBackend, ResultsDoNotDependOnAlignment) {
  Rng rng(7);
  const int64_t n = 37, c = 300, o = 70, t = 9;
  const int h = 6, k = 2, d = 32, qkv = (h + 2 * k) * d;
  const FVec x = tu_to_f32(tu_randn(rng, n * c)), w = tu_to_f32(tu_randn(rng, o * c));
  const FVec heads = tu_to_f32(tu_randn(rng, 4 * t * qkv));
  std::vector<int32_t> targets = random_ids(rng, n, o);
  std::vector<FVec> results[2];
  for (int64_t shift : {0, 3}) {  // the same inputs, 12 bytes further into their buffers
    auto at = [&](const FVec& v) {
      FVec s(static_cast<size_t>(shift), 0.0f);
      s.insert(s.end(), v.begin(), v.end());
      return s;
    };
    FVec xs = at(x), ws = at(w), hs = at(heads), out = at(FVec(size_t(n * o)));
    FVec rstd = at(FVec(size_t(n))), dx = at(FVec(size_t(n * c))), dnw = at(FVec(size_t(c)));
    FVec att = at(FVec(size_t(4 * t * h * d))), lse = at(FVec(size_t(4 * h * t)));
    FVec dqkv = at(FVec(hs.size() - size_t(shift))), losses = at(FVec(size_t(n)));
    FVec dhx = at(FVec(size_t(n * c))), dhw = at(FVec(size_t(o * c)));
    const int64_t s = shift;
    cpu::matmul_forward(out.data() + s, xs.data() + s, ws.data() + s, n, c, o);
    cpu::rmsnorm_forward(dx.data() + s, rstd.data() + s, xs.data() + s, ws.data() + s, n, c, 1e-5);
    cpu::rmsnorm_backward(dx.data() + s, dnw.data() + s, xs.data() + s, dx.data() + s,
                          ws.data() + s, rstd.data() + s, n, c);
    cpu::attention_forward(att.data() + s, lse.data() + s, hs.data() + s, 4, t, h, k, d);
    cpu::attention_backward(dqkv.data() + s, att.data() + s, hs.data() + s, att.data() + s,
                            lse.data() + s, 4, t, h, k, d);
    cpu::head_cross_entropy(losses.data() + s, dhx.data() + s, dhw.data() + s, xs.data() + s,
                            ws.data() + s, targets.data(), n, c, o, 0.1);
    const float ss = float(cpu::sum_squares(xs.data() + s, n * c));
    auto& r = results[shift ? 1 : 0];
    for (FVec* v : {&out, &rstd, &dx, &dnw, &att, &lse, &dqkv, &losses, &dhx, &dhw})
      r.emplace_back(v->begin() + s, v->end());
    r.push_back({ss});
  }
  for (size_t i = 0; i < results[0].size(); ++i)
    EXPECT_TRUE(tu_bitwise_equal(results[0][i], results[1][i])) << "output " << i;
}
