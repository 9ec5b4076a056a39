// The HTTP API's shapes, in-process on an ephemeral port: lm-evaluation-harness's request
// (token-id prompts, echo, logprobs, max_tokens 0 and 1, temperature 0) against the training
// forward's log-softmax, greedy text against generate_batch, SSE streams, chat, n and seeds,
// stop strings, the error cases (400 naming the field, 401, 404, 413), /health, /v1/models,
// /metrics.
#include <gtest/gtest.h>

#include "http_test_util.h"
#include "serve/text.h"

#ifdef TL_WITH_HTTP
using namespace tl;

namespace {

serve::SchedulerOptions sched_opts(int max_batch = 4) {
  serve::SchedulerOptions so;
  so.max_batch = max_batch;
  so.prefill_tokens = 64;
  return so;
}

// The SSE events of a body; expects the stream to end with [DONE].
std::vector<json> sse_events(const std::string& body) {
  std::vector<json> out;
  std::istringstream in(body);
  bool done = false;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    EXPECT_EQ(line.rfind("data: ", 0), 0u) << line;
    EXPECT_FALSE(done) << "event after [DONE]: " << line;
    if (line == "data: [DONE]") {
      done = true;
      continue;
    }
    out.push_back(json::parse(line.substr(6)));
  }
  EXPECT_TRUE(done) << "the stream did not end with data: [DONE]";
  return out;
}

}  // namespace

// lm-evaluation-harness's loglikelihood request: prompts as token ids, echo, logprobs 1,
// max_tokens 0 and 1, temperature 0; it reads token_logprobs and compares each with
// max(top_logprobs) to tell greedy continuations.
TEST(ServeHttp, LmEvalLoglikelihoodShape) {
  ST_NEED_HTTP_AND_TOKENIZER();
  st::HttpFixture f(sched_opts(), {});
  std::vector<std::vector<int>> prompts;
  for (int i = 0; i < 3; ++i) {
    std::vector<int> p = st::text_ids(5 + 3 * i, 40 + i);
    p.insert(p.begin(), 1);                     // BOS
    const std::vector<int> g = f.greedy(p, 4);  // a greedy tail: those positions are greedy
    p.insert(p.end(), g.begin(), g.end());
    prompts.push_back(p);
  }
  for (int max_tokens : {0, 1}) {
    SCOPED_TRACE(cat("max_tokens ", max_tokens));
    const auto [status, r] = f.post("/v1/completions", json{{"model", "x"},
                                                            {"prompt", prompts},
                                                            {"echo", true},
                                                            {"logprobs", 1},
                                                            {"max_tokens", max_tokens},
                                                            {"temperature", 0},
                                                            {"seed", 1234}}
                                                           .dump());
    ASSERT_EQ(status, 200) << r.dump();
    ASSERT_EQ(r["choices"].size(), prompts.size());
    int64_t prompt_tokens = 0;
    for (size_t c = 0; c < prompts.size(); ++c) {
      const std::vector<int>& p = prompts[c];
      prompt_tokens += int64_t(p.size());
      const json& ch = r["choices"][c];
      EXPECT_EQ(ch["index"], c);
      const json& lp = ch["logprobs"];
      ASSERT_EQ(lp["token_logprobs"].size(), p.size() + size_t(max_tokens));
      ASSERT_EQ(lp["tokens"].size(), lp["token_logprobs"].size());
      ASSERT_EQ(lp["text_offset"].size(), lp["token_logprobs"].size());
      EXPECT_TRUE(lp["token_logprobs"][0].is_null());
      EXPECT_TRUE(lp["top_logprobs"][0].is_null());
      std::string joined;
      for (size_t t = 0; t < lp["tokens"].size(); ++t) {
        EXPECT_EQ(lp["text_offset"][t], serve::utf8_length(joined)) << t;
        joined += lp["tokens"][t].get<std::string>();
      }
      EXPECT_EQ(joined, ch["text"].get<std::string>());
      for (size_t t = 1; t < p.size() + size_t(max_tokens); ++t) {
        std::vector<int> prefix(p.begin(), p.begin() + ptrdiff_t(std::min(t, p.size())));
        const std::vector<double> want = f.log_softmax_after(prefix);
        const int argmax = int(std::max_element(want.begin(), want.end()) - want.begin());
        const double got = lp["token_logprobs"][t].get<double>();
        double top = -INFINITY;
        for (const auto& [k, v] : lp["top_logprobs"][t].items())
          top = std::max(top, v.get<double>());
        if (t < p.size()) {
          EXPECT_NEAR(got, want[size_t(p[t])], 1e-5) << "choice " << c << " position " << t;
          const bool greedy_tail = t + 4 >= p.size();
          EXPECT_EQ(got == top, p[t] == argmax) << "choice " << c << " position " << t;
          if (greedy_tail) {
            EXPECT_EQ(got, top) << "the greedy tail must read as greedy, position " << t;
          }
        } else {  // the generated token: greedy, so it is the top one
          EXPECT_NEAR(got, want[size_t(argmax)], 1e-5);
          EXPECT_EQ(got, top);
        }
      }
      EXPECT_EQ(ch["finish_reason"], "length");
    }
    EXPECT_EQ(r["object"], "text_completion");
    EXPECT_EQ(r["usage"]["prompt_tokens"], prompt_tokens);
    EXPECT_EQ(r["usage"]["completion_tokens"], max_tokens * int(prompts.size()));
  }
}

// Greedy generation through the API equals generate_batch, as text; streamed as SSE, the
// chunks add up to the same text and end with data: [DONE].
TEST(ServeHttp, GreedyTextAndStreamEqualGenerateBatch) {
  ST_NEED_HTTP_AND_TOKENIZER();
  st::HttpFixture f(sched_opts(), {});
  std::vector<int> p = st::text_ids(9, 7);
  const std::vector<int> gen = f.greedy(p, 20);
  const std::string want = f.text_after(p, gen);
  json body = {{"prompt", p}, {"max_tokens", 20}, {"temperature", 0}, {"ignore_eos", true}};
  const auto [status, r] = f.post("/v1/completions", body.dump());
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_EQ(r["choices"][0]["text"], want);
  EXPECT_EQ(r["usage"]["completion_tokens"], 20);
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  auto res = f.client()->Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
  std::string text, finish;
  int64_t usage = -1;
  for (const json& e : sse_events(res->body)) {
    if (e.contains("usage") && e["choices"].empty()) {
      usage = e["usage"]["completion_tokens"];
      continue;
    }
    text += e["choices"][0]["text"].get<std::string>();
    if (!e["choices"][0]["finish_reason"].is_null()) finish = e["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(text, want);
  EXPECT_EQ(finish, "length");
  EXPECT_EQ(usage, 20);
}

// n choices with a seed: reproducible, different from each other; stop strings cut the text.
TEST(ServeHttp, SeedsChoicesAndStopStrings) {
  ST_NEED_HTTP_AND_TOKENIZER();
  st::HttpFixture f(sched_opts(), {});
  const json body = {{"prompt", "Once upon a time"},
                     {"max_tokens", 12},
                     {"temperature", 1.0},
                     {"n", 3},
                     {"seed", 42},
                     {"ignore_eos", true}};
  const auto [s1, a] = f.post("/v1/completions", body.dump());
  const auto [s2, b] = f.post("/v1/completions", body.dump());
  ASSERT_EQ(s1, 200) << a.dump();
  ASSERT_EQ(s2, 200) << b.dump();
  ASSERT_EQ(a["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(a["choices"][i]["text"], b["choices"][i]["text"]) << i;
  EXPECT_NE(a["choices"][0]["text"], a["choices"][1]["text"]);
  // Stop at a piece of the greedy text: the reply ends just before it.
  std::vector<int> p = st::text_ids(6, 9);
  const std::string full = f.text_after(p, f.greedy(p, 16));
  ASSERT_GT(full.size(), 8u);
  const std::string stop = full.substr(full.size() / 2, 3);
  const auto [s3, c] = f.post("/v1/completions", json{{"prompt", p},
                                                      {"max_tokens", 16},
                                                      {"temperature", 0},
                                                      {"stop", {stop}},
                                                      {"ignore_eos", true}}
                                                     .dump());
  ASSERT_EQ(s3, 200) << c.dump();
  EXPECT_EQ(c["choices"][0]["text"], full.substr(0, full.find(stop)));
  EXPECT_EQ(c["choices"][0]["finish_reason"], "stop");
}

// A list of prompts with n choices each: choice index = prompt * n + j, whole and streamed.
TEST(ServeHttp, PromptListsWithNChoices) {
  ST_NEED_HTTP_AND_TOKENIZER();
  st::HttpFixture f(sched_opts(), {});
  const std::vector<std::vector<int>> prompts = {st::text_ids(4, 21), st::text_ids(9, 22)};
  json body = {
      {"prompt", prompts}, {"n", 2}, {"max_tokens", 6}, {"temperature", 0}, {"ignore_eos", true}};
  const auto [status, r] = f.post("/v1/completions", body.dump());
  ASSERT_EQ(status, 200) << r.dump();
  ASSERT_EQ(r["choices"].size(), 4u);
  std::vector<std::string> want;
  for (const auto& p : prompts) want.push_back(f.text_after(p, f.greedy(p, 6)));
  for (size_t c = 0; c < 4; ++c) {
    EXPECT_EQ(r["choices"][c]["index"], c);
    EXPECT_EQ(r["choices"][c]["text"], want[c / 2]) << "choice " << c;
  }
  EXPECT_EQ(r["usage"]["prompt_tokens"], 13);
  EXPECT_EQ(r["usage"]["completion_tokens"], 24);
  body["stream"] = true;
  auto res = f.client()->Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(res);
  std::vector<std::string> texts(4);
  std::vector<int> finished(4, 0);
  for (const json& e : sse_events(res->body)) {
    const size_t i = e["choices"][0]["index"];
    ASSERT_LT(i, 4u);
    texts[i] += e["choices"][0]["text"].get<std::string>();
    finished[i] += !e["choices"][0]["finish_reason"].is_null();
  }
  for (size_t c = 0; c < 4; ++c) {
    EXPECT_EQ(texts[c], want[c / 2]) << "choice " << c;
    EXPECT_EQ(finished[c], 1) << "choice " << c;
  }
}

TEST(ServeHttp, ChatCompletionsAndStream) {
  ST_NEED_HTTP_AND_TOKENIZER();
  st::HttpFixture f(sched_opts(), {});
  json body = {{"model", "m"},     {"messages", {{{"role", "user"}, {"content", "Hello"}}}},
               {"max_tokens", 10}, {"temperature", 0},
               {"logprobs", true}, {"top_logprobs", 2}};
  const auto [status, r] = f.post("/v1/chat/completions", body.dump());
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_EQ(r["object"], "chat.completion");
  const json& msg = r["choices"][0]["message"];
  EXPECT_EQ(msg["role"], "assistant");
  // The prompt is the default template's transcript; the reply its greedy continuation.
  const std::vector<int> prompt = serve::ChatTemplate().render(f.tok, {{"user", "Hello"}});
  EXPECT_EQ(r["usage"]["prompt_tokens"], prompt.size());
  const json& content = r["choices"][0]["logprobs"]["content"];
  ASSERT_GT(content.size(), 0u);
  EXPECT_EQ(content[0]["top_logprobs"].size(), 2u);
  std::vector<int> gen = f.greedy(prompt, 10);
  gen.resize(content.size());
  std::string want = f.text_after(prompt, gen);
  const size_t cut = want.find("\nUser:");
  EXPECT_EQ(msg["content"], want.substr(0, cut));
  body["stream"] = true;
  auto res = f.client()->Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(res);
  const std::vector<json> ev = sse_events(res->body);
  ASSERT_GE(ev.size(), 2u);
  EXPECT_EQ(ev[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(ev[0]["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  for (const json& e : ev) text += e["choices"][0]["delta"].value("content", "");
  EXPECT_EQ(text, msg["content"].get<std::string>());
  EXPECT_FALSE(ev.back()["choices"][0]["finish_reason"].is_null());
}

// Bad requests: an OpenAI error object, 400 naming the field; 404; 413; never a hang.
TEST(ServeHttp, ErrorsNameTheField) {
  ST_NEED_HTTP_AND_TOKENIZER();
  serve::ServerOptions ho;
  ho.max_body_bytes = 4096;
  st::HttpFixture f(sched_opts(), ho);
  const std::string long_prompt = json(std::vector<int>(300, 500)).dump();  // context is 256
  const std::vector<std::tuple<std::string, std::string, int, std::string>> cases = {
      {"/v1/completions", "{\"prompt\": ", 400, ""},
      {"/v1/completions", "[1]", 400, ""},
      {"/v1/completions", R"({"prompt": "a", "max_tokens": -1})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "a", "max_tokens": "9"})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "a", "logprobs": 6})", 400, "logprobs"},
      {"/v1/completions", R"({"prompt": [1, 32000]})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": [1, -3]})", 400, "prompt"},
      {"/v1/completions", "{\"prompt\": " + long_prompt + "}", 400, "prompt"},
      {"/v1/completions", R"({"prompt": [1, 2], "max_tokens": 256})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "a", "temperature": -1})", 400, "temperature"},
      {"/v1/completions", R"({"prompt": "a", "n": "2"})", 400, "n"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user"}]})", 400, "messages[0].content"},
      {"/v1/chat/completions", R"({"messages": {}})", 400, "messages"},
      {"/v1/nothing", "{}", 404, ""},
      {"/v1/completions", "{\"prompt\": \"" + std::string(5000, 'a') + "\"}", 413, ""},
  };
  for (const auto& [path, body, want_status, param] : cases) {
    const auto [status, r] = f.post(path, body);
    EXPECT_EQ(status, want_status)
        << path << " " << body.substr(0, 80) << " -> " << r.dump().substr(0, 300);
    ASSERT_TRUE(r.is_object() && r.contains("error")) << r.dump().substr(0, 300);
    const json& e = r["error"];
    EXPECT_TRUE(e["message"].is_string() && e["type"].is_string() && e.contains("code"))
        << e.dump();
    if (param.empty())
      EXPECT_TRUE(e["param"].is_null()) << e.dump();
    else
      EXPECT_EQ(e["param"], param) << e.dump();
  }
  // Raw curl: a GET on a POST route and a body with a wrong Content-Length also get answers.
  const auto r = ckpt_test::run_cmd("curl -s -o /dev/null -w '%{http_code}' --max-time 10 " +
                                    f.url() + "/v1/completions");
  EXPECT_EQ(r.output, "404");
  // The server still serves.
  EXPECT_EQ(f.post("/v1/completions", R"({"prompt": [1, 2], "max_tokens": 1})").first, 200);
}

TEST(ServeHttp, ApiKeyIsRequired) {
  ST_NEED_HTTP_AND_TOKENIZER();
  serve::ServerOptions ho;
  ho.api_key = "sekret";
  st::HttpFixture f(sched_opts(), ho);
  const std::string body = R"({"prompt": [1, 2], "max_tokens": 1})";
  for (const std::string key : {"", "wrong"}) {
    const auto [status, r] = f.post("/v1/completions", body, key);
    EXPECT_EQ(status, 401) << key;
    EXPECT_EQ(r["error"]["code"], "invalid_api_key");
  }
  EXPECT_EQ(f.post("/v1/completions", body, "sekret").first, 200);
  auto res = f.client()->Get("/v1/models");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  res = f.client("sekret")->Get("/v1/models");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST(ServeHttp, HealthModelsAndMetrics) {
  ST_NEED_HTTP_AND_TOKENIZER();
  serve::ServerOptions ho;
  ho.model_name = "tiny-test";
  st::HttpFixture f(sched_opts(), ho);
  auto c = f.client();
  auto h = c->Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(json::parse(h->body)["status"], "ok");
  auto m = c->Get("/v1/models");
  ASSERT_TRUE(m);
  const json models = json::parse(m->body);
  EXPECT_EQ(models["object"], "list");
  EXPECT_EQ(models["data"][0]["id"], "tiny-test");
  EXPECT_EQ(models["data"][0]["object"], "model");
  EXPECT_EQ(c->Get("/v1/models/tiny-test")->status, 200);
  EXPECT_EQ(c->Get("/v1/models/other")->status, 404);
  ASSERT_EQ(
      f.post("/v1/completions", R"({"prompt": [1, 2, 3], "max_tokens": 4, "ignore_eos": true})")
          .first,
      200);
  f.post("/v1/completions", R"({"prompt": 5})");
  // Requests are counted once their reply is written, which may be after the client has it.
  std::string text;
  for (int i = 0; i < 100 && !ckpt_test::has(text, "status=\"400\"} 1"); ++i) {
    if (i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto mt = c->Get("/metrics");
    ASSERT_TRUE(mt);
    EXPECT_EQ(mt->status, 200);
    EXPECT_EQ(mt->get_header_value("Content-Type"), "text/plain; version=0.0.4");
    text = mt->body;
  }
  EXPECT_TRUE(ckpt_test::has(
      text, "tinyllama_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 1"))
      << text;
  EXPECT_TRUE(ckpt_test::has(
      text, "tinyllama_requests_total{endpoint=\"/v1/completions\",status=\"400\"} 1"))
      << text;
  EXPECT_TRUE(ckpt_test::has(text, "tinyllama_prompt_tokens_total 3")) << text;
  EXPECT_TRUE(ckpt_test::has(text, "tinyllama_generation_tokens_total 4")) << text;
  // The one completion: its prompt in one prefill call (which gives the first token), then
  // one decode step of one row for each of the other three.
  EXPECT_TRUE(ckpt_test::has(text, "tinyllama_scheduler_steps_total{kind=\"prefill\"} 1")) << text;
  EXPECT_TRUE(ckpt_test::has(text, "tinyllama_scheduler_steps_total{kind=\"decode\"} 3")) << text;
  EXPECT_TRUE(ckpt_test::has(text, "tinyllama_scheduler_step_rows_total{kind=\"decode\"} 3"))
      << text;
  const auto value = [&](const std::string& name) {
    const size_t at = text.find("\n" + name + " ");
    return at == std::string::npos ? -1.0 : std::stod(text.substr(at + name.size() + 2));
  };
  const double decode_s = value("tinyllama_scheduler_step_seconds_total{kind=\"decode\"}");
  EXPECT_GT(decode_s, 0.0);
  EXPECT_GE(value("tinyllama_scheduler_busy_seconds_total"),
            decode_s + value("tinyllama_scheduler_step_seconds_total{kind=\"prefill\"}"));
  for (const char* name :
       {"tinyllama_generation_tokens_per_second", "tinyllama_queue_depth",
        "tinyllama_batch_occupancy", "tinyllama_kv_cache_usage_ratio", "tinyllama_kv_cache_bytes"})
    EXPECT_TRUE(ckpt_test::has(text, std::string("\n") + name + " ")) << name;
}

#else
TEST(ServeHttp, NeedsHttpLibrary) { GTEST_SKIP() << "built without cpp-httplib: no HTTP server"; }
#endif
