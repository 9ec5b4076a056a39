// Rotary position embedding, rotate-half convention (as Hugging Face Llama): in each head
// the pair (i, i + D/2) is rotated by the angle of position p and frequency i.
// Works in place on the query and key heads of a packed qkv; value heads are untouched.
#pragma once
#include <cstdint>

#include "backend/cpu/ops/parallel.h"

namespace tl::cpu {

// x: (D) one head, rotated in place by angle sign * theta: cos, sin: (D/2) for its position.
template <class T>
inline void rope_rotate(T* x, const T* cos, const T* sin, int D, T sign) {
  const int half = D / 2;
  for (int i = 0; i < half; ++i) {
    const T x1 = x[i], x2 = x[i + half];
    const T s = sign * sin[i];
    x[i] = x1 * cos[i] - x2 * s;
    x[i + half] = x2 * cos[i] + x1 * s;
  }
}

// qkv: (B, T, (H + 2K) * D); cos, sin: (Tmax, D/2) with pos0 + T <= Tmax.
// sign +1 is the forward rotation, -1 its transpose (the backward).
template <class T>
void rope_apply(T* qkv, const T* cos, const T* sin, int64_t B, int64_t Tn, int H, int K, int D,
                int64_t pos0, T sign) {
  const int64_t row = int64_t(H + 2 * K) * D, work = B * Tn * (H + K) * D;
#pragma omp parallel for if (worth_threads(work)) collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < Tn; ++t) {
      T* x = qkv + (b * Tn + t) * row;
      const T* c = cos + (pos0 + t) * (D / 2);
      const T* s = sin + (pos0 + t) * (D / 2);
      for (int h = 0; h < H + K; ++h) rope_rotate(x + int64_t(h) * D, c, s, D, sign);  // q, k
    }
  }
}

template <class T>
void rope_forward(T* qkv, const T* cos, const T* sin, int64_t B, int64_t Tn, int H, int K, int D,
                  int64_t pos0) {
  rope_apply(qkv, cos, sin, B, Tn, H, K, D, pos0, T(1));
}

// dqkv: (B, T, (H + 2K) * D): dq and dk rotated back in place (the rotation's transpose).
template <class T>
void rope_backward(T* dqkv, const T* cos, const T* sin, int64_t B, int64_t Tn, int H, int K, int D,
                   int64_t pos0) {
  rope_apply(dqkv, cos, sin, B, Tn, H, K, D, pos0, T(-1));
}

}  // namespace tl::cpu
