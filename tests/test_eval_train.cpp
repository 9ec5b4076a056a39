// eval.tasks during training: scored at step 0, every eval.interval and at the end; acc and
// acc_norm go to metrics.jsonl (with the tokens seen) and TensorBoard; a bad task row or an
// unknown task stops the run before it starts.
#include <gtest/gtest.h>

#include "data/tokenizer.h"
#include "data_test_util.h"
#include "eval/run.h"
#include "train/train_config.h"
#include "train/trainer.h"
#include "train_test_util.h"

using namespace tl;

namespace {

json task_config(const train_test::TrainFixture& fx, const std::string& run) {
  json cfg = fx.config(run, 6);
  cfg["model"]["vocab_size"] = 32000;  // the Llama 2 tokenizer's prompts
  cfg["model"]["max_seq_len"] = 128;   // room for PIQA's long solutions
  cfg["data"]["tokenizer"] = dt::llama_model();
  cfg["eval"]["interval"] = 3;
  const std::string fx_dir = std::string(TL_SOURCE_DIR) + "/tests/fixtures/eval/";
  cfg["eval"]["tasks"] =
      json::array({json{{"name", "boolq"}, {"path", fx_dir + "boolq"}},
                   json{{"name", "piqa"}, {"path", fx_dir + "piqa"}, {"limit", 2}}});
  return cfg;
}

}  // namespace

TEST(EvalTrain, TasksScoredWithEachValidation) {
  DT_REQUIRE_SHARED_DATA();
  train_test::TrainFixture fx;
  const TrainConfig tc = TrainConfig::from_json(task_config(fx, "r"));
  Trainer(tc, "").run();
  std::map<std::string, std::vector<int64_t>> steps;
  for (const json& j : train_test::read_jsonl(fx.run("r") + "/metrics.jsonl")) {
    if (!j.contains("eval_task")) continue;
    const std::string name = j["eval_task"];
    steps[name].push_back(j["step"]);
    EXPECT_EQ(j["tokens"], j["step"].get<int64_t>() * tc.tokens_per_step());
    EXPECT_EQ(j["n"], name == "boolq" ? 3 : 2);
    EXPECT_GE(j["acc"].get<double>(), 0.0);
    EXPECT_LE(j["acc"].get<double>(), 1.0);
    EXPECT_EQ(j.contains("acc_norm"), name == "piqa");
  }
  EXPECT_EQ(steps["boolq"], (std::vector<int64_t>{0, 3, 6}));
  EXPECT_EQ(steps["piqa"], (std::vector<int64_t>{0, 3, 6}));
  // TensorBoard: the tags are in the event file.
  std::string events;
  for (const auto& f : std::filesystem::recursive_directory_iterator(fx.run("r")))
    if (f.path().filename().string().rfind("events.out.tfevents", 0) == 0)
      events += dt::read_text(f.path());
  EXPECT_NE(events.find("eval/piqa/acc_norm"), std::string::npos);
  EXPECT_NE(events.find("eval/boolq/acc"), std::string::npos);
}

TEST(EvalTrain, BadTasksStopTheRunBeforeItStarts) {
  DT_REQUIRE_SHARED_DATA();
  train_test::TrainFixture fx;
  json cfg = task_config(fx, "bad");
  cfg["eval"]["tasks"][0]["name"] = "squad";
  DT_EXPECT_THROW_WITH(TrainConfig::from_json(cfg), "eval.tasks", "unknown task 'squad'");
  cfg = task_config(fx, "bad");
  dt::write_text(fx.dir + "/bad/piqa.jsonl",
                 "{\"goal\":\"g\",\"sol1\":\"a\",\"sol2\":\"b\",\"label\":7}\n");
  cfg["eval"]["tasks"][1]["path"] = fx.dir + "/bad/piqa.jsonl";
  const TrainConfig tc = TrainConfig::from_json(cfg);
  DT_EXPECT_THROW_WITH(Trainer(tc, ""), "piqa.jsonl' row 0", "field 'label'", "out of range");
  EXPECT_FALSE(std::filesystem::exists(fx.run("bad") + "/metrics.jsonl"));
  cfg = task_config(fx, "bad2");
  cfg["data"].erase("tokenizer");
  DT_EXPECT_THROW_WITH(Trainer(TrainConfig::from_json(cfg), ""), "eval.tasks needs data.tokenizer");
}

// eval.tasks entries may ask for few-shot prompts: num_fewshot and fewshot_path (relative to
// the config like path) reach the prompts, and the run scores them.
TEST(EvalTrain, FewshotTasksReachThePrompts) {
  DT_REQUIRE_SHARED_DATA();
  train_test::TrainFixture fx;
  json cfg = task_config(fx, "fs");
  const std::string fx_dir = std::string(TL_SOURCE_DIR) + "/tests/fixtures/eval/";
  cfg["eval"]["tasks"][0]["num_fewshot"] = 2;
  cfg["eval"]["tasks"][0]["fewshot_path"] = fx_dir + "fewshot/boolq/train.jsonl";
  const TrainConfig tc = TrainConfig::from_json(cfg);
  ASSERT_EQ(tc.eval.tasks.size(), 2u);
  EXPECT_EQ(tc.eval.tasks[0].num_fewshot, 2);
  EXPECT_EQ(tc.eval.tasks[1].num_fewshot, -1);
  const Tokenizer tok = Tokenizer::load(dt::llama_model());
  eval::EvalOptions with, without;
  with.tasks = {tc.eval.tasks[0]};
  without.tasks = {tc.eval.tasks[0]};
  without.tasks[0].num_fewshot = 0;
  const auto shots = eval::prepare_tasks(with, tok, 4096);
  const auto zero = eval::prepare_tasks(without, tok, 4096);
  EXPECT_EQ(shots[0].data.num_fewshot, 2);
  ASSERT_EQ(shots[0].requests.size(), zero[0].requests.size());
  for (size_t d = 0; d < zero[0].requests.size(); ++d)  // two examples precede each question
    EXPECT_GT(shots[0].requests[d][0].tokens.size(), zero[0].requests[d][0].tokens.size() + 10);
  Trainer(tc, "").run();
  int rows = 0;
  for (const json& j : train_test::read_jsonl(fx.run("fs") + "/metrics.jsonl"))
    if (j.value("eval_task", "") == "boolq") ++rows;
  EXPECT_EQ(rows, 3);  // steps 0, 3, 6

  cfg["eval"]["tasks"][0]["num_fewshot"] = -1;
  DT_EXPECT_THROW_WITH(TrainConfig::from_json(cfg), "eval.tasks[0].num_fewshot",
                       "must not be negative");
  cfg["eval"]["tasks"][0]["num_fewshot"] = 2;
  cfg["eval"]["tasks"][0].erase("fewshot_path");
  DT_EXPECT_THROW_WITH(TrainConfig::from_json(cfg), "eval.tasks[0].num_fewshot 2",
                       "needs fewshot_path");
}
