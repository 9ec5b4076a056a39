// Helpers shared by the tests that run ops on backends (the backend-ops table, the CUDA
// tests): tensors that own their memory, float transfers in any float dtype, random and
// bf16-rounded inputs, and the comparison every backend test uses.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/rng.h"

namespace backend_test {

using namespace tl;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Sets an environment variable for a scope, "" unsets it; the old value comes back after.
// (Backend levers such as TL_ATTENTION or TL_PDL are environment variables.)
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value.empty())
      unsetenv(name);
    else
      setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_)
      setenv(name_, old_->c_str(), 1);
    else
      unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// A tensor owning its memory on one backend.
struct Arr {
  Buffer buf;
  Tensor t;
};

inline Arr alloc(Backend& be, DType dt, Shape s) {
  Arr a;
  a.buf = Buffer(be, std::max<size_t>(1, size_t(s.numel()) * dtype_size(dt)));
  a.t = a.buf.tensor(dt, s);
  return a;
}

// Host floats -> t, converted to t's dtype (f32, bf16, or i32: NaN poisons it as INT32_MIN).
inline void upload(Backend& be, const Tensor& t, const std::vector<float>& v) {
  TL_CHECK(int64_t(v.size()) == t.numel(), "test: ", v.size(), " values for ", t.str());
  if (t.dtype == DType::F32) return be.upload(t, v.data());
  if (t.dtype == DType::I32) {
    std::vector<int32_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i)
      h[i] = std::isnan(v[i]) ? std::numeric_limits<int32_t>::min() : int32_t(v[i]);
    return be.upload(t, h.data());
  }
  if (t.dtype == DType::U8) {  // FP8 codes given as 0..255 (NaN poisons as 0xFF)
    std::vector<uint8_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = std::isnan(v[i]) ? 0xFF : uint8_t(v[i]);
    return be.upload(t, h.data());
  }
  TL_CHECK(t.dtype == DType::BF16, "test: cannot upload floats to ", t.str());
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
  be.upload(t, h.data());
}

inline std::vector<float> download(Backend& be, const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  if (t.dtype == DType::F32) {
    be.download(v.data(), t);
  } else if (t.dtype == DType::I32) {  // ids: exact as floats below 2^24
    std::vector<int32_t> h(v.size());
    be.download(h.data(), t);
    for (size_t i = 0; i < v.size(); ++i) v[i] = float(h[i]);
  } else if (t.dtype == DType::U8) {  // FP8 codes: compared as codes, exactly
    std::vector<uint8_t> h(v.size());
    be.download(h.data(), t);
    for (size_t i = 0; i < v.size(); ++i) v[i] = float(h[i]);
  } else {
    TL_CHECK(t.dtype == DType::BF16, "test: cannot download floats from ", t.str());
    std::vector<uint16_t> h(v.size());
    be.download(h.data(), t);
    for (size_t i = 0; i < v.size(); ++i) v[i] = bf16_to_f32(h[i]);
  }
  return v;
}

inline std::vector<float> round_bf16(std::vector<float> v) {
  for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}

inline std::vector<float> randn(int64_t n, uint64_t seed, double std = 1.0, double mean = 0.0) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = float(mean + std * rng.normal());
  return v;
}

// Fast deterministic fill for big tensors: uniform in [mean - scale, mean + scale).
inline std::vector<float> fast_fill(int64_t n, uint64_t seed, double scale, double mean = 0.0) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[size_t(i)] =
        float(mean + scale * (double(hash_mix(seed, uint64_t(i)) >> 11) * 0x1.0p-52 - 1.0));
  return v;
}

inline std::vector<int32_t> ids(int64_t n, int64_t below, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = int32_t(rng.below(uint64_t(below)));
  return v;
}

// max|got - ref| / max|ref| <= tol, and every value finite (an output left poisoned with
// NaN, or an overflow, fails whatever the tolerance).
inline ::testing::AssertionResult close(const std::string& what, const std::vector<float>& got,
                                        const std::vector<float>& ref, double tol) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure()
           << what << ": sizes differ " << got.size() << " vs " << ref.size();
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
           << first_bad << ": got " << got[first_bad] << ", reference " << ref[first_bad]
           << ") - an unwritten (poisoned) output or an overflow";
  const double rel = max_err / std::max(max_ref, 1e-30);
  if (rel > tol)
    return ::testing::AssertionFailure()
           << what << ": max|got-ref|/max|ref| = " << rel << " > " << tol << " (worst at index "
           << worst << ": got " << got[worst] << ", reference " << ref[worst] << "; max|ref| "
           << max_ref << ", " << got.size() << " values)";
  return ::testing::AssertionSuccess() << what << ": " << rel;
}

inline bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

}  // namespace backend_test
