// Chat messages to prompt tokens, with a template of our own (no Jinja): a JSON file of
// prefixes and suffixes per role.
//
//   {"bos": true,
//    "system": {"prefix": "<|system|>\n", "suffix": "</s>\n"},
//    "user": {"prefix": "<|user|>\n", "suffix": "</s>\n"},
//    "assistant": {"prefix": "<|assistant|>\n", "suffix": "</s>\n"},
//    "default_system": "",
//    "stop": ["</s>"]}
//
// A prompt is [BOS if "bos"] + for each message prefix + content + suffix, then the assistant
// prefix (the model continues from there). In template strings (never in message content)
// the spellings of the tokenizer's BOS and EOS pieces (<s>, </s>) become those tokens.
// "default_system" is put first when the messages have no system message ("" = none);
// "stop" strings end a reply besides EOS. Every key is optional; the built-in default is a
// plain "User: ... / Assistant: ..." transcript.
#pragma once
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "serve/api.h"

namespace tl::serve {

struct ChatTemplate {
  struct Role {
    std::string prefix, suffix;
  };
  bool bos = true;
  Role system{"", "\n\n"}, user{"User: ", "\n"}, assistant{"Assistant: ", "\n"};
  std::string default_system;
  std::vector<std::string> stop{"\nUser:"};

  // Throws tl::Error naming the file and the key that is wrong.
  static ChatTemplate load(const std::string& path);
  static ChatTemplate from_json(const json& j, const std::string& where);

  std::vector<int> render(const Tokenizer& tok, const std::vector<ChatMessage>& messages) const;
};

}  // namespace tl::serve
