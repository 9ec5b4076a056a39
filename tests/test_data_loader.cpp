// Loaders: block layout, epochs and windows, exact resume, ranks, mixture, errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "core/error.h"
#include "data/loader.h"
#include "data/packed.h"
#include "data/prepare.h"
#include "data_test_util.h"

using namespace tl;

namespace {

// Token j of shard k of source s is s*1e6 + k*1e4 + j, so a block names itself by its first
// token. Shards are i32 (code 4) to hold such ids.
std::string dt_make_source(const dt::TempDir& tmp, int source,
                           const std::vector<int>& shard_tokens) {
  std::string dir = tmp / ("source" + std::to_string(source));
  for (size_t k = 0; k < shard_tokens.size(); ++k) {
    std::vector<int32_t> t(static_cast<size_t>(shard_tokens[k]));
    for (size_t j = 0; j < t.size(); ++j)
      t[j] = int32_t(source * 1000000 + int(k) * 10000 + int(j));
    dt::write_text(dir + "/.keep", "");
    char name[32];
    std::snprintf(name, sizeof name, "/s_%03zu.bin", k);
    write_packed_file(dir + name, t, 4, t.size());
  }
  return dir;
}

TrainLoaderOptions dt_loader_options(std::vector<DataSourceSpec> sources, int seq_len, int batch) {
  TrainLoaderOptions o;
  o.sources = std::move(sources);
  o.seq_len = seq_len;
  o.micro_batch = batch;
  o.seed = 1234;
  return o;
}

// Runs n micro-batches and returns the first token of every row (the block's identity),
// checking that each row is a run of consecutive ids and targets are tokens shifted by one.
std::vector<int32_t> dt_take(TrainLoader& loader, int n, int batch, int T) {
  std::vector<int32_t> tokens(size_t(batch * T)), targets(tokens.size()), firsts;
  for (int i = 0; i < n; ++i) {
    loader.next(tokens.data(), targets.data());
    for (int b = 0; b < batch; ++b) {
      const int32_t* row = tokens.data() + b * T;
      for (int t = 0; t < T; ++t) {
        EXPECT_EQ(row[t], row[0] + t);
        EXPECT_EQ(targets[size_t(b * T + t)], row[t] + 1);
      }
      firsts.push_back(row[0]);
    }
  }
  return firsts;
}

}  // namespace

TEST(DataLoader, SequentialBlocksAreNonOverlappingAndSkipTails) {
  dt::TempDir tmp;
  const int T = 4;                                        // blocks of 5 tokens
  std::string dir = dt_make_source(tmp, 0, {17, 3, 10});  // 3 blocks (+2 unused), 0, 2 blocks
  SequentialBlocks blocks({dir}, T);
  ASSERT_EQ(blocks.num_blocks(), 5);
  const int32_t firsts[] = {0, 5, 10, 20000, 20005};
  std::vector<int32_t> tokens(T), targets(T);
  for (int i = 0; i < 5; ++i) {
    blocks.read(i, tokens.data(), targets.data());
    for (int t = 0; t < T; ++t) {
      EXPECT_EQ(tokens[t], firsts[i] + t);
      EXPECT_EQ(targets[t], firsts[i] + t + 1);
    }
  }
  EXPECT_THROW(blocks.read(5, tokens.data(), targets.data()), Error);
}

TEST(DataLoader, EachEpochTakesEveryBlockOnceInShuffledWindows) {
  dt::TempDir tmp;
  const int T = 3, W = 2;
  // Blocks per shard: 7, 3, 0, 11, 4, 5 (the third shard is shorter than a block).
  std::string dir = dt_make_source(tmp, 0, {28, 12, 3, 44, 17, 20});
  std::map<int, int> blocks_of = {{0, 7}, {1, 3}, {2, 0}, {3, 11}, {4, 4}, {5, 5}};
  auto o = dt_loader_options({{"only", {dir}, 1.0}}, T, 1);
  o.shuffle_window = W;
  TrainLoader loader(o);
  ASSERT_EQ(loader.blocks_in_source(0), 30);
  std::set<int32_t> all;
  for (const auto& [k, n] : blocks_of)
    for (int b = 0; b < n; ++b) all.insert(k * 10000 + b * (T + 1));
  std::vector<std::vector<int32_t>> epochs;
  for (int e = 0; e < 3; ++e) {
    std::vector<int32_t> seq = dt_take(loader, 30, 1, T);
    EXPECT_EQ(std::set<int32_t>(seq.begin(), seq.end()), all) << "epoch " << e;
    // Windows: the sequence splits into runs that each use up all blocks of <= W shards.
    std::set<int> shards;
    int taken = 0, in_run = 0;
    for (int32_t id : seq) {
      shards.insert(id / 10000);
      ++taken;
      in_run = 0;
      for (int s : shards) in_run += blocks_of[s];
      if (taken == in_run) {
        EXPECT_LE(shards.size(), size_t(W))
            << "epoch " << e << ": blocks of a window spread further";
        shards.clear();
        taken = 0;
      }
    }
    EXPECT_EQ(taken, 0);
    epochs.push_back(seq);
  }
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  std::vector<int32_t> sorted = epochs[0];
  std::sort(sorted.begin(), sorted.end());
  EXPECT_NE(epochs[0], sorted) << "blocks are not shuffled";
}

TEST(DataLoader, ResumeIsExact) {
  dt::TempDir tmp;
  const int T = 8, B = 3;
  std::string a = dt_make_source(tmp, 1, {100, 55, 80});
  std::string b = dt_make_source(tmp, 2, {40, 70});
  auto o = dt_loader_options({{"a", {a}, 2.0}, {"b", {b}, 1.0}}, T, B);
  o.shuffle_window = 2;
  TrainLoader straight(o);
  std::vector<int32_t> want = dt_take(straight, 20, B, T);

  TrainLoader first(o);
  std::vector<int32_t> got = dt_take(first, 8, B, T);
  std::string saved = first.state().dump();  // as a checkpoint would store it
  TrainLoader second(o);
  second.restore(json::parse(saved));
  std::vector<int32_t> rest = dt_take(second, 12, B, T);
  got.insert(got.end(), rest.begin(), rest.end());
  EXPECT_EQ(got, want);
  EXPECT_EQ(second.state(), straight.state());
}

TEST(DataLoader, RanksTakeDisjointBlocksThatCoverAnEpoch) {
  dt::TempDir tmp;
  const int T = 4, B = 2, world = 3;
  std::string dir = dt_make_source(tmp, 0, {50, 25, 75});  // 10 + 5 + 15 = 30 blocks
  std::set<int32_t> seen;
  json state0;
  for (int rank = 0; rank < world; ++rank) {
    auto o = dt_loader_options({{"only", {dir}, 1.0}}, T, B);
    o.rank = rank;
    o.world = world;
    o.shuffle_window = 2;
    TrainLoader loader(o);
    for (int32_t id : dt_take(loader, 5, B, T))  // 5 batches x 2 rows x 3 ranks = 30
      EXPECT_TRUE(seen.insert(id).second) << "block " << id << " taken twice (rank " << rank << ")";
    if (rank == 0) state0 = loader.state();
    EXPECT_EQ(loader.state(), state0) << "ranks must hold the same state";
  }
  EXPECT_EQ(seen.size(), 30u);
}

TEST(DataLoader, RanksAreDisjointAcrossAMixture) {
  dt::TempDir tmp;
  const int T = 4, B = 4, world = 2;
  std::string a = dt_make_source(tmp, 1, {200, 300});
  std::string b = dt_make_source(tmp, 2, {150});
  std::set<int32_t> seen;
  for (int rank = 0; rank < world; ++rank) {
    auto o = dt_loader_options({{"a", {a}, 1.0}, {"b", {b}, 1.0}}, T, B);
    o.rank = rank;
    o.world = world;
    TrainLoader loader(o);
    for (int32_t id : dt_take(loader, 3, B, T))  // 24 samples: within the first epoch of both
      EXPECT_TRUE(seen.insert(id).second) << "block " << id << " taken twice";
  }
  EXPECT_EQ(seen.size(), 24u);
}

TEST(DataLoader, MixtureFollowsTheWeights) {
  dt::TempDir tmp;
  const int T = 4, B = 16;
  std::string a = dt_make_source(tmp, 1, {500});
  std::string b = dt_make_source(tmp, 2, {500});
  TrainLoader loader(dt_loader_options({{"a", {a}, 3.0}, {"b", {b}, 1.0}}, T, B));
  std::vector<int32_t> ids = dt_take(loader, 1000, B, T);
  double from_a =
      double(std::count_if(ids.begin(), ids.end(), [](int32_t id) { return id < 2000000; }));
  EXPECT_NEAR(from_a / double(ids.size()), 0.75, 0.015);  // sd 0.0034 over 16000 samples
}

TEST(DataLoader, OrderIsAFunctionOfTheSeed) {
  dt::TempDir tmp;
  std::string a = dt_make_source(tmp, 1, {300, 200});
  std::string b = dt_make_source(tmp, 2, {250});
  auto o = dt_loader_options({{"a", {a}, 1.0}, {"b", {b}, 1.0}}, 4, 4);
  TrainLoader x(o), y(o);
  auto sx = dt_take(x, 10, 4, 4);
  EXPECT_EQ(sx, dt_take(y, 10, 4, 4));
  o.seed = 99;
  TrainLoader z(o);
  EXPECT_NE(sx, dt_take(z, 10, 4, 4));
}

TEST(DataLoader, RestoreRejectsOtherSources) {
  dt::TempDir tmp;
  std::string a = dt_make_source(tmp, 1, {100});
  std::string b = dt_make_source(tmp, 2, {100, 100});
  TrainLoader la(dt_loader_options({{"a", {a}, 1.0}}, 4, 1));
  json state = la.state();
  TrainLoader other_len(dt_loader_options({{"a", {a}, 1.0}}, 5, 1));
  DT_EXPECT_THROW_WITH(other_len.restore(state), "seq_len");
  TrainLoader other_shards(dt_loader_options({{"a", {b}, 1.0}}, 4, 1));
  DT_EXPECT_THROW_WITH(other_shards.restore(state), "fingerprint.sources[0]");
  auto seeded = dt_loader_options({{"a", {a}, 1.0}}, 4, 1);
  seeded.seed = 5;
  TrainLoader other_seed(seeded);
  DT_EXPECT_THROW_WITH(other_seed.restore(state), "seed");
  DT_EXPECT_THROW_WITH(la.restore(json{{"samples", 3}}), "loader state");
  json tampered = state;
  tampered["samples"] = 7;  // counters that do not add up
  DT_EXPECT_THROW_WITH(la.restore(tampered), "7 samples");
}

TEST(DataLoader, ValidationErrorsNameTheProblem) {
  dt::TempDir tmp;
  std::string small = dt_make_source(tmp, 1, {5, 6});
  std::string ok = dt_make_source(tmp, 2, {100});
  DT_EXPECT_THROW_WITH(TrainLoader(dt_loader_options({{"tiny", {small}, 1.0}}, 8, 1)), "'tiny'",
                       "11 tokens", "seq_len+1 = 9");
  DT_EXPECT_THROW_WITH(TrainLoader(dt_loader_options({{"a", {ok}, 0.0}}, 8, 1)), "weight");
  DT_EXPECT_THROW_WITH(TrainLoader(dt_loader_options({{"a", {ok}, 1.0}}, 0, 1)), "seq_len");
  DT_EXPECT_THROW_WITH(TrainLoader(dt_loader_options({{"a", {tmp / "nowhere"}, 1.0}}, 8, 1)),
                       "nowhere");
  auto bad_rank = dt_loader_options({{"a", {ok}, 1.0}}, 8, 1);
  bad_rank.rank = 2;
  bad_rank.world = 2;
  DT_EXPECT_THROW_WITH(TrainLoader{bad_rank}, "rank 2");
  DT_EXPECT_THROW_WITH(SequentialBlocks({small}, 8), "no complete block");
}

TEST(DataLoader, MaxTokenIdAndShardPaths) {
  dt::TempDir tmp;
  std::string a = dt_make_source(tmp, 1, {30, 20});
  std::string b = dt_make_source(tmp, 3, {10});
  TrainLoader loader(dt_loader_options({{"a", {a}, 1.0}, {"b", {b}, 1.0}}, 4, 1));
  EXPECT_EQ(loader.max_token_id(), 3000009u);
  dt::write_text(a + "/notes.txt", "not a shard");
  auto paths = expand_shard_paths({a, b + "/s_000.bin"});
  EXPECT_EQ(paths,
            (std::vector<std::string>{a + "/s_000.bin", a + "/s_001.bin", b + "/s_000.bin"}));
  std::filesystem::create_directories(tmp / "empty");
  DT_EXPECT_THROW_WITH(expand_shard_paths({tmp / "empty"}), "empty", "no *.bin");
  DT_EXPECT_THROW_WITH(expand_shard_paths({tmp / "missing.bin"}), "missing.bin", "does not exist");
  DT_EXPECT_THROW_WITH(expand_shard_paths({a, a + "/s_001.bin"}), "listed twice");
}

namespace {

// The resume fixture: two sources, several shards, mid-epoch after 300 micro-batches.
TrainLoaderOptions dt_resume_options(const std::string& root) {
  dt::TempDir unused;
  auto o = dt_loader_options(
      {{"slim", {root + "/source1"}, 0.693584}, {"star", {root + "/source2"}, 0.306416}}, 16, 4);
  o.shuffle_window = 3;
  return o;
}

}  // namespace

// Run by ResumeInANewProcessIsExact in a child process: restores the saved state and
// writes the first token of each of the next 1000 blocks.
TEST(DataLoader, ResumeChildProcess) {
  const char* dir = std::getenv("DT_LOADER_RESUME_DIR");
  if (!dir) GTEST_SKIP() << "runs only as the child of ResumeInANewProcessIsExact";
  TrainLoader loader(dt_resume_options(dir));
  loader.restore(json::parse(dt::read_text(std::string(dir) + "/state.json")));
  std::ofstream out(std::string(dir) + "/next.txt");
  for (int32_t id : dt_take(loader, 250, 4, 16)) out << id << "\n";
}

TEST(DataLoader, ResumeInANewProcessIsExact) {
  dt::TempDir tmp;
  std::vector<int> slim(12), star(7);
  for (size_t k = 0; k < slim.size(); ++k) slim[k] = 900 + 37 * int(k);  // ~55 blocks of 17 each
  for (size_t k = 0; k < star.size(); ++k) star[k] = 700 + 51 * int(k);
  dt_make_source(tmp, 1, slim);
  dt_make_source(tmp, 2, star);
  const auto o = dt_resume_options(tmp.path());
  TrainLoader straight(o);
  dt_take(straight, 300, 4, 16);  // 1200 blocks: mid-epoch in both sources
  ASSERT_LT(straight.state()["consumed"][0].get<int64_t>(), straight.blocks_in_source(0) * 2);
  dt::write_text(tmp / "state.json", straight.state().dump());
  const std::vector<int32_t> want = dt_take(straight, 250, 4, 16);
  ASSERT_EQ(want.size(), 1000u);
  const std::string cmd = "DT_LOADER_RESUME_DIR=" + tmp.path() + " /proc/" +
                          std::to_string(::getpid()) +
                          "/exe --gtest_filter=DataLoader.ResumeChildProcess";
  auto r = dt::run_command(cmd, tmp.path());
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::vector<int32_t> got;
  std::ifstream in(tmp / "next.txt");
  for (int32_t id; in >> id;) got.push_back(id);
  EXPECT_EQ(got, want);
}

TEST(DataLoader, PrefetchChangesNeitherOrderNorState) {
  dt::TempDir tmp;
  std::string a = dt_make_source(tmp, 1, {300, 200, 150});
  std::string b = dt_make_source(tmp, 2, {250, 90});
  auto o = dt_loader_options({{"a", {a}, 2.0}, {"b", {b}, 1.0}}, 6, 3);
  o.prefetch = 0;
  TrainLoader direct(o);
  o.prefetch = 5;
  TrainLoader ahead(o);
  for (int step = 0; step < 40; ++step) {
    EXPECT_EQ(dt_take(direct, 1, 3, 6), dt_take(ahead, 1, 3, 6)) << "step " << step;
    // The state is that of the batches handed out, not of those read ahead.
    EXPECT_EQ(direct.state(), ahead.state()) << "step " << step;
  }
  // Restore while batches are queued: the queue is dropped and reading resumes from the state.
  json mid = direct.state();
  std::vector<int32_t> want = dt_take(direct, 10, 3, 6);
  dt_take(ahead, 7, 3, 6);
  ahead.restore(mid);
  EXPECT_EQ(dt_take(ahead, 10, 3, 6), want);
  EXPECT_GT(ahead.wait_seconds(), 0.0);
}

TEST(DataLoader, ReadErrorsReachTheCallerInOrder) {
  dt::TempDir tmp;
  std::string a = dt_make_source(tmp, 1, std::vector<int>(10, 40));  // 10 shards of 8 blocks
  auto o = dt_loader_options({{"a", {a}, 1.0}}, 4, 2);
  o.shuffle_window = 1;
  o.prefetch = 3;
  {
    TrainLoader loader(o);
    dt_take(loader, 1, 2, 4);
    // Shards removed under the loader: those not opened yet fail, and next() says so.
    for (const auto& f : std::filesystem::directory_iterator(a)) std::filesystem::remove(f.path());
    bool threw = false;
    for (int i = 0; i < 40 && !threw; ++i) {
      try {
        dt_take(loader, 1, 2, 4);
      } catch (const Error& e) {
        threw = true;
        EXPECT_NE(std::string(e.what()).find("cannot open"), std::string::npos) << e.what();
      }
    }
    EXPECT_TRUE(threw);
    EXPECT_THROW(dt_take(loader, 1, 2, 4), Error);
  }  // and the destructor stops the thread cleanly
  // Token ids beyond the vocabulary are caught on read.
  std::string big = dt_make_source(tmp, 3, {40});
  auto v = dt_loader_options({{"big", {big}, 1.0}}, 4, 1);
  v.vocab_size = 32000;
  TrainLoader loader(v);
  DT_EXPECT_THROW_WITH(dt_take(loader, 1, 1, 4), "outside the vocabulary of 32000", "s_000.bin");
}

TEST(DataLoader, StartUpTakesMaxIdFromTheManifestAndSizesFromTheHeaders) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  std::string text;
  for (int i = 0; i < 200; ++i)
    text += "Sentence number " + std::to_string(i) + " of the manifest test.\n";
  dt::write_text(tmp / "in.txt", text);
  PrepareOptions p;
  p.tokenizer = dt::llama_model();
  p.source = "m";
  p.out_dir = tmp / "out";
  p.inputs = {tmp / "in.txt"};
  p.chunk_tokens = 500;
  p.progress = false;
  json entry = prepare_dataset(p);
  auto o = dt_loader_options({{"m", {tmp / "out/train"}, 1.0}}, 15, 2);
  {
    TrainLoader loader(o);
    EXPECT_EQ(loader.max_token_id(), entry["max_token_id"].get<uint64_t>());
    EXPECT_EQ(loader.max_token_id_origin(), "manifests");
  }
  // A manifest without max_token_id (an older one): the shards are scanned; same answer.
  json m = read_json_file(tmp / "out/manifest.json");
  m["sources"]["m"].erase("max_token_id");
  // and a wrong token count for one shard: sizes come from the (checked) headers.
  m["sources"]["m"]["train"]["shards"][0]["tokens"] = 499;
  dt::write_text(tmp / "out/manifest.json", m.dump());
  TrainLoader loader(o);
  EXPECT_EQ(loader.max_token_id(), entry["max_token_id"].get<uint64_t>());
  EXPECT_NE(loader.max_token_id_origin().find("scan"), std::string::npos);
  EXPECT_EQ(loader.blocks_in_source(0),
            int64_t(entry["tokens"].get<uint64_t>() / 500) * (500 / 16) +
                int64_t(entry["tokens"].get<uint64_t>() % 500) / 16);
}
