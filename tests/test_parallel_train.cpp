// The trainer on several in-process ranks (CPU backend, fake communicator): the same
// losses and parameters as one rank with the same global batch; sharded checkpoints that
// resume on another number of ranks and on the plain single-process trainer; a rank whose
// setup fails stops the others with its name.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "checkpoint/load.h"
#include "checkpoint/run_folder.h"
#include "checkpoint/sharded.h"
#include "core/fs.h"
#include "core/rng.h"
#include "data/packed.h"
#include "parallel_test_util.h"
#include "train/trainer.h"

using namespace tl;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  std::string dir;
  Fixture() {
    static int n = 0;
    dir = (fs::temp_directory_path() / cat("tl_dist_train_", ::getpid(), "_", n++)).string();
    fs::remove_all(dir);
    make_dirs(dir + "/a");
    std::vector<int32_t> a;
    Rng rng(4);
    for (int i = 0; i < 12000; ++i)
      a.push_back(rng.below(6) == 0 ? int32_t(rng.below(40)) : i % 40);
    write_packed_file(dir + "/a/a_00000.bin", a, 8, 12000);
  }
  ~Fixture() { fs::remove_all(dir); }

  // Global batch 12 sequences: grad_accum = 12 / (micro_batch 2 x world).
  TrainConfig config(const std::string& run, int world, const std::string& strategy,
                     int64_t steps = 8, bool async_saves = false) const {
    json j{{"model",
            {{"vocab_size", 40},
             {"dim", 32},
             {"n_layers", 2},
             {"n_heads", 4},
             {"n_kv_heads", 2},
             {"ffn_dim", 64},
             {"max_seq_len", 16}}},
           {"data",
            {{"sources", json::array({json{{"name", "a"}, {"paths", {dir + "/a"}}}})},
             {"seq_len", 16}}},
           {"batch", {{"micro_batch", 2}, {"grad_accum", 12 / (2 * world)}}},
           {"optim", {{"lr", 3e-3}, {"warmup_steps", 2}}},
           {"train",
            {{"steps", steps},
             {"seed", 11},
             {"device", "cpu"},
             {"threads", 1},
             {"run_dir", dir + "/" + run},
             {"log_interval", 100}}},
           {"checkpoint", {{"interval", 4}, {"keep", 5}, {"async", async_saves}}}};
    if (!strategy.empty()) j["dist"] = {{"strategy", strategy}, {"timeout_seconds", 30}};
    return TrainConfig::from_json(j);
  }
};

std::vector<double> losses(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::vector<double> out;
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line);
    if (j.contains("loss")) out.push_back(j["loss"].get<double>());
  }
  return out;
}

// Trains on `world` in-process ranks; returns rank 0's final parameters.
std::vector<float> train_ranks(const Fixture& fx, const std::string& run, int world,
                               const std::string& strategy, const std::string& resume = "",
                               bool async_saves = false,
                               const std::function<void(TrainConfig&)>& edit = {}) {
  auto comms = make_fake_communicators(world, 30.0);
  std::vector<float> params;
  std::vector<RankOutcome> out(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        TrainConfig c = fx.config(run, world, strategy, 8, async_saves);
        if (edit) edit(c);
        Trainer t(c, resume, "", std::move(comms[size_t(r)]));
        t.run();
        std::vector<float> p = t.model().get_params();  // collective
        if (r == 0) params = p;
      } catch (const std::exception& e) {
        out[size_t(r)] = {false, e.what()};
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(rank_errors(out), "") << run;
  return params;
}

std::vector<float> train_single(const Fixture& fx, const std::string& run,
                                const std::string& resume = "") {
  Trainer t(fx.config(run, 1, ""), resume);
  t.run();
  return t.model().get_params();
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

void expect_losses_near(const std::vector<double>& got, const std::vector<double>& want,
                        size_t from, const std::string& what) {
  ASSERT_EQ(got.size(), want.size() - from) << what;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[from + i], 1e-5 * want[from + i]) << what << " step " << from + i + 1;
}

}  // namespace

TEST(DistTrain, TwoRanksMatchOneAndResumeOnThreeAndOnOne) {
  Fixture fx;
  const std::vector<float> p1 = train_single(fx, "one");
  const std::vector<double> l1 = losses(fx.dir + "/one");
  ASSERT_EQ(l1.size(), 8u);

  const std::vector<float> p2 = train_ranks(fx, "two", 2, "full_shard");
  expect_losses_near(losses(fx.dir + "/two"), l1, 0, "2 ranks");
  EXPECT_LE(max_abs_diff(p2, p1), 2e-5);
  const std::string ck4 = fx.dir + "/two/checkpoints/step_00000004";
  const std::string ck8 = fx.dir + "/two/checkpoints/step_00000008";
  ASSERT_TRUE(is_sharded_checkpoint(ck4));
  EXPECT_EQ(find_latest_checkpoint(fx.dir + "/two"), ck8);
  // The final sharded checkpoint loads as one model: the trained parameters.
  EXPECT_EQ(load_any_checkpoint(ck8, false).params, p2);

  // Resume the 2-rank step-4 checkpoint on 3 ranks (shard_grad_op) and on the plain trainer.
  const std::vector<float> p3 = train_ranks(fx, "three", 3, "shard_grad_op", ck4);
  expect_losses_near(losses(fx.dir + "/three"), l1, 4, "resumed on 3 ranks");
  EXPECT_LE(max_abs_diff(p3, p1), 2e-5);
  const std::vector<float> q1 = train_single(fx, "back_to_one", ck4);
  expect_losses_near(losses(fx.dir + "/back_to_one"), l1, 4, "resumed on 1 rank");
  EXPECT_LE(max_abs_diff(q1, p1), 2e-5);
}

TEST(DistTrain, ASingleFileCheckpointResumesOnSeveralRanks) {
  Fixture fx;
  train_single(fx, "one");
  const std::vector<double> l1 = losses(fx.dir + "/one");
  const std::string ck4 = fx.dir + "/one/checkpoints/step_00000004.tlck";
  ASSERT_TRUE(file_exists(ck4));
  train_ranks(fx, "two", 2, "no_shard", ck4);
  expect_losses_near(losses(fx.dir + "/two"), l1, 4, "a one-rank checkpoint on 2 ranks");
}

void expect_same_state(const std::string& a, const std::string& b) {
  const CheckpointData x = load_any_checkpoint(a, true), y = load_any_checkpoint(b, true);
  EXPECT_TRUE(x.params == y.params && x.adam_m == y.adam_m && x.adam_v == y.adam_v)
      << a << " and " << b << " hold different states";
  EXPECT_EQ(x.meta.at("step"), y.meta.at("step"));
}

// checkpoint.async on ranks (#17): each rank writes its shard on a background thread (each
// write stretched to 300 ms here) while the next steps run; the ranks commit the set
// (meta.json) once every write is done. Same training, same sets as saving in the step.
TEST(DistTrain, ShardedSavesRunInTheBackgroundAndCommitOnceEveryRankIsDone) {
  Fixture fx;
  const std::vector<float> in_step = train_ranks(fx, "in_step", 2, "full_shard");
  ::setenv("TL_DEBUG_CHECKPOINT_SLEEP_MS", "300", 1);
  const std::vector<float> bg = train_ranks(fx, "bg", 2, "full_shard", "", /*async_saves=*/true);
  ::unsetenv("TL_DEBUG_CHECKPOINT_SLEEP_MS");
  EXPECT_TRUE(bg == in_step);
  EXPECT_EQ(losses(fx.dir + "/bg"), losses(fx.dir + "/in_step"));
  for (int step : {4, 8})
    expect_same_state(sharded_checkpoint_path(fx.dir + "/bg", step),
                      sharded_checkpoint_path(fx.dir + "/in_step", step));
  // Steps ran while step 4's shards were written: its "checkpoint" record comes after
  // step 5's, and it says the step paid only for the host copy.
  std::ifstream in(fx.dir + "/bg/metrics.jsonl");
  int64_t last_step_logged = 0;
  bool seen = false;
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    if (j.contains("loss")) last_step_logged = j["step"].get<int64_t>();
    if (j.value("event", "") == "checkpoint" && j["step"] == 4) {
      seen = true;
      EXPECT_GT(last_step_logged, 4) << "the step-4 set was committed before step 5 ran";
      EXPECT_TRUE(j.contains("copy_seconds")) << line;
      EXPECT_GE(j["seconds"].get<double>(), 0.3) << line;
    }
  }
  EXPECT_TRUE(seen) << "no checkpoint record for step 4";
  // And the background set resumes like the other.
  train_ranks(fx, "resumed", 2, "full_shard", sharded_checkpoint_path(fx.dir + "/bg", 4));
  expect_losses_near(losses(fx.dir + "/resumed"), losses(fx.dir + "/in_step"), 4,
                     "resumed from the background set");
}

// Resuming another run's checkpoint at its last step writes that step again into this run's
// folder, under this run's sharding: a 2-rank set resharded to 3 ranks and to one file, the
// same state bit for bit (tools/gpu/dist_check.sh's "bitwise reload" on GPUs).
TEST(DistTrain, ResumingAnotherRunsLastStepSavesItInThisRunsFolder) {
  Fixture fx;
  train_ranks(fx, "two", 2, "full_shard");
  const std::string ck8 = sharded_checkpoint_path(fx.dir + "/two", 8);
  train_ranks(fx, "three", 3, "full_shard", ck8);
  const std::string re3 = sharded_checkpoint_path(fx.dir + "/three", 8);
  ASSERT_TRUE(is_sharded_checkpoint(re3));
  EXPECT_EQ(read_sharded_meta(re3).at("shard_world"), 3);
  expect_same_state(re3, ck8);
  train_single(fx, "one", ck8);
  const std::string re1 = checkpoint_path(fx.dir + "/one", 8);
  ASSERT_TRUE(file_exists(re1));
  expect_same_state(re1, ck8);
  // Resuming this run's own last checkpoint writes nothing new.
  const auto before = fs::last_write_time(re1);
  train_single(fx, "one", "auto");
  EXPECT_EQ(fs::last_write_time(re1), before);
  EXPECT_EQ(list_checkpoints(fx.dir + "/one").size(), 1u);
}

// dist.reduce_dtype bf16 (#17) against f32 reduction in the trainer: 50 steps, losses
// within dist_check's tolerance (3%; measured here: well under 1%).
TEST(DistTrain, Bf16GradientReductionKeepsTheLossCurveOver50Steps) {
  Fixture fx;
  const auto steps50 = [](const std::string& dtype) {
    return [dtype](TrainConfig& c) {
      c.train.steps = 50;
      c.optim.schedule.decay_steps = 50;
      c.checkpoint.interval = 0;
      c.dist.reduce_dtype = dtype;
    };
  };
  for (const char* strategy : {"full_shard", "shard_grad_op"}) {
    SCOPED_TRACE(strategy);
    const std::string a = cat(strategy, "_f32"), b = cat(strategy, "_bf16");
    const std::vector<float> pa = train_ranks(fx, a, 2, strategy, "", false, steps50("f32"));
    const std::vector<float> pb = train_ranks(fx, b, 2, strategy, "", false, steps50("bf16"));
    const std::vector<double> la = losses(fx.dir + "/" + a), lb = losses(fx.dir + "/" + b);
    ASSERT_EQ(la.size(), 50u);
    ASSERT_EQ(lb.size(), 50u);
    double worst = 0;
    for (size_t i = 0; i < la.size(); ++i) worst = std::max(worst, std::fabs(lb[i] / la[i] - 1));
    std::printf(
        "%s: bf16 vs f32 reduction over 50 steps: losses within %.3g%% (last %.4f vs %.4f)\n",
        strategy, 100 * worst, lb.back(), la.back());
    EXPECT_LE(worst, 0.03);
    EXPECT_LT(la.back(), la.front() * 0.8)
        << "the f32 run must learn for the comparison to mean something";
    EXPECT_GT(max_abs_diff(pa, pb), 0.0)
        << "the bf16 run is bitwise the f32 run: no bf16 reduction";
  }
  TrainConfig c = fx.config("x", 2, "no_shard");
  c.dist.reduce_dtype = "bf16";  // no_shard all-reduces whole gradients: refused by name
  try {
    c.dist.validate();
    ADD_FAILURE() << "no_shard with reduce_dtype bf16 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dist.reduce_dtype"), std::string::npos) << e.what();
  }
}

TEST(DistTrain, ARankWhoseSetupFailsStopsTheOthers) {
  Fixture fx;
  auto comms = make_fake_communicators(2, 30.0);
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      try {
        TrainConfig cfg = fx.config("bad", 2, "full_shard");
        if (r == 1) cfg.data.sources[0].paths = {fx.dir + "/missing"};  // only rank 1's data is bad
        Trainer t(cfg, "", "", std::move(comms[size_t(r)]));
        t.run();
      } catch (const std::exception& e) {
        errors[size_t(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_NE(errors[1].find("missing"), std::string::npos) << errors[1];
  EXPECT_NE(errors[0].find("rank 1 failed"), std::string::npos) << errors[0];
}

TEST(DistTrain, DistConfigIsStrict) {
  DistConfig c =
      DistConfig::from_json(json{{"strategy", "hybrid_shard"}, {"hybrid_group_size", 2}});
  EXPECT_EQ(c.strategy, "hybrid_shard");
  EXPECT_EQ(c.hybrid_group_size, 2);
  EXPECT_EQ(DistConfig::from_json(json::object()).strategy, "");  // single process unless launched
  auto error = [](const json& j) {
    try {
      DistConfig::from_json(j);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error(json{{"strategy", "zero3"}}).find("full_shard, shard_grad_op"),
            std::string::npos);
  EXPECT_NE(error(json{{"timeout", 3}}).find("timeout"), std::string::npos);
  EXPECT_NE(error(json{{"timeout_seconds", 0}}).find("dist.timeout_seconds"), std::string::npos);
  EXPECT_NE(error(json{{"hybrid_group_size", -1}}).find("hybrid_group_size"), std::string::npos);
  EXPECT_FALSE(DistConfig::from_json(json::object()).copy_engines());  // kernels by default
  EXPECT_TRUE(DistConfig::from_json(json{{"all_gather", "copy_engines"}}).copy_engines());
  EXPECT_NE(error(json{{"all_gather", "ce"}}).find("dist.all_gather"), std::string::npos);
}
