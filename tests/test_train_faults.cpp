// Faults: a non-finite loss or gradient skips the update and is counted, too many in a
// row stop the run with a clear message; loss spikes are flagged; a checkpoint that cannot
// be written (full disk, unwritable folder) is a clear error that leaves the previous one
// intact.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "checkpoint/checkpoint.h"
#include "checkpoint/run_folder.h"
#include "text_test_util.h"
#include "train/step_guard.h"
#include "train/trainer.h"
#include "train_test_util.h"

using namespace tl;
using train_test::TrainFixture;
namespace fs = std::filesystem;

namespace {

using text_test::has;

void poison_gradient(LlamaModel& m) {
  const float nan = NAN;
  m.backend().upload(m.grads().rows(0, 1), &nan);
}

}  // namespace

TEST(TrainFaults, NonFiniteGradientSkipsTheUpdateAndIsCounted) {
  TrainFixture fx;
  Trainer t(TrainConfig::from_json(fx.config("r", 8)), "");
  std::vector<float> before_bad, after_bad;
  t.set_fault_hook([&](int64_t step, LlamaModel& m) {
    if (step == 3) before_bad = m.get_params();  // the weights after step 2
    if (step == 5) after_bad = m.get_params();   // after steps 3 and 4
    if (step == 3 || step == 4) poison_gradient(m);
  });
  TrainSummary s = t.run();
  EXPECT_EQ(s.steps, 8);
  EXPECT_EQ(s.skipped_steps, 2);
  ASSERT_FALSE(before_bad.empty());
  EXPECT_EQ(before_bad, after_bad);  // the skipped steps changed nothing
  for (const json& j : train_test::read_jsonl(fx.run("r") + "/metrics.jsonl")) {
    if (!j.contains("loss")) continue;
    const int64_t step = j["step"];
    EXPECT_EQ(j["skipped"], step == 3 || step == 4) << step;
    EXPECT_EQ(j["skipped_total"], step < 3 ? 0 : step == 3 ? 1 : 2) << step;
  }
  json meta = read_checkpoint_meta(s.final_checkpoint);
  EXPECT_EQ(meta["skipped_steps"], 2);
  EXPECT_EQ(meta["optimizer_steps"], 6);
  EXPECT_EQ(meta["step"], 8);
}

TEST(TrainFaults, TooManyNonFiniteStepsInARowStopTheRun) {
  TrainFixture fx;
  json cfg = fx.config("r", 30);
  cfg["train"]["max_bad_steps"] = 3;
  cfg["checkpoint"]["interval"] = 2;
  Trainer t(TrainConfig::from_json(cfg), "");
  t.set_fault_hook([&](int64_t step, LlamaModel& m) {
    // A diverged model: every weight NaN from step 5's update on, so every later loss is.
    if (step == 5) m.set_params(std::vector<float>(size_t(m.layout().total()), NAN));
  });
  try {
    t.run();
    FAIL() << "the run went on with a NaN model";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(has(msg, "stopping at step 8") && has(msg, "3 steps in a row") &&
                has(msg, "non-finite") && has(msg, "train.max_bad_steps") &&
                has(msg, "step_00000004.tlck"))
        << msg;
  }
  // Step 6's checkpoint was not written: its weights were NaN. The newest one is good.
  EXPECT_EQ(find_latest_checkpoint(fx.run("r")), checkpoint_path(fx.run("r"), 4));
  std::vector<json> stops = train_test::events(fx.run("r") + "/metrics.jsonl", "stop");
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_EQ(stops[0]["reason"], "non-finite");
  // Steps 6..8 had NaN losses: logged as null, the update skipped.
  std::vector<double> losses = train_test::train_losses(fx.run("r") + "/metrics.jsonl");
  ASSERT_EQ(losses.size(), 8u);
  EXPECT_TRUE(std::isfinite(losses[4]));
  EXPECT_TRUE(std::isnan(losses[5]) && std::isnan(losses[7]));
}

TEST(TrainFaults, StepGuardFlagsSpikesAndCountsBadSteps) {
  StepGuard h(3, 1.5);
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(h.observe(2.0, true).spike);
  StepVerdict v = h.observe(3.5, true);
  EXPECT_TRUE(v.spike);
  EXPECT_DOUBLE_EQ(v.mean, 2.0);
  EXPECT_FALSE(h.observe(2.1, true).spike);
  EXPECT_FALSE(h.observe(2.0, false).stop);
  EXPECT_FALSE(h.observe(NAN, true).stop);
  StepGuard copy(3, 1.5);
  copy.restore(json::parse(h.state().dump()));  // through text, as in a checkpoint
  EXPECT_TRUE(h.observe(INFINITY, true).stop);
  EXPECT_TRUE(copy.observe(INFINITY, true).stop);
  EXPECT_EQ(h.bad_total(), 3);
  EXPECT_EQ(h.spikes(), 1);
  EXPECT_EQ(h.state(), copy.state());
  // A good step resets the count in a row; early steps (warm-up) are never spikes.
  EXPECT_FALSE(h.observe(2.0, true).bad);
  EXPECT_EQ(h.bad_in_row(), 0);
  StepGuard fresh(3, 1.5);
  fresh.observe(2.0, true);
  EXPECT_FALSE(fresh.observe(10.0, true).spike);
}

TEST(TrainFaults, FullDiskIsAClearErrorAndKeepsThePreviousCheckpoint) {
  TrainFixture fx;
  const std::string cfg = fx.config_file("cfg", fx.config("r", 10));
  const std::string log = fx.dir + "/log.txt";
  ASSERT_EQ(train_test::wait_exit(train_test::spawn_binary({"train", "--config", cfg}, log)), 0)
      << train_test::read_text(log);
  const std::string previous = checkpoint_path(fx.run("r"), 10);
  const std::string before = train_test::read_text(previous);
  ASSERT_GT(before.size(), 150000u);
  // Files may not grow past 150 kB: metrics and config fit, a checkpoint does not. The
  // same message whether the step writes the file or a background thread does.
  for (const char* async : {"false", "true"}) {
    SCOPED_TRACE(std::string("checkpoint.async=") + async);
    const std::string log2 = fx.dir + "/log2_" + async + ".txt";
    const int rc = train_test::wait_exit(train_test::spawn_binary(
        {"train", "--config", cfg, "--resume", "auto", "--set", "train.steps=20", "--set",
         std::string("checkpoint.async=") + async},
        log2, {}, 150000));
    const std::string out = train_test::read_text(log2);
    EXPECT_EQ(rc, 1) << out;
    EXPECT_TRUE(has(out, "cannot save the checkpoint of step 20") && has(out, "File too large") &&
                has(out, "step_00000010.tlck' is intact"))
        << out;
  }
  EXPECT_EQ(train_test::read_text(previous), before);
  EXPECT_NO_THROW(load_checkpoint(previous));
  EXPECT_EQ(train_test::files_in(checkpoint_dir(fx.run("r"))),
            std::vector<std::string>{"step_00000010.tlck"});
}

TEST(TrainFaults, CheckpointFolderThatIsAFileIsReportedAtStart) {
  TrainFixture fx;
  make_dirs(fx.run("r"));
  std::ofstream(fx.run("r") + "/checkpoints") << "a file where the folder should be";
  try {
    Trainer t(TrainConfig::from_json(fx.config("r", 5)), "");
    FAIL() << "started without a place for checkpoints";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "checkpoints")) << e.what();
  }
}

TEST(TrainFaults, ReadOnlyCheckpointFolderIsReportedAtStart) {
  if (::geteuid() == 0) GTEST_SKIP() << "root writes into read-only folders; this needs a user";
  TrainFixture fx;
  make_dirs(fx.run("u/checkpoints"));
  fs::permissions(fx.run("u/checkpoints"), fs::perms::owner_read | fs::perms::owner_exec);
  try {
    Trainer t(TrainConfig::from_json(fx.config("u", 5)), "");
    FAIL() << "started with a read-only checkpoint folder";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "is not writable")) << e.what();
  }
  fs::permissions(fx.run("u/checkpoints"), fs::perms::owner_all);
}

// Issue #18: a bad data shard (found at its first read: a manifest gave its size), a
// damaged --init-from or --resume file were found after the run folder, config.json and
// metrics were written. Every input is checked before anything is created.
TEST(TrainFaults, BadInputsAreFoundBeforeTheRunFolderIsCreated) {
  TrainFixture fx;
  // A prepared data folder: DIR/train, DIR/val and the manifest that lists their sizes.
  const std::string data = fx.dir + "/prepared";
  make_dirs(data + "/train");
  make_dirs(data + "/val");
  std::vector<int32_t> tokens(3000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t(i % 48);
  write_packed_file(data + "/train/t_00000.bin", tokens, 8, tokens.size());
  write_packed_file(data + "/val/v_00000.bin",
                    std::vector<int32_t>(tokens.begin(), tokens.begin() + 1200), 8, 1200);
  std::ofstream(data + "/manifest.json")
      << json{{"sources",
               {{"p",
                 {{"dtype", "u16"},
                  {"max_token_id", 47},
                  {"train", {{"shards", {{{"file", "train/t_00000.bin"}, {"tokens", 3000}}}}}},
                  {"val", {{"shards", {{{"file", "val/v_00000.bin"}, {"tokens", 1200}}}}}}}}}}}
             .dump();
  json cfg = fx.config("r", 5);
  cfg["data"]["sources"] = json::array({json{{"name", "p"}, {"paths", {data + "/train"}}}});
  cfg["data"]["val"] = {data + "/val"};
  ASSERT_NO_THROW(Trainer(TrainConfig::from_json(cfg), "").run());  // the inputs are good
  fs::remove_all(fx.run("r"));
  auto expect_refused = [&](const std::string& resume, const std::string& init_from,
                            const std::string& file, const std::string& why) {
    try {
      Trainer t(TrainConfig::from_json(cfg), resume, init_from);
      ADD_FAILURE() << "started with a bad " << file;
    } catch (const Error& e) {
      EXPECT_TRUE(has(e.what(), file) && has(e.what(), why)) << e.what();
    }
    EXPECT_FALSE(fs::exists(fx.run("r"))) << "the run folder was created for a bad " << file;
  };
  auto damage = [](const std::string& path, size_t at, char c) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(std::streamoff(at));
    f.put(c);
  };
  const std::string train_shard = data + "/train/t_00000.bin",
                    val_shard = data + "/val/v_00000.bin";
  damage(train_shard, 0, 'X');  // magic
  expect_refused("", "", train_shard, "bad magic");
  damage(train_shard, 0, 'L');
  damage(val_shard, 7, 9);  // version
  expect_refused("", "", val_shard, "version 9");
  damage(val_shard, 7, 1);

  // A checkpoint of this model, damaged inside its params section.
  Trainer(TrainConfig::from_json(fx.config("src", 10)), "").run();
  const std::string ck = checkpoint_path(fx.run("src"), 10);
  {  // a byte in the middle of the params section (checkpoint.h: u64 header length at 16)
    const std::string bytes = train_test::read_text(ck);
    uint64_t header_len = 0;
    std::memcpy(&header_len, bytes.data() + 16, 8);
    const json header = json::parse(bytes.substr(24, header_len));
    size_t at = 0;
    for (const json& sec : header["sections"])
      if (sec["name"] == "params")
        at = sec["offset"].get<size_t>() + sec["bytes"].get<size_t>() / 2;
    ASSERT_GT(at, 0u);
    damage(ck, at, char(bytes[at] ^ 0x40));
  }
  expect_refused("", ck, ck, "CRC-32");
  expect_refused(ck, "", ck, "CRC-32");
}
