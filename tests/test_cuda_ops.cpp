// The CUDA backend op by op against the CPU backend (the fp32 reference twin), plus memory,
// conversion, determinism, profiling and error-message checks, and a timing table of every
// op at the TinyLlama-1.1B shapes (CudaBench). Skips when there is no CUDA build or GPU.
//
// Method: inputs are drawn fresh at random and rounded to bf16 on the host before both
// backends see them, so a difference measures the op's own error; outputs that the op
// overwrites are poisoned with NaN first, "+=" outputs are pre-filled with random values.
// Error = max|gpu - cpu| / max|cpu| per output, and any NaN/Inf fails.
// Tolerances:
//   1e-2  bf16 outputs: one rounding to bf16 is <= 2^-9 relative per element, plus f32
//         accumulation-order differences; 1e-2 leaves room for a few ulps, while a wrong
//         index or a missed term shows up as O(1).
//   1e-3  f32 outputs computed in f32 from bf16 inputs (rstd, dweight of matmul and RMSNorm):
//         only the summation order differs.
//   5e-3  the loss: the logits are rounded to bf16 before the softmax (|z| ~ 4 -> 0.008
//         absolute at worst), relative to a loss of ~ln V.
//   1e-2  head gradients: dlogits are bf16 on the GPU.
//   1e-5  f32 elementwise (AdamW state, sums of squares, embedding sums): f32 rounding only.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/rng.h"
#include "model/llama.h"

using namespace tl;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// A tensor owning its memory on one backend.
struct cuda_Arr {
  Buffer buf;
  Tensor t;
};

cuda_Arr cuda_alloc(Backend& be, DType dt, Shape s) {
  cuda_Arr a;
  a.buf = Buffer(be, std::max<size_t>(1, size_t(s.numel()) * dtype_size(dt)));
  a.t = a.buf.tensor(dt, s);
  return a;
}

// Host floats -> t (converted to t's dtype: f32 or bf16).
void cuda_upload(Backend& be, const Tensor& t, const std::vector<float>& v) {
  TL_CHECK(int64_t(v.size()) == t.numel(), "test: ", v.size(), " values for ", t.str());
  if (t.dtype == DType::F32) return be.upload(t, v.data());
  TL_CHECK(t.dtype == DType::BF16, "test: cannot upload floats to ", t.str());
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
  be.upload(t, h.data());
}

std::vector<float> cuda_download(Backend& be, const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  if (t.dtype == DType::F32) {
    be.download(v.data(), t);
  } else {
    TL_CHECK(t.dtype == DType::BF16, "test: cannot download floats from ", t.str());
    std::vector<uint16_t> h(v.size());
    be.download(h.data(), t);
    for (size_t i = 0; i < v.size(); ++i) v[i] = bf16_to_f32(h[i]);
  }
  return v;
}

std::vector<float> cuda_round_bf16(std::vector<float> v) {
  for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}

std::vector<float> cuda_randn(int64_t n, uint64_t seed, double std = 1.0, double mean = 0.0) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = float(mean + std * rng.normal());
  return v;
}

std::vector<int32_t> cuda_ids(int64_t n, int64_t below, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = int32_t(rng.below(uint64_t(below)));
  return v;
}

// max|got - ref| / max|ref| <= tol, and every value finite.
::testing::AssertionResult cuda_close(const std::string& what, const std::vector<float>& got,
                                      const std::vector<float>& ref, double tol) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure() << what << ": sizes differ " << got.size() << " vs "
                                         << ref.size();
  double max_ref = 0, max_err = 0;
  size_t worst = 0, bad = 0, first_bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i]) || !std::isfinite(ref[i])) {
      if (bad++ == 0) first_bad = i;
      continue;
    }
    max_ref = std::max(max_ref, double(std::fabs(ref[i])));
    const double err = std::fabs(double(got[i]) - double(ref[i]));
    if (err > max_err) {
      max_err = err;
      worst = i;
    }
  }
  if (bad)
    return ::testing::AssertionFailure()
           << what << ": " << bad << " of " << got.size() << " values are NaN/Inf (first at "
           << first_bad << ": gpu " << got[first_bad] << ", cpu " << ref[first_bad]
           << ") - an unwritten (poisoned) output or an overflow";
  const double rel = max_err / std::max(max_ref, 1e-30);
  if (rel > tol)
    return ::testing::AssertionFailure()
           << what << ": max|gpu-cpu|/max|cpu| = " << rel << " > " << tol << " (worst at index "
           << worst << ": gpu " << got[worst] << ", cpu " << ref[worst] << "; max|cpu| "
           << max_ref << ", " << got.size() << " values)";
  return ::testing::AssertionSuccess() << what << ": " << rel;
}

bool cuda_bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

// The same values on the GPU (its dtype) and on the CPU (f32 or i32).
struct cuda_Twin {
  cuda_Arr g, c;
};

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available())
      GTEST_SKIP() << "CUDA backend not available (built without CUDA, or no GPU visible)";
    gpu = make_backend("cuda");
    try {
      cpu = make_backend("cpu", 0);
    } catch (const Error& e) {
      cpu_missing = e.what();
    }
  }

  // bf16 GPU tensors get v rounded to bf16; the CPU gets the same rounded values.
  cuda_Twin twin(DType gpu_dt, Shape s, std::vector<float> v) {
    if (gpu_dt == DType::BF16) v = cuda_round_bf16(std::move(v));
    cuda_Twin p{cuda_alloc(*gpu, gpu_dt, s), cuda_alloc(*cpu, DType::F32, s)};
    cuda_upload(*gpu, p.g.t, v);
    cuda_upload(*cpu, p.c.t, v);
    return p;
  }
  cuda_Twin twin_nan(DType gpu_dt, Shape s) {
    return twin(gpu_dt, s, std::vector<float>(size_t(s.numel()), kNaN));
  }
  cuda_Twin twin_ids(Shape s, const std::vector<int32_t>& v) {
    cuda_Twin p{cuda_alloc(*gpu, DType::I32, s), cuda_alloc(*cpu, DType::I32, s)};
    gpu->upload(p.g.t, v.data());
    cpu->upload(p.c.t, v.data());
    return p;
  }
  // EXPECTs gpu vs cpu values of a twin.
  void expect_close(const std::string& what, const cuda_Twin& p, double tol) {
    EXPECT_TRUE(cuda_close(what, cuda_download(*gpu, p.g.t), cuda_download(*cpu, p.c.t), tol));
  }

  std::unique_ptr<Backend> gpu, cpu;
  std::string cpu_missing;
};

// Comparison tests need the CPU twin; say why they skip without it.
#define CUDA_NEED_CPU()                                                             \
  do {                                                                              \
    if (!cpu) GTEST_SKIP() << "CPU reference backend unavailable: " << cpu_missing; \
  } while (0)

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
  std::vector<float> v = cuda_randn(n, 1);
  cuda_Arr a = cuda_alloc(*gpu, DType::F32, {n}), b = cuda_alloc(*gpu, DType::F32, {n});
  cuda_upload(*gpu, a.t, v);
  gpu->copy(b.t, a.t);
  EXPECT_TRUE(cuda_bitwise_equal(cuda_download(*gpu, b.t), v));
  gpu->zero(b.t.rows(10, 20));
  std::vector<float> z = cuda_download(*gpu, b.t);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(z[size_t(i)], (i >= 10 && i < 20) ? 0.0f : v[size_t(i)]);
  cuda_Arr h = cuda_alloc(*gpu, DType::BF16, {n});
  EXPECT_THROW(gpu->copy(h.t, a.t), Error);  // dtypes differ
}

TEST_F(CudaOps, ConvertRoundTrips) {
  // Sizes hit the 16-byte vector path, its ragged tail and (offset 1) the scalar path.
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(4096), int64_t(1000003)}) {
    for (int64_t offset : {int64_t(0), int64_t(1)}) {
      SCOPED_TRACE(cat("n=", n, " offset=", offset));
      std::vector<float> v = cuda_randn(n, uint64_t(n + offset), 3.0);
      v[0] = 1.0f + 1.0f / 256.0f;  // a tie: rounds to even
      if (n > 3) {
        v[1] = -65504.5f;
        v[2] = 1e-30f;
        v[3] = 3.0e38f;
      }
      cuda_Arr f = cuda_alloc(*gpu, DType::F32, {n + offset});
      cuda_Arr h = cuda_alloc(*gpu, DType::BF16, {n + offset});
      cuda_Arr f2 = cuda_alloc(*gpu, DType::F32, {n + offset});
      Tensor fv = f.t.rows(offset, n + offset), hv = h.t.rows(offset, n + offset);
      Tensor f2v = f2.t.rows(offset, n + offset);
      cuda_upload(*gpu, fv, v);
      gpu->convert(hv, fv);  // f32 -> bf16: round to nearest even, as the host does
      std::vector<uint16_t> bits(static_cast<size_t>(n));
      gpu->download(bits.data(), hv);
      size_t mismatches = 0;
      for (int64_t i = 0; i < n; ++i) mismatches += bits[size_t(i)] != f32_to_bf16(v[size_t(i)]);
      EXPECT_EQ(mismatches, 0u) << "f32 -> bf16 differs from the host rounding";
      gpu->convert(f2v, hv);  // bf16 -> f32 is exact
      EXPECT_TRUE(cuda_bitwise_equal(cuda_download(*gpu, f2v), cuda_round_bf16(v)));
      gpu->convert(f2v, fv);  // f32 -> f32 copies
      EXPECT_TRUE(cuda_bitwise_equal(cuda_download(*gpu, f2v), v));
    }
  }
}

TEST_F(CudaOps, PreconditionErrorsNameOpAndTensor) {
  cuda_Arr x = cuda_alloc(*gpu, DType::BF16, {4, 16}), w = cuda_alloc(*gpu, DType::BF16, {16});
  cuda_Arr out_f32 = cuda_alloc(*gpu, DType::F32, {4, 16}), rstd = cuda_alloc(*gpu, DType::F32, {4});
  try {
    gpu->rmsnorm_forward(out_f32.t, rstd.t, x.t, w.t, 1e-5f);
    FAIL() << "rmsnorm_forward accepted an f32 out";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("rmsnorm_forward"), std::string::npos) << msg;
    EXPECT_NE(msg.find("out"), std::string::npos) << msg;
  }
  cuda_Arr wm = cuda_alloc(*gpu, DType::BF16, {8, 15}), o = cuda_alloc(*gpu, DType::BF16, {4, 8});
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
}

// ---------------------------------------------------------------- ops vs the CPU twin

TEST_F(CudaOps, EmbeddingMatchesCpu) {
  CUDA_NEED_CPU();
  struct Case { int64_t N, V, C; };
  for (Case k : {Case{7, 37, 40}, Case{9, 11, 36}, Case{2048, 32000, 2048}}) {
    SCOPED_TRACE(cat("N=", k.N, " V=", k.V, " C=", k.C));
    std::vector<int32_t> ids = cuda_ids(k.N, k.V, 11);
    for (int64_t i = 0; i < k.N; i += 3) ids[size_t(i)] = int32_t(i % 3);  // long runs of ids
    cuda_Twin tok = twin_ids({k.N}, ids);
    cuda_Twin table = twin(DType::BF16, {k.V, k.C}, cuda_randn(k.V * k.C, 12));
    cuda_Twin out = twin_nan(DType::BF16, {k.N, k.C});
    gpu->embedding_forward(out.g.t, table.g.t, tok.g.t);
    cpu->embedding_forward(out.c.t, table.c.t, tok.c.t);
    expect_close("embedding_forward out", out, 0.0);  // a copy: exact

    cuda_Twin dout = twin(DType::BF16, {k.N, k.C}, cuda_randn(k.N * k.C, 13));
    cuda_Twin dtable = twin(DType::F32, {k.V, k.C}, cuda_randn(k.V * k.C, 14));
    gpu->embedding_backward(dtable.g.t, dout.g.t, tok.g.t);
    cpu->embedding_backward(dtable.c.t, dout.c.t, tok.c.t);
    expect_close("embedding_backward dtable", dtable, 1e-5);
  }
}

TEST_F(CudaOps, RmsnormForwardMatchesCpu) {
  CUDA_NEED_CPU();
  struct Case { int64_t N, C; };
  for (Case k : {Case{7, 40}, Case{5, 36}, Case{3, 1000}, Case{33, 4096}, Case{2048, 2048}}) {
    SCOPED_TRACE(cat("N=", k.N, " C=", k.C));
    const float eps = 1e-5f;
    cuda_Twin x = twin(DType::BF16, {k.N, k.C}, cuda_randn(k.N * k.C, 21, 2.0));
    cuda_Twin w = twin(DType::BF16, {k.C}, cuda_randn(k.C, 22, 0.3, 1.0));
    cuda_Twin out = twin_nan(DType::BF16, {k.N, k.C}), rstd = twin_nan(DType::F32, {k.N});
    gpu->rmsnorm_forward(out.g.t, rstd.g.t, x.g.t, w.g.t, eps);
    cpu->rmsnorm_forward(out.c.t, rstd.c.t, x.c.t, w.c.t, eps);
    expect_close("rmsnorm_forward out", out, 1e-2);
    expect_close("rmsnorm_forward rstd", rstd, 1e-3);

    // Fused residual add: the CPU adds in f32, the GPU rounds res_out to bf16 (its dtype)
    // and normalizes that; feed the CPU the GPU's res_out to compare the norm itself.
    cuda_Twin delta = twin(DType::BF16, {k.N, k.C}, cuda_randn(k.N * k.C, 23));
    cuda_Twin res = twin_nan(DType::BF16, {k.N, k.C});
    out = twin_nan(DType::BF16, {k.N, k.C});
    rstd = twin_nan(DType::F32, {k.N});
    gpu->add_rmsnorm_forward(res.g.t, out.g.t, rstd.g.t, x.g.t, delta.g.t, w.g.t, eps);
    cpu->add_rmsnorm_forward(res.c.t, out.c.t, rstd.c.t, x.c.t, delta.c.t, w.c.t, eps);
    expect_close("add_rmsnorm_forward res_out", res, 1e-2);
    cuda_upload(*cpu, res.c.t, cuda_download(*gpu, res.g.t));
    cpu->rmsnorm_forward(out.c.t, rstd.c.t, res.c.t, w.c.t, eps);
    expect_close("add_rmsnorm_forward out", out, 1e-2);
    expect_close("add_rmsnorm_forward rstd", rstd, 1e-3);
  }
}

TEST_F(CudaOps, RmsnormBackwardMatchesCpu) {
  CUDA_NEED_CPU();
  struct Case { int64_t N, C; };
  for (Case k : {Case{7, 40}, Case{5, 36}, Case{3, 1000}, Case{33, 4096}, Case{2048, 2048}}) {
    SCOPED_TRACE(cat("N=", k.N, " C=", k.C));
    cuda_Twin x = twin(DType::BF16, {k.N, k.C}, cuda_randn(k.N * k.C, 31, 2.0));
    cuda_Twin w = twin(DType::BF16, {k.C}, cuda_randn(k.C, 32, 0.3, 1.0));
    cuda_Twin out = twin_nan(DType::BF16, {k.N, k.C}), rstd = twin_nan(DType::F32, {k.N});
    gpu->rmsnorm_forward(out.g.t, rstd.g.t, x.g.t, w.g.t, 1e-5f);
    cpu->rmsnorm_forward(out.c.t, rstd.c.t, x.c.t, w.c.t, 1e-5f);
    cuda_upload(*cpu, rstd.c.t, cuda_download(*gpu, rstd.g.t));  // the same rstd for both
    cuda_Twin dout = twin(DType::BF16, {k.N, k.C}, cuda_randn(k.N * k.C, 33));
    cuda_Twin dinp = twin(DType::BF16, {k.N, k.C}, cuda_randn(k.N * k.C, 34));   // +=
    cuda_Twin dw = twin(DType::F32, {k.C}, cuda_randn(k.C, 35));                  // +=
    gpu->rmsnorm_backward(dinp.g.t, dw.g.t, dout.g.t, x.g.t, w.g.t, rstd.g.t);
    cpu->rmsnorm_backward(dinp.c.t, dw.c.t, dout.c.t, x.c.t, w.c.t, rstd.c.t);
    expect_close("rmsnorm_backward dinp", dinp, 1e-2);
    expect_close("rmsnorm_backward dweight", dw, 1e-3);
  }
}

TEST_F(CudaOps, MatmulMatchesCpu) {
  CUDA_NEED_CPU();
  // Odd sizes (leading dimensions not a multiple of 8), then the 1.1B layer shapes:
  // qkv 2048 -> 2560, gate_up 2048 -> 11264, down 5632 -> 2048, head 2048 -> 32000.
  struct Case { int64_t N, I, O; };
  for (Case k : {Case{7, 40, 24}, Case{5, 13, 7}, Case{1, 24, 37}, Case{1024, 2048, 2560},
                 Case{512, 2048, 11264}, Case{1024, 5632, 2048}, Case{64, 2048, 32000}}) {
    SCOPED_TRACE(cat("N=", k.N, " I=", k.I, " O=", k.O));
    const double ws = 1.0 / std::sqrt(double(k.I));
    cuda_Twin inp = twin(DType::BF16, {k.N, k.I}, cuda_randn(k.N * k.I, 41));
    cuda_Twin w = twin(DType::BF16, {k.O, k.I}, cuda_randn(k.O * k.I, 42, ws));
    cuda_Twin out = twin_nan(DType::BF16, {k.N, k.O});
    gpu->matmul_forward(out.g.t, inp.g.t, w.g.t);
    cpu->matmul_forward(out.c.t, inp.c.t, w.c.t);
    expect_close("matmul_forward out", out, 1e-2);

    cuda_Twin dout = twin(DType::BF16, {k.N, k.O}, cuda_randn(k.N * k.O, 43));
    cuda_Twin dinp = twin_nan(DType::BF16, {k.N, k.I});                          // =
    cuda_Twin dw = twin(DType::F32, {k.O, k.I}, cuda_randn(k.O * k.I, 44));      // +=
    gpu->matmul_backward(dinp.g.t, dw.g.t, dout.g.t, inp.g.t, w.g.t, false);
    cpu->matmul_backward(dinp.c.t, dw.c.t, dout.c.t, inp.c.t, w.c.t, false);
    expect_close("matmul_backward dinp (=)", dinp, 1e-2);
    expect_close("matmul_backward dweight (+=)", dw, 1e-3);

    cuda_Twin dinp2 = twin(DType::BF16, {k.N, k.I}, cuda_randn(k.N * k.I, 45));  // +=
    gpu->matmul_backward(dinp2.g.t, Tensor(), dout.g.t, inp.g.t, w.g.t, true);
    cpu->matmul_backward(dinp2.c.t, Tensor(), dout.c.t, inp.c.t, w.c.t, true);
    expect_close("matmul_backward dinp (+=)", dinp2, 1e-2);
  }
}

TEST_F(CudaOps, RopeMatchesCpu) {
  CUDA_NEED_CPU();
  // head_dim 64 (vector path), 6 (scalar path); pos0 > 0 as in generation.
  struct Case { int64_t B, T; int H, K, D, pos0; };
  for (Case k : {Case{2, 5, 4, 2, 64, 0}, Case{1, 3, 6, 3, 6, 4}, Case{3, 7, 2, 1, 16, 9},
                 Case{1, 2048, 32, 4, 64, 0}}) {
    SCOPED_TRACE(cat("B=", k.B, " T=", k.T, " H=", k.H, " K=", k.K, " D=", k.D, " pos0=", k.pos0));
    const int64_t Q = int64_t(k.H + 2 * k.K) * k.D, Tmax = k.T + k.pos0 + 3;
    std::vector<float> c, s;
    rope_tables(int(Tmax), k.D, 10000.0f, c, s);
    cuda_Twin cos = twin(DType::F32, {Tmax, k.D / 2}, c), sin = twin(DType::F32, {Tmax, k.D / 2}, s);
    cuda_Twin qkv = twin(DType::BF16, {k.B, k.T, Q}, cuda_randn(k.B * k.T * Q, 51));
    gpu->rope_forward(qkv.g.t, cos.g.t, sin.g.t, k.H, k.K, k.pos0);
    cpu->rope_forward(qkv.c.t, cos.c.t, sin.c.t, k.H, k.K, k.pos0);
    expect_close("rope_forward qkv", qkv, 1e-2);
    cuda_Twin dqkv = twin(DType::BF16, {k.B, k.T, Q}, cuda_randn(k.B * k.T * Q, 52));
    gpu->rope_backward(dqkv.g.t, cos.g.t, sin.g.t, k.H, k.K, k.pos0);
    cpu->rope_backward(dqkv.c.t, cos.c.t, sin.c.t, k.H, k.K, k.pos0);
    expect_close("rope_backward dqkv", dqkv, 1e-2);
  }
}

TEST_F(CudaOps, SwigluMatchesCpu) {
  CUDA_NEED_CPU();
  struct Case { int64_t N, I; };
  for (Case k : {Case{7, 24}, Case{5, 13}, Case{2048, 5632}}) {
    SCOPED_TRACE(cat("N=", k.N, " I=", k.I));
    cuda_Twin gu = twin(DType::BF16, {k.N, 2 * k.I}, cuda_randn(k.N * 2 * k.I, 61, 2.0));
    cuda_Twin out = twin_nan(DType::BF16, {k.N, k.I});
    gpu->swiglu_forward(out.g.t, gu.g.t);
    cpu->swiglu_forward(out.c.t, gu.c.t);
    expect_close("swiglu_forward out", out, 1e-2);
    cuda_Twin dout = twin(DType::BF16, {k.N, k.I}, cuda_randn(k.N * k.I, 62));
    cuda_Twin dgu = twin_nan(DType::BF16, {k.N, 2 * k.I});
    gpu->swiglu_backward(dgu.g.t, dout.g.t, gu.g.t);
    cpu->swiglu_backward(dgu.c.t, dout.c.t, gu.c.t);
    expect_close("swiglu_backward dgate_up", dgu, 1e-2);
  }
}

TEST_F(CudaOps, HeadCrossEntropyMatchesCpu) {
  CUDA_NEED_CPU();
  // Small and odd, the 1.1B head, and N = 8200 > one 8192-row chunk (two chunks).
  struct Case { int64_t N, C, V; };
  for (Case k : {Case{7, 24, 37}, Case{64, 2048, 32000}, Case{8200, 8, 32000}}) {
    for (bool grad : {true, false}) {
      SCOPED_TRACE(cat("N=", k.N, " C=", k.C, " V=", k.V, grad ? " with grad" : " loss only"));
      std::vector<int32_t> tgt = cuda_ids(k.N, k.V, 71);
      tgt[1] = -1;  // ignored
      tgt[k.N - 1] = -100;
      cuda_Twin targets = twin_ids({k.N}, tgt);
      cuda_Twin x = twin(DType::BF16, {k.N, k.C}, cuda_randn(k.N * k.C, 72));
      cuda_Twin w = twin(DType::BF16, {k.V, k.C}, cuda_randn(k.V * k.C, 73, 2.0 / std::sqrt(double(k.C))));
      cuda_Twin losses = twin_nan(DType::F32, {k.N});
      cuda_Twin dx = twin_nan(DType::BF16, {k.N, k.C});
      const float scale = 0.37f / float(k.N);
      // += target: small next to the gradient (target rows get ~scale * |x|), so a wrong
      // gradient cannot hide under the pre-filled values.
      cuda_Twin dw = twin(DType::F32, {k.V, k.C}, cuda_randn(k.V * k.C, 74, 0.1 * scale));
      gpu->head_cross_entropy(losses.g.t, grad ? dx.g.t : Tensor(), dw.g.t, x.g.t, w.g.t,
                              targets.g.t, scale);
      cpu->head_cross_entropy(losses.c.t, grad ? dx.c.t : Tensor(), dw.c.t, x.c.t, w.c.t,
                              targets.c.t, scale);
      std::vector<float> lg = cuda_download(*gpu, losses.g.t);
      EXPECT_EQ(lg[1], 0.0f) << "ignored target must give loss 0";
      EXPECT_EQ(lg[size_t(k.N - 1)], 0.0f) << "ignored target must give loss 0";
      expect_close("head_cross_entropy losses", losses, 5e-3);
      if (grad) {
        expect_close("head_cross_entropy dx", dx, 1e-2);
        expect_close("head_cross_entropy dweight (+=)", dw, 1e-2);
      } else {
        expect_close("head_cross_entropy dweight untouched without dx", dw, 0.0);
      }
    }
  }
}

TEST_F(CudaOps, SumSquaresMatchesCpu) {
  CUDA_NEED_CPU();
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(1000), int64_t(4194307)}) {
    for (int64_t offset : {int64_t(0), int64_t(1)}) {  // offset 1: the unaligned path
      SCOPED_TRACE(cat("n=", n, " offset=", offset));
      cuda_Twin g = twin(DType::F32, {n + offset}, cuda_randn(n + offset, uint64_t(81 + n), 0.01));
      cuda_Twin out = twin_nan(DType::F32, {1});
      gpu->sum_squares(out.g.t, g.g.t.rows(offset, n + offset));
      cpu->sum_squares(out.c.t, g.c.t.rows(offset, n + offset));
      expect_close("sum_squares", out, 1e-5);
    }
  }
}

TEST_F(CudaOps, AdamWMatchesCpu) {
  CUDA_NEED_CPU();
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(100003)}) {
    for (int variant = 0; variant < 4; ++variant) {
      const bool clip = variant & 1, compute = variant & 2;
      SCOPED_TRACE(cat("n=", n, clip ? " clipped" : "", compute ? " with bf16 copy" : ""));
      cuda_Twin p = twin(DType::F32, {n}, cuda_randn(n, 91, 0.02));
      cuda_Twin g = twin(DType::F32, {n}, cuda_randn(n, 92, 0.5));
      cuda_Twin m = twin(DType::F32, {n}, cuda_randn(n, 93, 0.01));
      std::vector<float> v0 = cuda_randn(n, 94, 0.01);
      for (float& x : v0) x = x * x;
      cuda_Twin v = twin(DType::F32, {n}, v0);
      cuda_Twin nsq = twin(DType::F32, {1}, {float(n)});  // norm sqrt(n): clip by ~1/sqrt(n)
      cuda_Arr pc = cuda_alloc(*gpu, DType::BF16, {n});
      cuda_Arr pc_cpu = cuda_alloc(*cpu, DType::F32, {n});
      cuda_upload(*gpu, pc.t, std::vector<float>(size_t(n), kNaN));
      AdamWArgs a;
      a.lr = 4e-4f;
      a.step = 7;
      a.max_grad_norm = 1.0f;
      gpu->adamw_update(p.g.t, g.g.t, m.g.t, v.g.t, compute ? pc.t : Tensor(),
                        clip ? nsq.g.t : Tensor(), a);
      cpu->adamw_update(p.c.t, g.c.t, m.c.t, v.c.t, compute ? pc_cpu.t : Tensor(),
                        clip ? nsq.c.t : Tensor(), a);
      expect_close("adamw params", p, 1e-5);
      expect_close("adamw m", m, 1e-5);
      expect_close("adamw v", v, 1e-5);
      if (compute) {
        EXPECT_TRUE(cuda_close("adamw params_compute (bf16)", cuda_download(*gpu, pc.t),
                               cuda_download(*cpu, p.c.t), 1e-2));
      }
    }
  }
}

// ---------------------------------------------------------------- determinism, profiling

// Runs `op` twice from the same starting state; the outputs must match bit for bit.
TEST_F(CudaOps, DeterministicReductions) {
  const int64_t N = 4096, C = 2048, V = 512;
  cuda_Arr x = cuda_alloc(*gpu, DType::BF16, {N, C}), dout = cuda_alloc(*gpu, DType::BF16, {N, C});
  cuda_Arr w = cuda_alloc(*gpu, DType::BF16, {C}), rstd = cuda_alloc(*gpu, DType::F32, {N});
  cuda_Arr dinp = cuda_alloc(*gpu, DType::BF16, {N, C}), dw = cuda_alloc(*gpu, DType::F32, {C});
  cuda_Arr tok = cuda_alloc(*gpu, DType::I32, {N}), dtable = cuda_alloc(*gpu, DType::F32, {V, C});
  cuda_upload(*gpu, x.t, cuda_randn(N * C, 101));
  cuda_upload(*gpu, dout.t, cuda_randn(N * C, 102));
  cuda_upload(*gpu, w.t, cuda_randn(C, 103, 0.3, 1.0));
  cuda_upload(*gpu, rstd.t, cuda_randn(N, 104, 0.1, 1.0));
  std::vector<int32_t> ids = cuda_ids(N, 8, 105);  // few ids: long runs of repeats
  gpu->upload(tok.t, ids.data());
  const std::vector<float> dinp0 = cuda_randn(N * C, 106), dw0 = cuda_randn(C, 107);
  const std::vector<float> dt0 = cuda_randn(V * C, 108);

  std::vector<float> first[4];
  for (int run = 0; run < 2; ++run) {
    cuda_upload(*gpu, dinp.t, dinp0);
    cuda_upload(*gpu, dw.t, dw0);
    cuda_upload(*gpu, dtable.t, dt0);
    gpu->rmsnorm_backward(dinp.t, dw.t, dout.t, x.t, w.t, rstd.t);
    gpu->embedding_backward(dtable.t, dout.t, tok.t);
    std::vector<float> got[4] = {cuda_download(*gpu, dinp.t), cuda_download(*gpu, dw.t),
                                 cuda_download(*gpu, dtable.t), {}};
    // sum_squares and adamw over the f32 table
    cuda_Arr ss = cuda_alloc(*gpu, DType::F32, {1});
    gpu->sum_squares(ss.t, dtable.t.view({V * C}));
    cuda_Arr p = cuda_alloc(*gpu, DType::F32, {V * C}), m = cuda_alloc(*gpu, DType::F32, {V * C});
    cuda_Arr v = cuda_alloc(*gpu, DType::F32, {V * C});
    cuda_upload(*gpu, p.t, dt0);
    gpu->zero(m.t);
    gpu->zero(v.t);
    AdamWArgs a;
    a.lr = 1e-3f;
    gpu->adamw_update(p.t, dtable.t.view({V * C}), m.t, v.t, Tensor(), ss.t, a);
    got[3] = cuda_download(*gpu, ss.t);
    std::vector<float> pv = cuda_download(*gpu, p.t);
    got[3].insert(got[3].end(), pv.begin(), pv.end());
    if (run == 0) {
      for (int i = 0; i < 4; ++i) first[i] = got[i];
      continue;
    }
    EXPECT_TRUE(cuda_bitwise_equal(got[0], first[0])) << "rmsnorm_backward dinp differs between runs";
    EXPECT_TRUE(cuda_bitwise_equal(got[1], first[1])) << "rmsnorm_backward dweight differs between runs";
    EXPECT_TRUE(cuda_bitwise_equal(got[2], first[2])) << "embedding_backward differs between runs";
    EXPECT_TRUE(cuda_bitwise_equal(got[3], first[3])) << "sum_squares/adamw differ between runs";
  }
}

TEST_F(CudaOps, ProfilingByCategory) {
  const int64_t N = 512, C = 1024;
  cuda_Arr x = cuda_alloc(*gpu, DType::BF16, {N, C}), w = cuda_alloc(*gpu, DType::BF16, {C, C});
  cuda_Arr o = cuda_alloc(*gpu, DType::BF16, {N, C}), nw = cuda_alloc(*gpu, DType::BF16, {C});
  cuda_Arr r = cuda_alloc(*gpu, DType::F32, {N}), ss = cuda_alloc(*gpu, DType::F32, {1});
  cuda_upload(*gpu, x.t, cuda_randn(N * C, 111));
  cuda_upload(*gpu, w.t, cuda_randn(C * C, 112, 0.03));
  cuda_upload(*gpu, nw.t, cuda_randn(C, 113, 0.1, 1.0));
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

// ---------------------------------------------------------------- timings at 1.1B shapes

// Fast deterministic fill for big tensors: uniform in [-scale, scale).
std::vector<float> cuda_fast_fill(int64_t n, uint64_t seed, double scale, double mean = 0.0) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[size_t(i)] = float(mean + scale * (double(hash_mix(seed, uint64_t(i)) >> 11) * 0x1.0p-52 - 1.0));
  return v;
}

// Times every non-attention op at the TinyLlama-1.1B micro-batch (8 x 2048 tokens) and
// prints device time, effective bandwidth or TFLOP/s, and the 3 TB/s prediction from
// bench/NOTES.md. Fails only on errors; the table is for the notes.
TEST(CudaBench, OpTimesAtTinyLlamaShapes) {
  if (!cuda_available()) GTEST_SKIP() << "CUDA backend not available";
  auto be = make_backend("cuda");
  Backend& g = *be;
  const int64_t B = 8, T = 2048, N = B * T, C = 2048, I = 5632, V = 32000, H = 32, K = 4, D = 64;
  const int64_t Q = (H + 2 * K) * D, L = 22;
  const int64_t P = 1100048384;  // parameters
  auto bf = [&](Shape s, uint64_t seed, double scale = 1.0, double mean = 0.0) {
    cuda_Arr a = cuda_alloc(g, DType::BF16, s);
    cuda_upload(g, a.t, cuda_fast_fill(s.numel(), seed, scale, mean));
    return a;
  };
  auto f32 = [&](Shape s, uint64_t seed, double scale = 1.0, double mean = 0.0) {
    cuda_Arr a = cuda_alloc(g, DType::F32, s);
    cuda_upload(g, a.t, cuda_fast_fill(s.numel(), seed, scale, mean));
    return a;
  };
  cuda_Arr x = bf({N, C}, 1), x2 = bf({N, C}, 2), y = bf({N, C}, 3), dx = bf({N, C}, 4);
  cuda_Arr nw = bf({C}, 5, 0.1, 1.0), rstd = f32({N}, 6, 0.1, 1.0), dnw = f32({C}, 7);
  cuda_Arr qkv = bf({B, T, Q}, 8), gu = bf({N, 2 * I}, 9), sw = bf({N, I}, 10);
  cuda_Arr dgu = bf({N, 2 * I}, 11), dsw = bf({N, I}, 12);
  cuda_Arr wqkv = bf({Q, C}, 13, 0.02), wgu = bf({2 * I, C}, 14, 0.02), wdown = bf({C, I}, 15, 0.02);
  cuda_Arr wo = bf({C, C}, 16, 0.02), whead = bf({V, C}, 17, 0.02), emb = bf({V, C}, 18, 0.02);
  cuda_Arr dwqkv = f32({Q, C}, 19), dwgu = f32({2 * I, C}, 20), dwdown = f32({C, I}, 21);
  cuda_Arr dwo = f32({C, C}, 22), dwhead = f32({V, C}, 23), demb = f32({V, C}, 24);
  cuda_Arr tok = cuda_alloc(g, DType::I32, {N}), losses = cuda_alloc(g, DType::F32, {N});
  std::vector<int32_t> ids = cuda_ids(N, V, 25);
  g.upload(tok.t, ids.data());
  std::vector<float> c, s;
  rope_tables(int(T), int(D), 10000.0f, c, s);
  cuda_Arr cos = cuda_alloc(g, DType::F32, {T, D / 2}), sin = cuda_alloc(g, DType::F32, {T, D / 2});
  cuda_upload(g, cos.t, c);
  cuda_upload(g, sin.t, s);

  struct Row {
    std::string name;
    double us, bytes, flops;
    int per_step;  // calls per micro-batch (forward + backward, recompute off)
  };
  std::vector<Row> rows;
  const int reps = 10;
  auto time_op = [&](const std::string& name, double bytes, double flops, int per_step,
                     const std::function<void()>& op) {
    op();  // warm-up: plans, scratch
    g.synchronize();
    g.take_profile();
    g.set_profiling(true);
    for (int i = 0; i < reps; ++i) op();
    double sec = 0;
    for (auto& [k, v] : g.take_profile()) sec += v;
    g.set_profiling(false);
    rows.push_back({name, sec / reps * 1e6, bytes, flops, per_step});
  };
  const double act = double(N) * C * 2;  // one [N, C] bf16 activation, bytes
  time_op("embedding_forward", 2 * act, 0, 1, [&] { g.embedding_forward(x.t, emb.t, tok.t); });
  time_op("embedding_backward", act + 2.0 * N * C * 4, 0, 1,
          [&] { g.embedding_backward(demb.t, dx.t, tok.t); });
  time_op("rmsnorm_forward", 2 * act, 0, 1,
          [&] { g.rmsnorm_forward(y.t, rstd.t, x.t, nw.t, 1e-5f); });
  time_op("add_rmsnorm_forward", 4 * act, 0, int(2 * L),
          [&] { g.add_rmsnorm_forward(x2.t, y.t, rstd.t, x.t, dx.t, nw.t, 1e-5f); });
  time_op("rmsnorm_backward", 4 * act, 0, int(2 * L + 1),
          [&] { g.rmsnorm_backward(dx.t, dnw.t, y.t, x.t, nw.t, rstd.t); });
  const double qk_bytes = 2.0 * N * (H + K) * D * 2;
  time_op("rope_forward", qk_bytes, 0, int(L), [&] { g.rope_forward(qkv.t, cos.t, sin.t, H, K, 0); });
  time_op("rope_backward", qk_bytes, 0, int(L), [&] { g.rope_backward(qkv.t, cos.t, sin.t, H, K, 0); });
  time_op("swiglu_forward", 3.0 * N * I * 2, 0, int(L), [&] { g.swiglu_forward(sw.t, gu.t); });
  time_op("swiglu_backward", 5.0 * N * I * 2, 0, int(L),
          [&] { g.swiglu_backward(dgu.t, dsw.t, gu.t); });
  struct Gemm { const char* name; cuda_Arr *in, *w, *out, *dw, *dout, *din; int64_t In, O; };
  Gemm gemms[] = {{"qkv", &y, &wqkv, &qkv, &dwqkv, &qkv, &dx, C, Q},
                  {"wo", &y, &wo, &x2, &dwo, &x2, &dx, C, C},
                  {"gate_up", &y, &wgu, &gu, &dwgu, &gu, &dx, C, 2 * I},
                  {"down", &sw, &wdown, &x2, &dwdown, &x2, &dsw, I, C}};
  for (Gemm& m : gemms) {
    const double fl = 2.0 * N * m.In * m.O;
    Tensor out2 = m.out->t.view({N, m.O}), dout2 = m.dout->t.view({N, m.O});
    time_op(cat("matmul_forward ", m.name), 0, fl, int(L),
            [&] { g.matmul_forward(out2, m.in->t, m.w->t); });
    time_op(cat("matmul_backward dinp ", m.name), 0, fl, int(L),
            [&] { g.matmul_backward(m.din->t, Tensor(), dout2, m.in->t, m.w->t, false); });
    time_op(cat("matmul_backward dweight ", m.name), 0, fl, int(L),
            [&] { g.matmul_backward(Tensor(), m.dw->t, dout2, m.in->t, m.w->t, false); });
  }
  time_op("head_cross_entropy (3 GEMMs + softmax)", 0, 3 * 2.0 * N * C * V, 1,
          [&] { g.head_cross_entropy(losses.t, dx.t, dwhead.t, y.t, whead.t, tok.t, 1.0f / N); });
  {  // optimizer: once per optimizer step, over all P parameters (not per micro-batch)
    const int64_t Pc = int64_t(1) << 28;  // a quarter of the model; scaled to P below
    cuda_Arr p = f32({Pc}, 30, 0.02), gr = f32({Pc}, 31, 1e-4), m = f32({Pc}, 32, 1e-5);
    cuda_Arr v = f32({Pc}, 33, 1e-9, 1e-9), pc = cuda_alloc(g, DType::BF16, {Pc});
    cuda_Arr nsq = f32({1}, 34, 0.0, 1.0);
    const double k = double(P) / double(Pc);
    time_op("sum_squares (all params, once per step)", 0, 0, 0, [&] { g.sum_squares(nsq.t, gr.t); });
    rows.back().us *= k;
    rows.back().bytes = 4.0 * P;
    AdamWArgs a;
    a.lr = 4e-4f;
    time_op("adamw_update (all params, once per step)", 0, 0, 0,
            [&] { g.adamw_update(p.t, gr.t, m.t, v.t, pc.t, nsq.t, a); });
    rows.back().us *= k;
    rows.back().bytes = 30.0 * P;
  }

  double total_us = 0;
  std::printf("\n%-42s %10s %9s %9s %11s %6s %12s\n", "op (1.1B, micro-batch 8x2048)", "time us",
              "GB/s", "TFLOP/s", "pred us", "calls", "us/microbatch");
  for (const Row& r : rows) {
    const double pred = r.bytes > 0 ? r.bytes / 3e12 * 1e6 : r.flops / 750e12 * 1e6;
    std::printf("%-42s %10.1f %9.0f %9.1f %11.1f %6d %12.0f\n", r.name.c_str(), r.us,
                r.bytes > 0 ? r.bytes / (r.us * 1e-6) / 1e9 : 0.0,
                r.flops > 0 ? r.flops / (r.us * 1e-6) / 1e12 : 0.0, pred, r.per_step,
                r.us * r.per_step);
    total_us += r.us * r.per_step;
    EXPECT_TRUE(std::isfinite(r.us) && r.us > 0) << r.name;
  }
  std::printf("non-attention device time per micro-batch: %.1f ms (%.0f tokens/s before attention"
              " and the optimizer)\n\n",
              total_us / 1e3, double(N) / (total_us * 1e-6));
}

}  // namespace
