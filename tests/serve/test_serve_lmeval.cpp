// What lm-evaluation-harness's local-completions backend computes from our replies equals
// what `tinyllama eval` computes itself: for each (context, continuation) request it posts
// the tokens with echo, logprobs 1, max_tokens 1, temperature 0, then sums
// token_logprobs[ctxlen:-1] and calls the continuation greedy when each of those equals the
// largest of its top_logprobs. eval::score_requests (the in-process scorer) is the reference.
#include <gtest/gtest.h>

#include "http_test_util.h"

#ifdef TL_WITH_HTTP
#include "eval/requests.h"
#include "eval/scorer.h"

using namespace tl;

TEST(ServeLmEval, HarnessArithmeticOnRepliesEqualsEvalScorer) {
  ST_NEED_HTTP_AND_TOKENIZER();
  serve::SchedulerOptions so;
  so.max_batch = 8;
  st::HttpFixture f(so, {});
  const int window = f.ref.cfg.max_seq_len;
  // Text pairs as the harness builds them, plus one whose continuation is the greedy one.
  std::vector<eval::TokenRequest> reqs;
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"The capital of France is", " Paris"},
      {"Question: what is two plus two?\nAnswer:", " four"},
      {"", "An empty context scores from BOS."},
      {"A longer context that goes on for a while, ", "and a continuation of several words."}};
  for (size_t i = 0; i < pairs.size(); ++i)
    reqs.push_back(eval::make_request(
        eval::encode_pair(f.tok, pairs[i].first, pairs[i].second, eval::BosMode::On), window,
        cat("pair ", i)));
  std::vector<int> ctx = st::text_ids(10, 5);
  ctx.insert(ctx.begin(), 1);
  const std::vector<int> g = f.greedy(ctx, 3);
  eval::TokenRequest greedy;
  greedy.tokens.assign(ctx.begin(), ctx.end());
  greedy.tokens.insert(greedy.tokens.end(), g.begin(), g.end());
  greedy.contlen = 3;
  reqs.push_back(greedy);

  std::vector<std::vector<eval::TokenRequest>> groups;
  for (const auto& r : reqs) groups.push_back({r});
  const auto want = eval::score_requests(*f.ref.model, groups, {});

  json prompts = json::array();
  for (const auto& r : reqs) prompts.push_back(r.tokens);
  const auto [status, reply] = f.post("/v1/completions", json{{"model", "m"},
                                                              {"prompt", prompts},
                                                              {"echo", true},
                                                              {"logprobs", 1},
                                                              {"max_tokens", 1},
                                                              {"temperature", 0}}
                                                             .dump());
  ASSERT_EQ(status, 200) << reply.dump();
  for (size_t i = 0; i < reqs.size(); ++i) {
    const json& lp = reply["choices"][i]["logprobs"];
    const size_t ctxlen = reqs[i].tokens.size() - size_t(reqs[i].contlen);
    ASSERT_EQ(lp["token_logprobs"].size(), reqs[i].tokens.size() + 1);
    double ll = 0;
    bool is_greedy = true;
    for (size_t t = ctxlen; t + 1 < lp["token_logprobs"].size(); ++t) {  // [ctxlen:-1]
      const double v = lp["token_logprobs"][t];
      ll += v;
      double top = -INFINITY;
      for (const auto& [k, x] : lp["top_logprobs"][t].items()) top = std::max(top, x.get<double>());
      is_greedy = is_greedy && v == top;
    }
    EXPECT_NEAR(ll, want[i][0].ll, 1e-5 * reqs[i].contlen) << "request " << i;
    EXPECT_EQ(is_greedy, want[i][0].greedy) << "request " << i;
  }
  EXPECT_TRUE(want.back()[0].greedy) << "the greedy continuation must score as greedy";
}

#else
TEST(ServeLmEval, NeedsHttpLibrary) { GTEST_SKIP() << "built without cpp-httplib: no HTTP server"; }
#endif
