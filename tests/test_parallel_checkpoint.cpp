// Sharded checkpoints: saved at one world size, loaded at others (resharding) with
// identical parameters and optimizer state; the set loads as one full model; a folder
// without its meta.json, or with a shard from another save, is not a checkpoint; shards
// whose metadata disagree with the set are refused naming the file and the field.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <set>

#include "backend/cpu/cpu_backend.h"
#include "checkpoint/load.h"
#include "checkpoint/run_folder.h"
#include "checkpoint/sharded.h"
#include "core/fs.h"
#include "core/rng.h"
#include "data/packed.h"
#include "model/llama.h"
#include "parallel/sharded_io.h"
#include "parallel_test_util.h"
#include "sharded_test_util.h"
#include "text_test_util.h"

using namespace tl;
namespace fs = std::filesystem;

namespace {

ModelConfig cfg() {
  ModelConfig c;
  c.vocab_size = 48;
  c.dim = 24;
  c.n_layers = 3;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.ffn_dim = 40;
  c.max_seq_len = 8;
  return c;
}

struct TempDir {
  std::string path;
  TempDir() {
    static int n = 0;
    path = (fs::temp_directory_path() / cat("tl_dist_ck_", ::getpid(), "_", n++)).string();
    fs::remove_all(path);
    make_dirs(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

struct Saved {
  std::vector<float> params, m, v;  // full, flat
};

// Trains `world` ranks of `strategy` for two steps, saves into dir; returns the full state.
Saved train_and_save(const std::string& dir, ShardStrategy strategy, int world, int group = 0) {
  auto comms = make_fake_communicators(world, 60.0);
  Saved out;
  auto outcome = run_ranks(comms, [&](int r, Communicator& comm) {
    auto be = make_cpu_backend(1);
    FsdpGroups g = make_fsdp_groups(comm, strategy, group);
    Fsdp fsdp(cfg(), *be, strategy, *g.shard, g.replica.get(), AdamWConfig{});
    ModelOptions mo;
    mo.provider = &fsdp;
    LlamaModel model(cfg(), *be, mo);
    model.init_weights(3);
    std::vector<int32_t> tok(8 * 2), tgt(8 * 2);
    for (int s = 0; s < 2; ++s) {
      model.zero_grads();
      for (size_t i = 0; i < tok.size(); ++i) {
        tok[i] = int32_t(hash_mix(s, r, i) % 48);
        tgt[i] = int32_t(hash_mix(s, r, i + 1000) % 48);
      }
      fsdp.begin_micro_batch(true);
      model.forward_backward(tok.data(), tgt.data(), 2, 8, 1.0f / 64);
      fsdp.step(1e-2f);
    }
    save_sharded_checkpoint(dir, json{{"model", cfg().to_json()}, {"step", 2}}, fsdp, comm);
    std::vector<float> p = model.get_params();
    if (r == 0) out.params = p;
  });
  EXPECT_EQ(rank_errors(outcome), "");
  CheckpointData full = load_sharded_as_full(dir, true);
  EXPECT_EQ(full.params, out.params) << "the set must load as the model that was saved";
  out.m = full.adam_m;
  out.v = full.adam_v;
  return out;
}

// Loads dir on `world` ranks and returns the full state they hold.
Saved load_at(const std::string& dir, ShardStrategy strategy, int world) {
  auto comms = make_fake_communicators(world, 60.0);
  Saved out;
  std::vector<std::vector<float>> ms(static_cast<size_t>(world)), vs(static_cast<size_t>(world));
  std::vector<int> shard_rank(static_cast<size_t>(world));
  std::unique_ptr<Sharding> sh;
  auto outcome = run_ranks(comms, [&](int r, Communicator& comm) {
    auto be = make_cpu_backend(1);
    FsdpGroups g = make_fsdp_groups(comm, strategy, 0);
    Fsdp fsdp(cfg(), *be, strategy, *g.shard, g.replica.get(), AdamWConfig{});
    ModelOptions mo;
    mo.provider = &fsdp;
    LlamaModel model(cfg(), *be, mo);
    json meta = load_sharded_checkpoint(dir, fsdp);
    EXPECT_EQ(meta.at("step"), 2);
    std::vector<float> master;
    fsdp.get_shard_state(master, ms[size_t(r)], vs[size_t(r)]);
    shard_rank[size_t(r)] = fsdp.shard_rank();
    std::vector<float> p = model.get_params();
    if (r == 0) {
      out.params = p;
      sh = std::make_unique<Sharding>(fsdp.sharding());
    }
  });
  EXPECT_EQ(rank_errors(outcome), "");
  out.m.assign(out.params.size(), 0.0f);
  out.v = out.m;
  for (int r = 0; r < world; ++r) {
    insert_shard(*sh, shard_rank[size_t(r)], ms[size_t(r)].data(), out.m.data());
    insert_shard(*sh, shard_rank[size_t(r)], vs[size_t(r)].data(), out.v.data());
  }
  return out;
}

void expect_same(const Saved& a, const Saved& b, const std::string& what) {
  EXPECT_TRUE(a.params == b.params) << what << ": params differ";
  EXPECT_TRUE(a.m == b.m) << what << ": adam_m differs";
  EXPECT_TRUE(a.v == b.v) << what << ": adam_v differs";
}

}  // namespace

TEST(DistCheckpoint, SavedOnThreeLoadsOnTwoAndOneIdentically) {
  TempDir t;
  const std::string dir = t.path + "/" + step_name(2);
  Saved saved = train_and_save(dir, ShardStrategy::FullShard, 3);
  EXPECT_TRUE(file_exists(dir + "/shard_00002_of_00003.tlck"));
  EXPECT_TRUE(file_exists(dir + "/meta.json"));
  for (int w : {3, 2, 1})
    expect_same(load_at(dir, ShardStrategy::FullShard, w), saved, cat("full_shard at ", w));
  // Across strategies too: a ZeRO-3 set resumes as ZeRO-2 or plain data parallel.
  expect_same(load_at(dir, ShardStrategy::ShardGradOp, 2), saved, "shard_grad_op at 2");
  expect_same(load_at(dir, ShardStrategy::NoShard, 2), saved, "no_shard at 2");
}

// #17: resuming made every rank read every shard whole (world x the state at 8 ranks).
// A rank now reads the shard headers and only the 1 MiB blocks (checkpoint.h) that hold
// its own slice: exactly those, so at the same world or a divisor of it about its share.
TEST(DistCheckpoint, ResumingRanksReadTheBlocksOfTheirSliceNotTheSet) {
  TempDir t;
  ModelConfig c = cfg();  // large enough that a shard spans many blocks (5.3M parameters)
  c.vocab_size = 4096;
  c.dim = 256;
  c.n_heads = 4;
  c.n_kv_heads = 4;
  c.ffn_dim = 704;
  c.n_layers = 4;
  const ParamLayout layout(c);
  CheckpointData full;
  full.meta = json{{"model", c.to_json()}, {"step", 7}};
  full.params.resize(size_t(layout.total()));
  for (size_t i = 0; i < full.params.size(); ++i) full.params[i] = float(i) * 0.5f;
  full.adam_m = full.adam_v = full.params;
  for (auto& x : full.adam_m) x += 1;
  for (auto& x : full.adam_v) x += 2;
  const std::string dir = t.path + "/set";
  const int saved_world = 4;
  sharded_test::write_sharded_set(dir, full, saved_world);
  const Sharding from(layout, saved_world);
  constexpr uint64_t kBlock = 1 << 20;
  uint64_t headers = 0, set_bytes = 0;
  std::vector<uint64_t> header(saved_world);
  for (int i = 0; i < saved_world; ++i) {
    const std::string f = dir + "/" + sharded_test::shard_name(i, saved_world);
    header[size_t(i)] = read_checkpoint_info(f).header_bytes;
    headers += header[size_t(i)];
    set_bytes += file_size(f);
  }
  for (int world : {4, 2, 3, 1}) {
    const Sharding to(layout, world);
    for (int me = 0; me < world; ++me) {
      SCOPED_TRACE(cat(world, " ranks, rank ", me));
      CheckpointData mine;
      const ShardedReadStats st = read_sharded_checkpoint(dir, to, me, mine);
      std::vector<float> want(size_t(to.shard_total()));
      for (auto [got, src] :
           {std::pair{&mine.params, &full.params}, std::pair{&mine.adam_m, &full.adam_m},
            std::pair{&mine.adam_v, &full.adam_v}}) {
        extract_shard(to, me, src->data(), want.data());
        ASSERT_TRUE(*got == want);
      }
      EXPECT_EQ(mine.meta.at("step"), 7);
      // What the reads must cost: every header (checked before anything is allocated),
      // then, of each shard this slice overlaps, its header again and each block that
      // holds a run of the slice, in each of the three sections.
      uint64_t expect = headers;
      int overlapped = 0;
      for (int i = 0; i < saved_world; ++i) {
        std::set<uint64_t> blocks;
        for (const ReshardRun& r : reshard_runs(from, i, to, me))
          for (uint64_t b = uint64_t(r.src) * 4 / kBlock;
               b <= (uint64_t(r.src + r.len) * 4 - 1) / kBlock; ++b)
            blocks.insert(b);
        if (blocks.empty()) continue;
        overlapped++;
        expect += header[size_t(i)];
        const uint64_t section = uint64_t(from.shard_total()) * 4;
        for (uint64_t b : blocks) expect += 3 * std::min(kBlock, section - b * kBlock);
      }
      EXPECT_EQ(st.bytes_read, expect);
      EXPECT_EQ(st.shards_read, overlapped);
      EXPECT_EQ(st.set_bytes, set_bytes);
      EXPECT_EQ(st.share_bytes, 3 * uint64_t(to.shard_total()) * 4);
      // The bar: at the saved world and at half of it (chunk edges move by the
      // padding, so a rank may touch a block of a third shard).
      if (world == 4 || world == 2) {
        EXPECT_LE(double(st.bytes_read), 1.1 * double(st.share_bytes));
      }
      if (world == 4) {
        EXPECT_EQ(st.shards_read, 1);
      }
      EXPECT_LT(double(st.bytes_read), 0.75 * double(set_bytes) + (world == 1 ? 1e9 : 0));
      std::printf("  %d ranks, rank %d: read %.2f MiB, %.3f x its share (the set: %.2f MiB)\n",
                  world, me, double(st.bytes_read) / kBlock,
                  double(st.bytes_read) / double(st.share_bytes), double(set_bytes) / kBlock);
    }
  }
}

TEST(DistCheckpoint, HybridAndReplicatedRunsWriteOneCopyOfEachShard) {
  TempDir t;
  const std::string hybrid = t.path + "/h", dp = t.path + "/dp";
  Saved a = train_and_save(hybrid, ShardStrategy::HybridShard, 4, 2);
  EXPECT_EQ(read_sharded_meta(hybrid).at("shard_world"), 2);
  EXPECT_FALSE(file_exists(hybrid + "/shard_00002_of_00004.tlck"));
  expect_same(load_at(hybrid, ShardStrategy::FullShard, 3), a, "hybrid -> full_shard at 3");
  Saved b = train_and_save(dp, ShardStrategy::NoShard, 2);
  EXPECT_EQ(read_sharded_meta(dp).at("shard_world"), 1);
  expect_same(load_at(dp, ShardStrategy::FullShard, 2), b, "no_shard -> full_shard at 2");
}

TEST(DistCheckpoint, IncompleteOrMixedFoldersAreNotCheckpoints) {
  TempDir t;  // a run folder: its step folders live in checkpoint_dir(t.path)
  const std::string good = sharded_checkpoint_path(t.path, 2);
  train_and_save(good, ShardStrategy::FullShard, 2);
  // A newer folder whose save never finished: shards but no meta.json.
  const std::string partial = sharded_checkpoint_path(t.path, 3);
  fs::create_directories(partial);
  fs::copy_file(good + "/shard_00000_of_00002.tlck", partial + "/shard_00000_of_00002.tlck");
  EXPECT_FALSE(is_sharded_checkpoint(partial));
  EXPECT_EQ(find_latest_checkpoint(t.path), good) << "a folder without meta.json is no checkpoint";
  ASSERT_EQ(list_incomplete_checkpoints(t.path).size(), 1u);
  EXPECT_EQ(list_incomplete_checkpoints(t.path)[0].path, partial);
  EXPECT_THROW(read_sharded_meta(partial), Error);
  // A newer folder with meta.json but a missing shard: listed (by name), refused on reading.
  const std::string missing = sharded_checkpoint_path(t.path, 4);
  fs::create_directories(missing);
  fs::copy_file(good + "/meta.json", missing + "/meta.json");
  fs::copy_file(good + "/shard_00000_of_00002.tlck", missing + "/shard_00000_of_00002.tlck");
  EXPECT_THROW(read_sharded_meta(missing), Error);
  EXPECT_THROW(load_any_checkpoint(missing, false), Error);
  // A shard from another save (same size, other contents) is caught by its CRC in meta.json.
  const std::string mixed = sharded_checkpoint_path(t.path, 5);
  fs::copy(good, mixed);
  {
    CheckpointData d = load_checkpoint(mixed + "/shard_00001_of_00002.tlck");
    d.params[0] += 1.0f;  // as if written by a different run
    d.meta["data_crc32"] = uint32_t(d.meta["data_crc32"].get<uint32_t>() ^ 1u);
    save_checkpoint(mixed + "/shard_00001_of_00002.tlck", d);
  }
  EXPECT_NO_THROW(read_sharded_meta(mixed)) << "sizes match: the index looks complete";
  try {
    load_sharded_as_full(mixed, false);
    ADD_FAILURE() << "a mixed set must not load";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mixed"), std::string::npos) << e.what();
  }
  // Retention counts complete folders (steps 2, 4, 5) and keeps the newest two.
  EXPECT_EQ(prune_checkpoints(t.path, 2, 0), 1);
  EXPECT_FALSE(fs::exists(good));
  EXPECT_TRUE(fs::exists(missing));
  EXPECT_TRUE(fs::exists(mixed));
  EXPECT_TRUE(fs::exists(partial)) << "an unfinished save is not a checkpoint to prune";
}

// ---- Damaged sets: shards whose own metadata (its CRCs right, listed in meta.json with
// their size and CRC) disagree with the set. Each is refused with a message naming the
// file and the field, before anything is allocated or copied.

namespace {

using sharded_test::make_shard;
using sharded_test::replace_shard;

// The message of the exception f throws (marked when it is not a tl::Error), or a marker.
template <class F>
std::string any_error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return cat("<not a tl::Error: ", e.what(), ">");
  }
  return "<no error>";
}

using text_test::has;

ModelConfig cfg_layers(int n_layers) {
  ModelConfig c = cfg();
  c.n_layers = n_layers;
  return c;
}

struct CliResult {
  int rc = -1;  // the exit status (the shell reports a signal N as 128 + N)
  std::string output;
};

CliResult run_binary(const std::string& args) {
  CliResult r;
  FILE* p = ::popen((std::string("'") + TL_BINARY + "' " + args + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// A 2-shard set of cfg() saved by the real writer, in t/step_00000002.
std::string saved_set(const TempDir& t) {
  const std::string dir = t.path + "/" + step_name(2);
  train_and_save(dir, ShardStrategy::FullShard, 2);
  return dir;
}

}  // namespace

// Issue #18: a shard whose meta describes a far larger model made export and eval write
// past the end of the full buffer (SIGSEGV, no message).
TEST(ShardedCheckpointDamage, ShardsDisagreeingOnTheModelStopExportAndEvalWithAMessage) {
  TempDir t;
  const std::string dir = saved_set(t);
  replace_shard(dir, 1, make_shard(cfg_layers(200), 1, 2));
  const std::string shard = dir + "/shard_00001_of_00002.tlck";
  {
    std::vector<int32_t> v(400);
    for (size_t i = 0; i < v.size(); ++i) v[i] = int32_t(i % 48);
    write_packed_file(t.path + "/val.bin", v, 8, v.size());
  }
  for (const std::string& cmd : {cat("export --checkpoint '", dir, "' --out '", t.path, "/hf'"),
                                 cat("eval --checkpoint '", dir, "' --data '", t.path,
                                     "/val.bin' --seq-len 7 --threads 1")}) {
    const CliResult r = run_binary(cmd);
    EXPECT_EQ(r.rc, 1) << cmd << " (128 + N: killed by signal N)\n" << r.output;
    EXPECT_TRUE(has(r.output, shard) && has(r.output, "field 'model'")) << cmd << "\n" << r.output;
  }
  EXPECT_FALSE(fs::exists(t.path + "/hf/model.safetensors"));
}

// Issue #18: a section shorter than its shard's meta says was read past its end, on the
// full load and on the resharding (resume) path alike.
TEST(ShardedCheckpointDamage, AShortSectionIsRefusedOnBothLoadPaths) {
  TempDir t;
  const std::string dir = saved_set(t);
  CheckpointData d = load_checkpoint(dir + "/shard_00001_of_00002.tlck");
  for (auto* v : {&d.params, &d.adam_m, &d.adam_v}) v->resize(v->size() / 2);
  replace_shard(dir, 1, d);
  Sharding three(ParamLayout(cfg()), 3);
  CheckpointData mine;
  for (const std::string& msg :
       {any_error_of([&] { load_sharded_as_full(dir, false); }),
        any_error_of([&] { read_sharded_checkpoint(dir, three, 2, mine); })}) {
    EXPECT_TRUE(has(msg, "shard_00001_of_00002.tlck") && has(msg, "section 'params'")) << msg;
  }
  EXPECT_TRUE(mine.params.empty()) << "nothing is allocated before every shard is checked";
}

// Issue #18: a shard claiming a smaller model loaded silently, the rest of the full
// buffer left zero (export wrote zeros into 13 of 39 tensors; resume went on from it).
TEST(ShardedCheckpointDamage, AShardOfASmallerModelIsRefusedNotLoadedAsZeros) {
  TempDir t;
  const std::string dir = saved_set(t);
  replace_shard(dir, 1, make_shard(cfg_layers(1), 1, 2));
  Sharding one(ParamLayout(cfg()), 1);
  CheckpointData mine;
  for (const std::string& msg :
       {any_error_of([&] { load_sharded_as_full(dir, false); }),
        any_error_of([&] { load_sharded_as_full(dir, true); }),
        any_error_of([&] { read_sharded_checkpoint(dir, one, 0, mine); })}) {
    EXPECT_TRUE(has(msg, "shard_00001_of_00002.tlck") && has(msg, "field 'model'")) << msg;
  }
  // The same model but a size field that lies is named too.
  CheckpointData lie = make_shard(cfg(), 1, 2);
  lie.meta["shard_total"] = lie.meta["shard_total"].get<int64_t>() - 128;
  replace_shard(dir, 1, lie);
  const std::string msg = any_error_of([&] { load_sharded_as_full(dir, false); });
  EXPECT_TRUE(has(msg, "shard_00001_of_00002.tlck") && has(msg, "field 'shard_total'")) << msg;
}

// Issue #18: meta.json's shard names were joined to the folder unchecked.
TEST(ShardedCheckpointDamage, ShardFileNamesMustStayInTheFolder) {
  TempDir t;
  const std::string dir = saved_set(t);
  make_dirs(t.path + "/outside");
  fs::copy_file(dir + "/shard_00000_of_00002.tlck", t.path + "/outside/x.tlck");
  const json good = sharded_test::read_meta(dir);
  for (const std::string& name : {std::string("../outside/x.tlck"), t.path + "/outside/x.tlck"}) {
    json m = good;
    m["shards"][0]["file"] = name;
    sharded_test::write_meta(dir, m);
    for (const std::string& msg : {any_error_of([&] { read_sharded_meta(dir); }),
                                   any_error_of([&] { load_sharded_as_full(dir, false); })})
      EXPECT_TRUE(has(msg, dir + "/meta.json") && has(msg, "field 'shards[0].file'") &&
                  has(msg, name))
          << msg;
  }
}

// Issue #18: a missing or ill-typed key surfaced as a bare JSON exception.
TEST(ShardedCheckpointDamage, IndexFieldsAreCheckedNamingTheFileAndTheField) {
  TempDir t;
  const std::string dir = saved_set(t);
  const std::string meta_path = dir + "/meta.json";
  const json good = sharded_test::read_meta(dir);
  struct Case {
    std::function<void(json&)> edit;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](json& m) { m["shards"][1].erase("file"); }, "field 'shards[1].file' is missing"},
      {[](json& m) { m["shards"][0]["bytes"] = "100"; }, "field 'shards[0].bytes'"},
      {[](json& m) { m["shards"][0]["crc32"] = -1; }, "field 'shards[0].crc32'"},
      {[](json& m) { m["shards"][1] = 7; }, "field 'shards[1]'"},
      {[](json& m) { m["shard_world"] = "2"; }, "field 'shard_world'"},
      {[](json& m) { m["shards"] = json::object(); }, "field 'shards'"},
      {[](json& m) { m.erase("version"); }, "field 'version' is missing"},
      {[](json& m) { m.erase("meta"); }, "field 'meta' is missing"},
      {[](json& m) { m["meta"].erase("model"); }, "field 'meta.model' is missing"},
      {[](json& m) { m["meta"]["model"]["n_layers"] = "3"; }, "meta.model"},
  };
  for (const Case& c : cases) {
    json m = good;
    c.edit(m);
    sharded_test::write_meta(dir, m);
    const std::string msg = any_error_of([&] { load_sharded_as_full(dir, false); });
    EXPECT_TRUE(has(msg, meta_path) && has(msg, c.field)) << c.field << ": " << msg;
  }
  sharded_test::write_meta(dir, good);
  // A shard's own header meta, too.
  CheckpointData d = load_checkpoint(dir + "/shard_00001_of_00002.tlck");
  d.meta["shard_rank"] = "1";
  replace_shard(dir, 1, d);
  std::string msg = any_error_of([&] { load_sharded_as_full(dir, false); });
  EXPECT_TRUE(has(msg, "shard_00001_of_00002.tlck") && has(msg, "field 'shard_rank'")) << msg;
  d.meta.erase("shard_rank");
  replace_shard(dir, 1, d);
  msg = any_error_of([&] { load_sharded_as_full(dir, false); });
  EXPECT_TRUE(has(msg, "shard_00001_of_00002.tlck") && has(msg, "field 'shard_rank' is missing"))
      << msg;
  // And what the CLI prints: the message, exit status 1.
  json m = good;
  m["shards"][1].erase("file");
  sharded_test::write_meta(dir, m);
  const CliResult r = run_binary(cat("export --checkpoint '", dir, "' --out '", t.path, "/hf'"));
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_TRUE(has(r.output, meta_path) && has(r.output, "field 'shards[1].file' is missing"))
      << r.output;
}
