// Prompts as token ids, the way every consumer of a model (generate, eval, serve) builds
// them: which token precedes a text prompt, and ids given as text.
#pragma once
#include <string>
#include <vector>

#include "core/json_reader.h"
#include "data/tokenizer.h"

namespace tl {

// The token before each text prompt: "bos", "eos" or "none"; "auto" resolves by the
// checkpoint's meta: eos for models trained here (every document of their data follows an
// EOS), bos for imported ones (Hugging Face Llama checkpoints expect BOS).
std::string resolve_prompt_prefix(const std::string& requested, const json& checkpoint_meta);
// text -> [prefix token] + its ids.
std::vector<int> encode_prompt(const Tokenizer& tok, const std::string& text,
                               const std::string& prefix);
// "1 2 3" or "1,2,3" -> ids; errors name prompt `which` and the bad word.
std::vector<int> parse_token_ids(const std::string& line, size_t which);

}  // namespace tl
