#include "generate/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace tl {

int sample_token(const float* logits, int V, const SamplingOptions& opts, Rng& rng) {
  TL_CHECK(V > 0, "sample_token: empty vocabulary");
  const int top = int(std::max_element(logits, logits + V) - logits);  // first of tied maxima
  if (opts.temperature <= 0) return top;
  // Candidates ordered by (logit descending, id ascending), sorted only as far as needed:
  // the top_k set when top_k is on, a prefix that reaches top_p when top_p is on.
  auto before = [&](int a, int b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  std::vector<int> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  const auto first = order.begin();
  size_t keep = size_t(V);
  if (opts.top_k > 0 && size_t(opts.top_k) < keep) {
    keep = size_t(opts.top_k);
    std::partial_sort(first, first + ptrdiff_t(keep), order.end(), before);
  }
  const double mx = logits[top], inv_t = 1.0 / double(opts.temperature);
  auto weight = [&](int id) { return std::exp((double(logits[id]) - mx) * inv_t); };
  double z = 0;
  for (size_t i = 0; i < keep; ++i) z += weight(order[i]);
  size_t n = keep;  // sample among order[0, n)
  if (opts.top_p < 1.0f) {
    const bool sorted = keep < size_t(V);
    for (size_t m = std::min<size_t>(keep, 64);; m = std::min(keep, m * 8)) {
      if (!sorted && m == keep) std::sort(first, first + ptrdiff_t(keep), before);
      if (!sorted && m < keep)
        std::partial_sort(first, first + ptrdiff_t(m), first + ptrdiff_t(keep), before);
      double cum = 0;
      size_t i = 0;
      while (i < m && (cum += weight(order[i]) / z) < opts.top_p) ++i;
      if (i < m) {
        n = i + 1;
        break;
      }
      if (m == keep) break;
    }
    z = 0;
    for (size_t i = 0; i < n; ++i) z += weight(order[i]);
  }
  double u = rng.uniform() * z;
  for (size_t i = 0; i < n; ++i) {
    u -= weight(order[i]);
    if (u <= 0) return order[i];
  }
  return order[n - 1];
}

}  // namespace tl
