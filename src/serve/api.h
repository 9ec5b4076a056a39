// The OpenAI request bodies we accept, parsed and validated before anything is allocated.
// A bad field throws ApiError naming it (param) with the status the client gets.
#pragma once
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/json_reader.h"

namespace tl::serve {

struct ApiError : std::runtime_error {
  int status;
  std::string type, param, code;  // param "" is sent as null
  ApiError(int status, std::string message, std::string param = "",
           std::string code = "invalid_value", std::string type = "invalid_request_error")
      : std::runtime_error(message),
        status(status),
        type(std::move(type)),
        param(std::move(param)),
        code(std::move(code)) {}
};

// {"error": {"message", "type", "param", "code"}}
json error_body(const std::string& message, const std::string& type, const std::string& param,
                const std::string& code);
json error_body(const ApiError& e);

// What the server can take: checked while parsing.
struct ApiLimits {
  int vocab_size = 0;
  int max_n = 16;        // choices per prompt
  int max_prompts = 64;  // prompts in one completions request
  int max_logprobs = 5;  // completions' logprobs (chat's top_logprobs allows 20)
};

// A prompt as text or as token ids (exactly one is set).
struct PromptIn {
  bool is_ids = false;
  std::string text;
  std::vector<int> ids;
};

// Sampling and output fields shared by both endpoints.
struct CommonParams {
  std::string model;
  int max_tokens = 16;  // < 0: up to the context (chat's default)
  float temperature = 1.0f, top_p = 1.0f;
  int top_k = 0;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  int n = 1;
  bool stream = false, include_usage = false;
  bool ignore_eos = false;  // an extension (vLLM's name): do not end at the EOS token
};

struct CompletionParams : CommonParams {
  std::vector<PromptIn> prompts;
  bool echo = false;
  int logprobs = -1;  // < 0: none; else the top alternatives per token (0..5)
};

struct ChatMessage {
  std::string role;  // system, user or assistant
  std::string content;
};

struct ChatParams : CommonParams {
  std::vector<ChatMessage> messages;
  bool logprobs = false;
  int top_logprobs = 0;  // 0..20, with logprobs
};

CompletionParams parse_completion(const json& body, const ApiLimits& lim);
ChatParams parse_chat(const json& body, const ApiLimits& lim);

// The body as JSON, or ApiError 400 saying where it is malformed.
json parse_body(const std::string& body);

}  // namespace tl::serve
