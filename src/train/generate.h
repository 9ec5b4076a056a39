// Text generation: sampling from logits and the autoregressive loop.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "core/rng.h"
#include "model/llama.h"

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

// Extends `ids` by up to max_new tokens, calling on_token after each; stops early at
// stop_id (not appended) when stop_id >= 0. The context is the last max_seq_len tokens.
// (No KV cache yet: each token recomputes the window.)
void generate(LlamaModel& model, std::vector<int>& ids, int max_new, const SamplingOptions& opts,
              uint64_t seed, int stop_id, const std::function<void(int)>& on_token);

}  // namespace tl
