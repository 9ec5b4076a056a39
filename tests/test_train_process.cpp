// The trainer as a process, the way runs die in practice: SIGTERM (preemption) saves and
// exits 0, and kill -9 at random moments, during steps and during checkpoint writes, never
// costs more than one checkpoint interval nor changes the final weights.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <thread>

#include "checkpoint/checkpoint.h"
#include "checkpoint/run_folder.h"
#include "train/trainer.h"
#include "train_test_util.h"

using namespace tl;
using train_test::TrainFixture;

namespace {

using Clock = std::chrono::steady_clock;

// Largest step with a training record in metrics.jsonl (a torn last line is skipped); -1 if none.
int64_t last_logged_step(const std::string& metrics) {
  int64_t last = -1;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("loss")) last = std::max(last, j["step"].get<int64_t>());
  }
  return last;
}

// The newest start/resume event: where the latest process began.
json last_start(const std::string& metrics) {
  json out;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    if (j.is_object() && (j.value("event", "") == "resume" || j.value("event", "") == "start"))
      out = j;
  }
  return out;
}

// A temporary file in dir; of process pid when pid > 0.
bool has_temp_file(const std::string& dir, pid_t pid = 0) {
  const std::string mark = pid > 0 ? ".tmp." + std::to_string(pid) : ".tmp.";
  for (const auto& name : train_test::files_in(dir))
    if (name.size() >= mark.size() && name.find(mark) != std::string::npos) return true;
  return false;
}

// True once process pid has logged its start and reached `step`.
bool reached(const std::string& metrics, pid_t pid, int64_t step) {
  json start = last_start(metrics);
  return start.is_object() && start.value("pid", int64_t(0)) == pid &&
         last_logged_step(metrics) >= step;
}

bool running(pid_t pid) {
  int status;
  return ::waitpid(pid, &status, WNOHANG) == 0;
}

// Polls until pred() holds or the process exits or `seconds` pass; true when pred() held.
template <class Pred>
bool wait_for(pid_t pid, Pred pred, double seconds) {
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    if (pred()) return true;
    int status;
    if (::waitpid(pid, &status, WNOHANG) != 0) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(3));  // leave the cores to the trainer
  }
  return false;
}

}  // namespace

TEST(TrainProcess, SigtermFinishesTheStepSavesAndExitsZero) {
  TrainFixture fx;
  const std::string cfg = fx.config_file("cfg", fx.config("r", 100000));
  const std::string metrics = fx.run("r") + "/metrics.jsonl", log = fx.dir + "/log.txt";
  pid_t pid = train_test::spawn_binary({"train", "--config", cfg}, log);
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(wait_for(
      pid, [&] { return last_logged_step(metrics) >= 5; }, 60))
      << train_test::read_text(log);
  ::kill(pid, SIGTERM);
  ASSERT_EQ(train_test::wait_exit(pid), 0) << train_test::read_text(log);
  const int64_t stopped = last_logged_step(metrics);
  const std::string ck = checkpoint_path(fx.run("r"), stopped);
  ASSERT_TRUE(file_exists(ck)) << train_test::read_text(log);
  EXPECT_EQ(read_checkpoint_meta(ck)["step"], stopped);
  EXPECT_EQ(train_test::events(metrics, "stop").at(0)["reason"], "signal");
  EXPECT_NE(
      train_test::read_text(log).find("stopped by a signal at step " + std::to_string(stopped)),
      std::string::npos);

  // Resume continues from exactly there and matches an uninterrupted run.
  const std::string total = std::to_string(stopped + 3);
  ASSERT_EQ(
      train_test::wait_exit(train_test::spawn_binary(
          {"train", "--config", cfg, "--resume", "auto", "--set", "train.steps=" + total}, log)),
      0)
      << train_test::read_text(log);
  EXPECT_EQ(train_test::events(metrics, "resume").at(0)["step"], stopped);
  TrainSummary ref = Trainer(TrainConfig::from_json(fx.config("ref", stopped + 3)), "").run();
  EXPECT_EQ(load_checkpoint(checkpoint_path(fx.run("r"), stopped + 3)).params,
            load_checkpoint(ref.final_checkpoint).params);
}

// Issue #18: the "continue with:" hint continues this run, --set overrides included (here
// the run folder itself comes from --set): following it resumes from the stopped step.
TEST(TrainProcess, ContinueHintAfterSigtermContinuesThisRun) {
  TrainFixture fx;
  const std::string cfg = fx.config_file("cfg", fx.config("r", 100000));
  const std::string other = fx.run("elsewhere");
  const std::string metrics = other + "/metrics.jsonl", log = fx.dir + "/log.txt";
  pid_t pid = train_test::spawn_binary(
      {"train", "--config", cfg, "--set", "train.run_dir=" + other, "--set", "optim.lr=0.005"},
      log);
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(wait_for(
      pid, [&] { return last_logged_step(metrics) >= 5; }, 60))
      << train_test::read_text(log);
  ::kill(pid, SIGTERM);
  ASSERT_EQ(train_test::wait_exit(pid), 0) << train_test::read_text(log);
  const int64_t stopped = last_logged_step(metrics);
  const std::string text = train_test::read_text(log);
  const std::string mark = "continue with: tinyllama ";
  const size_t at = text.find(mark);
  ASSERT_NE(at, std::string::npos) << text;
  const std::string hint = text.substr(at + mark.size(), text.find('\n', at) - at - mark.size());

  // Follow it, with a step count so that it ends (the hint itself runs to train.steps).
  const std::string total = std::to_string(stopped + 3);
  const std::string follow = std::string("'") + TL_BINARY + "' " + hint +
                             " --set train.steps=" + total + " >>'" + log + "' 2>&1";
  ASSERT_EQ(std::system(follow.c_str()), 0) << hint << "\n" << train_test::read_text(log);
  const auto resumed = train_test::events(metrics, "resume");
  ASSERT_EQ(resumed.size(), 1u) << hint << "\n" << train_test::read_text(log);
  EXPECT_EQ(resumed[0]["step"], stopped);
  EXPECT_FALSE(std::filesystem::exists(fx.run("r")))
      << hint;  // the config file's own run_dir: never used
  const json meta = read_checkpoint_meta(checkpoint_path(other, stopped + 3));
  EXPECT_EQ(meta["step"], stopped + 3);
  EXPECT_EQ(meta["train_config"]["optim"]["lr"], 0.005);
}

// checkpoint.async: SIGTERM while a background write is in flight (writes stretched to
// 300 ms, one every 2 steps) still ends with exit 0, every write finished and recorded, and
// the stopped step's checkpoint complete and valid.
TEST(TrainProcess, SigtermDuringABackgroundWriteWaitsForItAndSaves) {
  TrainFixture fx;
  json j = fx.config("r", 100000);
  j["checkpoint"] = {{"interval", 2}, {"keep", 3}, {"async", true}};
  const std::string cfg = fx.config_file("cfg", j);
  const std::string run = fx.run("r"), metrics = run + "/metrics.jsonl", log = fx.dir + "/log.txt";
  pid_t pid = train_test::spawn_binary({"train", "--config", cfg}, log,
                                       {"TL_DEBUG_CHECKPOINT_SLEEP_MS=300"});
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(wait_for(
      pid, [&] { return has_temp_file(checkpoint_dir(run), pid); }, 60))
      << train_test::read_text(log);
  ::kill(pid, SIGTERM);
  ASSERT_EQ(train_test::wait_exit(pid), 0) << train_test::read_text(log);
  const int64_t stopped = last_logged_step(metrics);
  const std::string ck = checkpoint_path(run, stopped);
  ASSERT_TRUE(file_exists(ck)) << train_test::read_text(log);
  CheckpointData data;
  ASSERT_NO_THROW(data = load_checkpoint(ck));
  EXPECT_EQ(data.meta["step"], stopped);
  EXPECT_FALSE(has_temp_file(checkpoint_dir(run)));
  // Every save was recorded once its write had finished, the stopped step's last.
  std::vector<json> saves = train_test::events(metrics, "checkpoint");
  ASSERT_FALSE(saves.empty());
  EXPECT_EQ(saves.back()["step"], stopped);
  for (const json& e : saves) {
    EXPECT_TRUE(e.contains("copy_seconds")) << e.dump();
    EXPECT_GE(e["seconds"].get<double>(), 0.3) << e.dump();
  }
}

// The crash test: 20 kill -9 in a row, odd ones while a checkpoint is being written (the
// write is stretched by TL_DEBUG_CHECKPOINT_SLEEP_MS), even ones a random number of steps
// into the run. Each restart must resume from the newest checkpoint, which must verify,
// and lose at most one interval; the final weights must equal an uninterrupted run's.
TEST(TrainProcess, TwentyKillsInARowLoseAtMostOneIntervalEach) {
  const auto began = Clock::now();
  TrainFixture fx;
  const int64_t steps = 200, interval = 4;
  json j = fx.config("r", steps);
  j["checkpoint"] = {{"interval", interval}, {"keep", 2}};
  j["train"]["threads"] = 1;
  const std::string cfg = fx.config_file("cfg", j);
  const std::string run = fx.run("r"), metrics = run + "/metrics.jsonl", log = fx.dir + "/log.txt";
  const std::string ck_dir = checkpoint_dir(run);
  const std::vector<std::string> args = {"train", "--config", cfg, "--resume", "auto"};

  std::mt19937 rng(20240611);
  int kills = 0, kills_in_write = 0;
  int64_t worst_loss = 0;
  for (int i = 0; i < 20; ++i) {
    SCOPED_TRACE("kill " + std::to_string(i));
    // What a restart must find: the newest checkpoint, valid.
    std::vector<CheckpointFile> cks = list_checkpoints(run);
    const int64_t expect_from = cks.empty() ? 0 : cks.back().step;
    if (!cks.empty()) {
      ASSERT_NO_THROW(load_checkpoint(cks.back().path));
    }
    const int64_t logged_before = last_logged_step(metrics);

    const bool in_write = i % 2 == 1;
    std::vector<std::string> env;
    if (in_write) env.push_back("TL_DEBUG_CHECKPOINT_SLEEP_MS=300");
    pid_t pid = train_test::spawn_binary(args, log, env);
    ASSERT_GT(pid, 0);
    bool hit;
    if (in_write) {
      hit = wait_for(
          pid, [&] { return has_temp_file(ck_dir, pid); }, 60);
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 100));  // somewhere in it
    } else {
      const int64_t target = expect_from + 1 + int64_t(rng() % (2 * interval));
      hit = wait_for(
          pid, [&] { return reached(metrics, pid, target); }, 60);
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));  // mid-step
    }
    ASSERT_TRUE(hit && running(pid)) << "the trainer ended before the kill\n"
                                     << train_test::read_text(log);
    ::kill(pid, SIGKILL);
    ASSERT_EQ(train_test::wait_exit(pid), 128 + SIGKILL);
    ++kills;
    if (in_write) kills_in_write += has_temp_file(ck_dir, pid);

    // This process began where it had to, and redid at most one interval.
    json start = last_start(metrics);
    ASSERT_TRUE(start.is_object() && start["pid"] == pid) << train_test::read_text(log);
    EXPECT_EQ(start["step"].get<int64_t>(), expect_from);
    const int64_t lost = std::max<int64_t>(0, logged_before - expect_from);
    EXPECT_LE(lost, interval);
    EXPECT_EQ(start["redo_steps"].get<int64_t>(), lost);
    worst_loss = std::max(worst_loss, lost);
  }
  EXPECT_EQ(kills, 20);
  EXPECT_EQ(kills_in_write, 10);  // each left its temporary file behind

  // The last restart runs to the end.
  std::vector<CheckpointFile> cks = list_checkpoints(run);
  ASSERT_FALSE(cks.empty());
  const int64_t last_from = cks.back().step;
  EXPECT_LE(last_logged_step(metrics) - last_from, interval);
  ASSERT_EQ(train_test::wait_exit(train_test::spawn_binary(args, log)), 0)
      << train_test::read_text(log);
  EXPECT_FALSE(has_temp_file(ck_dir));
  EXPECT_FALSE(has_temp_file(run));

  json ref_cfg = fx.config("ref", steps);
  ref_cfg["train"]["threads"] = 1;
  TrainSummary ref = Trainer(TrainConfig::from_json(ref_cfg), "").run();
  CheckpointData a = load_checkpoint(checkpoint_path(run, steps)),
                 b = load_checkpoint(ref.final_checkpoint);
  EXPECT_EQ(std::memcmp(a.params.data(), b.params.data(), a.params.size() * 4), 0);
  EXPECT_EQ(a.params, b.params);
  EXPECT_EQ(a.adam_m, b.adam_m);
  EXPECT_EQ(a.adam_v, b.adam_v);
  EXPECT_EQ(train_test::train_losses(metrics),
            train_test::train_losses(fx.run("ref") + "/metrics.jsonl"));
  const double seconds = std::chrono::duration<double>(Clock::now() - began).count();
  std::printf(
      "crash test: %d kills (%d during checkpoint writes), at most %lld steps redone "
      "after a kill, %.1f s\n",
      kills, kills_in_write, (long long)worst_loss, seconds);
  EXPECT_LT(seconds, 120);
}
