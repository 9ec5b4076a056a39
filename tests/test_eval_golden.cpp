// The evaluator against tools/fixtures/make_eval_golden.py: an independent Python implementation of
// lm-evaluation-harness 0.4's request rules, a tiny Hugging Face Llama scored through
// transformers in float64. Same fixture tasks, same model (imported from its safetensors):
// token ids identical, per-choice log-likelihoods within 1e-4 (relative) on the CPU and
// within bf16 tolerance on CUDA, predictions (acc and acc_norm) identical on the CPU and on
// CUDA wherever the golden margin exceeds that tolerance. BOS off and on.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "backend/backend.h"
#include "checkpoint/hf.h"
#include "core/fs.h"
#include "data_test_util.h"
#include "eval/run.h"

using namespace tl;
using namespace tl::eval;

namespace {

std::string dir() { return std::string(TL_SOURCE_DIR) + "/tests/fixtures/eval"; }

// Largest gap between the best and another choice's score, in the golden's own numbers.
double margin(const json& lls, int best) {
  double m = INFINITY;
  for (size_t i = 0; i < lls.size(); ++i)
    if (int(i) != best) m = std::min(m, lls[size_t(best)].get<double>() - lls[i].get<double>());
  return m;
}

void check_tasks(LlamaModel& model, const std::vector<PreparedTask>& tasks, const json& gtasks,
                 const EvalOptions& opts, bool exact, double rel, const std::string& label) {
  for (const PreparedTask& t : tasks) {
    const json& g = gtasks[t.data.name];
    const std::string what = label + " " + t.data.name;
    ASSERT_EQ(t.data.docs.size(), g["docs"].size()) << what;
    TaskOutcome out = run_task(model, t, opts.scorer);
    for (size_t d = 0; d < t.data.docs.size(); ++d) {
      const json& gd = g["docs"][d];
      const std::string at = what + " doc " + std::to_string(d) + " (" + t.data.docs[d].where + ")";
      ASSERT_EQ(t.requests[d].size(), gd["choices"].size()) << at;
      ASSERT_EQ(t.data.docs[d].gold, gd["gold"].get<int>()) << at;
      json lls = json::array();
      for (size_t c = 0; c < t.requests[d].size(); ++c) {
        const json& gc = gd["choices"][c];
        EXPECT_EQ(t.requests[d][c].tokens, gc["tokens"].get<std::vector<int32_t>>())
            << at << " choice " << c;
        EXPECT_EQ(t.requests[d][c].contlen, gc["contlen"].get<int>()) << at << " choice " << c;
        EXPECT_EQ(t.data.docs[d].choices[c].length, gd["lengths"][c].get<int64_t>())
            << at << " choice " << c;
        const double want = gc["ll"], got = out.scores[d].choices[c].ll;
        EXPECT_NEAR(got, want, rel * std::max(1.0, std::fabs(want))) << at << " choice " << c;
        if (exact) {
          EXPECT_EQ(out.scores[d].choices[c].greedy, gc["greedy"].get<bool>())
              << at << " choice " << c;
        }
        lls.push_back(want);
      }
      const int pred = gd["pred"], pred_norm = gd["pred_norm"];
      const double tol = 2 * rel * std::max(1.0, std::fabs(lls[size_t(pred)].get<double>()));
      if (exact || margin(lls, pred) > tol) {
        EXPECT_EQ(out.scores[d].pred, pred) << at;
      }
      json norm = json::array();
      for (size_t c = 0; c < lls.size(); ++c)
        norm.push_back(lls[c].get<double>() / gd["lengths"][c].get<double>());
      if (exact || margin(norm, pred_norm) > tol) {
        EXPECT_EQ(out.scores[d].pred_norm, pred_norm) << at;
      }
    }
    if (exact) {
      EXPECT_DOUBLE_EQ(out.rows[0].acc, g["summary"]["acc"].get<double>()) << what;
      if (g["summary"].contains("acc_norm")) {
        EXPECT_DOUBLE_EQ(out.rows[0].acc_norm, g["summary"]["acc_norm"].get<double>()) << what;
      }
      if (!g["summary"]["acc_stderr"].is_null() && t.data.name != "mmlu") {  // mmlu: pooled
        EXPECT_NEAR(out.rows[0].acc_stderr, g["summary"]["acc_stderr"].get<double>(), 1e-12)
            << what;
      }
    }
  }
}

void check_golden(const std::string& device) {
  if (!file_exists(dir() + "/golden.json"))
    GTEST_SKIP() << "no tests/fixtures/eval/golden.json: run tools/fixtures/make_eval_golden.py on "
                    "the GPU machine";
  if (dt::shared_data_dir().empty()) GTEST_SKIP() << "no llama2-tokenizer.model in the shared data";
  if (device == "cuda" && !cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  const json golden = json::parse(read_file(dir() + "/golden.json"));
  HfModel hf = import_hf(dir() + "/model");
  auto be = make_backend(device, 2);
  LlamaModel model(hf.config, *be);
  model.set_params(hf.params);
  const bool exact = be->compute_dtype() == DType::F32;
  const double rel = exact ? 1e-4 : 3e-2;  // bf16 weights are exact; activations are not
  const Tokenizer tok = Tokenizer::load(dt::llama_model());
  ASSERT_EQ(golden["window"].get<int>(), model.config().max_seq_len);
  // Zero-shot under "tasks"; few-shot (K examples from fewshot/<task>) under "fewshot".
  for (const char* section : {"tasks", "fewshot"}) {
    ASSERT_TRUE(golden.contains(section))
        << "golden.json has no '" << section << "' (rerun tools/fixtures/make_eval_golden.py)";
    for (const char* bos : {"off", "on"}) {
      const json& gtasks = golden[section][bos];
      for (const auto& [name, g] : gtasks.items()) {  // one task at a time: each its own K
        EvalOptions opts;
        const std::string shots =
            g.contains("fewshot_path") ? dir() + "/" + g["fewshot_path"].get<std::string>() : "";
        opts.tasks.push_back({name, dir() + "/" + name, 0, shots});
        if (g.contains("num_fewshot")) opts.num_fewshot = g["num_fewshot"];
        opts.bos = std::string(bos) == "on" ? BosMode::On : BosMode::Off;
        opts.scorer = {16, 512, true};
        check_tasks(model, prepare_tasks(opts, tok, model.config().max_seq_len), gtasks, opts,
                    exact, rel, std::string(section) + " bos " + bos);
      }
    }
  }
}

}  // namespace

TEST(EvalGolden, CpuMatchesTransformersFloat64) { check_golden("cpu"); }
TEST(EvalGolden, CudaMatchesWithinBf16) { check_golden("cuda"); }
