// Request parsing (every bad field is a 400 naming it), incremental detokenization, stop
// strings, chat templates and the Prometheus text.
#include <gtest/gtest.h>

#include "ckpt_test_util.h"
#include "data_test_util.h"
#include "serve/api.h"
#include "serve/chat_template.h"
#include "serve/metrics.h"
#include "serve/text.h"

using namespace tl;
using serve::ApiError;

namespace {

serve::ApiLimits limits() {
  serve::ApiLimits l;
  l.vocab_size = 100;
  return l;
}

// The ApiError a completions body raises, or status 0.
ApiError completion_error(const std::string& body) {
  try {
    serve::parse_completion(serve::parse_body(body), limits());
  } catch (const ApiError& e) {
    return e;
  }
  return ApiError(0, "no error");
}

ApiError chat_error(const std::string& body) {
  try {
    serve::parse_chat(serve::parse_body(body), limits());
  } catch (const ApiError& e) {
    return e;
  }
  return ApiError(0, "no error");
}

}  // namespace

TEST(ServeApi, CompletionFieldsParse) {
  const auto p = serve::parse_completion(
      serve::parse_body(
          R"({"model": "m", "prompt": [[1, 2], "hi", [3]], "max_tokens": 0, "echo": true,
        "logprobs": 5, "temperature": 0, "top_p": 0.5, "top_k": -1, "seed": 7, "stop": "x", "n": 2,
        "stream": true, "stream_options": {"include_usage": true}, "user": "u", "best_of": 2,
        "presence_penalty": 0, "logit_bias": {}, "unknown_field": 1})"),
      limits());
  ASSERT_EQ(p.prompts.size(), 3u);
  EXPECT_TRUE(p.prompts[0].is_ids);
  EXPECT_EQ(p.prompts[0].ids, (std::vector<int>{1, 2}));
  EXPECT_EQ(p.prompts[1].text, "hi");
  EXPECT_EQ(p.max_tokens, 0);
  EXPECT_TRUE(p.echo);
  EXPECT_EQ(p.logprobs, 5);
  EXPECT_EQ(p.temperature, 0.0f);
  EXPECT_EQ(p.top_k, 0);
  EXPECT_EQ(*p.seed, 7u);
  EXPECT_EQ(p.stop, std::vector<std::string>{"x"});
  EXPECT_EQ(p.n, 2);
  EXPECT_TRUE(p.stream && p.include_usage);
  const auto q = serve::parse_completion(serve::parse_body(R"({"prompt": [5, 6, 7]})"), limits());
  ASSERT_EQ(q.prompts.size(), 1u);
  EXPECT_EQ(q.prompts[0].ids, (std::vector<int>{5, 6, 7}));
  EXPECT_EQ(q.max_tokens, 16);  // OpenAI's default
  EXPECT_EQ(q.logprobs, -1);
}

TEST(ServeApi, BadCompletionFieldsNameTheParam) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"prompt": "a", "max_tokens": -1})", "max_tokens"},
      {R"({"prompt": "a", "max_tokens": "5"})", "max_tokens"},
      {R"({"prompt": "a", "max_tokens": 2.5})", "max_tokens"},
      {R"({"prompt": "a", "logprobs": 6})", "logprobs"},
      {R"({"prompt": "a", "logprobs": true})", "logprobs"},
      {R"({"prompt": "a", "temperature": 3})", "temperature"},
      {R"({"prompt": "a", "temperature": "hot"})", "temperature"},
      {R"({"prompt": "a", "top_p": 0})", "top_p"},
      {R"({"prompt": "a", "n": 0})", "n"},
      {R"({"prompt": "a", "n": 17})", "n"},
      {R"({"prompt": "a", "echo": 1})", "echo"},
      {R"({"prompt": "a", "stream": "yes"})", "stream"},
      {R"({"prompt": "a", "stop": ["ok", 3]})", "stop"},
      {R"({"prompt": "a", "stop": ""})", "stop"},
      {R"({"prompt": "a", "seed": 1.5})", "seed"},
      {R"({"prompt": "a", "presence_penalty": 0.5})", "presence_penalty"},
      {R"({"prompt": "a", "logit_bias": {"5": 1}})", "logit_bias"},
      {R"({"prompt": "a", "best_of": 3})", "best_of"},
      {R"({"prompt": "a", "suffix": "z"})", "suffix"},
      {R"({"prompt": "a", "model": 5})", "model"},
      {R"({"prompt": [1, 100]})", "prompt"},
      {R"({"prompt": [1, -1]})", "prompt"},
      {R"({"prompt": [[]]})", "prompt"},
      {R"({"prompt": []})", "prompt"},
      {R"({"prompt": 5})", "prompt"},
      {R"({"prompt": [1, "a"]})", "prompt"},
      {R"({"prompt": [{"a": 1}]})", "prompt"},
      {R"({"max_tokens": 3})", "prompt"},
  };
  for (const auto& [body, param] : cases) {
    const ApiError e = completion_error(body);
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.param, param) << body << ": " << e.what();
    EXPECT_TRUE(ckpt_test::has(e.what(), param)) << body << ": " << e.what();
    const json err = serve::error_body(e)["error"];
    EXPECT_EQ(err["param"], param);
    EXPECT_TRUE(err["message"].is_string() && err["type"].is_string() && err.contains("code"));
  }
}

TEST(ServeApi, MalformedBodiesAre400WithoutParam) {
  // The last two: numbers beyond double's range (fuzz_serve_request found that they escaped
  // as the JSON library's out_of_range, a 500, instead of a 400).
  for (const std::string body : {"{", "[1, 2]", "\"text\"", "", "{\"prompt\": \"a\",}",
                                 "4444444444454444444e4444444444",
                                 "{\"prompt\": \"a\", \"max_tokens\": 1e400}"}) {
    const ApiError e = completion_error(body);
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.param, "") << body;
    EXPECT_TRUE(serve::error_body(e)["error"]["param"].is_null());
  }
}

TEST(ServeApi, ChatFieldsParseAndBadOnesNameTheParam) {
  const auto p = serve::parse_chat(
      serve::parse_body(R"({"messages": [{"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]}],
        "max_completion_tokens": 9, "logprobs": true, "top_logprobs": 2})"),
      limits());
  ASSERT_EQ(p.messages.size(), 2u);
  EXPECT_EQ(p.messages[0].role, "system");
  EXPECT_EQ(p.messages[1].content, "hi there");
  EXPECT_EQ(p.max_tokens, 9);
  EXPECT_TRUE(p.logprobs);
  EXPECT_EQ(p.top_logprobs, 2);
  EXPECT_EQ(serve::parse_chat(
                serve::parse_body(R"({"messages": [{"role": "user", "content": "x"}]})"), limits())
                .max_tokens,
            -1);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({})", "messages"},
      {R"({"messages": "hi"})", "messages"},
      {R"({"messages": []})", "messages"},
      {R"({"messages": [{"role": "robot", "content": "x"}]})", "messages[0].role"},
      {R"({"messages": [{"content": "x"}]})", "messages[0].role"},
      {R"({"messages": [{"role": "user"}]})", "messages[0].content"},
      {R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "messages[0].content"},
      {R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})", "top_logprobs"},
      {R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21})",
       "top_logprobs"},
      {R"({"messages": [{"role": "user", "content": "x"}], "tools": []})", "tools"},
  };
  for (const auto& [body, param] : cases) {
    const ApiError e = chat_error(body);
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.param, param) << body << ": " << e.what();
  }
}

TEST(ServeText, StopScannerHoldsPossibleStarts) {
  serve::StopScanner s({"END", "xy"});
  EXPECT_EQ(s.feed("abc E"), "abc ");  // "E" may start END
  EXPECT_EQ(s.feed("N"), "");
  EXPECT_EQ(s.feed("X more x"), "ENX more ");
  EXPECT_FALSE(s.hit());
  EXPECT_EQ(s.feed("zEN"), "xz");
  EXPECT_EQ(s.feed("D tail"), "");
  EXPECT_TRUE(s.hit());
  EXPECT_EQ(s.feed("later"), "");
  EXPECT_EQ(s.flush(), "");
  serve::StopScanner t({"stop"});
  EXPECT_EQ(t.feed("no st"), "no ");
  EXPECT_EQ(t.flush(), "st");
  serve::StopScanner none({});
  EXPECT_EQ(none.feed("all of it"), "all of it");
}

TEST(ServeText, TokenTextRebuildsTheDecodedText) {
  DT_REQUIRE_SHARED_DATA();
  const Tokenizer tok = Tokenizer::load(dt::llama_model());
  for (const auto& [text, ids] : dt::llama_cases()) {
    // ids start with BOS: the context; pieces after it must rebuild decode(ids after BOS).
    const std::vector<int> rest(ids.begin() + 1, ids.end());
    serve::TokenText tt(tok, {ids[0]});
    std::string got;
    for (int id : rest) got += tt.push(id);
    got += tt.flush();
    EXPECT_EQ(got, tok.decode(rest)) << text;
  }
  // A character split over byte pieces comes out whole with the token that completes it.
  const std::vector<int> snake = tok.encode("\xF0\x9F\xA6\x99");  // U+1F999, byte pieces
  ASSERT_GT(snake.size(), 1u);
  serve::TokenText tt(tok, {tok.bos_id()});
  // (The leading space piece is dropped at the start of a text, as SentencePiece decodes.)
  for (size_t i = 0; i + 1 < snake.size(); ++i) EXPECT_EQ(tt.push(snake[i]), "") << i;
  EXPECT_EQ(tt.push(snake.back()), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(serve::utf8_length("a\xC3\xA9\xF0\x9F\xA6\x99"), 3u);
}

TEST(ServeChat, TemplateRendersRolesAndSpecialSpellings) {
  DT_REQUIRE_SHARED_DATA();
  const Tokenizer tok = Tokenizer::load(dt::llama_model());
  const serve::ChatTemplate t = serve::ChatTemplate::from_json(
      json::parse(R"({"bos": true, "user": {"prefix": "<|user|>\n", "suffix": "</s>\n"},
                     "assistant": {"prefix": "<|assistant|>\n", "suffix": "</s>\n"},
                     "system": {"prefix": "<|system|>\n", "suffix": "</s>\n"},
                     "default_system": "Be kind.", "stop": ["</s>"]})"),
      "test");
  const std::vector<int> ids = t.render(tok, {{"user", "Hi </s>"}});
  // Text runs are encoded whole; the template's </s> spellings are EOS, the message's stays text.
  std::vector<int> want = {tok.bos_id()};
  auto add = [&](const std::string& s) {
    for (int id : tok.encode(s)) want.push_back(id);
  };
  add("<|system|>\nBe kind.");
  want.push_back(tok.eos_id());
  add("\n<|user|>\nHi </s>");
  want.push_back(tok.eos_id());
  add("\n<|assistant|>\n");
  EXPECT_EQ(ids, want);
  EXPECT_EQ(t.stop, std::vector<std::string>{"</s>"});
  // The default: a plain transcript.
  const std::vector<int> d =
      serve::ChatTemplate().render(tok, {{"system", "S"}, {"user", "U"}, {"assistant", "A"}});
  EXPECT_EQ(tok.decode(d), "S\n\nUser: U\nAssistant: A\nAssistant: ");
}

TEST(ServeChat, BadTemplatesNameTheKey) {
  auto err = [](const std::string& j) {
    return ckpt_test::error_of([&] { serve::ChatTemplate::from_json(json::parse(j), "t.json"); });
  };
  EXPECT_TRUE(ckpt_test::has(err(R"({"usr": {}})"), "unknown key 'usr'"));
  EXPECT_TRUE(ckpt_test::has(err(R"({"user": {"prefix": 1}})"), "'user.prefix' must be a string"));
  EXPECT_TRUE(ckpt_test::has(err(R"({"user": {"before": ""}})"), "user.before"));
  EXPECT_TRUE(ckpt_test::has(err(R"({"bos": "yes"})"), "'bos'"));
  EXPECT_TRUE(ckpt_test::has(err(R"({"stop": [""]})"), "empty"));
  EXPECT_TRUE(
      ckpt_test::has(ckpt_test::error_of([] { serve::ChatTemplate::load("/nonexistent.json"); }),
                     "/nonexistent.json"));
}

// Every non-comment line is `name{labels} value` or `name value` with a number.
TEST(ServeMetrics, PrometheusTextParses) {
  serve::Metrics m;
  m.count_request("/v1/completions", 200);
  m.count_request("/v1/completions", 400);
  m.add_prompt_tokens(12);
  m.add_generated_tokens(5);
  m.set_gauges(3, 2, 1, 4, 100, 400);
  const std::string text = m.prometheus();
  std::istringstream in(text);
  int samples = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) continue;
    const size_t sp = line.rfind(' ');
    ASSERT_NE(sp, std::string::npos) << line;
    size_t used = 0;
    std::stod(line.substr(sp + 1), &used);
    EXPECT_EQ(used, line.size() - sp - 1) << line;
    ++samples;
  }
  EXPECT_GE(samples, 12);
  EXPECT_TRUE(ckpt_test::has(
      text, "tinyllama_requests_total{endpoint=\"/v1/completions\",status=\"400\"} 1"));
  EXPECT_TRUE(ckpt_test::has(text, "tinyllama_prompt_tokens_total 12"));
  EXPECT_TRUE(ckpt_test::has(text, "tinyllama_generation_tokens_total 5"));
  EXPECT_TRUE(ckpt_test::has(text, "tinyllama_queue_depth 3"));
  EXPECT_TRUE(ckpt_test::has(text, "tinyllama_batch_occupancy 0.75"));
  EXPECT_TRUE(ckpt_test::has(text, "tinyllama_kv_cache_usage_ratio 0.25"));
}

// A scrape between a step and the end of its iteration (the reply is already out) must not
// see busy seconds below the step seconds; the iteration's host work is added at its end.
TEST(ServeMetrics, BusySecondsNeverTrailTheSteps) {
  serve::Metrics m;
  const auto value = [&](const std::string& name) {
    const std::string text = m.prometheus();
    const size_t at = text.find("\n" + name + " ");
    EXPECT_NE(at, std::string::npos) << name;
    return at == std::string::npos ? -1.0 : std::stod(text.substr(at + name.size() + 2));
  };
  const std::string busy = "tinyllama_scheduler_busy_seconds_total";
  m.add_step(true, 1, 0.25);
  m.add_step(false, 2, 0.5);
  EXPECT_DOUBLE_EQ(value(busy), 0.75);  // mid-iteration
  m.end_busy_iteration(1.0);            // 0.25 s of host work around the two steps
  EXPECT_DOUBLE_EQ(value(busy), 1.0);
  m.add_step(false, 2, 0.5);
  m.end_busy_iteration(0.4);  // clocks disagree by a hair: never subtract
  EXPECT_DOUBLE_EQ(value(busy), 1.5);
  m.end_busy_iteration(0.125);  // an iteration without a model call
  EXPECT_DOUBLE_EQ(value(busy), 1.625);
  EXPECT_DOUBLE_EQ(value("tinyllama_scheduler_step_seconds_total{kind=\"decode\"}"), 1.0);
}
