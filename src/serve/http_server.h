// The OpenAI-compatible HTTP front of the scheduler (cpp-httplib): /v1/completions,
// /v1/chat/completions, /v1/models, /health, /metrics. Handlers run on httplib's worker
// threads; they validate, tokenize, queue a Job and wait on it (or stream it as SSE).
#pragma once
#include <memory>
#include <string>

#include "data/tokenizer.h"
#include "serve/chat_template.h"
#include "serve/metrics.h"
#include "serve/scheduler.h"

namespace tl::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;      // 0: any free port (bind() returns it)
  std::string api_key;  // non-empty: every request needs "Bearer <key>"
  std::string model_name = "tinyllama";
  std::string prefix = "bos";        // before text prompts: bos, eos or none
  size_t max_body_bytes = 8u << 20;  // larger bodies get 413
  int threads = 0;                   // HTTP workers; 0: max_batch + max_queue + 8
};

class HttpServer {
 public:
  HttpServer(Scheduler& sched, const Tokenizer& tok, ChatTemplate chat, Metrics& metrics,
             ServerOptions opts);
  ~HttpServer();
  // Binds the listening socket; returns the port. Throws tl::Error when it cannot.
  int bind();
  void run();   // serves until stop()
  void stop();  // stops accepting; run() returns once in-flight requests are answered

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tl::serve
