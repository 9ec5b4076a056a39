// Resume and checkpoint life: damaged checkpoints are skipped and set aside, leftovers of
// killed writes are ignored and removed, retention keeps the newest N plus every M-th,
// config changes on resume are accepted and logged (a reshaped model is refused), metrics
// are rewound to the restart point, and one trainer owns a run folder at a time.
#include <gtest/gtest.h>

#include <fstream>

#include "checkpoint/checkpoint.h"
#include "checkpoint/run_folder.h"
#include "sharded_test_util.h"
#include "text_test_util.h"
#include "train/resume_policy.h"
#include "train/trainer.h"
#include "train_test_util.h"

using namespace tl;
using train_test::train_losses;
using train_test::TrainFixture;

namespace {

using text_test::has;

TrainSummary train(const json& cfg, const std::string& resume = "") {
  return Trainer(TrainConfig::from_json(cfg), resume).run();
}

std::vector<int64_t> steps_of(const std::string& run_dir) {
  std::vector<int64_t> out;
  for (const auto& c : list_checkpoints(run_dir)) out.push_back(c.step);
  return out;
}

}  // namespace

TEST(TrainResume, DamagedNewestCheckpointIsSkippedAndSetAside) {
  TrainFixture fx;
  TrainSummary ref = train(fx.config("ref", 30));
  for (const char* damage : {"flip", "truncate"}) {
    SCOPED_TRACE(damage);
    const std::string run = std::string("r_") + damage;
    train(fx.config(run, 20));  // checkpoints at 10 and 20
    const std::string newest = checkpoint_path(fx.run(run), 20);
    std::string bytes = train_test::read_text(newest);
    if (std::string(damage) == "flip")
      bytes[bytes.size() / 2] ^= 0x40;
    else
      bytes.resize(bytes.size() - 1000);
    std::ofstream(newest, std::ios::binary | std::ios::trunc) << bytes;

    testing::internal::CaptureStderr();
    TrainSummary s = train(fx.config(run, 30), "auto");
    const std::string log = testing::internal::GetCapturedStderr();
    EXPECT_TRUE(has(log, "skipping damaged checkpoint") && has(log, "step_00000020.tlck")) << log;
    EXPECT_TRUE(has(log, "resumed from") && has(log, "at step 10")) << log;
    EXPECT_TRUE(file_exists(newest + ".damaged"));
    // The redone steps reproduce the uninterrupted run exactly.
    EXPECT_EQ(load_checkpoint(s.final_checkpoint).params,
              load_checkpoint(ref.final_checkpoint).params);
    EXPECT_EQ(train_losses(fx.run(run) + "/metrics.jsonl"),
              train_losses(fx.run("ref") + "/metrics.jsonl"));
  }
}

TEST(TrainResume, NoValidCheckpointLeftIsRefusedNotRestarted) {
  TrainFixture fx;
  train(fx.config("r", 10));
  const std::string only = checkpoint_path(fx.run("r"), 10);
  std::string bytes = train_test::read_text(only);
  bytes[100] ^= 1;  // inside the header: its CRC fails
  std::ofstream(only, std::ios::binary | std::ios::trunc) << bytes;
  try {
    train(fx.config("r", 20), "auto");
    FAIL() << "resumed without a valid checkpoint";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "none of the 1 checkpoints") && has(e.what(), "refusing"))
        << e.what();
  }
  EXPECT_TRUE(file_exists(only + ".damaged"));
}

TEST(TrainResume, LeftoversOfKilledWritesAreIgnoredAndRemoved) {
  TrainFixture fx;
  train(fx.config("r", 10));
  const std::string ck_dir = checkpoint_dir(fx.run("r"));
  // What kill -9 leaves mid-write: a partial newer checkpoint and a partial config.
  std::ofstream(ck_dir + "/step_00000020.tlck.tmp.4242") << "TLCKPT partial";
  std::ofstream(fx.run("r") + "/config.json.tmp.4242") << "{";
  std::ofstream(ck_dir + "/notes.tmp.txt") << "not ours";
  TrainSummary s = train(fx.config("r", 15), "auto");
  EXPECT_EQ(s.steps, 15);
  EXPECT_FALSE(file_exists(ck_dir + "/step_00000020.tlck.tmp.4242"));
  EXPECT_FALSE(file_exists(fx.run("r") + "/config.json.tmp.4242"));
  EXPECT_TRUE(file_exists(ck_dir + "/notes.tmp.txt"));
  EXPECT_EQ(steps_of(fx.run("r")), (std::vector<int64_t>{10, 15}));
}

TEST(TrainResume, RetentionKeepsTheNewestAndEveryMth) {
  EXPECT_EQ(steps_to_prune({5, 10, 15, 20, 25}, 2, 0), (std::vector<int64_t>{5, 10, 15}));
  EXPECT_EQ(steps_to_prune({25, 5, 20, 10, 15}, 2, 10), (std::vector<int64_t>{5, 15}));
  EXPECT_EQ(steps_to_prune({5, 10}, 3, 0), std::vector<int64_t>{});
  TrainFixture fx;
  json cfg = fx.config("r", 50);
  cfg["checkpoint"] = {{"interval", 5}, {"keep", 2}, {"keep_every", 20}};
  train(cfg);
  EXPECT_EQ(steps_of(fx.run("r")), (std::vector<int64_t>{20, 40, 45, 50}));
  cfg["checkpoint"]["keep_every"] = -1;
  EXPECT_THROW(TrainConfig::from_json(cfg), Error);
}

TEST(TrainResume, SafeConfigChangesAreAcceptedAndLogged) {
  TrainFixture fx;
  train(fx.config("r", 10));
  json more = fx.config("r", 14);
  more["optim"]["lr"] = 5e-3;
  more["batch"]["grad_accum"] = 3;
  testing::internal::CaptureStderr();
  TrainSummary s = train(more, "auto");
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_EQ(s.steps, 14);
  EXPECT_TRUE(has(log, "config change on resume: train.steps: 10 -> 14")) << log;
  EXPECT_TRUE(has(log, "optim.lr: 0.01 -> 0.005")) << log;
  EXPECT_TRUE(has(log, "warning: config change on resume: batch.grad_accum: 2 -> 3")) << log;

  std::vector<ConfigChange> c = config_changes(json{{"a", {{"x", 1}, {"y", {1, 2}}}}, {"b", 2}},
                                               json{{"a", {{"x", 1}, {"y", {1, 3}}}}, {"c", 3}});
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].key, "a.y");
  EXPECT_EQ(c[1].key, "b");
  EXPECT_EQ(c[1].after, "(unset)");
  EXPECT_EQ(c[2].key, "c");

  json reshaped = fx.config("r", 20);
  reshaped["model"]["n_layers"] = 3;
  try {
    train(reshaped, "auto");
    FAIL() << "a reshaped model resumed";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "model.n_layers is 2 there but 3")) << e.what();
  }
  json reseeded = fx.config("r", 20);
  reseeded["train"]["seed"] = 6;  // another data order: the loader refuses it
  try {
    train(reseeded, "auto");
    FAIL() << "a run resumed with another seed";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "seed")) << e.what();
  }
}

TEST(TrainResume, MetricsAreRewoundToTheRestartPoint) {
  TrainFixture fx;
  train(fx.config("ref", 30));
  train(fx.config("r", 25));  // checkpoints 10, 20, 25
  // As if killed after step 25 was logged but before its checkpoint was complete.
  std::remove(checkpoint_path(fx.run("r"), 25).c_str());
  train(fx.config("r", 30), "auto");
  const std::string m = fx.run("r") + "/metrics.jsonl";
  EXPECT_EQ(train_losses(m), train_losses(fx.run("ref") + "/metrics.jsonl"));
  std::vector<int64_t> steps;
  for (const json& j : train_test::read_jsonl(m))
    if (j.contains("loss")) steps.push_back(j["step"]);
  ASSERT_EQ(steps.size(), 30u);
  for (size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i], int64_t(i) + 1);
  std::vector<json> resumes = train_test::events(m, "resume");
  ASSERT_EQ(resumes.size(), 1u);
  EXPECT_EQ(resumes[0]["step"], 20);
  EXPECT_EQ(resumes[0]["redo_steps"], 5);
}

TEST(TrainResume, OneTrainerPerRunFolder) {
  TrainFixture fx;
  Trainer first(TrainConfig::from_json(fx.config("r", 5)), "");
  try {
    Trainer second(TrainConfig::from_json(fx.config("r", 5)), "auto");
    FAIL() << "two trainers shared a run folder";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "in use by another trainer")) << e.what();
  }
  first.run();
}

// checkpoint.async: the files are those of a synchronous run, and they are written while
// training goes on (the write is stretched to 200 ms: the next steps are logged before the
// checkpoint is).
TEST(TrainResume, BackgroundCheckpointsEqualSynchronousOnesAndOverlapTraining) {
  TrainFixture fx;
  json sync = fx.config("sync", 12);
  sync["checkpoint"] = {{"interval", 4}, {"keep", 5}};
  json async = fx.config("async", 12);
  async["checkpoint"] = {{"interval", 4}, {"keep", 5}, {"async", true}};
  train(sync);
  ::setenv("TL_DEBUG_CHECKPOINT_SLEEP_MS", "200", 1);
  TrainSummary s = train(async);
  ::unsetenv("TL_DEBUG_CHECKPOINT_SLEEP_MS");
  EXPECT_EQ(s.final_checkpoint, checkpoint_path(fx.run("async"), 12));
  ASSERT_EQ(steps_of(fx.run("sync")), (std::vector<int64_t>{4, 8, 12}));
  ASSERT_EQ(steps_of(fx.run("async")), (std::vector<int64_t>{4, 8, 12}));
  for (int64_t step : {4, 8, 12}) {
    SCOPED_TRACE(step);
    CheckpointData a = load_checkpoint(checkpoint_path(fx.run("sync"), step));
    CheckpointData b = load_checkpoint(checkpoint_path(fx.run("async"), step));
    EXPECT_EQ(a.params, b.params);
    EXPECT_EQ(a.adam_m, b.adam_m);
    EXPECT_EQ(a.adam_v, b.adam_v);
    EXPECT_EQ(a.meta["loader"], b.meta["loader"]);
  }
  EXPECT_EQ(train_losses(fx.run("sync") + "/metrics.jsonl"),
            train_losses(fx.run("async") + "/metrics.jsonl"));

  // Order of lines in metrics.jsonl: the checkpoint of step 4 is recorded after step 5.
  std::ifstream in(fx.run("async") + "/metrics.jsonl");
  std::string line;
  int line_no = 0, step5_line = -1, ck4_line = -1;
  std::vector<int64_t> ck_steps;
  for (; std::getline(in, line); ++line_no) {
    const json j = json::parse(line);
    if (j.contains("loss") && j["step"] == 5) step5_line = line_no;
    if (j.value("event", "") == "checkpoint") {
      ck_steps.push_back(j["step"]);
      EXPECT_TRUE(j.contains("copy_seconds")) << line;
      EXPECT_GE(j["seconds"].get<double>(), 0.2) << line;  // the stretched write
      if (j["step"] == 4) ck4_line = line_no;
    }
  }
  EXPECT_EQ(ck_steps, (std::vector<int64_t>{4, 8, 12}));
  ASSERT_GE(step5_line, 0);
  EXPECT_GT(ck4_line, step5_line) << "the step-4 checkpoint did not overlap step 5";
  json bad = async;
  bad["checkpoint"]["async"] = 1;
  try {
    TrainConfig::from_json(bad);
    ADD_FAILURE() << "checkpoint.async = 1 was accepted";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "checkpoint.async")) << e.what();
  }
}

// Issue #18: a sharded checkpoint whose shard claims a smaller model was resumed from (the
// missing part as zeros) and a new checkpoint saved from those weights. It is damage: set
// aside, and the previous checkpoint resumes.
TEST(TrainResume, ShardedCheckpointWithAShardOfAnotherModelIsSetAsideNotResumed) {
  TrainFixture fx;
  train(fx.config("r", 10));
  CheckpointData ck = load_checkpoint(checkpoint_path(fx.run("r"), 10));
  ck.meta["step"] = 20;  // as if a later (sharded) save
  const std::string folder = sharded_checkpoint_path(fx.run("r"), 20);
  sharded_test::write_sharded_set(folder, ck, 2);
  ModelConfig smaller = ModelConfig::from_json(ck.meta.at("model"));
  smaller.n_layers = 1;
  sharded_test::replace_shard(folder, 1, sharded_test::make_shard(smaller, 1, 2));

  testing::internal::CaptureStderr();
  train(fx.config("r", 12), "auto");
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(has(log, "skipping damaged checkpoint") && has(log, "shard_00001_of_00002.tlck") &&
              has(log, "field 'model'"))
      << log;
  EXPECT_TRUE(has(log, "resumed from") && has(log, "at step 10")) << log;
  EXPECT_TRUE(is_directory(folder + ".damaged"));
  EXPECT_EQ(steps_of(fx.run("r")), (std::vector<int64_t>{10, 12}));
}
