// Token embedding lookup and its scatter-add backward.
#pragma once
#include <algorithm>
#include <cstdint>

#include "backend/cpu/ops/parallel.h"

namespace tl::cpu {

// out: (N, C) = table[tokens[n], :]; table: (V, C); tokens: (N), each in [0, V) (checked
// by the caller).
template <class T>
void embedding_forward(T* out, const T* table, const int32_t* tokens, int64_t N, int64_t C) {
#pragma omp parallel for if (worth_threads(N * C)) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    std::copy(table + tokens[n] * C, table + (tokens[n] + 1) * C, out + n * C);
}

// dtable: (V, C) += dout[n, :] scattered to row tokens[n]; dout: (N, C); tokens: (N).
// Repeated tokens add into one row, so threads split the columns, and each column sums its
// tokens in order n = 0..N-1: no races and a fixed summation order.
template <class T>
void embedding_backward(T* dtable, const T* dout, const int32_t* tokens, int64_t N, int64_t C) {
  constexpr int64_t kCols = 16;
  const int64_t n_blocks = (C + kCols - 1) / kCols;
#pragma omp parallel for if (worth_threads(N * C)) schedule(static)
  for (int64_t cb = 0; cb < n_blocks; ++cb) {
    const int64_t c0 = cb * kCols, c1 = std::min(C, c0 + kCols);
    for (int64_t n = 0; n < N; ++n) {
      T* row = dtable + int64_t(tokens[n]) * C;
      const T* d = dout + n * C;
      for (int64_t c = c0; c < c1; ++c) row[c] += d[c];
    }
  }
}

}  // namespace tl::cpu
