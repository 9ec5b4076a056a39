// Output head fused with softmax cross-entropy. Logits exist only for one chunk of tokens
// at a time (kChunk x V), never for the whole batch.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "backend/cpu/ops/matmul.h"
#include "backend/cpu/ops/parallel.h"

namespace tl::cpu {

// losses: (N) = logsumexp(z_n) - z_n[targets[n]], z = x @ weight^T (0 where targets[n] < 0);
// x: (N, C); weight: (V, C); targets: (N), each < V (checked by the caller).
// If dx is not null: dx: (N, C) = and dweight: (V, C) += (when not null) the gradient of
// loss_scale * sum_n losses[n]: dz = loss_scale * (softmax(z) - onehot(target)).
// Deterministic: the chunk size is fixed, and dweight adds each chunk's sum in chunk order.
template <class T>
void head_cross_entropy(T* losses, T* dx, T* dweight, const T* x, const T* weight,
                        const int32_t* targets, int64_t N, int64_t C, int64_t V,
                        double loss_scale) {
  constexpr int64_t kChunk = 128;
  std::vector<T> z(size_t(std::min(N, kChunk) * V));  // (chunk, V) logits, then dz
  for (int64_t n0 = 0; n0 < N; n0 += kChunk) {
    const int64_t nc = std::min(kChunk, N - n0);
    gemm<T>(z.data(), V, {x + n0 * C, C, 1}, {weight, 1, C}, nc, V, C, false);
#pragma omp parallel for if (worth_threads(nc * V)) schedule(static)
    for (int64_t i = 0; i < nc; ++i) {
      T* zi = z.data() + i * V;
      const int32_t tgt = targets[n0 + i];
      const T zt = tgt < 0 ? T(0) : zi[tgt];
      const T mx = *std::max_element(zi, zi + V);
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) {  // one exp per logit: zi becomes exp(z - max)
        zi[v] = std::exp(zi[v] - mx);
        sum += double(zi[v]);
      }
      losses[n0 + i] = tgt < 0 ? T(0) : T(double(mx) + std::log(sum) - double(zt));
      if (!dx) continue;
      const T s = tgt < 0 ? T(0) : T(loss_scale / sum);  // dz = loss_scale * softmax - onehot
      for (int64_t v = 0; v < V; ++v) zi[v] *= s;
      if (tgt >= 0) zi[tgt] -= T(loss_scale);
    }
    if (!dx) continue;
    gemm<T>(dx + n0 * C, C, {z.data(), V, 1}, {weight, C, 1}, nc, C, V, false);
    if (dweight) gemm<T>(dweight, C, {z.data(), 1, V}, {x + n0 * C, C, 1}, V, C, nc, true);
  }
}

}  // namespace tl::cpu
