// RMSNorm (no mean subtraction, no bias), optionally fused with the residual add.
// Sums of squares and dot products accumulate in double; rstd is stored in T.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/cpu/ops/parallel.h"

namespace tl::cpu {

// out: (C) = x * rstd * weight, rstd = 1/sqrt(mean(x^2) + eps); returns rstd.
// Same order of operations as Hugging Face: weight * (x * rstd).
template <class T>
T rmsnorm_row(T* out, const T* x, const T* weight, int64_t C, double eps) {
  double ss = 0;
  for (int64_t c = 0; c < C; ++c) ss += double(x[c]) * double(x[c]);
  const T r = T(1.0 / std::sqrt(ss / double(C) + eps));
  for (int64_t c = 0; c < C; ++c) out[c] = weight[c] * (x[c] * r);
  return r;
}

// out: (N, C); rstd: (N); inp: (N, C); weight: (C)
template <class T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int64_t N, int64_t C,
                     double eps) {
#pragma omp parallel for if (worth_threads(N * C)) schedule(static)
  for (int64_t n = 0; n < N; ++n) rstd[n] = rmsnorm_row(out + n * C, inp + n * C, weight, C, eps);
}

// res_out: (N, C) = res_in + delta (may alias res_in); then out, rstd as rmsnorm_forward.
template <class T>
void add_rmsnorm_forward(T* res_out, T* out, T* rstd, const T* res_in, const T* delta,
                         const T* weight, int64_t N, int64_t C, double eps) {
#pragma omp parallel for if (worth_threads(N * C)) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    T* r = res_out + n * C;
    for (int64_t c = 0; c < C; ++c) r[c] = res_in[n * C + c] + delta[n * C + c];
    rstd[n] = rmsnorm_row(out + n * C, r, weight, C, eps);
  }
}

// dinp: (N, C) += dL/dinp; dweight: (C) += sum_n dout * inp * rstd (either may be null).
// dout, inp: (N, C); weight: (C); rstd: (N) from the forward.
// With y = x * r * w and r = (mean(x^2) + eps)^-1/2:
//   dx_j = r * dout_j * w_j - x_j * r^3 / C * sum_i dout_i * w_i * x_i
template <class T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight,
                      const T* rstd, int64_t N, int64_t C) {
  if (dinp) {
#pragma omp parallel for if (worth_threads(N * C)) schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const T* x = inp + n * C;
      const T* dy = dout + n * C;
      double dot = 0;
      for (int64_t c = 0; c < C; ++c) dot += double(dy[c]) * double(weight[c]) * double(x[c]);
      const double r = rstd[n];
      const T k = T(dot * r * r * r / double(C));
      const T rt = rstd[n];
      T* dx = dinp + n * C;
      for (int64_t c = 0; c < C; ++c) dx[c] += rt * dy[c] * weight[c] - x[c] * k;
    }
  }
  if (dweight) {
    // A reduction over rows: threads split the columns, each sums rows in order.
    constexpr int64_t kCols = 16;
    const int64_t n_blocks = (C + kCols - 1) / kCols;
#pragma omp parallel for if (worth_threads(N * C)) schedule(static)
    for (int64_t cb = 0; cb < n_blocks; ++cb) {
      const int64_t c0 = cb * kCols, c1 = std::min(C, c0 + kCols);
      double acc[kCols] = {};
      for (int64_t n = 0; n < N; ++n)
        for (int64_t c = c0; c < c1; ++c)
          acc[c - c0] += double(dout[n * C + c]) * double(inp[n * C + c] * rstd[n]);
      for (int64_t c = c0; c < c1; ++c) dweight[c] += T(acc[c - c0]);
    }
  }
}

}  // namespace tl::cpu
