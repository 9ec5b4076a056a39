// CUDA causal grouped-query attention (fa2, cuDNN and generic kernels) against a float64 reference
// computed here: explicit scores, causal mask, softmax; backward by the standard formulas
// (P = exp(s - lse), dV = P^T dO, dS = P (dO V^T - rowsum(dO O)), dQ = scale dS K,
// dK = scale dS^T Q, dK/dV summed over the query heads of each kv group).
//
// Inputs are bf16, so the reference sees exactly the values the GPU sees. Tolerances:
// the GPU rounds P and dS to bf16 (relative 2^-9) before the second products and rounds
// every output to bf16 (another 2^-9), with f32 accumulation; random-sign errors of that
// size give a relative L2 error of a few 1e-3. We require rel L2 <= 1e-2 and
// max |err| <= 3e-2 * max |ref| per tensor (a wrong index or mask gives errors of order 1),
// and |lse err| <= 2e-3 (lse is f32 math: m*scale + log(l)). Outputs are poisoned with NaN
// before each call, so an element left unwritten fails. (The generic kernels keep P and dS in
// f32, so their errors are smaller still.)
#include <gtest/gtest.h>

#ifndef TL_WITH_CUDA
TEST(CudaAttention, NeedsCuda) { GTEST_SKIP() << "built without CUDA"; }
#else

#include "attention_test_util.h"

using namespace tl;
using namespace tl::gpu;
using namespace attention_test;

namespace {

// Forward and backward of one implementation at one small shape against the reference.
// The backward receives the reference out (rounded to bf16) and lse (rounded to f32), so
// forward errors do not leak into the backward check.
void check_against_reference(const Shape5& s, double amp, const AttentionOptions& opt,
                             uint64_t seed, size_t offset = 0) {
  Gpu gpu;
  Problem pb(s, amp, seed, offset);
  const std::string tag =
      cat(impl_name(opt), " ", s.str(), amp != 1.0 ? cat(" amp", amp) : std::string());
  const Sel sel = all_of(s);
  const std::vector<double> qkv = to_double(pb.qkv), dout = to_double(pb.dout);
  std::vector<double> out, lse;
  ref_forward(s, sel, qkv, out, lse);

  pb.forward(gpu, opt);
  expect_close(tag + " out", bf16_to_float(pb.get_out()), out, out_indices(s, sel));
  expect_lse_close(tag + " lse", pb.get_lse(), lse, lse_indices(s, sel));

  std::vector<uint16_t> out_in(out.size());
  std::vector<float> lse_in(lse.size());
  for (size_t i = 0; i < out.size(); ++i) out_in[i] = f32_to_bf16(float(out[i]));
  for (size_t i = 0; i < lse.size(); ++i) lse_in[i] = float(lse[i]);
  pb.set_out_lse(out_in, lse_in);
  std::vector<double> dqkv;
  ref_backward(s, sel, qkv, to_double(out_in), std::vector<double>(lse_in.begin(), lse_in.end()),
               dout, dqkv);
  pb.backward(gpu, opt);
  check_dqkv(tag, s, sel, bf16_to_float(pb.get_dqkv()), dqkv);
}

struct SmallCase {
  int T, K, D;
  double amp = 1.0;
  int H = 4;
};
std::string case_name(const testing::TestParamInfo<SmallCase>& i) {
  return cat("T", i.param.T, "_H", i.param.H, "_K", i.param.K, "_D", i.param.D,
             i.param.amp != 1.0 ? "_peaked" : "");
}

// B=2, H=4 throughout; T covers one row, partial tiles, one exact tile and tiles + 2;
// K=2 (groups of 2), K=1 (multi-query), K=4 (no grouping).
const std::vector<SmallCase> kFa2Cases = {
    {1, 2, 64},
    {17, 2, 64},
    {64, 2, 64},
    {130, 2, 64},
    {1, 1, 64},
    {17, 1, 64},
    {64, 1, 64},
    {130, 1, 64},
    {1, 4, 64},
    {17, 4, 64},
    {64, 4, 64},
    {130, 4, 64},
    {200, 2, 64, 3.0},  // scores with std ~9: peaked softmax, large
                        // running-max corrections
    {130, 2, 128},
    {257, 1, 128},
};
// cuDNN <= 9.15 runs the backward only at T % 128 == 0.
const std::vector<SmallCase> kCudnnCases = {
    {128, 2, 64}, {128, 1, 64}, {128, 4, 64}, {256, 2, 64}, {256, 2, 64, 3.0}, {128, 2, 128},
};

// Generic kernels: every head dim the model config accepts (even), B=2. D below, at and
// across the chunk widths 32/64/128 (130, 200, 256: several chunks, a partial last one), D
// not a multiple of 8 (2, 6, 12, 34, 130), the demo presets (micro: T64 H4 K2 D16, tiny:
// T256 H6 K2 D32), GQA ratios 1, 2, 3, 4, 6, T of one row, partial tiles and exact tiles.
const std::vector<SmallCase> kGenericCases = {
    {1, 2, 16},         {17, 1, 16},   {64, 2, 16},         {33, 4, 16},  {256, 2, 32, 1.0, 6},
    {65, 1, 32},        {32, 2, 32},   {47, 1, 40},         {100, 2, 80}, {129, 4, 96},
    {200, 2, 96, 3.0},  {70, 2, 256},  {33, 1, 256},        {31, 2, 2},   {45, 1, 12},
    {20, 2, 6, 1.0, 6}, {66, 2, 34},   {40, 2, 130},        {97, 1, 200}, {50, 3, 48, 1.0, 6},
    {130, 2, 64},       {100, 1, 128}, {18, 1, 24, 1.0, 6},
};

class Fa2Small : public testing::TestWithParam<SmallCase> {};
class CudnnSmall : public testing::TestWithParam<SmallCase> {};
class GenericSmall : public testing::TestWithParam<SmallCase> {};

}  // namespace

TEST_P(Fa2Small, MatchesReference) {
  SKIP_WITHOUT_GPU();
  const SmallCase c = GetParam();
  const Shape5 s{2, c.T, c.H, c.K, c.D};
  check_against_reference(s, c.amp, only(AttentionImpl::Fa2),
                          1000 + uint64_t(c.T) * 7 + uint64_t(c.K));
  check_against_reference(s, c.amp, only(AttentionImpl::Fa2, false),
                          2000 + uint64_t(c.T) * 7 + uint64_t(c.K));
}
INSTANTIATE_TEST_SUITE_P(CudaAttention, Fa2Small, testing::ValuesIn(kFa2Cases), case_name);

TEST_P(CudnnSmall, MatchesReference) {
  SKIP_WITHOUT_GPU();
  const SmallCase c = GetParam();
  const Shape5 s{2, c.T, c.H, c.K, c.D};
  check_against_reference(s, c.amp, only(AttentionImpl::Cudnn),
                          3000 + uint64_t(c.T) * 7 + uint64_t(c.K));
}
INSTANTIATE_TEST_SUITE_P(CudaAttention, CudnnSmall, testing::ValuesIn(kCudnnCases), case_name);

TEST_P(GenericSmall, MatchesReference) {
  SKIP_WITHOUT_GPU();
  const SmallCase c = GetParam();
  const Shape5 s{2, c.T, c.H, c.K, c.D};
  check_against_reference(s, c.amp, only(AttentionImpl::Generic),
                          4000 + uint64_t(c.T) * 7 + uint64_t(c.K) + uint64_t(c.D) * 131);
}
INSTANTIATE_TEST_SUITE_P(CudaAttention, GenericSmall, testing::ValuesIn(kGenericCases), case_name);

// Auto at head dims fa2 does not run (the HF golden fixture has 16, the tiny preset 32), and
// at D=64 with tensors that are only 4-byte aligned (fa2 and cuDNN need 16): generic runs them.
TEST(CudaAttention, AutoRunsEveryShape) {
  SKIP_WITHOUT_GPU();
  const AttentionOptions autom;
  check_against_reference(Shape5{2, 40, 4, 2, 16}, 1.0, autom, 5001);
  check_against_reference(Shape5{1, 77, 6, 2, 32}, 1.0, autom, 5002);
  check_against_reference(Shape5{2, 70, 4, 2, 64}, 1.0, autom, 5003, /*offset=*/4);
}

// Which implementation runs what (no GPU needed: selection looks at shapes only).
TEST(CudaAttention, Selection) {
  const AttentionOptions autom;
  // cuDNN where it runs (it was 65% faster than fa2 at the 1.1B shape on the H100).
  EXPECT_EQ(attention_impl_for(autom, 2048, 32, 4, 64), AttentionImpl::Cudnn);
  EXPECT_EQ(attention_impl_for(autom, 2048, 32, 4, 128), AttentionImpl::Cudnn);
  // T % 128 != 0: cuDNN from 9.16 on; before, generic (fa2 runs head dims 64 and 128 only).
  const AttentionImpl ragged_T =
      cudnn_runtime_version() >= 91600 ? AttentionImpl::Cudnn : AttentionImpl::Generic;
  std::printf("cuDNN %zu at run time\n", cudnn_runtime_version());
  EXPECT_EQ(attention_impl_for(autom, 64, 4, 2, 16), ragged_T);
  EXPECT_EQ(attention_impl_for(autom, 256, 6, 2, 32), AttentionImpl::Cudnn);  // D 32, T % 128 == 0
  EXPECT_EQ(attention_impl_for(autom, 100, 4, 2, 96), ragged_T);
  EXPECT_EQ(attention_impl_for(autom, 100, 4, 2, 64),
            ragged_T == AttentionImpl::Cudnn ? AttentionImpl::Cudnn : AttentionImpl::Fa2);
  EXPECT_EQ(attention_impl_for(autom, 100, 4, 2, 12), AttentionImpl::Generic);  // D % 8 != 0
  EXPECT_EQ(attention_impl_for(autom, 2048, 32, 4, 64, /*aligned16=*/false),
            AttentionImpl::Generic);
  AttentionOptions pref;  // a preference (as TL_ATTENTION sets): Auto where it cannot run
  pref.impl = AttentionImpl::Cudnn;  // head dim 12: not a multiple of 8
  EXPECT_EQ(attention_impl_for(pref, 128, 4, 2, 12), AttentionImpl::Generic);
  pref.impl = AttentionImpl::Generic;
  EXPECT_EQ(attention_impl_for(pref, 2048, 32, 4, 64), AttentionImpl::Generic);
  EXPECT_EQ(attention_impl_for(only(AttentionImpl::Generic), 5, 2, 1, 6), AttentionImpl::Generic);
  EXPECT_THROW(attention_impl_for(only(AttentionImpl::Fa2), 64, 4, 2, 96), Error);
  EXPECT_THROW(attention_impl_for(only(AttentionImpl::Cudnn), 128, 4, 2, 12), Error);
  EXPECT_THROW(attention_impl_for(only(AttentionImpl::Fa2), 64, 4, 2, 64, false), Error);
}

// Every tensor and node of the cuDNN graphs finalizes (no GPU needed: the operation graph,
// which needs one, is not built). The first H100 run failed here: 1-d scalars among 4-d tensors.
TEST(CudaAttention, CudnnGraphNodesFinalize) {
  for (const Shape5& c : {Shape5{2, 128, 4, 2, 64}, Shape5{2, 256, 4, 4, 64},
                          Shape5{1, 2048, 32, 4, 64}, Shape5{2, 128, 8, 1, 128}}) {
    AttnShape s;
    s.B = c.B, s.T = c.T, s.H = c.H, s.K = c.K, s.D = c.D;
    try {
      cudnn_attention_check_nodes(s);
    } catch (const Error& e) {
      ADD_FAILURE() << c.str() << ": " << e.what();
    }
  }
}

// The TinyLlama 1.1B shape: fa2 and cuDNN against each other over everything, and against the
// reference on batch row 1, kv group 1 (query heads 8..15); then mixed: each backward fed by
// the other's forward.
TEST(CudaAttention, Fa2VsCudnnAt1p1BShape) {
  SKIP_WITHOUT_GPU();
  const Shape5 s{2, 2048, 32, 4, 64};
  Gpu gpu;
  Problem pb(s, 1.0, 77);
  const AttentionOptions fa2 = only(AttentionImpl::Fa2), atomic = only(AttentionImpl::Fa2, false),
                         cudnn = only(AttentionImpl::Cudnn);
  const Sel sub{1, 2, 1, 2}, every = all_of(s);
  const std::string tag = s.str();

  pb.forward(gpu, fa2);
  const auto out_f = pb.get_out();
  const auto lse_f = pb.get_lse();
  pb.forward(gpu, cudnn);
  const auto out_c = pb.get_out();
  const auto lse_c = pb.get_lse();

  const std::vector<double> qkv = to_double(pb.qkv), dout = to_double(pb.dout);
  std::vector<double> out_ref, lse_ref;
  ref_forward(s, sub, qkv, out_ref, lse_ref);
  std::printf(" forward (reference on b=1, heads 8..15):\n");
  expect_close("fa2 out vs reference", bf16_to_float(out_f), out_ref, out_indices(s, sub));
  expect_close("cudnn out vs reference", bf16_to_float(out_c), out_ref, out_indices(s, sub));
  expect_lse_close("fa2 lse vs reference", lse_f, lse_ref, lse_indices(s, sub));
  expect_lse_close("cudnn lse vs reference", lse_c, lse_ref, lse_indices(s, sub));
  expect_close("fa2 out vs cudnn out (all)", bf16_to_float(out_f), bf16_to_float(out_c),
               out_indices(s, every));
  expect_lse_close("fa2 lse vs cudnn lse (all)", lse_f,
                   std::vector<double>(lse_c.begin(), lse_c.end()), lse_indices(s, every));

  // Backward from fa2's forward: fa2 (deterministic and atomic) and cuDNN.
  pb.set_out_lse(out_f, lse_f);
  pb.backward(gpu, fa2);
  const auto dqkv_f = bf16_to_float(pb.get_dqkv());
  pb.backward(gpu, atomic);
  const auto dqkv_a = bf16_to_float(pb.get_dqkv());
  pb.backward(gpu, cudnn);
  const auto dqkv_c = bf16_to_float(pb.get_dqkv());
  std::vector<double> dqkv_ref;
  ref_backward(s, sub, qkv, to_double(out_f), std::vector<double>(lse_f.begin(), lse_f.end()), dout,
               dqkv_ref);
  std::printf(" backward from fa2's forward (reference on b=1, kv group 1):\n");
  check_dqkv("fa2 vs reference", s, sub, dqkv_f, dqkv_ref);
  check_dqkv("fa2-atomic vs reference", s, sub, dqkv_a, dqkv_ref);
  check_dqkv("cudnn vs reference", s, sub, dqkv_c, dqkv_ref);
  check_dqkv("fa2 vs cudnn (all)", s, every, dqkv_f, dqkv_c);
  check_dqkv("fa2 vs fa2-atomic (all)", s, every, dqkv_f, dqkv_a);

  // Mixed: fa2 backward from cuDNN's forward, against fa2 backward from fa2's forward.
  pb.set_out_lse(out_c, lse_c);
  pb.backward(gpu, fa2);
  std::printf(" fa2 backward fed by cudnn's forward:\n");
  check_dqkv("fa2(cudnn fwd) vs fa2(fa2 fwd) (all)", s, every, bf16_to_float(pb.get_dqkv()),
             dqkv_f);
}

TEST(CudaAttention, Fa2BackwardIsDeterministic) {
  SKIP_WITHOUT_GPU();
  const Shape5 s{2, 384, 8, 2, 64};
  Gpu gpu;
  Problem pb(s, 1.0, 99);
  const AttentionOptions det = only(AttentionImpl::Fa2);
  pb.forward(gpu, det);
  pb.backward(gpu, det);
  const auto first = pb.get_dqkv();
  for (int run = 0; run < 3; ++run) {
    pb.backward(gpu, det);
    const auto again = pb.get_dqkv();
    EXPECT_EQ(std::memcmp(first.data(), again.data(), first.size() * 2), 0)
        << "run " << run + 2 << " differs";
  }
  // For information: the atomic mode is not expected to be bitwise stable.
  const AttentionOptions atomic = only(AttentionImpl::Fa2, false);
  pb.backward(gpu, atomic);
  const auto a1 = pb.get_dqkv();
  pb.backward(gpu, atomic);
  const auto a2 = pb.get_dqkv();
  std::printf("  fa2-atomic backward twice: %s\n",
              std::memcmp(a1.data(), a2.data(), a1.size() * 2) == 0 ? "bitwise equal"
                                                                    : "differs (expected)");
}

TEST(CudaAttention, RejectsBadArguments) {
  SKIP_WITHOUT_GPU();
  Gpu gpu;
  const AttentionOptions fa2 = only(AttentionImpl::Fa2);
  {
    Problem pb(Shape5{1, 16, 2, 1, 96}, 1.0, 5);  // head dim 96: cuDNN can, fa2 cannot
    try {
      attention_forward_cuda(gpu.ctx, fa2, pb.t_out(), pb.t_lse(), pb.t_qkv(), 2, 1);
      ADD_FAILURE() << "fa2 accepted head dim 96";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("64 or 128"), std::string::npos) << e.what();
    }
  }
  Problem pb(Shape5{1, 16, 4, 2, 64}, 1.0, 6);
  EXPECT_THROW(attention_forward_cuda(gpu.ctx, fa2, pb.t_out(), pb.t_lse(), pb.t_qkv(), 4, 3),
               Error);  // 4 % 3
  EXPECT_THROW(attention_forward_cuda(gpu.ctx, fa2, pb.t_out(), pb.t_lse(), pb.t_qkv(), 2, 2),
               Error);  // row
  const Tensor lse_bad(pb.d_lse.p, DType::BF16, Device::CUDA, {1, 4, 16});
  EXPECT_THROW(attention_forward_cuda(gpu.ctx, fa2, pb.t_out(), lse_bad, pb.t_qkv(), 4, 2), Error);
  {
    Problem odd(Shape5{1, 16, 2, 1, 5}, 1.0, 7);  // head dim 5: no implementation, none should
    try {
      attention_forward_cuda(gpu.ctx, AttentionOptions{}, odd.t_out(), odd.t_lse(), odd.t_qkv(), 2,
                             1);
      ADD_FAILURE() << "odd head dim accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("must be even"), std::string::npos) << e.what();
    }
  }
}

// The generic kernels at sizes beyond the small tests: the TinyLlama shape against fa2 (and the
// reference on batch row 1, kv group 1), and D=256 at T=700 (two chunks) against the reference.
TEST(CudaAttention, GenericAtLargerShapes) {
  SKIP_WITHOUT_GPU();
  const AttentionOptions fa2 = only(AttentionImpl::Fa2), gen = only(AttentionImpl::Generic);
  {
    const Shape5 s{2, 2048, 32, 4, 64};
    Gpu gpu;
    Problem pb(s, 1.0, 88);
    const Sel sub{1, 2, 1, 2}, every = all_of(s);
    pb.forward(gpu, fa2);
    const auto out_f = pb.get_out();
    const auto lse_f = pb.get_lse();
    pb.forward(gpu, gen);
    const auto out_g = pb.get_out();
    const auto lse_g = pb.get_lse();
    const std::vector<double> qkv = to_double(pb.qkv), dout = to_double(pb.dout);
    std::vector<double> out_ref, lse_ref;
    ref_forward(s, sub, qkv, out_ref, lse_ref);
    std::printf(" %s forward:\n", s.str().c_str());
    expect_close("generic out vs reference", bf16_to_float(out_g), out_ref, out_indices(s, sub));
    expect_lse_close("generic lse vs reference", lse_g, lse_ref, lse_indices(s, sub));
    expect_close("generic out vs fa2 (all)", bf16_to_float(out_g), bf16_to_float(out_f),
                 out_indices(s, every));
    expect_lse_close("generic lse vs fa2 (all)", lse_g,
                     std::vector<double>(lse_f.begin(), lse_f.end()), lse_indices(s, every));
    pb.set_out_lse(out_f, lse_f);
    pb.backward(gpu, fa2);
    const auto dqkv_f = bf16_to_float(pb.get_dqkv());
    pb.backward(gpu, gen);
    const auto dqkv_g = bf16_to_float(pb.get_dqkv());
    std::vector<double> dqkv_ref;
    ref_backward(s, sub, qkv, to_double(out_f), std::vector<double>(lse_f.begin(), lse_f.end()),
                 dout, dqkv_ref);
    std::printf(" %s backward from fa2's forward:\n", s.str().c_str());
    check_dqkv("generic vs reference", s, sub, dqkv_g, dqkv_ref);
    check_dqkv("generic vs fa2 (all)", s, every, dqkv_g, dqkv_f);
  }
  {
    const Shape5 s{1, 700, 4, 2, 256};
    Gpu gpu;
    Problem pb(s, 1.0, 89);
    const Sel sub{0, 1, 1, 2};
    const std::vector<double> qkv = to_double(pb.qkv), dout = to_double(pb.dout);
    std::vector<double> out_ref, lse_ref;
    ref_forward(s, sub, qkv, out_ref, lse_ref);
    pb.forward(gpu, gen);
    const auto out_g = pb.get_out();
    const auto lse_g = pb.get_lse();
    std::printf(" %s (reference on kv group 1):\n", s.str().c_str());
    expect_close("generic out", bf16_to_float(out_g), out_ref, out_indices(s, sub));
    expect_lse_close("generic lse", lse_g, lse_ref, lse_indices(s, sub));
    pb.backward(gpu, gen);
    std::vector<double> dqkv_ref;
    ref_backward(s, sub, qkv, to_double(out_g), std::vector<double>(lse_g.begin(), lse_g.end()),
                 dout, dqkv_ref);
    check_dqkv("generic", s, sub, bf16_to_float(pb.get_dqkv()), dqkv_ref);
  }
}

TEST(CudaAttention, GenericBackwardIsDeterministic) {
  SKIP_WITHOUT_GPU();
  const Shape5 s{2, 300, 6, 2, 40};
  Gpu gpu;
  Problem pb(s, 1.0, 98);
  const AttentionOptions gen = only(AttentionImpl::Generic);
  pb.forward(gpu, gen);
  pb.backward(gpu, gen);
  const auto first = pb.get_dqkv();
  for (int run = 0; run < 2; ++run) {
    pb.backward(gpu, gen);
    const auto again = pb.get_dqkv();
    EXPECT_EQ(std::memcmp(first.data(), again.data(), first.size() * 2), 0)
        << "run " << run + 2 << " differs";
  }
}

#endif  // TL_WITH_CUDA
