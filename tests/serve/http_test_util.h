// An in-process server on an ephemeral port over a Llama-2-vocabulary model with random
// weights, and a twin model (same weights, own backend) for the references the tests compute
// without the server.
#pragma once
#ifdef TL_WITH_HTTP
#include <httplib.h>

#include <cmath>
#include <fstream>
#include <thread>

#include "data/tokenizer.h"
#include "data_test_util.h"
#include "generate/generate.h"
#include "serve/http_server.h"
#include "serve_test_util.h"

namespace st {

struct HttpFixture {
  TestModel served, ref;
  Tokenizer tok;
  serve::Metrics metrics;
  std::unique_ptr<serve::Scheduler> sched;
  std::unique_ptr<serve::HttpServer> http;
  std::thread thread;
  int port = 0;

  HttpFixture(serve::SchedulerOptions so, serve::ServerOptions ho,
              const ModelConfig& cfg = llama_vocab_cfg(), serve::ChatTemplate chat = {})
      : served(cfg, 3, 4.0f), ref(cfg, 3, 4.0f), tok(Tokenizer::load(dt::llama_model())) {
    sched = std::make_unique<serve::Scheduler>(*served.model, so, &metrics);
    ho.port = 0;
    http = std::make_unique<serve::HttpServer>(*sched, tok, std::move(chat), metrics, ho);
    port = http->bind();
    thread = std::thread([this] { http->run(); });
  }
  ~HttpFixture() {
    http->stop();
    thread.join();
    sched->shutdown(0);
  }
  std::unique_ptr<httplib::Client> client(const std::string& key = "") const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
    c->set_read_timeout(120, 0);
    if (!key.empty()) c->set_default_headers({{"Authorization", "Bearer " + key}});
    return c;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }

  // POST a JSON body; returns (status, parsed body or the raw text as a JSON string).
  std::pair<int, json> post(const std::string& path, const std::string& body,
                            const std::string& key = "") const {
    auto res = client(key)->Post(path.c_str(), body, "application/json");
    if (!res) return {-1, json("no response: " + httplib::to_string(res.error()))};
    json j;
    try {
      j = json::parse(res->body);
    } catch (...) {
      j = res->body;
    }
    return {res->status, j};
  }

  // The reference greedy continuation (generate_batch on the twin) and its text as the
  // tokenizer decodes it after the prompt.
  std::vector<int> greedy(const std::vector<int>& prompt, int max_new) {
    BatchOptions bo;
    bo.max_new = max_new;
    bo.sampling.temperature = 0;
    return generate_batch(*ref.model, {prompt}, bo, nullptr)[0];
  }
  std::string text_after(const std::vector<int>& prompt, const std::vector<int>& gen) const {
    std::vector<int> all = prompt;
    all.insert(all.end(), gen.begin(), gen.end());
    const std::string a = tok.decode(all), p = tok.decode(prompt);
    return a.compare(0, p.size(), p) == 0 ? a.substr(p.size()) : tok.decode(gen);
  }
  // log-softmax of the twin's training forward at the last position of `prefix`.
  std::vector<double> log_softmax_after(const std::vector<int>& prefix) {
    const int V = ref.cfg.vocab_size;
    std::vector<float> logits(static_cast<size_t>(V));
    std::vector<int32_t> ids(prefix.begin(), prefix.end());
    ref.model->forward_last_logits(ids.data(), 1, int(ids.size()), logits.data());
    double mx = -INFINITY, z = 0;
    for (float x : logits) mx = std::max(mx, double(x));
    for (float x : logits) z += std::exp(double(x) - mx);
    std::vector<double> lp(static_cast<size_t>(V));
    for (int i = 0; i < V; ++i) lp[size_t(i)] = double(logits[size_t(i)]) - mx - std::log(z);
    return lp;
  }
};

// Prompt ids inside the Llama vocabulary's ordinary pieces (past the byte pieces).
inline std::vector<int> text_ids(int n, uint64_t seed) {
  std::vector<int> p = prompt_ids(n, 31000, seed);
  for (int& x : p) x += 300;
  return p;
}

inline double vm_rss_mib() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

}  // namespace st

#define ST_NEED_HTTP_AND_TOKENIZER() DT_REQUIRE_SHARED_DATA()
#else
#define ST_NEED_HTTP_AND_TOKENIZER() GTEST_SKIP() << "built without cpp-httplib: no HTTP server"
#endif
