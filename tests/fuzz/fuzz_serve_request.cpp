// The server's hostile-input surface: an HTTP body as /v1/completions and
// /v1/chat/completions would parse it (serve/api.cpp), and a chat template file
// (serve/chat_template.cpp). The right answer to a bad body is ApiError (the client's 4xx);
// to a bad template, tl::Error naming the key. A parsed request must also respect the
// limits the scheduler relies on.
#include <cstdlib>

#include "fuzz_util.h"
#include "serve/api.h"
#include "serve/chat_template.h"

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_serve_request: a parsed request broke a limit: %s\n", what);
    std::abort();
  }
}

void check_common(const tl::serve::CommonParams& p, const tl::serve::ApiLimits& lim) {
  check(p.n >= 1 && p.n <= lim.max_n, "n");
  check(p.temperature >= 0 && p.top_p > 0 && p.top_p <= 1 && p.top_k >= 0, "sampling");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tl::serve;
  const std::string body(reinterpret_cast<const char*>(data), size);
  ApiLimits lim;
  lim.vocab_size = 32000;
  tlfuzz::run([&] {
    tl::json j;
    try {
      j = parse_body(body);
    } catch (const ApiError&) {
      return;
    }
    try {
      const CompletionParams c = parse_completion(j, lim);
      check_common(c, lim);
      check(!c.prompts.empty() && int(c.prompts.size()) <= lim.max_prompts, "prompts");
      check(c.logprobs <= lim.max_logprobs, "logprobs");
      for (const PromptIn& p : c.prompts)
        for (int id : p.ids) check(id >= 0 && id < lim.vocab_size, "token id");
    } catch (const ApiError&) {
    }
    try {
      const ChatParams c = parse_chat(j, lim);
      check_common(c, lim);
      check(!c.messages.empty(), "messages");
      check(c.top_logprobs >= 0 && c.top_logprobs <= 20, "top_logprobs");
    } catch (const ApiError&) {
    }
    // The same bytes as a --chat-template file.
    (void)ChatTemplate::from_json(j, "fuzz.json");
  });
  return 0;
}
