// Turns a Job's raw outputs (token ids, logprobs) into what a client sees, as they arrive:
// text per token, stop strings applied (the sequence is cancelled once one appears), the
// prompt echoed, offsets counted. Runs on the handler thread; one reader per Job.
#pragma once
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data/tokenizer.h"
#include "serve/job.h"
#include "serve/text.h"

namespace tl::serve {

struct TokenOut {
  int id = 0;
  std::string text;          // what the token adds to the text
  size_t offset = 0;         // code points of the choice's text before it (echo included)
  bool has_logprob = false;  // false for the first prompt token (nothing to condition on)
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;  // label, logprob; most likely first
};

// What one sequence added since the last read.
struct Delta {
  std::string text;
  std::vector<TokenOut> tokens;  // with logprobs asked: every new token (echoed prompt first)
  std::string finish;            // "" until the sequence ends: "stop", "length"
};

struct ChoiceSetup {
  bool echo = false;
  std::vector<std::string> stop;
};

class JobReader {
 public:
  JobReader(const Tokenizer& tok, std::shared_ptr<Job> job, std::vector<ChoiceSetup> setups);

  // Waits up to `wait` for news, then returns one Delta per sequence (possibly empty).
  std::vector<Delta> next(std::chrono::milliseconds wait);
  bool done() const;  // every sequence has delivered its finish
  // A sequence ended without finishing: Finish::Error (the model step failed) or Cancelled
  // (the server is shutting down); the reply should be an error.
  bool failed() const { return !failure_.empty(); }
  const std::string& failure() const { return failure_; }
  int64_t completion_tokens() const;

 private:
  struct Choice {
    ChoiceSetup setup;
    TokenText text;
    StopScanner stop;
    std::vector<int> history;  // prompt and consumed tokens: context for labels
    size_t seen = 0;           // raw tokens consumed
    size_t offset = 0;
    bool prompt_done = false, finished = false;
  };
  bool news_locked() const;
  TokenOut token_out(Choice& c, int id, const TokenLogprob* lp, const std::string& text);

  const Tokenizer& tok_;
  std::shared_ptr<Job> job_;
  std::vector<Choice> choices_;
  std::string failure_;
};

}  // namespace tl::serve
