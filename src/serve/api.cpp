#include "serve/api.h"

#include <cmath>
#include <limits>

namespace tl::serve {

json error_body(const std::string& message, const std::string& type, const std::string& param,
                const std::string& code) {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

json error_body(const ApiError& e) { return error_body(e.what(), e.type, e.param, e.code); }

json parse_body(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for 1e999
    throw ApiError(400, cat("the body is not valid JSON: ", e.what()), "", "invalid_json");
  }
  if (!j.is_object())
    throw ApiError(400, cat("the body must be a JSON object, got ", j.type_name()), "",
                   "invalid_json");
  return j;
}

namespace {

[[noreturn]] void wrong_type(const std::string& name, const char* want, const json& v) {
  throw ApiError(400, cat("'", name, "' must be ", want, ", got ", v.type_name()), name,
                 "invalid_type");
}

// A present, non-null field, or nullptr.
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

int64_t as_int(const json& v, const std::string& name, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) wrong_type(name, "an integer", v);
  const bool huge =
      v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max());
  const int64_t x = huge ? std::numeric_limits<int64_t>::max() : v.get<int64_t>();
  if (x < lo || x > hi)
    throw ApiError(400, cat("'", name, "' must be in [", lo, ", ", hi, "], got ", v.dump()), name);
  return x;
}

float as_number(const json& v, const std::string& name, double lo, double hi, bool lo_open) {
  if (!v.is_number()) wrong_type(name, "a number", v);
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi || (lo_open && x == lo))
    throw ApiError(
        400,
        cat("'", name, "' must be in ", lo_open ? "(" : "[", lo, ", ", hi, "], got ", v.dump()),
        name);
  return float(x);
}

bool as_bool(const json& v, const std::string& name) {
  if (!v.is_boolean()) wrong_type(name, "a boolean", v);
  return v.get<bool>();
}

std::string as_string(const json& v, const std::string& name) {
  if (!v.is_string()) wrong_type(name, "a string", v);
  return v.get<std::string>();
}

void unsupported(const std::string& name, const std::string& why) {
  throw ApiError(400, cat("'", name, "' ", why), name, "unsupported_parameter");
}

std::vector<int> token_ids(const json& arr, const ApiLimits& lim) {
  std::vector<int> ids;
  ids.reserve(arr.size());
  for (const json& t : arr) {
    if (!t.is_number_integer())
      wrong_type("prompt", "a string, a list of token ids, or a list of either", t);
    const int64_t id = t.is_number_unsigned() && t.get<uint64_t>() > uint64_t(lim.vocab_size)
                           ? lim.vocab_size
                           : t.get<int64_t>();
    if (id < 0 || id >= lim.vocab_size)
      throw ApiError(400,
                     cat("'prompt' holds token id ", t.dump(),
                         ", outside the model's vocabulary [0, ", lim.vocab_size, ")"),
                     "prompt");
    ids.push_back(int(id));
  }
  if (ids.empty()) throw ApiError(400, "'prompt' holds an empty list of token ids", "prompt");
  return ids;
}

std::vector<PromptIn> prompts(const json& v, const ApiLimits& lim) {
  std::vector<PromptIn> out;
  auto text = [&](const json& s) {
    PromptIn p;
    p.text = s.get<std::string>();
    out.push_back(std::move(p));
  };
  auto ids = [&](const json& a) {
    PromptIn p;
    p.is_ids = true;
    p.ids = token_ids(a, lim);
    out.push_back(std::move(p));
  };
  if (v.is_string()) {
    text(v);
  } else if (v.is_array() && !v.empty() && v[0].is_number()) {
    ids(v);
  } else if (v.is_array() && !v.empty()) {
    if (v.size() > size_t(lim.max_prompts))
      throw ApiError(
          400,
          cat("'prompt' holds ", v.size(), " prompts, more than the server's ", lim.max_prompts),
          "prompt");
    for (const json& e : v) {
      if (e.is_string())
        text(e);
      else if (e.is_array())
        ids(e);
      else
        wrong_type("prompt", "a string, a list of token ids, or a list of either", e);
    }
  } else if (v.is_array()) {
    throw ApiError(400, "'prompt' is an empty list", "prompt");
  } else {
    wrong_type("prompt", "a string, a list of token ids, or a list of either", v);
  }
  return out;
}

void common(const json& b, const ApiLimits& lim, CommonParams& p, const char* max_name) {
  if (auto* v = field(b, "model")) p.model = as_string(*v, "model");
  if (auto* v = field(b, max_name)) p.max_tokens = int(as_int(*v, max_name, 0, 1 << 30));
  if (auto* v = field(b, "temperature")) p.temperature = as_number(*v, "temperature", 0, 2, false);
  if (auto* v = field(b, "top_p")) p.top_p = as_number(*v, "top_p", 0, 1, true);
  if (auto* v = field(b, "top_k")) {
    const int64_t k = as_int(*v, "top_k", -1, 1 << 30);
    p.top_k = k < 0 ? 0 : int(k);  // -1 (vLLM's "off") = 0
  }
  if (auto* v = field(b, "seed")) {
    if (!v->is_number_integer()) wrong_type("seed", "an integer", *v);
    p.seed = v->is_number_unsigned() ? v->get<uint64_t>() : uint64_t(v->get<int64_t>());
  }
  if (auto* v = field(b, "stop")) {
    if (v->is_string()) {
      p.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      if (v->size() > 16) throw ApiError(400, "'stop' holds more than 16 strings", "stop");
      for (const json& s : *v) p.stop.push_back(as_string(s, "stop"));
    } else {
      wrong_type("stop", "a string or a list of strings", *v);
    }
    for (const auto& s : p.stop)
      if (s.empty()) throw ApiError(400, "'stop' holds an empty string", "stop");
  }
  if (auto* v = field(b, "n")) p.n = int(as_int(*v, "n", 1, lim.max_n));
  if (auto* v = field(b, "stream")) p.stream = as_bool(*v, "stream");
  if (auto* v = field(b, "stream_options")) {
    if (!v->is_object()) wrong_type("stream_options", "an object", *v);
    if (auto* u = field(*v, "include_usage"))
      p.include_usage = as_bool(*u, "stream_options.include_usage");
  }
  if (auto* v = field(b, "ignore_eos")) p.ignore_eos = as_bool(*v, "ignore_eos");
  if (auto* v = field(b, "user")) as_string(*v, "user");
  for (const char* pen : {"presence_penalty", "frequency_penalty"})
    if (auto* v = field(b, pen))
      if (as_number(*v, pen, -2, 2, false) != 0) unsupported(pen, "is not supported (only 0)");
  if (auto* v = field(b, "logit_bias")) {
    if (!v->is_object()) wrong_type("logit_bias", "an object", *v);
    if (!v->empty()) unsupported("logit_bias", "is not supported");
  }
  if (auto* v = field(b, "best_of"))
    if (as_int(*v, "best_of", 1, lim.max_n) != p.n)
      unsupported("best_of", "is not supported (only equal to n)");
}

}  // namespace

CompletionParams parse_completion(const json& b, const ApiLimits& lim) {
  CompletionParams p;
  const json* pr = field(b, "prompt");
  if (!pr) throw ApiError(400, "'prompt' is required", "prompt", "missing_required_parameter");
  p.prompts = prompts(*pr, lim);
  common(b, lim, p, "max_tokens");
  if (auto* v = field(b, "echo")) p.echo = as_bool(*v, "echo");
  if (auto* v = field(b, "logprobs")) p.logprobs = int(as_int(*v, "logprobs", 0, lim.max_logprobs));
  if (auto* v = field(b, "suffix"))
    if (!as_string(*v, "suffix").empty()) unsupported("suffix", "is not supported");
  return p;
}

ChatParams parse_chat(const json& b, const ApiLimits& lim) {
  ChatParams p;
  p.max_tokens = -1;  // chat: up to the context unless told
  const json* ms = field(b, "messages");
  if (!ms) throw ApiError(400, "'messages' is required", "messages", "missing_required_parameter");
  if (!ms->is_array()) wrong_type("messages", "a list", *ms);
  if (ms->empty()) throw ApiError(400, "'messages' is an empty list", "messages");
  for (size_t i = 0; i < ms->size(); ++i) {
    const json& m = (*ms)[i];
    const std::string at = cat("messages[", i, "]");
    if (!m.is_object()) wrong_type(at, "an object", m);
    ChatMessage cm;
    const json* role = field(m, "role");
    if (!role) throw ApiError(400, cat("'", at, ".role' is required"), at + ".role");
    cm.role = as_string(*role, at + ".role");
    if (cm.role == "developer") cm.role = "system";  // the newer SDKs' name for it
    if (cm.role != "system" && cm.role != "user" && cm.role != "assistant")
      throw ApiError(400,
                     cat("'", at, ".role' must be system, user or assistant, got '", cm.role, "'"),
                     at + ".role");
    const json* c = field(m, "content");
    if (!c) throw ApiError(400, cat("'", at, ".content' is required"), at + ".content");
    if (c->is_string()) {
      cm.content = c->get<std::string>();
    } else if (c->is_array()) {  // content parts: text only
      for (const json& part : *c) {
        if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text"))
          throw ApiError(
              400, cat("'", at, ".content' parts must be {\"type\": \"text\", \"text\": ...}"),
              at + ".content");
        cm.content += as_string(part["text"], at + ".content.text");
      }
    } else {
      wrong_type(at + ".content", "a string or a list of text parts", *c);
    }
    p.messages.push_back(std::move(cm));
  }
  common(b, lim, p, "max_tokens");
  if (auto* v = field(b, "max_completion_tokens"))
    p.max_tokens = int(as_int(*v, "max_completion_tokens", 0, 1 << 30));
  if (auto* v = field(b, "logprobs")) p.logprobs = as_bool(*v, "logprobs");
  if (auto* v = field(b, "top_logprobs")) {
    p.top_logprobs = int(as_int(*v, "top_logprobs", 0, 20));
    if (!p.logprobs) throw ApiError(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs");
  }
  for (const char* f : {"tools", "functions", "response_format"})
    if (field(b, f)) unsupported(f, "is not supported");
  return p;
}

}  // namespace tl::serve
