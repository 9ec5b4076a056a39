#include "serve/http_server.h"

#include <httplib.h>

#include <sys/socket.h>

#include <random>

#include "core/log.h"
#include "serve/api.h"
#include "serve/reader.h"
#include "serve/responses.h"

namespace tl::serve {

namespace {

constexpr auto kPoll = std::chrono::milliseconds(200);

void send_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  if (e.status == 503) res.set_header("Retry-After", "1");
  send_json(res, e.status, error_body(e));
}

// Bounded label values for /metrics.
std::string endpoint_label(const std::string& path) {
  for (const char* p :
       {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics"})
    if (path == p) return p;
  if (path.rfind("/v1/models/", 0) == 0) return "/v1/models";
  return "other";
}

const char* status_error_type(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 413: return "invalid_request_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

}  // namespace

struct HttpServer::Impl {
  // httplib 0.11 listens with a backlog of 5: a burst of clients overflows it and connections
  // are reset. Its listening socket is a protected member; listen() again raises the backlog.
  // (A member type of Impl, not of the anonymous namespace: Impl has external linkage.)
  class Listener : public httplib::Server {
   public:
    void raise_backlog() { ::listen(svr_sock_, SOMAXCONN); }
  };
  Scheduler& sched;
  const Tokenizer& tok;
  ChatTemplate chat;
  Metrics& metrics;
  ServerOptions opts;
  Listener svr;
  ApiLimits lim;
  int ctx;
  std::mt19937_64 seeds{std::random_device{}()};
  std::mutex seeds_mu;

  Impl(Scheduler& s, const Tokenizer& t, ChatTemplate c, Metrics& m, ServerOptions o)
      : sched(s), tok(t), chat(std::move(c)), metrics(m), opts(std::move(o)), ctx(s.max_len()) {
    lim.vocab_size = std::min(s.vocab_size(), t.vocab_size());  // prompts must decode (echo)
    lim.max_n = std::min(16, s.options().max_queue);
    const int threads =
        opts.threads > 0 ? opts.threads : s.options().max_batch + s.options().max_queue + 8;
    svr.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
    svr.set_payload_max_length(opts.max_body_bytes);
    // httplib writes a response's headers and body (and each SSE event) as separate small
    // writes; with Nagle's algorithm on, a write waits for the ACK of the one before it.
    svr.set_tcp_nodelay(true);
    svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (opts.api_key.empty() || req.get_header_value("Authorization") == "Bearer " + opts.api_key)
        return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, ApiError(401, "a valid API key is required: Authorization: Bearer <key>", "",
                               "invalid_api_key", "authentication_error"));
      return httplib::Server::HandlerResponse::Handled;
    });
    svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      const std::string msg = res.status == 404 ? "no such endpoint: " + req.method + " " + req.path
                              : res.status == 413 ? std::string("the request body is too large")
                                                  : cat("HTTP ", res.status);
      send_json(res, res.status, error_body(msg, status_error_type(res.status), "", ""));
    });
    svr.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string what = "internal error";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          log_warn("serve: a handler failed: ", what);
          send_json(res, 500, error_body(what, "server_error", "", ""));
        });
    svr.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      metrics.count_request(endpoint_label(req.path), res.status);
    });
    svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, {{"status", "ok"}});
    });
    svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.prometheus(), "text/plain; version=0.0.4");
    });
    svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, {{"object", "list"}, {"data", json::array({model_json()})}});
    });
    svr.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      if (req.matches[1] == opts.model_name) return send_json(res, 200, model_json());
      send_error(res, ApiError(404,
                               cat("no model '", req.matches[1].str(), "' (this server has '",
                                   opts.model_name, "')"),
                               "model", "model_not_found", "not_found_error"));
    });
    svr.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] { completions(req, res); });
    });
    svr.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] { chat_completions(req, res); });
    });
  }

  json model_json() const {
    return {{"id", opts.model_name},
            {"object", "model"},
            {"created", 0},
            {"owned_by", "tinyllama"},
            {"max_model_len", ctx}};
  }

  template <class F>
  void guarded(httplib::Response& res, F&& f) {
    try {
      f();
    } catch (const ApiError& e) {
      send_error(res, e);
    }
  }

  uint64_t seed_of(const CommonParams& p) {
    if (p.seed) return *p.seed;
    std::lock_guard lk(seeds_mu);
    return seeds();
  }

  // The cache positions a prompt of P tokens and max_tokens M need must fit the context.
  int fit_max_tokens(int P, int M, const char* prompt_param) const {
    if (P > ctx)
      throw ApiError(400,
                     cat("the prompt has ", P, " tokens, more than the model's context of ", ctx),
                     prompt_param, "context_length_exceeded");
    if (M < 0) return ctx - P + 1;  // chat without max_tokens: up to the context
    if (int64_t(P) + std::max(M, 1) - 1 > ctx)
      throw ApiError(400,
                     cat("the prompt has ", P, " tokens and max_tokens is ", M,
                         ": more than the model's context of ", ctx, " allows (", ctx - P + 1,
                         " new tokens at most)"),
                     "max_tokens", "context_length_exceeded");
    return M;
  }

  SeqSpec spec_of(const CommonParams& p, std::vector<int> ids, int max_new, uint64_t seed) const {
    SeqSpec s;
    s.prompt = std::move(ids);
    s.max_new = max_new;
    s.sampling.temperature = p.temperature;
    s.sampling.top_p = p.top_p;
    s.sampling.top_k = p.top_k;
    s.seed = seed;
    s.stop_id = p.ignore_eos ? -1 : tok.eos_id();
    return s;
  }

  void completions(const httplib::Request& req, httplib::Response& res) {
    const CompletionParams p = parse_completion(parse_body(req.body), lim);
    const uint64_t seed = seed_of(p);
    std::vector<SeqSpec> specs;
    std::vector<ChoiceSetup> setups;
    int64_t prompt_tokens = 0;
    for (size_t i = 0; i < p.prompts.size(); ++i) {
      std::vector<int> ids = p.prompts[i].ids;
      if (!p.prompts[i].is_ids) {
        if (opts.prefix == "bos") ids.push_back(tok.bos_id());
        if (opts.prefix == "eos") ids.push_back(tok.eos_id());
        for (int id : tok.encode(p.prompts[i].text)) ids.push_back(id);
        if (ids.empty()) throw ApiError(400, "the prompt is empty", "prompt");
      }
      const int M = fit_max_tokens(int(ids.size()), p.max_tokens, "prompt");
      prompt_tokens += int64_t(ids.size());
      for (int j = 0; j < p.n; ++j) {
        SeqSpec s = spec_of(p, ids, M, seed + i * size_t(p.n) + size_t(j));
        s.top_logprobs = p.logprobs;
        s.prompt_logprobs = p.echo && p.logprobs >= 0;
        specs.push_back(std::move(s));
        setups.push_back({p.echo, p.stop});
      }
    }
    run(res, std::move(specs), std::move(setups), prompt_tokens, false, p.stream, p.logprobs >= 0,
        p.include_usage);
  }

  void chat_completions(const httplib::Request& req, httplib::Response& res) {
    const ChatParams p = parse_chat(parse_body(req.body), lim);
    std::vector<int> ids = chat.render(tok, p.messages);
    const int M = fit_max_tokens(int(ids.size()), p.max_tokens, "messages");
    std::vector<std::string> stop = chat.stop;
    stop.insert(stop.end(), p.stop.begin(), p.stop.end());
    const uint64_t seed = seed_of(p);
    std::vector<SeqSpec> specs;
    std::vector<ChoiceSetup> setups;
    for (int j = 0; j < p.n; ++j) {
      SeqSpec s = spec_of(p, ids, M, seed + uint64_t(j));
      s.top_logprobs = p.logprobs ? p.top_logprobs : -1;
      specs.push_back(std::move(s));
      setups.push_back({false, stop});
    }
    run(res, std::move(specs), std::move(setups), int64_t(ids.size()), true, p.stream, p.logprobs,
        p.include_usage);
  }

  void run(httplib::Response& res, std::vector<SeqSpec> specs, std::vector<ChoiceSetup> setups,
           int64_t prompt_tokens, bool chat_api, bool stream, bool logprobs, bool include_usage) {
    auto job = std::make_shared<Job>(std::move(specs));
    const SubmitResult r = sched.submit(job);
    if (r.status == SubmitStatus::Invalid) throw ApiError(400, r.message, "max_tokens");
    if (r.status != SubmitStatus::Ok)
      throw ApiError(503, r.message, "",
                     r.status == SubmitStatus::QueueFull ? "queue_full" : "shutting_down",
                     "server_error");
    const size_t n = setups.size();
    auto reader = std::make_shared<JobReader>(tok, job, std::move(setups));
    const ReplyHead head = ReplyHead::make(chat_api ? "chatcmpl-" : "cmpl-", opts.model_name);
    if (!stream) {
      std::vector<ChoiceText> choices(n);
      try {
        while (!reader->done()) {
          const std::vector<Delta> ds = reader->next(kPoll);
          for (size_t i = 0; i < n; ++i) choices[i].add(ds[i]);
        }
      } catch (...) {
        job->cancel();  // nobody will read it: free its rows
        throw;
      }
      if (reader->failed())
        throw ApiError(503, reader->failure(), "", "unavailable", "server_error");
      const int64_t done_tokens = reader->completion_tokens();
      return send_json(res, 200,
                       chat_api
                           ? chat_body(head, choices, logprobs, prompt_tokens, done_tokens)
                           : completion_body(head, choices, logprobs, prompt_tokens, done_tokens));
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [=](size_t, httplib::DataSink& sink) {
          auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
          try {
            if (chat_api)
              for (size_t i = 0; i < n; ++i)
                if (!write(sse_event(chat_chunk(head, i, Delta{}, false, true))))
                  return job->cancel(), false;
            while (!reader->done()) {
              const std::vector<Delta> ds = reader->next(kPoll);
              if (reader->failed()) break;
              for (size_t i = 0; i < n; ++i) {
                const Delta& d = ds[i];
                if (d.text.empty() && d.tokens.empty() && d.finish.empty()) continue;
                const json c = chat_api ? chat_chunk(head, i, d, logprobs, false)
                                        : completion_chunk(head, i, d, logprobs);
                if (!write(sse_event(c))) return job->cancel(), false;  // the client has gone
              }
            }
            if (reader->failed())
              write(sse_event(error_body(reader->failure(), "server_error", "", "unavailable")));
            else if (include_usage)
              write(sse_event(usage_chunk(head,
                                          chat_api ? "chat.completion.chunk" : "text_completion",
                                          prompt_tokens, reader->completion_tokens())));
          } catch (const std::exception& e) {  // headers are sent: the error goes in the stream
            log_warn("serve: a stream failed: ", e.what());
            job->cancel();
            write(sse_event(error_body(e.what(), "server_error", "", "internal_error")));
          }
          write("data: [DONE]\n\n");
          sink.done();
          return true;
        },
        [job](bool) { job->cancel(); });  // a no-op when it finished; frees its rows if not
  }
};

HttpServer::HttpServer(Scheduler& sched, const Tokenizer& tok, ChatTemplate chat, Metrics& metrics,
                       ServerOptions opts)
    : impl_(std::make_unique<Impl>(sched, tok, std::move(chat), metrics, std::move(opts))) {}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
  Impl& m = *impl_;
  if (m.opts.port == 0) {
    const int port = m.svr.bind_to_any_port(m.opts.host);
    TL_CHECK(port > 0, "serve: cannot listen on ", m.opts.host, " (any port)");
    m.svr.raise_backlog();
    return port;
  }
  TL_CHECK(m.svr.bind_to_port(m.opts.host, m.opts.port), "serve: cannot listen on ", m.opts.host,
           ":", m.opts.port, " (in use, or not an address of this machine)");
  m.svr.raise_backlog();
  return m.opts.port;
}

void HttpServer::run() { impl_->svr.listen_after_bind(); }

void HttpServer::stop() { impl_->svr.stop(); }

}  // namespace tl::serve
