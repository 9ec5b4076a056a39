#include "generate/prompts.h"

#include <sstream>

#include "core/error.h"

namespace tl {

std::string resolve_prompt_prefix(const std::string& requested, const json& meta) {
  if (requested != "auto") return requested;
  return meta.value("format", "") == "tinyllama-train" ? "eos" : "bos";
}

std::vector<int> encode_prompt(const Tokenizer& tok, const std::string& text,
                               const std::string& prefix) {
  std::vector<int> ids;
  if (prefix == "bos") ids.push_back(tok.bos_id());
  if (prefix == "eos") ids.push_back(tok.eos_id());
  for (int id : tok.encode(text)) ids.push_back(id);
  return ids;
}

std::vector<int> parse_token_ids(const std::string& line, size_t which) {
  std::string s = line;
  for (char& c : s)
    if (c == ',') c = ' ';
  std::istringstream in(s);
  std::vector<int> ids;
  std::string word;
  while (in >> word) {
    size_t used = 0;
    int v = -1;
    try {
      v = std::stoi(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    TL_CHECK(used == word.size() && v >= 0, "--ids: prompt ", which, " holds '", word,
             "', not a token id");
    ids.push_back(v);
  }
  return ids;
}

}  // namespace tl
