// Kernel-level attention tests (test_cuda_attention.cpp): a CUDA context of its own, raw
// device buffers (at any byte offset: tensors that are not 16-byte aligned), the float64
// reference and the comparisons. CUDA builds only.
#pragma once
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cuda/attention.h"
#include "backend/cuda/attention_internal.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"

namespace attention_test {

using namespace tl;
using namespace tl::gpu;

#define CK(expr)                                                                    \
  do {                                                                              \
    cudaError_t e_ = (expr);                                                        \
    if (e_ != cudaSuccess)                                                          \
      throw std::runtime_error(std::string(#expr) + ": " + cudaGetErrorString(e_)); \
  } while (0)

inline bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}
#define SKIP_WITHOUT_GPU() \
  if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU visible"

struct Gpu {
  CudaContext ctx;
  Gpu() {
    CK(cudaSetDevice(0));
    cudaDeviceProp prop{};
    CK(cudaGetDeviceProperties(&prop, 0));
    ctx.sm_count = prop.multiProcessorCount, ctx.cc_major = prop.major, ctx.cc_minor = prop.minor;
    CK(cudaStreamCreate(&ctx.stream));
  }
  ~Gpu() {
    cudaStreamSynchronize(ctx.stream);
    attention_release(ctx);
    cudaStreamSynchronize(ctx.stream);
    cudaStreamDestroy(ctx.stream);
  }
};

// Device memory; p = the allocation + offset bytes (views that are not 16-byte aligned).
struct DevBuf {
  void* base = nullptr;
  void* p = nullptr;
  size_t bytes = 0;
  explicit DevBuf(size_t n, size_t offset = 0) : bytes(n) {
    CK(cudaMalloc(&base, n + offset));
    p = static_cast<char*>(base) + offset;
  }
  ~DevBuf() { cudaFree(base); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  void poison() { CK(cudaMemset(p, 0xff, bytes)); }  // all-ones: NaN as bf16 and as f32
};

struct Shape5 {
  int B, T, H, K, D;
  int64_t W() const { return int64_t(H + 2 * K) * D; }  // qkv row
  int64_t qkv_n() const { return int64_t(B) * T * W(); }
  int64_t out_n() const { return int64_t(B) * T * H * D; }
  int64_t lse_n() const { return int64_t(B) * H * T; }
  std::string str() const { return cat("B", B, " T", T, " H", H, " K", K, " D", D); }
};

inline std::vector<uint16_t> random_bf16(int64_t n, double amp, uint64_t seed) {
  Rng r(seed);
  std::vector<uint16_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = f32_to_bf16(float(amp * r.normal()));
  return v;
}
inline std::vector<double> to_double(const std::vector<uint16_t>& v) {
  std::vector<double> d(v.size());
  for (size_t i = 0; i < v.size(); ++i) d[i] = bf16_to_f32(v[i]);
  return d;
}

// ---- float64 reference, restricted to batch rows [b0,b1) and kv groups [g0,g1) ----
struct Sel {
  int b0, b1, g0, g1;
};
inline Sel all_of(const Shape5& s) { return {0, s.B, 0, s.K}; }

// out[B,T,H*D], lse[B,H,T] (entries outside the selection stay 0).
inline void ref_forward(const Shape5& s, const Sel& sel, const std::vector<double>& qkv,
                        std::vector<double>& out, std::vector<double>& lse) {
  out.assign(size_t(s.out_n()), 0.0), lse.assign(size_t(s.lse_n()), 0.0);
  const int G = s.H / s.K, D = s.D;
  const double scale = 1.0 / std::sqrt(double(D));
  const int nh = (sel.g1 - sel.g0) * G, nb = sel.b1 - sel.b0;
#pragma omp parallel for schedule(dynamic)
  for (int job = 0; job < nb * nh; ++job) {
    const int b = sel.b0 + job / nh, h = sel.g0 * G + job % nh, g = h / G;
    std::vector<double> sc(size_t(s.T));
    for (int i = 0; i < s.T; ++i) {
      const double* q = &qkv[size_t((int64_t(b) * s.T + i) * s.W() + int64_t(h) * D)];
      double m = -INFINITY;
      for (int j = 0; j <= i; ++j) {
        const double* k = &qkv[size_t((int64_t(b) * s.T + j) * s.W() + int64_t(s.H + g) * D)];
        double dot = 0;
        for (int d = 0; d < D; ++d) dot += q[d] * k[d];
        sc[size_t(j)] = dot * scale, m = std::max(m, sc[size_t(j)]);
      }
      double l = 0;
      for (int j = 0; j <= i; ++j) l += std::exp(sc[size_t(j)] - m);
      const double ls = m + std::log(l);
      lse[size_t((int64_t(b) * s.H + h) * s.T + i)] = ls;
      double* o = &out[size_t((int64_t(b) * s.T + i) * s.H * D + int64_t(h) * D)];
      for (int j = 0; j <= i; ++j) {
        const double p = std::exp(sc[size_t(j)] - ls);
        const double* v = &qkv[size_t((int64_t(b) * s.T + j) * s.W() + int64_t(s.H + s.K + g) * D)];
        for (int d = 0; d < D; ++d) o[d] += p * v[d];
      }
    }
  }
}

// dqkv[B,T,(H+2K)*D] from dout, with out and lse as given (the values the GPU receives).
inline void ref_backward(const Shape5& s, const Sel& sel, const std::vector<double>& qkv,
                         const std::vector<double>& out, const std::vector<double>& lse,
                         const std::vector<double>& dout, std::vector<double>& dqkv) {
  dqkv.assign(size_t(s.qkv_n()), 0.0);
  const int G = s.H / s.K, D = s.D, T = s.T;
  const double scale = 1.0 / std::sqrt(double(D));
  const int nh = (sel.g1 - sel.g0) * G, nb = sel.b1 - sel.b0;
  // dK, dV per query head (summed per group afterwards: no races between threads)
  std::vector<double> dkh(size_t(nb) * nh * T * D, 0.0), dvh(dkh.size(), 0.0);
#pragma omp parallel for schedule(dynamic)
  for (int job = 0; job < nb * nh; ++job) {
    const int b = sel.b0 + job / nh, h = sel.g0 * G + job % nh, g = h / G;
    double* dk = &dkh[size_t(job) * T * D];
    double* dv = &dvh[size_t(job) * T * D];
    auto q = [&](int i) { return &qkv[size_t((int64_t(b) * T + i) * s.W() + int64_t(h) * D)]; };
    auto k = [&](int j) {
      return &qkv[size_t((int64_t(b) * T + j) * s.W() + int64_t(s.H + g) * D)];
    };
    auto v = [&](int j) {
      return &qkv[size_t((int64_t(b) * T + j) * s.W() + int64_t(s.H + s.K + g) * D)];
    };
    for (int i = 0; i < T; ++i) {
      const double* o = &out[size_t((int64_t(b) * T + i) * s.H * D + int64_t(h) * D)];
      const double* dO = &dout[size_t((int64_t(b) * T + i) * s.H * D + int64_t(h) * D)];
      const double ls = lse[size_t((int64_t(b) * s.H + h) * T + i)];
      double Di = 0;
      for (int d = 0; d < D; ++d) Di += dO[d] * o[d];
      double* dq = &dqkv[size_t((int64_t(b) * T + i) * s.W() + int64_t(h) * D)];
      for (int j = 0; j <= i; ++j) {
        double qk = 0, dp = 0;
        for (int d = 0; d < D; ++d) qk += q(i)[d] * k(j)[d], dp += dO[d] * v(j)[d];
        const double p = std::exp(qk * scale - ls), ds = p * (dp - Di);
        for (int d = 0; d < D; ++d) {
          dv[size_t(j) * D + d] += p * dO[d];
          dq[d] += scale * ds * k(j)[d];
          dk[size_t(j) * D + d] += scale * ds * q(i)[d];
        }
      }
    }
  }
  for (int job = 0; job < nb * nh; ++job) {
    const int b = sel.b0 + job / nh, h = sel.g0 * G + job % nh, g = h / G;
    for (int j = 0; j < T; ++j)
      for (int d = 0; d < D; ++d) {
        const size_t row = size_t((int64_t(b) * T + j) * s.W());
        dqkv[row + size_t(s.H + g) * D + d] += dkh[(size_t(job) * T + j) * D + d];
        dqkv[row + size_t(s.H + s.K + g) * D + d] += dvh[(size_t(job) * T + j) * D + d];
      }
  }
}

// ---- comparisons ----
// Element index sets: which part of each tensor to compare.
enum class Part { Q, K, V };
inline std::vector<int64_t> out_indices(const Shape5& s,
                                        const Sel& sel) {  // out[B,T,H*D] of the selection
  std::vector<int64_t> idx;
  const int G = s.H / s.K;
  for (int b = sel.b0; b < sel.b1; ++b)
    for (int t = 0; t < s.T; ++t)
      for (int h = sel.g0 * G; h < sel.g1 * G; ++h)
        for (int d = 0; d < s.D; ++d)
          idx.push_back((int64_t(b) * s.T + t) * s.H * s.D + int64_t(h) * s.D + d);
  return idx;
}
inline std::vector<int64_t> lse_indices(const Shape5& s, const Sel& sel) {
  std::vector<int64_t> idx;
  const int G = s.H / s.K;
  for (int b = sel.b0; b < sel.b1; ++b)
    for (int h = sel.g0 * G; h < sel.g1 * G; ++h)
      for (int t = 0; t < s.T; ++t) idx.push_back((int64_t(b) * s.H + h) * s.T + t);
  return idx;
}
inline std::vector<int64_t> qkv_indices(const Shape5& s, const Sel& sel, Part part) {
  std::vector<int64_t> idx;
  const int G = s.H / s.K;
  const int h0 = part == Part::Q ? sel.g0 * G : (part == Part::K ? s.H : s.H + s.K) + sel.g0;
  const int h1 = part == Part::Q ? sel.g1 * G : (part == Part::K ? s.H : s.H + s.K) + sel.g1;
  for (int b = sel.b0; b < sel.b1; ++b)
    for (int t = 0; t < s.T; ++t)
      for (int h = h0; h < h1; ++h)
        for (int d = 0; d < s.D; ++d)
          idx.push_back((int64_t(b) * s.T + t) * s.W() + int64_t(h) * s.D + d);
  return idx;
}

struct Stats {
  double err_l2 = 0, ref_l2 = 0, max_err = 0, ref_max = 0;
  int64_t n = 0, nan = 0;
};
template <class A, class B>
Stats diff(const A& got, const B& ref, const std::vector<int64_t>& idx) {
  Stats st;
  double num = 0, den = 0;
  for (int64_t i : idx) {
    const double g = double(got[size_t(i)]), r = double(ref[size_t(i)]);
    ++st.n;
    if (!std::isfinite(g)) {
      ++st.nan;
      continue;
    }
    num += (g - r) * (g - r), den += r * r;
    st.max_err = std::max(st.max_err, std::fabs(g - r));
    st.ref_max = std::max(st.ref_max, std::fabs(r));
  }
  st.err_l2 = std::sqrt(num), st.ref_l2 = std::sqrt(den);
  return st;
}

// Checks a tensor against a reference; prints one self-explanatory line. Errors are measured
// relative to the reference, with a floor of 1e-3 per element for references that are (near)
// zero (dq and dk at T=1 are exactly 0; the GPU leaves ~1e-8 from f32 rounding of dP - Dsum).
template <class A, class B>
void expect_close(const std::string& what, const A& got, const B& ref,
                  const std::vector<int64_t>& idx, double rel_tol = 1e-2, double max_tol = 3e-2) {
  const Stats st = diff(got, ref, idx);
  const double floor = 1e-3;
  const double rel = st.err_l2 / std::max(st.ref_l2, floor * std::sqrt(double(st.n)));
  const double max_bound = max_tol * std::max(st.ref_max, floor);
  std::printf("  %-58s rel_l2 %.2e (tol %.0e)  max_err %.2e (tol %.2e)  non-finite %lld\n",
              what.c_str(), rel, rel_tol, st.max_err, max_bound, (long long)st.nan);
  EXPECT_EQ(st.nan, 0) << what << ": non-finite or unwritten elements";
  EXPECT_LE(rel, rel_tol) << what;
  EXPECT_LE(st.max_err, max_bound) << what;
}
inline void expect_lse_close(const std::string& what, const std::vector<float>& got,
                             const std::vector<double>& ref, const std::vector<int64_t>& idx,
                             double tol = 2e-3) {
  const Stats st = diff(got, ref, idx);
  std::printf("  %-58s max_abs_err %.2e (tol %.0e)  non-finite %lld\n", what.c_str(), st.max_err,
              tol, (long long)st.nan);
  EXPECT_EQ(st.nan, 0) << what << ": non-finite or unwritten elements";
  EXPECT_LE(st.max_err, tol) << what;
}

inline std::vector<float> bf16_to_float(const std::vector<uint16_t>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = bf16_to_f32(v[i]);
  return f;
}

// Device tensors for one shape, with host copies of inputs.
struct Problem {
  Shape5 s;
  std::vector<uint16_t> qkv, dout;
  DevBuf d_qkv, d_out, d_lse, d_dout, d_dqkv;
  // offset: bytes added to every device pointer (4: tensors only 4-byte aligned).
  Problem(const Shape5& sh, double amp, uint64_t seed, size_t offset = 0)
      : s(sh),
        qkv(random_bf16(sh.qkv_n(), amp, seed)),
        dout(random_bf16(sh.out_n(), 1.0, seed + 1)),
        d_qkv(size_t(sh.qkv_n()) * 2, offset),
        d_out(size_t(sh.out_n()) * 2, offset),
        d_lse(size_t(sh.lse_n()) * 4, offset),
        d_dout(size_t(sh.out_n()) * 2, offset),
        d_dqkv(size_t(sh.qkv_n()) * 2, offset) {
    CK(cudaMemcpy(d_qkv.p, qkv.data(), d_qkv.bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_dout.p, dout.data(), d_dout.bytes, cudaMemcpyHostToDevice));
  }
  Tensor t_qkv() const { return Tensor(d_qkv.p, DType::BF16, Device::CUDA, {s.B, s.T, s.W()}); }
  Tensor t_out() const {
    return Tensor(d_out.p, DType::BF16, Device::CUDA, {s.B, s.T, int64_t(s.H) * s.D});
  }
  Tensor t_lse() const { return Tensor(d_lse.p, DType::F32, Device::CUDA, {s.B, s.H, s.T}); }
  Tensor t_dout() const {
    return Tensor(d_dout.p, DType::BF16, Device::CUDA, {s.B, s.T, int64_t(s.H) * s.D});
  }
  Tensor t_dqkv() const { return Tensor(d_dqkv.p, DType::BF16, Device::CUDA, {s.B, s.T, s.W()}); }

  void forward(Gpu& gpu, const AttentionOptions& opt) {
    d_out.poison(), d_lse.poison();
    attention_forward_cuda(gpu.ctx, opt, t_out(), t_lse(), t_qkv(), s.H, s.K);
    CK(cudaStreamSynchronize(gpu.ctx.stream));
  }
  void backward(Gpu& gpu, const AttentionOptions& opt) {
    d_dqkv.poison();
    attention_backward_cuda(gpu.ctx, opt, t_dqkv(), t_dout(), t_qkv(), t_out(), t_lse(), s.H, s.K);
    CK(cudaStreamSynchronize(gpu.ctx.stream));
  }
  std::vector<uint16_t> get_out() const { return download<uint16_t>(d_out, s.out_n()); }
  std::vector<float> get_lse() const { return download<float>(d_lse, s.lse_n()); }
  std::vector<uint16_t> get_dqkv() const { return download<uint16_t>(d_dqkv, s.qkv_n()); }
  void set_out_lse(const std::vector<uint16_t>& out, const std::vector<float>& lse) {
    CK(cudaMemcpy(d_out.p, out.data(), d_out.bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_lse.p, lse.data(), d_lse.bytes, cudaMemcpyHostToDevice));
  }
  template <class X>
  static std::vector<X> download(const DevBuf& b, int64_t n) {
    std::vector<X> v(static_cast<size_t>(n));
    CK(cudaMemcpy(v.data(), b.p, size_t(n) * sizeof(X), cudaMemcpyDeviceToHost));
    return v;
  }
};

inline std::string impl_name(const AttentionOptions& o) {
  const std::string n = attention_impl_name(o.impl);
  return o.impl == AttentionImpl::Fa2 && !o.deterministic ? n + "-atomic" : n;
}
// Options that run exactly impl (or throw).
inline AttentionOptions only(AttentionImpl impl, bool deterministic = true) {
  AttentionOptions o;
  o.impl = impl, o.strict = true, o.deterministic = deterministic;
  return o;
}

template <class R>
void check_dqkv(const std::string& what, const Shape5& s, const Sel& sel,
                const std::vector<float>& got, const R& ref) {
  expect_close(what + " dq", got, ref, qkv_indices(s, sel, Part::Q));
  expect_close(what + " dk", got, ref, qkv_indices(s, sel, Part::K));
  expect_close(what + " dv", got, ref, qkv_indices(s, sel, Part::V));
}

}  // namespace attention_test
