// Picking the next token from logits: greedy, temperature, top-k and top-p (nucleus).
#pragma once
#include "core/rng.h"

namespace tl {

struct SamplingOptions {
  float temperature = 0.8f;  // 0 = greedy
  int top_k = 0;             // 0 = off
  float top_p = 1.0f;        // 1 = off
};

// Picks a token from logits[V]: greedy when temperature is 0, else softmax(logits / T)
// restricted to the top_k most likely tokens and to the smallest set whose probability
// reaches top_p, sampled with rng. Ties in greedy go to the lowest id.
int sample_token(const float* logits, int V, const SamplingOptions& opts, Rng& rng);

}  // namespace tl
