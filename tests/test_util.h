// Helpers for op tests: random data, host tensors, closeness checks and finite differences.
// Names start with tu_ so other test files can include this one without clashes.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"

namespace tl {

inline std::vector<double> tu_randn(Rng& rng, int64_t n, double scale = 1.0) {
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = scale * rng.normal();
  return v;
}

inline std::vector<float> tu_to_f32(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}
inline std::vector<double> tu_to_f64(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

inline double tu_dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

inline std::vector<double> tu_sub(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r(a.size());
  for (size_t i = 0; i < a.size(); ++i) r[i] = a[i] - b[i];
  return r;
}

// A CPU tensor over a vector's storage (the CPU backend works on host memory directly).
template <class T>
Tensor tu_tensor(std::vector<T>& v, Shape s) {
  DType dt = std::is_same_v<T, float>     ? DType::F32
             : std::is_same_v<T, int32_t> ? DType::I32
             : std::is_same_v<T, double>  ? DType::F64
                                          : DType::BF16;
  EXPECT_EQ(s.numel(), int64_t(v.size())) << "tu_tensor: shape " << s.str();
  return Tensor(v.data(), dt, Device::CPU, s);
}

// Every element of got is within atol + rtol * |want| of want (NaN never is).
inline void tu_expect_near(const std::vector<double>& got, const std::vector<double>& want,
                           double rtol, double atol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = atol + rtol * std::fabs(want[i]);
    if (!(std::fabs(got[i] - want[i]) <= tol) && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << ", want " << want[i] << " (tol "
                    << tol << ")";
  }
}
inline void tu_expect_near(const std::vector<float>& got, const std::vector<double>& want,
                           double rtol, double atol, const std::string& what) {
  tu_expect_near(tu_to_f64(got), want, rtol, atol, what);
}

// Central finite differences: d f / d x_i for every i, x restored afterwards.
inline std::vector<double> tu_numeric_grad(std::vector<double>& x, const std::function<double()>& f,
                                           double h = 1e-5) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f();
    x[i] = x0 - h;
    const double fm = f();
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

// Analytic gradients in double should match central differences to about 1e-8.
inline void tu_expect_grad(const std::vector<double>& analytic, std::vector<double>& x,
                           const std::function<double()>& f, const std::string& what) {
  tu_expect_near(analytic, tu_numeric_grad(x, f), 1e-6, 1e-7, what);
}

template <class T>
void tu_poison(std::vector<T>& v) {
  for (auto& x : v) x = std::numeric_limits<T>::quiet_NaN();
}

template <class T>
bool tu_bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

}  // namespace tl
