// The optimizer's element-wise work: sum of squares (for global-norm clipping) and AdamW.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "backend/cpu/ops/parallel.h"

namespace tl::cpu {

// Returns sum(g^2) over g: (P). Fixed-size blocks, each summed in double, then the block
// sums added in block order: the same bits for any number of threads.
template <class T>
double sum_squares(const T* g, int64_t P) {
  constexpr int64_t kBlock = 4096;
  const int64_t n_blocks = (P + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(n_blocks));
#pragma omp parallel for if (worth_threads(P)) schedule(static)
  for (int64_t b = 0; b < n_blocks; ++b) {
    double s = 0;
    const int64_t end = std::min(P, (b + 1) * kBlock);
    for (int64_t i = b * kBlock; i < end; ++i) s += double(g[i]) * double(g[i]);
    partial[size_t(b)] = s;
  }
  double total = 0;
  for (double s : partial) total += s;
  return total;
}

// Scalars of one AdamW step, derived once on the host.
struct AdamWStep {
  double lr, beta1, beta2, eps, weight_decay;
  double grad_scale;  // clipping factor, 1 when not clipping
  int64_t step;       // 1-based
};

// Clipping as torch.nn.utils.clip_grad_norm_: min(1, max_norm / (norm + 1e-6)).
inline double clip_scale(double norm_sq, double max_norm) {
  if (max_norm <= 0) return 1.0;
  return std::min(1.0, max_norm / (std::sqrt(norm_sq) + 1e-6));
}

// params, grads, m, v: (P). Decoupled AdamW in PyTorch's order: decay the parameter, update
// the moments, then step by lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
template <class T>
void adamw_update(T* params, const T* grads, T* m, T* v, int64_t P, const AdamWStep& a) {
  const double bc1 = 1.0 - std::pow(a.beta1, double(a.step));
  const double bc2 = 1.0 - std::pow(a.beta2, double(a.step));
  const T decay = T(1.0 - a.lr * a.weight_decay), step_size = T(a.lr / bc1);
  const T bc2_sqrt = T(std::sqrt(bc2)), eps = T(a.eps), scale = T(a.grad_scale);
  const T b1 = T(a.beta1), b2 = T(a.beta2), one_b1 = T(1.0 - a.beta1), one_b2 = T(1.0 - a.beta2);
  // Fixed blocks, so each element takes the same (vector or scalar) path for any thread count.
  constexpr int64_t kBlock = 4096;
  const int64_t n_blocks = (P + kBlock - 1) / kBlock;
#pragma omp parallel for if (worth_threads(P)) schedule(static)
  for (int64_t b = 0; b < n_blocks; ++b) {
    const int64_t end = std::min(P, (b + 1) * kBlock);
    for (int64_t i = b * kBlock; i < end; ++i) {
      const T g = grads[i] * scale;
      m[i] = b1 * m[i] + one_b1 * g;
      v[i] = b2 * v[i] + one_b2 * g * g;
      params[i] = params[i] * decay - step_size * m[i] / (std::sqrt(v[i]) / bc2_sqrt + eps);
    }
  }
}

}  // namespace tl::cpu
