// Causal grouped-query attention, one query row at a time (O(T^2) work, O(T) scratch per
// thread). Query head h reads key/value head h / (H/K) straight from the packed qkv; K and
// V are never copied. The forward saves lse; the backward recomputes probabilities from it.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "backend/cpu/ops/parallel.h"

namespace tl::cpu {

// a . b over D elements in a fixed order: 16 interleaved partial sums (which gcc keeps in
// one vector register), then added in order. The result never depends on how the compiler
// chose to vectorize or on the pointers' alignment.
template <class T>
inline T attn_dot(const T* a, const T* b, int D) {
  constexpr int L = 16;
  T part[L] = {};
  int d = 0;
  for (; d + L <= D; d += L)
    for (int j = 0; j < L; ++j) part[j] += a[d + j] * b[d + j];
  for (; d < D; ++d) part[d % L] += a[d] * b[d];
  T s = 0;
  for (int j = 0; j < L; ++j) s += part[j];
  return s;
}

// out: (B, T, H*D); lse: (B, H, T) logsumexp of the scaled scores;
// qkv: (B, T, (H + 2K) * D): per token H query heads, then K key heads, then K value heads.
template <class T>
void attention_forward(T* out, T* lse, const T* qkv, int64_t B, int64_t Tn, int H, int K, int D) {
  const int64_t row = int64_t(H + 2 * K) * D;
  const int group = H / K;
  const T scale = T(1) / std::sqrt(T(D));
#pragma omp parallel if (worth_threads(B * H * Tn * Tn * D / 2))
  {
    std::vector<T> p(static_cast<size_t>(Tn));  // (T) scores, then exp(score - max), of one query
    std::vector<double> acc(static_cast<size_t>(D));
    // Causal rows differ in cost; which thread takes a row never changes its result.
#pragma omp for collapse(3) schedule(dynamic, 8)
    for (int64_t b = 0; b < B; ++b) {
      for (int h = 0; h < H; ++h) {
        for (int64_t t = 0; t < Tn; ++t) {
          const T* base = qkv + b * Tn * row;  // (T, row) this sequence
          const T* q = base + t * row + int64_t(h) * D;
          const int64_t koff = int64_t(H + h / group) * D, voff = koff + int64_t(K) * D;
          T mx = -std::numeric_limits<T>::infinity();
          for (int64_t s = 0; s <= t; ++s) {
            p[s] = attn_dot(q, base + s * row + koff, D) * scale;
            mx = std::max(mx, p[s]);
          }
          double sum = 0;
          for (int64_t s = 0; s <= t; ++s) {
            p[s] = std::exp(p[s] - mx);
            sum += p[s];
          }
          lse[(b * H + h) * Tn + t] = T(double(mx) + std::log(sum));
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t s = 0; s <= t; ++s) {
            const T* v = base + s * row + voff;
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

// dqkv: (B, T, (H + 2K) * D) overwritten; dout, out: (B, T, H*D); qkv as in the forward;
// lse: (B, H, T) from the forward. With p = softmax(scale * q.k), delta_t = dout_t . out_t:
//   ds = p * (dout_t . v_s - delta_t);  dq_t = scale * sum_s ds k_s;
//   dk_s += scale * ds q_t;  dv_s += p dout_t.
// Each thread owns one (b, kv head): its dk and dv, and dq of the heads that read it, so
// nothing races and every sum runs in a fixed order (query heads, then t, ascending).
template <class T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse, int64_t B,
                        int64_t Tn, int H, int K, int D) {
  const int64_t row = int64_t(H + 2 * K) * D, orow = int64_t(H) * D;
  const int group = H / K;
  const T scale = T(1) / std::sqrt(T(D));
#pragma omp parallel if (worth_threads(B * H * Tn * Tn * D / 2))
  {
    std::vector<double> dq(static_cast<size_t>(D));
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t b = 0; b < B; ++b) {
      for (int g = 0; g < K; ++g) {
        const T* base = qkv + b * Tn * row;
        T* dbase = dqkv + b * Tn * row;
        const int64_t koff = int64_t(H + g) * D, voff = koff + int64_t(K) * D;
        for (int64_t s = 0; s < Tn; ++s) {
          std::fill_n(dbase + s * row + koff, D, T(0));
          std::fill_n(dbase + s * row + voff, D, T(0));
        }
        for (int h = g * group; h < (g + 1) * group; ++h) {
          for (int64_t t = 0; t < Tn; ++t) {
            const T* q = base + t * row + int64_t(h) * D;
            const T* dy = dout + (b * Tn + t) * orow + int64_t(h) * D;
            const T* y = out + (b * Tn + t) * orow + int64_t(h) * D;
            const T l = lse[(b * H + h) * Tn + t];
            const T delta = attn_dot(dy, y, D);
            std::fill(dq.begin(), dq.end(), 0.0);
            for (int64_t s = 0; s <= t; ++s) {
              const T* k = base + s * row + koff;
              const T* v = base + s * row + voff;
              const T p = std::exp(attn_dot(q, k, D) * scale - l);
              const T ds = p * (attn_dot(dy, v, D) - delta);
              const T dss = ds * scale;
              T* dk = dbase + s * row + koff;
              T* dv = dbase + s * row + voff;
#pragma omp simd
              for (int d = 0; d < D; ++d) {
                dq[d] += double(ds) * double(k[d]);
                dk[d] += dss * q[d];
                dv[d] += p * dy[d];
              }
            }
            T* dqt = dbase + t * row + int64_t(h) * D;
            for (int d = 0; d < D; ++d) dqt[d] = T(dq[d] * double(scale));
          }
        }
      }
    }
  }
}

}  // namespace tl::cpu
