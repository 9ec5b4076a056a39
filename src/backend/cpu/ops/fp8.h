// FP8 linear-layer operands on the host (issue #16): the reference the CUDA kernels are
// tested against. Per-tensor current scaling: amax, then codes of in * s with
// s = fp8_scale_for_amax(amax) (core/fp8.h), and the GEMM multiplies by 1/s.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "backend/cpu/ops/matmul.h"
#include "backend/cpu/ops/parallel.h"
#include "core/fp8.h"

namespace tl::cpu {

// max |x| over x: (n); NaN when x holds one (so that a bad tensor is never scaled as fine).
template <class Load>
float amax(Load x, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(x(i));
    if (std::isnan(a)) return a;
    m = std::max(m, a);
  }
  return m;
}

// max of two amaxes, NaN if either is (a bad tensor stays bad in the history).
inline float amax_max(float a, float b) {
  return std::isnan(a) || std::isnan(b) ? std::numeric_limits<float>::quiet_NaN() : std::max(a, b);
}

// Delayed scaling's roll (Backend::fp8_amax_roll): history: (H, n), current, scale_amax and
// last: (n).
inline void fp8_amax_roll(float* history, float* current, float* scale_amax, float* last, int64_t H,
                          int64_t n, int64_t slot) {
  for (int64_t i = 0; i < n; ++i) {
    last[i] = current[i];
    if (std::isfinite(current[i])) history[slot * n + i] = current[i];  // else the slot keeps its
    float m = 0;
    for (int64_t h = 0; h < H; ++h) m = amax_max(m, history[h * n + i]);
    scale_amax[i] = m;
    current[i] = 0;
  }
}

// The scale a quantization uses and its inverse, which the GEMM applies: a non-finite amax
// gives scale 0 (codes of +-0) and inverse NaN, so the product is NaN and the step that
// produced the overflow is skipped (train/step_guard.h), never silently wrong.
struct Fp8Scale {
  float scale, inverse;
};
inline Fp8Scale fp8_scales(float amax, Fp8Format f) {
  const float s = fp8_scale_for_amax(amax, f);
  return {s, s > 0 ? 1.0f / s : std::numeric_limits<float>::quiet_NaN()};
}

// out[r, c] and/or out_t[c, r] (either may be null) = f32_to_fp8(in(r * C + c) * scale).
template <class Load>
void fp8_quantize(uint8_t* out, uint8_t* out_t, Load in, int64_t R, int64_t C, float scale,
                  Fp8Format f) {
#pragma omp parallel for if (worth_threads(R * C)) schedule(static)
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const uint8_t q = f32_to_fp8(in(r * C + c) * scale, f);
      if (out) out[r * C + c] = q;
      if (out_t) out_t[c * R + r] = q;
    }
}

// out: (N, M) = (a: (N, K) codes . b: (M, K) codes ^T) * a_inv * b_inv, summed in f32 as
// the tensor cores do (the scales applied to the sum), into out or added to it.
inline void fp8_matmul(float* out, const uint8_t* a, const uint8_t* b, int64_t N, int64_t M,
                       int64_t K, float a_inv, float b_inv, Fp8Format fa, Fp8Format fb,
                       bool accumulate) {
  std::vector<float> da(size_t(N * K)), db(size_t(M * K)), prod(size_t(N * M));
  for (int64_t i = 0; i < N * K; ++i) da[size_t(i)] = fp8_to_f32(a[i], fa);
  for (int64_t i = 0; i < M * K; ++i) db[size_t(i)] = fp8_to_f32(b[i], fb);
  matmul_forward(prod.data(), da.data(), db.data(), N, K, M);
  const float s = a_inv * b_inv;
  for (int64_t i = 0; i < N * M; ++i) out[i] = (accumulate ? out[i] : 0.0f) + prod[size_t(i)] * s;
}

}  // namespace tl::cpu
