// What people watch: metrics.jsonl holds every figure of every step, each validation and
// the run's events; the console line and progress bar show what is known and omit the rest.
#include <gtest/gtest.h>

#include <cmath>

#include "observe/console.h"
#include "observe/metrics.h"
#include "train/trainer.h"
#include "train_test_util.h"

using namespace tl;

TEST(TrainMetrics, EveryStepRecordHasEveryFigure) {
  train_test::TrainFixture fx;
  json cfg = fx.config("r", 12);
  cfg["eval"]["interval"] = 5;
  const TrainConfig tc = TrainConfig::from_json(cfg);
  Trainer(tc, "").run();
  int64_t steps = 0;
  std::vector<int64_t> val_steps, checkpoint_steps;
  double last_elapsed = 0;
  for (const json& j : train_test::read_jsonl(fx.run("r") + "/metrics.jsonl")) {
    if (j.contains("loss")) {
      const int64_t step = j["step"];
      EXPECT_EQ(step, ++steps);
      for (const char* key :
           {"loss", "lr", "grad_norm", "tokens", "tokens_per_s", "step_seconds", "elapsed_seconds",
            "skipped", "skipped_total", "spike", "spikes_total"})
        EXPECT_TRUE(j.contains(key)) << key << " missing at step " << step;
      EXPECT_FALSE(j.contains("mfu"));  // unknown on the CPU: omitted, not made up
      EXPECT_EQ(j["tokens"], step * tc.tokens_per_step());
      EXPECT_DOUBLE_EQ(j["lr"].get<double>(), tc.optim.schedule.at(step));
      EXPECT_GT(j["grad_norm"].get<double>(), 0);
      EXPECT_NEAR(j["tokens_per_s"].get<double>() * j["step_seconds"].get<double>(),
                  double(tc.tokens_per_step()), 1e-6 * tc.tokens_per_step());
      EXPECT_GE(j["elapsed_seconds"].get<double>(), last_elapsed);
      last_elapsed = j["elapsed_seconds"];
      EXPECT_EQ(j["skipped"], false);
    } else if (j.contains("val_loss")) {
      val_steps.push_back(j["step"]);
      EXPECT_NEAR(j["val_perplexity"].get<double>(), std::exp(j["val_loss"].get<double>()), 1e-9);
    } else if (j.value("event", "") == "checkpoint") {
      checkpoint_steps.push_back(j["step"]);
    }
  }
  EXPECT_EQ(steps, 12);
  EXPECT_EQ(val_steps, (std::vector<int64_t>{0, 5, 10, 12}));
  EXPECT_EQ(checkpoint_steps, (std::vector<int64_t>{10, 12}));
  EXPECT_EQ(train_test::events(fx.run("r") + "/metrics.jsonl", "start").size(), 1u);
}

TEST(TrainMetrics, ConsoleShowsWhatIsKnown) {
  StepFigures f;
  f.step = 450;
  f.steps = 1000;
  f.loss = 2.31049;
  f.lr = 3e-4;
  f.grad_norm = 0.8123;
  f.tokens_per_s = 12345;
  f.eta_seconds = 185;
  EXPECT_EQ(step_line(f),
            "step 450/1000 | loss 2.3105 | lr 3.000e-04 | grad 0.812 | 12.3k tok/s | eta 3m05s");
  f.mfu = 0.412;
  f.mem_bytes = size_t(46.4 * (1 << 30));
  f.mem_peak = size_t(57.6 * (1 << 30));
  f.skipped = true;
  EXPECT_EQ(step_line(f),
            "step 450/1000 | loss 2.3105 | lr 3.000e-04 | grad 0.812 | 12.3k tok/s | MFU 41.2% | "
            "mem 46.4/57.6 GiB | eta 3m05s | update skipped: non-finite loss or gradient");
  EXPECT_EQ(progress_bar(f, 10),
            "[#####-----]  45.0% 450/1000 | loss 2.3105 | 12.3k tok/s | eta 3m05s");
}

TEST(TrainMetrics, RewindKeepsTheRecordsUpToTheRestartStep) {
  train_test::TrainFixture fx;
  const std::string path = fx.dir + "/m.jsonl";
  std::string text, upto_700;
  for (int step = 0; step <= 1000; ++step) {  // ~100 kB: read back in more than one piece
    text += json{{"step", step}, {"loss", 1.0 / (step + 1)}, {"pad", std::string(60, 'x')}}.dump() +
            "\n";
    if (step % 100 == 0) text += json{{"step", step}, {"event", "checkpoint"}}.dump() + "\n";
    if (step == 700) upto_700 = text;
  }
  std::ofstream(path, std::ios::binary) << text << "{\"step\": 1001, \"lo";  // torn by a crash
  EXPECT_EQ(rewind_metrics(path, 700), 1000);
  EXPECT_EQ(train_test::read_text(path), upto_700);
  EXPECT_EQ(rewind_metrics(path, 700), 700);  // nothing more to drop
  EXPECT_EQ(train_test::read_text(path), upto_700);
  EXPECT_EQ(rewind_metrics(path, -1), 700);
  EXPECT_EQ(train_test::read_text(path), "");
  EXPECT_EQ(rewind_metrics(fx.dir + "/none.jsonl", 5), -1);
}
