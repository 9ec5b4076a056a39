#include "serve/chat_template.h"

#include <fstream>
#include <sstream>

namespace tl::serve {

namespace {

// A prompt under construction: runs of text (encoded as one string each, so tokenization
// does not depend on where template pieces meet) separated by special tokens.
struct Pieces {
  const Tokenizer& tok;
  std::vector<int> ids;
  std::string run;

  void text(const std::string& s) { run += s; }
  void special(int id) {
    end_run();
    ids.push_back(id);
  }
  void end_run() {
    if (!run.empty())
      for (int id : tok.encode(run)) ids.push_back(id);
    run.clear();
  }
  // Template text: the BOS and EOS spellings become their ids.
  void templ(const std::string& s) {
    const std::string bos = tok.piece(tok.bos_id()), eos = tok.piece(tok.eos_id());
    size_t at = 0;
    while (at < s.size()) {
      const size_t b = bos.empty() ? std::string::npos : s.find(bos, at);
      const size_t e = eos.empty() ? std::string::npos : s.find(eos, at);
      const size_t next = std::min(b, e);
      text(s.substr(at, next == std::string::npos ? std::string::npos : next - at));
      if (next == std::string::npos) break;
      special(next == b ? tok.bos_id() : tok.eos_id());
      at = next + (next == b ? bos.size() : eos.size());
    }
  }
};

}  // namespace

ChatTemplate ChatTemplate::from_json(const json& j, const std::string& where) {
  TL_CHECK(j.is_object(), where, ": a chat template must be a JSON object");
  ChatTemplate t;
  auto str = [&](const json& v, const std::string& key) {
    TL_CHECK(v.is_string(), where, ": '", key, "' must be a string, got ", v.type_name());
    return v.get<std::string>();
  };
  for (const auto& [key, v] : j.items()) {
    if (key == "bos") {
      TL_CHECK(v.is_boolean(), where, ": 'bos' must be true or false");
      t.bos = v.get<bool>();
    } else if (key == "system" || key == "user" || key == "assistant") {
      Role& r = key == "system" ? t.system : key == "user" ? t.user : t.assistant;
      TL_CHECK(v.is_object(), where, ": '", key, "' must be an object {\"prefix\", \"suffix\"}");
      for (const auto& [k2, v2] : v.items()) {
        TL_CHECK(k2 == "prefix" || k2 == "suffix", where, ": unknown key '", key, ".", k2,
                 "' (prefix, suffix)");
        (k2 == "prefix" ? r.prefix : r.suffix) = str(v2, key + "." + k2);
      }
    } else if (key == "default_system") {
      t.default_system = str(v, key);
    } else if (key == "stop") {
      TL_CHECK(v.is_array(), where, ": 'stop' must be a list of strings");
      t.stop.clear();
      for (const json& s : v) {
        t.stop.push_back(str(s, "stop"));
        TL_CHECK(!t.stop.back().empty(), where, ": 'stop' holds an empty string");
      }
    } else {
      fail(where, ": unknown key '", key, "' (bos, system, user, assistant, default_system, stop)");
    }
  }
  return t;
}

ChatTemplate ChatTemplate::load(const std::string& path) {
  std::ifstream in(path);
  TL_CHECK(in, "cannot read the chat template '", path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  json j;
  try {
    j = json::parse(ss.str());
  } catch (const json::parse_error& e) {
    fail("the chat template '", path, "' is not valid JSON: ", e.what());
  }
  return from_json(j, "chat template '" + path + "'");
}

std::vector<int> ChatTemplate::render(const Tokenizer& tok,
                                      const std::vector<ChatMessage>& messages) const {
  Pieces p{tok, {}, {}};
  if (bos) p.special(tok.bos_id());
  auto add = [&](const Role& r, const std::string& content) {
    p.templ(r.prefix);
    p.text(content);
    p.templ(r.suffix);
  };
  bool has_system = false;
  for (const auto& m : messages) has_system = has_system || m.role == "system";
  if (!has_system && !default_system.empty()) add(system, default_system);
  for (const auto& m : messages)
    add(m.role == "system" ? system : m.role == "user" ? user : assistant, m.content);
  p.templ(assistant.prefix);
  p.end_run();
  return p.ids;
}

}  // namespace tl::serve
