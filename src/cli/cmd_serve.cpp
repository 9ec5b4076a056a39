// tinyllama serve --checkpoint CK --tokenizer MODEL [--host 127.0.0.1] [--port 8000]
//                 [--device cpu|cuda] [--max-batch N] [--max-tokens-in-flight N] [--api-key KEY]
// An OpenAI-compatible HTTP server (docs/serve.md). SIGTERM or SIGINT: stop accepting, let
// running requests finish for --grace-seconds, cancel the rest, exit 0.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "checkpoint/load.h"
#include "cli/commands.h"
#include "core/log.h"
#include "data/tokenizer.h"

#ifdef TL_WITH_HTTP
#include "serve/http_server.h"
#endif

namespace tl::cli {

namespace {

struct ServeArgs {
  std::string checkpoint, tokenizer, chat_template, device = "auto", host = "127.0.0.1";
  std::string api_key, model_name, prefix = "auto";
  int port = 8000, threads = 0, max_batch = 16, max_queue = 64, prefill_tokens = 512;
  int max_len = 0, http_threads = 0;
  int64_t max_tokens_in_flight = 0;
  size_t max_body_bytes = 8u << 20;
  double grace_seconds = 10;
};

#ifdef TL_WITH_HTTP
void run_serve(const ServeArgs& a) {
  // Signals go to one waiting thread, never to a worker (threads inherit this mask).
  // SIGUSR1 (blocked everywhere too) is how the main thread wakes it when the server stops.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  Tokenizer tok = Tokenizer::load(a.tokenizer);
  auto be = make_backend(a.device, a.threads);
  LoadedModel lm = load_model(a.checkpoint, *be);
  const int V = lm.model->config().vocab_size;
  TL_CHECK(tok.vocab_size() <= V, "the tokenizer has ", tok.vocab_size(),
           " pieces but the model only ", V);
  serve::ChatTemplate chat;
  if (!a.chat_template.empty()) chat = serve::ChatTemplate::load(a.chat_template);

  serve::SchedulerOptions so;
  so.max_batch = a.max_batch;
  so.max_len = a.max_len;
  so.max_tokens_in_flight = a.max_tokens_in_flight;
  so.prefill_tokens = a.prefill_tokens;
  so.max_queue = a.max_queue;
  serve::Metrics metrics;
  serve::Scheduler sched(*lm.model, so, &metrics);

  serve::ServerOptions ho;
  ho.host = a.host;
  ho.port = a.port;
  ho.api_key = a.api_key;
  ho.model_name =
      a.model_name.empty() ? std::filesystem::path(a.checkpoint).stem().string() : a.model_name;
  ho.prefix = a.prefix != "auto"                                 ? a.prefix
              : lm.meta.value("format", "") == "tinyllama-train" ? "eos"
                                                                 : "bos";
  ho.max_body_bytes = a.max_body_bytes;
  ho.threads = a.http_threads;
  serve::HttpServer server(sched, tok, chat, metrics, ho);
  const int port = server.bind();

  std::thread watcher([&sigs, &server, &sched, &a] {
    int sig = 0;
    sigwait(&sigs, &sig);
    if (sig == SIGUSR1) return;  // the server stopped by itself
    log_info("serve: ", sig == SIGTERM ? "SIGTERM" : "SIGINT",
             ": no new requests; finishing the running ones (up to ", a.grace_seconds, " s)");
    server.stop();
    sched.shutdown(a.grace_seconds);
  });
  const auto& c = sched.options();
  std::printf(
      "serving '%s' on http://%s:%d (%s | batch %d | context %d | KV cache %.1f MiB | budget %lld "
      "positions)\n",
      ho.model_name.c_str(), a.host.c_str(), port, be->describe().c_str(), c.max_batch, c.max_len,
      double(sched.cache_bytes()) / (1 << 20), (long long)c.max_tokens_in_flight);
  std::fflush(stdout);
  server.run();
  // Wakes the watcher if no signal came; after a signal it stays pending (blocked), harmless.
  pthread_kill(watcher.native_handle(), SIGUSR1);
  watcher.join();
  sched.shutdown(0);
  log_info("serve: stopped");
}
#else
void run_serve(const ServeArgs&) {
  fail(
      "this tinyllama was built without an HTTP library: install libcpp-httplib-dev "
      "(scripts/setup.sh) and configure the build again");
}
#endif

}  // namespace

void add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "Serve a checkpoint over an OpenAI-compatible HTTP API");
  auto a = std::make_shared<ServeArgs>();
  cmd->add_option("--checkpoint", a->checkpoint, "Checkpoint file (.tlck) or sharded step folder")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("--tokenizer", a->tokenizer, "SentencePiece .model")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--host", a->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", a->port, "Port (0: any free port)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--device", a->device, "cpu, cuda or auto")->capture_default_str();
  cmd->add_option("--threads", a->threads, "CPU threads for the model (0 = all cores)");
  cmd->add_option("--max-batch", a->max_batch, "Sequences decoded at once (cache rows)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option(
         "--max-tokens-in-flight", a->max_tokens_in_flight,
         "KV positions admitted sequences may reserve (prompt + max_tokens); 0 = every row "
         "full")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-queue", a->max_queue, "Sequences waiting before requests get 503")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--prefill-tokens", a->prefill_tokens,
                  "Prompt tokens per prefill call (between two decode steps)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--max-len", a->max_len, "Positions per sequence (0 = the model's context)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--api-key", a->api_key, "Require Authorization: Bearer KEY on every request");
  cmd->add_option("--chat-template", a->chat_template, "Chat template JSON (docs/serve.md)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--model-name", a->model_name,
                  "Model id in replies and /v1/models (default: the checkpoint's name)");
  cmd->add_option("--prefix", a->prefix,
                  "Token before text prompts: bos, eos, none, or auto (eos for models trained "
                  "here, bos for imported)")
      ->check(CLI::IsMember({"auto", "bos", "eos", "none"}));
  cmd->add_option("--max-body-bytes", a->max_body_bytes, "Larger request bodies get 413")
      ->capture_default_str();
  cmd->add_option("--http-threads", a->http_threads,
                  "HTTP worker threads (0: max-batch + max-queue + 8)");
  cmd->add_option("--grace-seconds", a->grace_seconds,
                  "On SIGTERM, how long running requests may take before they are cancelled")
      ->capture_default_str();
  cmd->callback([a] { run_serve(*a); });
}

}  // namespace tl::cli
