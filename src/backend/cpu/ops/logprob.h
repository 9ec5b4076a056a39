// Output head to log-probabilities of given tokens (evaluation): the CPU twin of the CUDA
// head_logprob. Logits exist for one chunk of rows at a time.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "backend/cpu/ops/matmul.h"
#include "backend/cpu/ops/parallel.h"

namespace tl::cpu {

// z = x @ weight^T; logp: (N) = z[t] - logsumexp(z); greedy: (N) = 1 when t is the first
// index of max(z). x: (N, C); weight: (V, C); targets: (N), each in [0, V) (checked by the
// caller). The exp-sum runs in double: the result is exact to the logits' precision.
template <class T>
void head_logprob(T* logp, int32_t* greedy, const T* x, const T* weight, const int32_t* targets,
                  int64_t N, int64_t C, int64_t V) {
  constexpr int64_t kChunk = 128;
  std::vector<T> z(size_t(std::min(N, kChunk) * V));  // (chunk, V) logits
  for (int64_t n0 = 0; n0 < N; n0 += kChunk) {
    const int64_t nc = std::min(kChunk, N - n0);
    gemm<T>(z.data(), V, {x + n0 * C, C, 1}, {weight, 1, C}, nc, V, C, false);
#pragma omp parallel for if (worth_threads(nc * V)) schedule(static)
    for (int64_t i = 0; i < nc; ++i) {
      const T* zi = z.data() + i * V;
      const int32_t tgt = targets[n0 + i];
      const int64_t arg = std::max_element(zi, zi + V) - zi;  // the first maximum
      const double mx = double(zi[arg]);
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(double(zi[v]) - mx);
      logp[n0 + i] = T(double(zi[tgt]) - mx - std::log(sum));
      greedy[n0 + i] = arg == tgt ? 1 : 0;
    }
  }
}

// ids: (N) = the first index of the maximum of each row of x: (N, V).
template <class T>
void argmax_rows(int32_t* ids, const T* x, int64_t N, int64_t V) {
#pragma omp parallel for if (worth_threads(N * V)) schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    const T* xi = x + i * V;
    ids[i] = int32_t(std::max_element(xi, xi + V) - xi);
  }
}

}  // namespace tl::cpu
