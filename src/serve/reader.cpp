#include "serve/reader.h"

#include <algorithm>

namespace tl::serve {

namespace {
constexpr size_t kLabelContext = 4;  // ids before a token that shape its label's text
}

JobReader::JobReader(const Tokenizer& tok, std::shared_ptr<Job> job,
                     std::vector<ChoiceSetup> setups)
    : tok_(tok), job_(std::move(job)) {
  choices_.reserve(setups.size());
  for (size_t i = 0; i < setups.size(); ++i)
    choices_.push_back(Choice{setups[i], TokenText(tok_, job_->specs[i].prompt),
                              StopScanner(setups[i].stop), job_->specs[i].prompt});
}

bool JobReader::news_locked() const {
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& c = choices_[i];
    const SeqOutput& o = job_->out[i];
    if (c.finished) continue;
    if (o.tokens.size() > c.seen || o.finish != Finish::None || (o.prefilled && !c.prompt_done))
      return true;
  }
  return false;
}

bool JobReader::done() const {
  for (const Choice& c : choices_)
    if (!c.finished) return false;
  return true;
}

int64_t JobReader::completion_tokens() const {
  int64_t n = 0;
  for (const Choice& c : choices_) n += int64_t(c.seen);
  return n;
}

TokenOut JobReader::token_out(Choice& c, int id, const TokenLogprob* lp, const std::string& text) {
  TokenOut t;
  t.id = id;
  t.text = text;
  t.offset = c.offset;
  c.offset += utf8_length(text);
  if (lp) {
    t.has_logprob = true;
    t.logprob = lp->logprob;
    const size_t n = c.history.size(), from = n > kLabelContext ? n - kLabelContext : 0;
    const std::vector<int> before(c.history.begin() + ptrdiff_t(from), c.history.end());
    for (const auto& [alt, v] : lp->top)
      t.top.emplace_back(alt == id ? text : token_label(tok_, before, alt), v);
  }
  c.history.push_back(id);
  return t;
}

std::vector<Delta> JobReader::next(std::chrono::milliseconds wait) {
  struct Got {
    bool prefilled = false;
    std::vector<TokenLogprob> prompt_lp;
    std::vector<int> tokens;
    std::vector<TokenLogprob> lps;
    Finish finish = Finish::None;
  };
  std::vector<Got> got(choices_.size());
  std::string error;
  {
    std::unique_lock lk(job_->mu);
    job_->cv.wait_for(lk, wait, [&] { return news_locked(); });
    for (size_t i = 0; i < choices_.size(); ++i) {
      const Choice& c = choices_[i];
      const SeqOutput& o = job_->out[i];
      if (c.finished) continue;
      Got& g = got[i];
      g.prefilled = o.prefilled && !c.prompt_done;
      if (g.prefilled && c.setup.echo) g.prompt_lp = o.prompt_lp;
      g.tokens.assign(o.tokens.begin() + ptrdiff_t(c.seen), o.tokens.end());
      if (!o.token_lp.empty())
        g.lps.assign(o.token_lp.begin() + ptrdiff_t(c.seen), o.token_lp.end());
      g.finish = o.finish;
    }
    error = job_->error;
  }
  std::vector<Delta> out(choices_.size());
  for (size_t i = 0; i < choices_.size(); ++i) {
    Choice& c = choices_[i];
    Delta& d = out[i];
    Got& g = got[i];
    if (c.finished) continue;
    const SeqSpec& spec = job_->specs[i];
    const bool lp = spec.top_logprobs >= 0;
    if (g.prefilled) {
      c.prompt_done = true;
      if (c.setup.echo) {  // the prompt's own text, token by token, then the completion's
        const std::vector<int>& p = spec.prompt;
        TokenText pt(tok_, {});
        c.history.clear();
        for (size_t t = 0; t < p.size(); ++t) {
          std::string s = pt.push(p[t]);
          if (t + 1 == p.size()) s += pt.flush();
          d.text += s;
          const TokenLogprob* l =
              t > 0 && t - 1 < g.prompt_lp.size() ? &g.prompt_lp[t - 1] : nullptr;
          TokenOut o = token_out(c, p[t], l, s);
          if (lp) d.tokens.push_back(std::move(o));
        }
      }
    }
    for (size_t j = 0; j < g.tokens.size() && !c.finished; ++j) {
      ++c.seen;
      const std::string s = c.text.push(g.tokens[j]);
      d.text += c.stop.feed(s);
      TokenOut o = token_out(c, g.tokens[j], j < g.lps.size() ? &g.lps[j] : nullptr, s);
      if (lp) d.tokens.push_back(std::move(o));
      if (c.stop.hit()) {
        c.finished = true;
        d.finish = "stop";
        job_->cancel_seq(i);
      }
    }
    // The scheduler publishes a finish after the sequence's last token, under the same lock.
    if (!c.finished && g.finish != Finish::None) {
      d.text += c.stop.feed(c.text.flush());
      d.text += c.stop.flush();
      c.finished = true;
      if (g.finish == Finish::Error || g.finish == Finish::Cancelled) {
        failure_ = g.finish == Finish::Error
                       ? "the model failed: " + error
                       : "the request was cancelled: the server is shutting down";
        d.finish = "error";
      } else {
        d.finish = c.stop.hit() ? "stop" : finish_name(g.finish);
      }
    }
  }
  return out;
}

}  // namespace tl::serve
