// From prompt strings to token requests, the way lm-evaluation-harness's Hugging Face
// backend builds them (docs/eval.md, "Tokens"): trailing whitespace of the context moves
// to the continuation; the continuation's tokens are those of context + continuation after
// the context's own token count; BOS optional; left truncation to the model's window.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace tl::eval {

enum class BosMode { Off, On };

// One scored continuation: tokens = the last (window + 1) of context + continuation tokens;
// the model reads tokens[:-1], and the last `contlen` tokens are the ones scored.
struct TokenRequest {
  std::vector<int32_t> tokens;
  int contlen = 0;
  bool truncated = false;  // tokens were cut on the left to fit the window
};

// The context/continuation split before truncation.
struct EncodedPair {
  std::vector<int32_t> context, continuation;
};

// Encodes with the tokenizer's encode() (SentencePiece, no special tokens) and prepends
// BOS per `bos`. An empty context becomes [BOS] (the harness's prefix token) in both modes,
// and its continuation is encoded alone (with a BOS of its own in On mode, as the harness).
EncodedPair encode_pair(const Tokenizer& tok, const std::string& context,
                        const std::string& continuation, BosMode bos);

// Throws (with `where` in the message) when the continuation has no token or more than
// `window` tokens.
TokenRequest make_request(const EncodedPair& pair, int window, const std::string& where);

}  // namespace tl::eval
