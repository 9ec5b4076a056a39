// Log-likelihood scoring of token requests on a model, batched, with the context shared by
// an example's choices computed once (KV-cache prefix reuse). Each request's result equals
// scoring it alone: ll = sum over its last `contlen` tokens of log p(token | tokens before).
#pragma once
#include <cstdint>
#include <vector>

#include "eval/requests.h"
#include "model/llama.h"

namespace tl::eval {

struct ScoreResult {
  double ll = 0;        // summed log-probabilities of the continuation tokens
  bool greedy = false;  // every continuation token is the argmax of its position's logits
};

struct ScorerOptions {
  int max_rows = 64;         // requests (cache rows) per forward; raised to fit one example
  int max_tokens = 4096;     // tokens per forward (rows x padded length), a soft cap
  bool prefix_reuse = true;  // compute an example's shared prefix once
};

struct ScorerStats {
  int64_t forwards = 0, batches = 0;
  int64_t tokens = 0;         // tokens run through the model, padding included
  int64_t real_tokens = 0;    // of which not padding
  int64_t shared_tokens = 0;  // prefix tokens computed once instead of once per choice
};

// groups[e] = the requests of one example (its choices), each tokens.size() - 1 <= the
// model's context. Returns results in the same shape.
std::vector<std::vector<ScoreResult>> score_requests(
    LlamaModel& model, const std::vector<std::vector<TokenRequest>>& groups,
    const ScorerOptions& opts, ScorerStats* stats = nullptr);

}  // namespace tl::eval
