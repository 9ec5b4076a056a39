// Attention of new tokens over a KV cache (incremental decoding), as backend.h's
// attention_decode: RoPE on the new q and k, append k and v to the cache, attend causally.
// The arithmetic per query row is exactly attention_forward's (same dot products, same
// order), so a cached decode reproduces the full causal forward bit for bit.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "backend/cpu/ops/attention.h"
#include "backend/cpu/ops/parallel.h"
#include "backend/cpu/ops/rope.h"

namespace tl::cpu {

// qkv: (B, Tn, (H + 2K) * D), read only (q and k are rotated in a copy); k_cache, v_cache: (B,
// Tmax, K * D); cos, sin: (>= max position + 1, D/2); pos: (B) first position of each row's new
// tokens; out: (B, Tn, H * D). Every pos[b] + Tn <= kv_len <= Tmax.
template <class T>
void attention_decode(T* out, const T* qkv_in, T* k_cache, T* v_cache, const T* cos, const T* sin,
                      const int32_t* pos, int64_t B, int64_t Tn, int64_t Tmax, int64_t kv_len,
                      int H, int K, int D) {
  const int64_t row = int64_t(H + 2 * K) * D, kvrow = int64_t(K) * D;
  const int group = H / K;
  const T scale = T(1) / std::sqrt(T(D));
  // RoPE (on a copy) and the cache append: cheap, one pass.
  std::vector<T> rotated(qkv_in, qkv_in + B * Tn * row);
  T* qkv = rotated.data();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t p = int64_t(pos[b]) + t;
      T* x = qkv + (b * Tn + t) * row;
      for (int h = 0; h < H + K; ++h)
        rope_rotate(x + int64_t(h) * D, cos + p * (D / 2), sin + p * (D / 2), D, T(1));
      std::copy_n(x + int64_t(H) * D, kvrow, k_cache + (b * Tmax + p) * kvrow);
      std::copy_n(x + int64_t(H + K) * D, kvrow, v_cache + (b * Tmax + p) * kvrow);
    }
  }
#pragma omp parallel if (worth_threads(B * H * Tn * kv_len * D / 4))
  {
    std::vector<T> p(static_cast<size_t>(kv_len));  // scores, then exp(score - max)
    std::vector<double> acc(static_cast<size_t>(D));
#pragma omp for collapse(3) schedule(dynamic, 4)
    for (int64_t b = 0; b < B; ++b) {
      for (int h = 0; h < H; ++h) {
        for (int64_t t = 0; t < Tn; ++t) {
          const int64_t last = int64_t(pos[b]) + t;  // attends keys [0, last]
          const T* q = qkv + (b * Tn + t) * row + int64_t(h) * D;
          const T* kb = k_cache + b * Tmax * kvrow + int64_t(h / group) * D;  // key s at s*kvrow
          const T* vb = v_cache + b * Tmax * kvrow + int64_t(h / group) * D;
          T mx = -std::numeric_limits<T>::infinity();
          for (int64_t s = 0; s <= last; ++s) {
            p[s] = attn_dot(q, kb + s * kvrow, D) * scale;
            mx = std::max(mx, p[s]);
          }
          double sum = 0;
          for (int64_t s = 0; s <= last; ++s) {
            p[s] = std::exp(p[s] - mx);
            sum += p[s];
          }
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t s = 0; s <= last; ++s) {
            const T* v = vb + s * kvrow;
            const double ps = p[s];
#pragma omp simd
            for (int d = 0; d < D; ++d) acc[d] += ps * double(v[d]);
          }
          T* o = out + (b * Tn + t) * int64_t(H) * D + int64_t(h) * D;
          for (int d = 0; d < D; ++d) o[d] = T(acc[d] / sum);
        }
      }
    }
  }
}

}  // namespace tl::cpu
