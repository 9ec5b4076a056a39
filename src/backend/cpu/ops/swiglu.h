// SwiGLU gate of the Llama MLP: out = silu(g) * u, with g and u side by side in one row.
#pragma once
#include <cmath>
#include <cstdint>

#include "backend/cpu/ops/parallel.h"

namespace tl::cpu {

// out: (N, I) = silu(gate_up[:, :I]) * gate_up[:, I:]; gate_up: (N, 2I)
template <class T>
void swiglu_forward(T* out, const T* gate_up, int64_t N, int64_t I) {
#pragma omp parallel for if (worth_threads(N * I)) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* g = gate_up + n * 2 * I;
    const T* u = g + I;
    T* o = out + n * I;
    for (int64_t i = 0; i < I; ++i) o[i] = g[i] / (T(1) + std::exp(-g[i])) * u[i];
  }
}

// dgate_up: (N, 2I) overwritten; dout: (N, I); gate_up: (N, 2I) from the forward.
// With s = sigmoid(g): d silu(g)/dg = s * (1 + g * (1 - s)).
template <class T>
void swiglu_backward(T* dgate_up, const T* dout, const T* gate_up, int64_t N, int64_t I) {
#pragma omp parallel for if (worth_threads(N * I)) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* g = gate_up + n * 2 * I;
    const T* u = g + I;
    const T* dy = dout + n * I;
    T* dg = dgate_up + n * 2 * I;
    T* du = dg + I;
    for (int64_t i = 0; i < I; ++i) {
      const T s = T(1) / (T(1) + std::exp(-g[i]));
      dg[i] = dy[i] * u[i] * s * (T(1) + g[i] * (T(1) - s));
      du[i] = dy[i] * g[i] * s;
    }
  }
}

}  // namespace tl::cpu
