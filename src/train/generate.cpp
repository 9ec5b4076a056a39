#include "train/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace tl {

int sample_token(const float* logits, int V, const SamplingOptions& opts, Rng& rng) {
  TL_CHECK(V > 0, "sample_token: empty vocabulary");
  if (opts.temperature <= 0) {
    return int(std::max_element(logits, logits + V) - logits);
  }
  std::vector<int> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  size_t keep = size_t(V);
  if (opts.top_k > 0) keep = std::min(keep, size_t(opts.top_k));
  std::vector<double> p(keep);
  const double mx = logits[order[0]];
  double z = 0;
  for (size_t i = 0; i < keep; ++i) {
    p[i] = std::exp((double(logits[order[i]]) - mx) / opts.temperature);
    z += p[i];
  }
  if (opts.top_p < 1.0f) {
    double cum = 0;
    size_t n = 0;
    while (n < keep) {
      cum += p[n] / z;
      ++n;
      if (cum >= opts.top_p) break;
    }
    keep = n;
    z = std::accumulate(p.begin(), p.begin() + ptrdiff_t(keep), 0.0);
  }
  double u = rng.uniform() * z;
  for (size_t i = 0; i < keep; ++i) {
    u -= p[i];
    if (u <= 0) return order[i];
  }
  return order[keep - 1];
}

void generate(LlamaModel& model, std::vector<int>& ids, int max_new, const SamplingOptions& opts,
              uint64_t seed, int stop_id, const std::function<void(int)>& on_token) {
  TL_CHECK(!ids.empty(), "generate: the prompt is empty");
  const int V = model.config().vocab_size, ctx = model.config().max_seq_len;
  Rng rng(seed);
  std::vector<float> logits(static_cast<size_t>(V));
  std::vector<int32_t> window;
  model.reserve(1, int(std::min<size_t>(size_t(ctx), ids.size() + size_t(max_new))));
  for (int i = 0; i < max_new; ++i) {
    const size_t start = ids.size() > size_t(ctx) ? ids.size() - size_t(ctx) : 0;
    window.assign(ids.begin() + ptrdiff_t(start), ids.end());
    model.forward_last_logits(window.data(), 1, int(window.size()), logits.data());
    int next = sample_token(logits.data(), V, opts, rng);
    if (next == stop_id) break;
    ids.push_back(next);
    if (on_token) on_token(next);
  }
}

}  // namespace tl
