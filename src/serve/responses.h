// OpenAI response bodies and stream chunks, built from JobReader deltas.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/json_reader.h"
#include "serve/reader.h"

namespace tl::serve {

// The fields every reply of one request shares.
struct ReplyHead {
  std::string id, model;
  int64_t created = 0;
  static ReplyHead make(const char* id_prefix, const std::string& model);
};

// {"tokens", "token_logprobs", "top_logprobs", "text_offset"} (completions' format).
json completion_logprobs(const std::vector<TokenOut>& toks);
// {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]} (chat's format).
json chat_logprobs(const std::vector<TokenOut>& toks);
json usage_json(int64_t prompt_tokens, int64_t completion_tokens);

// A finished choice accumulated from deltas.
struct ChoiceText {
  std::string text, finish;
  std::vector<TokenOut> tokens;
  void add(const Delta& d);
};

json completion_body(const ReplyHead& h, const std::vector<ChoiceText>& choices, bool logprobs,
                     int64_t prompt_tokens, int64_t completion_tokens);
json chat_body(const ReplyHead& h, const std::vector<ChoiceText>& choices, bool logprobs,
               int64_t prompt_tokens, int64_t completion_tokens);

// Stream chunks: one choice's delta (finish "" = not finished).
json completion_chunk(const ReplyHead& h, size_t index, const Delta& d, bool logprobs);
json chat_chunk(const ReplyHead& h, size_t index, const Delta& d, bool logprobs, bool first);
json usage_chunk(const ReplyHead& h, const char* object, int64_t prompt_tokens,
                 int64_t completion_tokens);

// JSON text with invalid UTF-8 replaced (a token may end inside a character).
std::string dump(const json& j);
std::string sse_event(const json& j);  // "data: {...}\n\n"

}  // namespace tl::serve
