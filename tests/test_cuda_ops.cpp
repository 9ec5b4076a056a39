// The CUDA backend beyond what the backend-ops table checks (test_backend_ops.cpp: every op
// against the CPU backend, and the per-op timings): memory accounting and out-of-memory
// messages, transfers and conversion, precondition errors, deterministic reductions and
// profiling by category, the decode GEMV against cuBLASLt. Skips when there is no CUDA build
// or GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend_test_util.h"
#include "ckpt_test_util.h"

using namespace tl;
using namespace backend_test;

namespace {

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available())
      GTEST_SKIP() << "CUDA backend not available (built without CUDA, or no GPU visible)";
    gpu = make_backend("cuda");
  }
  std::unique_ptr<Backend> gpu;
};

// ---------------------------------------------------------------- memory and conversion

TEST_F(CudaOps, MemoryAccountingAndOutOfMemoryMessage) {
  const size_t before = gpu->memory_in_use();
  EXPECT_GT(gpu->device_memory_total(), size_t(1) << 30);
  void* p = gpu->allocate(size_t(3) << 20);
  EXPECT_EQ(gpu->memory_in_use(), before + (size_t(3) << 20));
  EXPECT_GE(gpu->peak_memory(), before + (size_t(3) << 20));
  gpu->deallocate(p);
  EXPECT_EQ(gpu->memory_in_use(), before);

  const size_t petabyte = size_t(1) << 50;
  try {
    gpu->allocate(petabyte);
    FAIL() << "allocating 1 PiB did not throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("1125899906842624"), std::string::npos) << msg;
    EXPECT_NE(msg.find("free"), std::string::npos) << msg;
    EXPECT_NE(msg.find("micro_batch"), std::string::npos) << msg;
    EXPECT_NE(msg.find("recompute"), std::string::npos) << msg;
  }
  EXPECT_EQ(gpu->memory_in_use(), before);
  void* q = gpu->allocate(1024);  // the failure left the device usable
  gpu->deallocate(q);
}

TEST_F(CudaOps, UploadDownloadCopyZero) {
  const int64_t n = 1001;
  std::vector<float> v = randn(n, 1);
  Arr a = alloc(*gpu, DType::F32, {n}), b = alloc(*gpu, DType::F32, {n});
  upload(*gpu, a.t, v);
  gpu->copy(b.t, a.t);
  EXPECT_TRUE(bitwise_equal(download(*gpu, b.t), v));
  gpu->zero(b.t.rows(10, 20));
  std::vector<float> z = download(*gpu, b.t);
  for (int64_t i = 0; i < n; ++i)
    EXPECT_EQ(z[size_t(i)], (i >= 10 && i < 20) ? 0.0f : v[size_t(i)]);
  Arr h = alloc(*gpu, DType::BF16, {n});
  EXPECT_THROW(gpu->copy(h.t, a.t), Error);  // dtypes differ
}

TEST_F(CudaOps, ConvertRoundTrips) {
  // Sizes hit the 16-byte vector path, its ragged tail and (offset 1) the scalar path.
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(4096), int64_t(1000003)}) {
    for (int64_t offset : {int64_t(0), int64_t(1)}) {
      SCOPED_TRACE(cat("n=", n, " offset=", offset));
      std::vector<float> v = randn(n, uint64_t(n + offset), 3.0);
      v[0] = 1.0f + 1.0f / 256.0f;  // a tie: rounds to even
      if (n > 3) {
        v[1] = -65504.5f;
        v[2] = 1e-30f;
        v[3] = 3.0e38f;
      }
      Arr f = alloc(*gpu, DType::F32, {n + offset});
      Arr h = alloc(*gpu, DType::BF16, {n + offset});
      Arr f2 = alloc(*gpu, DType::F32, {n + offset});
      Tensor fv = f.t.rows(offset, n + offset), hv = h.t.rows(offset, n + offset);
      Tensor f2v = f2.t.rows(offset, n + offset);
      upload(*gpu, fv, v);
      gpu->convert(hv, fv);  // f32 -> bf16: round to nearest even, as the host does
      std::vector<uint16_t> bits(static_cast<size_t>(n));
      gpu->download(bits.data(), hv);
      size_t mismatches = 0;
      for (int64_t i = 0; i < n; ++i) mismatches += bits[size_t(i)] != f32_to_bf16(v[size_t(i)]);
      EXPECT_EQ(mismatches, 0u) << "f32 -> bf16 differs from the host rounding";
      gpu->convert(f2v, hv);  // bf16 -> f32 is exact
      EXPECT_TRUE(bitwise_equal(download(*gpu, f2v), round_bf16(v)));
      gpu->convert(f2v, fv);  // f32 -> f32 copies
      EXPECT_TRUE(bitwise_equal(download(*gpu, f2v), v));
    }
  }
}

TEST_F(CudaOps, PreconditionErrorsNameOpAndTensor) {
  Arr x = alloc(*gpu, DType::BF16, {4, 16}), w = alloc(*gpu, DType::BF16, {16});
  Arr out_f32 = alloc(*gpu, DType::F32, {4, 16}), rstd = alloc(*gpu, DType::F32, {4});
  try {
    gpu->rmsnorm_forward(out_f32.t, rstd.t, x.t, w.t, 1e-5f);
    FAIL() << "rmsnorm_forward accepted an f32 out";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("rmsnorm_forward"), std::string::npos) << msg;
    EXPECT_NE(msg.find("out"), std::string::npos) << msg;
  }
  Arr wm = alloc(*gpu, DType::BF16, {8, 15}), o = alloc(*gpu, DType::BF16, {4, 8});
  try {
    gpu->matmul_forward(o.t, x.t, wm.t);
    FAIL() << "matmul_forward accepted inp [4,16] with weight [8,15]";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("matmul_forward"), std::string::npos) << msg;
    EXPECT_NE(msg.find("inp"), std::string::npos) << msg;
  }
  std::vector<uint16_t> host(64);
  const Tensor on_cpu(host.data(), DType::BF16, Device::CPU, {4, 16});
  EXPECT_THROW(gpu->swiglu_forward(x.t, on_cpu), Error);  // gate_up on the wrong device
  {  // a head workspace lent over one of the op's own tensors
    Arr hw = alloc(*gpu, DType::BF16, {8, 16}), losses = alloc(*gpu, DType::F32, {4});
    Arr tgt = alloc(*gpu, DType::I32, {4});
    const std::string msg = ckpt_test::error_of([&] {
      gpu->head_cross_entropy(losses.t, Tensor(), Tensor(), x.t, hw.t, tgt.t, 1.0f, x.t);
    });
    EXPECT_NE(msg.find("workspace"), std::string::npos) << msg;
  }
  try {
    gpu->prefetch({x.t, on_cpu});
    FAIL() << "prefetch accepted a host tensor";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("prefetch"), std::string::npos) << msg;
    EXPECT_NE(msg.find("tensors"), std::string::npos) << msg;
  }
}

// ---------------------------------------------------------------- determinism, profiling

// Runs `op` twice from the same starting state; the outputs must match bit for bit.
TEST_F(CudaOps, DeterministicReductions) {
  const int64_t N = 4096, C = 2048, V = 512;
  Arr x = alloc(*gpu, DType::BF16, {N, C}), dout = alloc(*gpu, DType::BF16, {N, C});
  Arr w = alloc(*gpu, DType::BF16, {C}), rstd = alloc(*gpu, DType::F32, {N});
  Arr dinp = alloc(*gpu, DType::BF16, {N, C}), dw = alloc(*gpu, DType::F32, {C});
  Arr tok = alloc(*gpu, DType::I32, {N}), dtable = alloc(*gpu, DType::F32, {V, C});
  upload(*gpu, x.t, randn(N * C, 101));
  upload(*gpu, dout.t, randn(N * C, 102));
  upload(*gpu, w.t, randn(C, 103, 0.3, 1.0));
  upload(*gpu, rstd.t, randn(N, 104, 0.1, 1.0));
  std::vector<int32_t> ids = backend_test::ids(N, 8, 105);  // few ids: long runs of repeats
  gpu->upload(tok.t, ids.data());
  const std::vector<float> dinp0 = randn(N * C, 106), dw0 = randn(C, 107);
  const std::vector<float> dt0 = randn(V * C, 108);

  std::vector<float> first[4];
  for (int run = 0; run < 2; ++run) {
    upload(*gpu, dinp.t, dinp0);
    upload(*gpu, dw.t, dw0);
    upload(*gpu, dtable.t, dt0);
    gpu->rmsnorm_backward(dinp.t, dw.t, dout.t, x.t, w.t, rstd.t);
    gpu->embedding_backward(dtable.t, dout.t, tok.t);
    std::vector<float> got[4] = {
        download(*gpu, dinp.t), download(*gpu, dw.t), download(*gpu, dtable.t), {}};
    // sum_squares and adamw over the f32 table
    Arr ss = alloc(*gpu, DType::F32, {1});
    gpu->sum_squares(ss.t, dtable.t.view({V * C}));
    Arr p = alloc(*gpu, DType::F32, {V * C}), m = alloc(*gpu, DType::F32, {V * C});
    Arr v = alloc(*gpu, DType::F32, {V * C});
    upload(*gpu, p.t, dt0);
    gpu->zero(m.t);
    gpu->zero(v.t);
    AdamWArgs a;
    a.lr = 1e-3f;
    gpu->adamw_update(p.t, dtable.t.view({V * C}), m.t, v.t, Tensor(), ss.t, a);
    got[3] = download(*gpu, ss.t);
    std::vector<float> pv = download(*gpu, p.t);
    got[3].insert(got[3].end(), pv.begin(), pv.end());
    if (run == 0) {
      for (int i = 0; i < 4; ++i) first[i] = got[i];
      continue;
    }
    EXPECT_TRUE(bitwise_equal(got[0], first[0])) << "rmsnorm_backward dinp differs between runs";
    EXPECT_TRUE(bitwise_equal(got[1], first[1])) << "rmsnorm_backward dweight differs between runs";
    EXPECT_TRUE(bitwise_equal(got[2], first[2])) << "embedding_backward differs between runs";
    EXPECT_TRUE(bitwise_equal(got[3], first[3])) << "sum_squares/adamw differ between runs";
  }
}

TEST_F(CudaOps, ProfilingByCategory) {
  const int64_t N = 512, C = 1024;
  Arr x = alloc(*gpu, DType::BF16, {N, C}), w = alloc(*gpu, DType::BF16, {C, C});
  Arr o = alloc(*gpu, DType::BF16, {N, C}), nw = alloc(*gpu, DType::BF16, {C});
  Arr r = alloc(*gpu, DType::F32, {N}), ss = alloc(*gpu, DType::F32, {1});
  upload(*gpu, x.t, randn(N * C, 111));
  upload(*gpu, w.t, randn(C * C, 112, 0.03));
  upload(*gpu, nw.t, randn(C, 113, 0.1, 1.0));
  gpu->take_profile();
  gpu->set_profiling(true);
  for (int i = 0; i < 3; ++i) {
    gpu->matmul_forward(o.t, x.t, w.t);
    gpu->rmsnorm_forward(o.t, r.t, x.t, nw.t, 1e-5f);
    gpu->sum_squares(ss.t, r.t);
    gpu->zero(o.t);
    gpu->copy(o.t, x.t);
  }
  auto prof = gpu->take_profile();
  gpu->set_profiling(false);
  std::map<std::string, double> by;
  for (auto& [k, s] : prof) by[k] = s;
  EXPECT_EQ(by.size(), 5u);
  EXPECT_GT(by["matmul"], 0.0);
  EXPECT_GT(by["other"], 0.0);
  EXPECT_GT(by["optimizer"], 0.0);
  EXPECT_GT(by["copy"], 0.0);
  EXPECT_EQ(by["attention"], 0.0);
  gpu->matmul_forward(o.t, x.t, w.t);  // off: nothing recorded
  for (auto& [k, s] : gpu->take_profile()) EXPECT_EQ(s, 0.0) << k;
}

}  // namespace

// ---------------------------------------------------------------- decode linears (#13)

// decode_linear's fused kernel (rows <= 8) against the separate CUDA ops it stands for:
// rmsnorm_forward / swiglu_forward, cuBLASLt's matmul_forward, then the residual added on
// the host. Both round f(x) to bf16 alike; the products differ by summation order (a few
// f32 ulps, which can flip one bf16 rounding) and the fused add rounds once where the
// separate ops round the product first.
TEST_F(CudaOps, DecodeLinearMatchesTheSeparateOps) {
  using In = Backend::LinearIn;
  struct S {
    int64_t I, O;
    In in;
    bool residual;
  };
  for (S s : {S{2048, 2560, In::RmsNorm, false}, S{2048, 2048, In::Plain, true},
              S{2048, 11264, In::RmsNorm, false}, S{5632, 2048, In::SwiGlu, true},
              S{64, 32000, In::Plain, false}, S{8, 24, In::SwiGlu, false}})
    for (int64_t M : {1, 2, 3, 5, 8}) {
      SCOPED_TRACE(cat("M=", M, " I=", s.I, " O=", s.O, " in=", int(s.in)));
      const int64_t width = s.in == In::SwiGlu ? 2 * s.I : s.I;
      const std::vector<float> x = round_bf16(randn(M * width, 3)),
                               w = round_bf16(randn(s.O * s.I, 4, 0.02)),
                               nw = round_bf16(randn(s.I, 5, 0.3, 1.0)),
                               res = round_bf16(randn(M * s.O, 6));
      Arr xa = alloc(*gpu, DType::BF16, {M, width}), wa = alloc(*gpu, DType::BF16, {s.O, s.I});
      Arr na = alloc(*gpu, DType::BF16, {s.I}), ra = alloc(*gpu, DType::BF16, {M, s.O});
      Arr fa = alloc(*gpu, DType::BF16, {M, s.I}), rs = alloc(*gpu, DType::F32, {M});
      Arr oa = alloc(*gpu, DType::BF16, {M, s.O}), pa = alloc(*gpu, DType::BF16, {M, s.O});
      upload(*gpu, xa.t, x);
      upload(*gpu, wa.t, w);
      upload(*gpu, na.t, nw);
      upload(*gpu, ra.t, res);
      Backend::DecodeLinear f{s.in, na.t, 1e-5f, s.residual ? ra.t : Tensor(), {}};
      gpu->decode_linear(oa.t, xa.t, wa.t, f);
      const std::vector<float> got = download(*gpu, oa.t);
      Tensor in = xa.t;
      if (s.in == In::RmsNorm) gpu->rmsnorm_forward(fa.t, rs.t, xa.t, na.t, 1e-5f);
      if (s.in == In::SwiGlu) gpu->swiglu_forward(fa.t, xa.t);
      if (s.in != In::Plain) in = fa.t;
      gpu->matmul_forward(pa.t, in, wa.t);
      std::vector<float> want = download(*gpu, pa.t);
      if (s.residual)
        for (size_t k = 0; k < want.size(); ++k) want[k] += res[k];
      double rms = 0;
      for (float v : want) rms += double(v) * v;
      rms = std::sqrt(rms / double(want.size()));
      for (size_t k = 0; k < got.size(); ++k)
        ASSERT_NEAR(got[k], want[k], 1e-2 * rms + 1e-2 * std::fabs(want[k])) << k;
    }
}

// decode_linear's layouts (bench/NOTES.md, #13) sum every row in the same order, so they
// must agree bit for bit: chunks in registers (TL_DECODE_STAGES=0) against rings of 2 and 4
// shared-memory slots, one or all blocks an SM, rows a warp forced to 1 or 3 (more chunks
// than slots, fewer, rows that end mid-ring, warps with no rows). Shapes: the 1.1B layers (I = 5632
// takes three passes a row, the last partial), a row shorter than a pass, and f(x) too large
// for 4 slots (falls back to 2).
TEST_F(CudaOps, DecodeLinearLayoutsAgree) {
  using In = Backend::LinearIn;
  struct S {
    int64_t M, I, O;
    In in;
  };
  struct Layout {
    const char *stages, *blocks, *rows;
  };
  const Layout layouts[] = {{"2", "1", ""},  {"4", "1", ""},  {"2", "0", ""}, {"4", "2", "1"},
                            {"2", "1", "3"}, {"0", "0", "3"}, {"0", "", "1"}, {"0", "2", ""}};
  for (S s :
       {S{1, 2048, 2560, In::RmsNorm}, S{1, 5632, 2048, In::SwiGlu}, S{3, 40, 37, In::Plain},
        S{1, 2048, 11264, In::RmsNorm}, S{8, 5632, 300, In::SwiGlu}, S{1, 2048, 2048, In::Plain}}) {
    SCOPED_TRACE(cat("M=", s.M, " I=", s.I, " O=", s.O, " in=", int(s.in)));
    const int64_t width = s.in == In::SwiGlu ? 2 * s.I : s.I;
    Arr xa = alloc(*gpu, DType::BF16, {s.M, width}), wa = alloc(*gpu, DType::BF16, {s.O, s.I});
    Arr na = alloc(*gpu, DType::BF16, {s.I}), ra = alloc(*gpu, DType::BF16, {s.M, s.O});
    Arr oa = alloc(*gpu, DType::BF16, {s.M, s.O});
    upload(*gpu, xa.t, round_bf16(randn(s.M * width, 3)));
    upload(*gpu, wa.t, round_bf16(randn(s.O * s.I, 4, 0.02)));
    upload(*gpu, na.t, round_bf16(randn(s.I, 5, 0.3, 1.0)));
    upload(*gpu, ra.t, round_bf16(randn(s.M * s.O, 6)));
    const auto run = [&](const Layout& l) {
      const ScopedEnv stages("TL_DECODE_STAGES", l.stages),
          blocks("TL_DECODE_BLOCKS_PER_SM", l.blocks), rows("TL_DECODE_ROWS_PER_WARP", l.rows);
      gpu->zero(oa.t);
      gpu->decode_linear(oa.t, xa.t, wa.t, Backend::DecodeLinear{s.in, na.t, 1e-5f, ra.t, {}});
      return download(*gpu, oa.t);
    };
    const std::vector<float> regs = run({"0", "", ""});
    double rms = 0;
    for (float v : regs) rms += double(v) * v;
    ASSERT_GT(rms, 0.0);  // a kernel that wrote nothing would not pass as "equal"
    for (const Layout& l : layouts) {
      const std::vector<float> got = run(l);
      size_t differ = 0;
      for (size_t k = 0; k < got.size(); ++k) differ += std::memcmp(&got[k], &regs[k], 4) != 0;
      EXPECT_EQ(differ, 0u) << "stages " << l.stages << ", blocks an SM " << l.blocks
                            << ", rows a warp " << l.rows;
    }
  }
}
