// End-to-end training on the CPU: the loss falls, runs are reproducible from a seed,
// a resumed run equals an uninterrupted one, and bad configs or data get clear errors.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "core/fs.h"
#include "core/rng.h"
#include "data/packed.h"
#include "train/trainer.h"

using namespace tl;
namespace fs = std::filesystem;

namespace {

struct TrainFixture {
  std::string dir;
  TrainFixture() {
    dir = (fs::temp_directory_path() / ("tl_train_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(counter()++)))
              .string();
    fs::remove_all(dir);
    make_dirs(dir + "/a");
    make_dirs(dir + "/b");
    make_dirs(dir + "/val");
    // Source a: a learnable pattern (counting modulo 48); source b: a noisy other pattern.
    std::vector<int32_t> a, b, v;
    for (int i = 0; i < 6000; ++i) a.push_back(i % 48);
    Rng rng(9);
    for (int i = 0; i < 6000; ++i) b.push_back(int32_t(48 + (i % 7) + (rng.below(4) == 0 ? rng.below(8) : 0)));
    for (int i = 0; i < 1200; ++i) v.push_back(i % 48);
    write_packed_file(dir + "/a/a_00000.bin", std::vector<int32_t>(a.begin(), a.begin() + 3000), 8, 3000);
    write_packed_file(dir + "/a/a_00001.bin", std::vector<int32_t>(a.begin() + 3000, a.end()), 8, 3000);
    write_packed_file(dir + "/b/b_00000.bin", b, 8, 6000);
    write_packed_file(dir + "/val/v_00000.bin", v, 8, 1200);
  }
  ~TrainFixture() { fs::remove_all(dir); }
  static int& counter() {
    static int n = 0;
    return n;
  }

  json config(const std::string& run, int64_t steps) const {
    return json{
        {"model", {{"vocab_size", 64}, {"dim", 32}, {"n_layers", 2}, {"n_heads", 4}, {"n_kv_heads", 2},
                   {"ffn_dim", 64}, {"max_seq_len", 32}}},
        {"data", {{"sources", json::array({json{{"name", "a"}, {"paths", {dir + "/a"}}, {"weight", 0.7}},
                                           json{{"name", "b"}, {"paths", {dir + "/b"}}, {"weight", 0.3}}})},
                  {"val", {dir + "/val"}},
                  {"seq_len", 16}}},
        {"batch", {{"micro_batch", 4}, {"grad_accum", 2}}},
        {"optim", {{"lr", 1e-2}, {"min_lr", 1e-3}, {"warmup_steps", 5}, {"decay_steps", 40}}},
        {"train", {{"steps", steps}, {"seed", 5}, {"device", "cpu"}, {"threads", 2},
                   {"run_dir", dir + "/" + run}, {"log_interval", 100}}},
        {"eval", {{"interval", 0}, {"batches", 4}}},
        {"checkpoint", {{"interval", 10}, {"keep", 10}}}};
  }
};

std::vector<double> train_losses(const std::string& metrics_path) {
  std::ifstream in(metrics_path);
  std::vector<double> out;
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line);
    if (j.contains("loss")) out.push_back(j["loss"].get<double>());
  }
  return out;
}

}  // namespace

TEST(Train, ShortRunLowersTheLossAndWritesItsFiles) {
  TrainFixture fx;
  Trainer t(TrainConfig::from_json(fx.config("r", 40)), "");
  TrainSummary s = t.run();
  EXPECT_EQ(s.steps, 40);
  ASSERT_GT(s.first_val_loss, 0);
  EXPECT_LT(s.final_val_loss, 0.5 * s.first_val_loss);
  EXPECT_TRUE(file_exists(fx.dir + "/r/config.json"));
  EXPECT_TRUE(file_exists(s.final_checkpoint));
  std::vector<double> losses = train_losses(fx.dir + "/r/metrics.jsonl");
  ASSERT_EQ(losses.size(), 40u);
  EXPECT_LT(losses.back(), 0.5 * losses.front());
  json meta = read_checkpoint_meta(s.final_checkpoint);
  EXPECT_EQ(meta["step"], 40);
  EXPECT_EQ(meta["model"]["dim"], 32);
}

TEST(Train, SameSeedSameLosses) {
  TrainFixture fx;
  Trainer(TrainConfig::from_json(fx.config("r1", 12)), "").run();
  Trainer(TrainConfig::from_json(fx.config("r2", 12)), "").run();
  std::vector<double> a = train_losses(fx.dir + "/r1/metrics.jsonl");
  std::vector<double> b = train_losses(fx.dir + "/r2/metrics.jsonl");
  ASSERT_EQ(a.size(), 12u);
  EXPECT_EQ(a, b);
  json other = fx.config("r3", 12);
  other["train"]["seed"] = 6;
  Trainer(TrainConfig::from_json(other), "").run();
  EXPECT_NE(train_losses(fx.dir + "/r3/metrics.jsonl"), a);
}

TEST(Train, ResumedRunEqualsUninterruptedRun) {
  TrainFixture fx;
  TrainSummary full = Trainer(TrainConfig::from_json(fx.config("full", 24)), "").run();
  Trainer(TrainConfig::from_json(fx.config("part", 12)), "").run();
  TrainSummary resumed = Trainer(TrainConfig::from_json(fx.config("part", 24)), "auto").run();
  EXPECT_EQ(resumed.steps, 24);
  std::vector<double> a = train_losses(fx.dir + "/full/metrics.jsonl");
  std::vector<double> b = train_losses(fx.dir + "/part/metrics.jsonl");
  ASSERT_EQ(a.size(), 24u);
  ASSERT_EQ(b.size(), 24u);
  EXPECT_EQ(a, b);
  CheckpointData x = load_checkpoint(full.final_checkpoint), y = load_checkpoint(resumed.final_checkpoint);
  EXPECT_EQ(x.params, y.params);
  EXPECT_EQ(x.adam_m, y.adam_m);
  EXPECT_EQ(x.adam_v, y.adam_v);
}

TEST(Train, RefusesToOverwriteOrReshapeARun) {
  TrainFixture fx;
  Trainer(TrainConfig::from_json(fx.config("r", 10)), "").run();
  EXPECT_THROW(Trainer(TrainConfig::from_json(fx.config("r", 20)), ""), Error);
  json wider = fx.config("r", 20);
  wider["model"]["dim"] = 48;
  try {
    Trainer(TrainConfig::from_json(wider), "auto");
    FAIL() << "a reshaped model resumed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.dim"), std::string::npos) << e.what();
  }
}

TEST(Train, BadConfigsGetClearErrors) {
  TrainFixture fx;
  auto message = [&](json j) -> std::string {
    try {
      Trainer t(TrainConfig::from_json(j), "");
      return "";
    } catch (const Error& e) {
      return e.what();
    }
  };
  json unknown = fx.config("r", 5);
  unknown["optim"]["learning_rate"] = 1;
  EXPECT_NE(message(unknown).find("optim.learning_rate"), std::string::npos);
  json heads = fx.config("r", 5);
  heads["model"]["n_heads"] = 5;
  EXPECT_NE(message(heads).find("n_heads"), std::string::npos);
  json small_vocab = fx.config("r", 5);
  small_vocab["model"]["vocab_size"] = 50;  // source b holds ids up to 62
  EXPECT_NE(message(small_vocab).find("vocab_size"), std::string::npos);
  json missing = fx.config("r", 5);
  missing["data"]["sources"][0]["paths"] = json::array({fx.dir + "/nope"});
  EXPECT_NE(message(missing).find("nope"), std::string::npos);
  json long_seq = fx.config("r", 5);
  long_seq["data"]["seq_len"] = 64;
  EXPECT_NE(message(long_seq).find("seq_len"), std::string::npos);
  const std::string tok = std::string(TL_SOURCE_DIR) + "/../shared/data/llama2-tokenizer.model";
  if (file_exists(tok)) {
    json big_tok = fx.config("r", 5);
    big_tok["data"]["tokenizer"] = tok;
    EXPECT_NE(message(big_tok).find("32000"), std::string::npos);
  }
}
