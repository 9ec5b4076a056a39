#include "serve/responses.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>

namespace tl::serve {

ReplyHead ReplyHead::make(const char* id_prefix, const std::string& model) {
  static std::atomic<uint64_t> counter{std::random_device{}()};
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx",
                (unsigned long long)counter.fetch_add(0x9e3779b97f4a7c15ull));
  ReplyHead h;
  h.id = std::string(id_prefix) + buf;
  h.model = model;
  h.created = std::chrono::duration_cast<std::chrono::seconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  return h;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(const json& j) { return "data: " + dump(j) + "\n\n"; }

json completion_logprobs(const std::vector<TokenOut>& toks) {
  json tokens = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  for (const TokenOut& t : toks) {
    tokens.push_back(t.text);
    offs.push_back(t.offset);
    if (!t.has_logprob) {
      lps.push_back(nullptr);
      tops.push_back(nullptr);
      continue;
    }
    lps.push_back(t.logprob);
    json top = json::object();
    for (const auto& [label, v] : t.top)
      if (!top.contains(label)) top[label] = v;
    if (!top.contains(t.text)) top[t.text] = t.logprob;  // the chosen token is always listed
    tops.push_back(std::move(top));
  }
  return {
      {"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

namespace {
json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}
json finish_json(const std::string& f) { return f.empty() ? json(nullptr) : json(f); }
}  // namespace

json chat_logprobs(const std::vector<TokenOut>& toks) {
  json content = json::array();
  for (const TokenOut& t : toks) {
    json top = json::array();
    for (const auto& [label, v] : t.top)
      top.push_back({{"token", label}, {"logprob", v}, {"bytes", bytes_of(label)}});
    content.push_back({{"token", t.text},
                       {"logprob", t.logprob},
                       {"bytes", bytes_of(t.text)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}};
}

json usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

void ChoiceText::add(const Delta& d) {
  text += d.text;
  tokens.insert(tokens.end(), d.tokens.begin(), d.tokens.end());
  if (!d.finish.empty()) finish = d.finish;
}

json completion_body(const ReplyHead& h, const std::vector<ChoiceText>& choices, bool logprobs,
                     int64_t prompt_tokens, int64_t completion_tokens) {
  json cs = json::array();
  for (size_t i = 0; i < choices.size(); ++i)
    cs.push_back({{"index", i},
                  {"text", choices[i].text},
                  {"logprobs", logprobs ? completion_logprobs(choices[i].tokens) : json(nullptr)},
                  {"finish_reason", finish_json(choices[i].finish)}});
  return {{"id", h.id},           {"object", "text_completion"},
          {"created", h.created}, {"model", h.model},
          {"choices", cs},        {"usage", usage_json(prompt_tokens, completion_tokens)}};
}

json chat_body(const ReplyHead& h, const std::vector<ChoiceText>& choices, bool logprobs,
               int64_t prompt_tokens, int64_t completion_tokens) {
  json cs = json::array();
  for (size_t i = 0; i < choices.size(); ++i)
    cs.push_back({{"index", i},
                  {"message", {{"role", "assistant"}, {"content", choices[i].text}}},
                  {"logprobs", logprobs ? chat_logprobs(choices[i].tokens) : json(nullptr)},
                  {"finish_reason", finish_json(choices[i].finish)}});
  return {{"id", h.id},           {"object", "chat.completion"},
          {"created", h.created}, {"model", h.model},
          {"choices", cs},        {"usage", usage_json(prompt_tokens, completion_tokens)}};
}

json completion_chunk(const ReplyHead& h, size_t index, const Delta& d, bool logprobs) {
  json c = {{"index", index},
            {"text", d.text},
            {"logprobs", logprobs ? completion_logprobs(d.tokens) : json(nullptr)},
            {"finish_reason", finish_json(d.finish)}};
  return {{"id", h.id},
          {"object", "text_completion"},
          {"created", h.created},
          {"model", h.model},
          {"choices", json::array({c})}};
}

json chat_chunk(const ReplyHead& h, size_t index, const Delta& d, bool logprobs, bool first) {
  json delta = json::object();
  if (first) delta["role"] = "assistant";
  if (!d.text.empty() || (first && d.finish.empty())) delta["content"] = d.text;
  json c = {{"index", index},
            {"delta", delta},
            {"logprobs", logprobs && !d.tokens.empty() ? chat_logprobs(d.tokens) : json(nullptr)},
            {"finish_reason", finish_json(d.finish)}};
  return {{"id", h.id},
          {"object", "chat.completion.chunk"},
          {"created", h.created},
          {"model", h.model},
          {"choices", json::array({c})}};
}

json usage_chunk(const ReplyHead& h, const char* object, int64_t prompt_tokens,
                 int64_t completion_tokens) {
  return {{"id", h.id},
          {"object", object},
          {"created", h.created},
          {"model", h.model},
          {"choices", json::array()},
          {"usage", usage_json(prompt_tokens, completion_tokens)}};
}

}  // namespace tl::serve
