// The official `openai` npm client (tests/interop/openai_check.mjs) drives the server:
// lm-evaluation-harness's loglikelihood request, greedy text whole and streamed, stop strings,
// n choices with a seed, chat whole and streamed, models, and errors (401, 400 with the field).
// Its answers are checked against references computed here without the server.
#include <gtest/gtest.h>

#include "http_test_util.h"
#include "interop_util.h"

#ifdef TL_WITH_HTTP
using namespace tl;

TEST(ServeOpenAI, OfficialClientDrivesTheServer) {
  if (!interop::have_node())
    GTEST_SKIP() << "Node.js/npm not installed: the openai client cannot run";
  ST_NEED_HTTP_AND_TOKENIZER();
  std::string npm_error;
  const std::string node = interop::node_dir(&npm_error);
  ASSERT_FALSE(node.empty()) << npm_error;

  serve::SchedulerOptions so;
  so.max_batch = 4;
  serve::ServerOptions ho;
  ho.api_key = "sk-test";
  ho.model_name = "tiny";
  st::HttpFixture f(so, ho);

  std::vector<std::vector<int>> prompts = {st::text_ids(7, 1), st::text_ids(12, 2)};
  for (auto& p : prompts) p.insert(p.begin(), 1);
  const std::vector<int> greedy_prompt = st::text_ids(8, 3);
  const std::string want_greedy = f.text_after(greedy_prompt, f.greedy(greedy_prompt, 12));
  ASSERT_GT(want_greedy.size(), 6u);
  const std::string stop = want_greedy.substr(want_greedy.size() / 2, 2);

  ckpt_test::TempDir dir;
  ckpt_test::write_bytes(dir.file("req.json"), json{{"base_url", f.url()},
                                                    {"api_key", "sk-test"},
                                                    {"model", "tiny"},
                                                    {"prompts", prompts},
                                                    {"greedy_prompt", greedy_prompt},
                                                    {"max_new", 12},
                                                    {"stop", stop}}
                                                   .dump());
  const auto r = ckpt_test::run_cmd("cd '" + node + "' && node openai_check.mjs " +
                                    dir.file("req.json") + " 2>" + dir.file("node.err"));
  ASSERT_EQ(r.rc, 0) << r.output << ckpt_test::read_bytes(dir.file("node.err"));
  const json out = json::parse(r.output);

  // Loglikelihoods: the training forward's log-softmax, to 1e-5.
  ASSERT_EQ(out["loglik"].size(), prompts.size());
  for (size_t c = 0; c < prompts.size(); ++c) {
    const json& lp = out["loglik"][c]["token_logprobs"];
    ASSERT_EQ(lp.size(), prompts[c].size());
    EXPECT_TRUE(lp[0].is_null());
    for (size_t t = 1; t < prompts[c].size(); ++t) {
      const std::vector<int> prefix(prompts[c].begin(), prompts[c].begin() + ptrdiff_t(t));
      EXPECT_NEAR(lp[t].get<double>(), f.log_softmax_after(prefix)[size_t(prompts[c][t])], 1e-5)
          << "prompt " << c << " position " << t;
    }
  }
  EXPECT_EQ(out["greedy_text"], want_greedy);
  EXPECT_EQ(out["stream_text"], want_greedy);
  EXPECT_EQ(out["stop_text"], want_greedy.substr(0, want_greedy.find(stop)));
  ASSERT_EQ(out["n_texts"][0].size(), 3u);
  EXPECT_EQ(out["n_texts"][0], out["n_texts"][1]) << "the same seed must give the same choices";
  EXPECT_NE(out["n_texts"][0][0], out["n_texts"][0][1]);
  EXPECT_EQ(out["chat"]["role"], "assistant");
  EXPECT_EQ(out["chat"]["content"], out["chat_stream"]);
  EXPECT_GT(out["chat"]["logprobs"].get<int>(), 0);
  EXPECT_EQ(out["chat"]["top"], 2);
  EXPECT_EQ(out["chat"]["usage"]["prompt_tokens"],
            serve::ChatTemplate().render(f.tok, {{"user", "Hello"}}).size());
  EXPECT_EQ(out["models"], json::array({"tiny"}));
  EXPECT_EQ(out["bad_key"]["status"], 401) << out["bad_key"].dump();
  EXPECT_EQ(out["bad_key"]["name"], "AuthenticationError");
  EXPECT_EQ(out["bad_request"]["status"], 400) << out["bad_request"].dump();
  EXPECT_EQ(out["bad_request"]["param"], "logprobs");
  EXPECT_EQ(out["bad_request"]["name"], "BadRequestError");
}

#else
TEST(ServeOpenAI, NeedsHttpLibrary) { GTEST_SKIP() << "built without cpp-httplib: no HTTP server"; }
#endif
