// Text generation: the autoregressive loops, without a cache (the reference) and batched
// over a KV cache (model/llama_infer.h). Sampling: sampling.h; prompts: prompts.h.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "generate/sampling.h"
#include "model/llama.h"

namespace tl {

// Extends `ids` by up to max_new tokens, calling on_token after each; stops early at
// stop_id (not appended) when stop_id >= 0. The context is the last max_seq_len tokens.
// No KV cache: each token recomputes the whole window (the reference for generate_batch).
void generate(LlamaModel& model, std::vector<int>& ids, int max_new, const SamplingOptions& opts,
              uint64_t seed, int stop_id, const std::function<void(int)>& on_token);

struct GenerateStats {
  int64_t prompt_tokens = 0;  // over all rows
  int64_t new_tokens = 0;     // over all rows
  int64_t first_tokens = 0;   // new tokens sampled from the prefill's logits
  int steps = 0;              // decode steps after the prefill
  double prefill_seconds = 0, decode_seconds = 0;
  // New tokens per second of the whole call (prefill included), and of the decode steps alone
  // (the tokens they sampled; the first token of each row comes from the prefill).
  double tokens_per_s() const;
  double decode_tokens_per_s() const;
};

struct BatchOptions {
  int max_new = 128;
  SamplingOptions sampling;
  uint64_t seed = 0;          // row b samples with Rng(seed + b)
  int stop_id = -1;           // a row ends at this id (not kept); < 0: never
  int prefill_tokens = 4096;  // prompt tokens per prefill call over all rows (memory bound)
  // Greedy: each decode step is submitted before the previous one's ids are read (its tokens
  // taken on the device), while no row ends by length. The same tokens either way on the CPU;
  // on the GPU a row that met the stop id keeps its position in the step ahead, which can
  // change the other rows' rounding as any change of batch does. TL_DECODE_RUN_AHEAD=0 turns
  // it off too.
  bool run_ahead = true;
};

// Generation with a KV cache (model/llama_infer.h) for a batch of prompts of any lengths:
// one prefill of the prompts, then one token per row per step. Each row is computed as if
// it were alone (own positions, own RNG), and ends at stop_id, after max_new tokens, or when
// its sequence would pass the model's context. on_token(row, id) sees every new token as it
// is sampled. Returns the new tokens of each row.
std::vector<std::vector<int>> generate_batch(LlamaModel& model,
                                             const std::vector<std::vector<int>>& prompts,
                                             const BatchOptions& opts,
                                             const std::function<void(int, int)>& on_token,
                                             GenerateStats* stats = nullptr);

}  // namespace tl
