// What a resuming rank reads of a sharded checkpoint (#17), at a real model's size:
//   tinyllama_resume_read_bench DIR [PRESET] [SAVED_WORLD] [WORLD...]
// Writes a SAVED_WORLD-shard set of PRESET (default tinyllama-1.1b, 4 shards; synthetic
// values) into DIR with the trainer's writer, then reads it as every rank of each WORLD
// (default 4 2 3 1) would on resume (read_sharded_checkpoint: the same code a GPU job runs,
// files only), checks each rank's values, and prints bytes read against the rank's share.
// Needs disk for the set (13.2 GB at 1.1B) and memory for one rank's state.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "checkpoint/sharded.h"
#include "core/error.h"
#include "core/timer.h"
#include "model/config.h"
#include "model/sharding.h"

using namespace tl;

namespace {
// Exact in f32 (integers below 2^24): the check below compares bits, not roundings.
float value_at(int64_t flat, int which) { return float(flat % 100003 + which * 200000); }
}  // namespace

int main(int argc, char** argv) {
  try {
    TL_CHECK(argc >= 2, "usage: tinyllama_resume_read_bench DIR [PRESET] [SAVED_WORLD] [WORLD...]");
    const std::string dir = argv[1];
    const ModelConfig cfg = ModelConfig::from_preset(argc > 2 ? argv[2] : "tinyllama-1.1b");
    const int saved = argc > 3 ? std::atoi(argv[3]) : 4;
    std::vector<int> worlds;
    for (int i = 4; i < argc; ++i) worlds.push_back(std::atoi(argv[i]));
    if (worlds.empty()) worlds = {4, 2, 3, 1};
    const ParamLayout layout(cfg);
    const Sharding from(layout, saved);
    const double mib = double(1 << 20);

    Timer wt;
    begin_sharded_save(dir);
    for (int r = 0; r < saved; ++r) {
      CheckpointData d;
      for (auto* v : {&d.params, &d.adam_m, &d.adam_v}) v->assign(size_t(from.shard_total()), 0.0f);
      for (const ShardPiece& p : from.pieces(r))
        for (int64_t i = 0; i < p.len; ++i) {
          d.params[size_t(p.shard + i)] = value_at(p.flat + i, 0);
          d.adam_m[size_t(p.shard + i)] = value_at(p.flat + i, 1);
          d.adam_v[size_t(p.shard + i)] = value_at(p.flat + i, 2);
        }
      ShardHeader h;
      h.shard_rank = r;
      h.shard_world = saved;
      h.strategy = "full_shard";
      h.model = cfg.to_json();
      write_shard(dir, from, h, std::move(d));
    }
    write_sharded_index(dir, saved, saved, "full_shard",
                        json{{"model", cfg.to_json()}, {"step", 1}});
    std::printf("wrote a %d-shard set of %s (%.0f M parameters) in %.1f s\n", saved,
                cfg.preset.c_str(), double(layout.total()) / 1e6, wt.seconds());

    for (int world : worlds) {
      const Sharding to(layout, world);
      double worst = 0;
      for (int me = 0; me < world; ++me) {
        Timer rt;
        CheckpointData mine;
        const ShardedReadStats st = read_sharded_checkpoint(dir, to, me, mine);
        const double secs = rt.seconds();
        for (const ShardPiece& p : to.pieces(me))  // every value is the saved one
          for (int64_t i = 0; i < p.len; i += 997)
            TL_CHECK(mine.params[size_t(p.shard + i)] == value_at(p.flat + i, 0) &&
                         mine.adam_v[size_t(p.shard + i)] == value_at(p.flat + i, 2),
                     "rank ", me, " of ", world, " read a wrong value at flat ", p.flat + i, ": ",
                     mine.params[size_t(p.shard + i)], " / ", mine.adam_v[size_t(p.shard + i)],
                     ", saved ", value_at(p.flat + i, 0), " / ", value_at(p.flat + i, 2));
        const double ratio = double(st.bytes_read) / double(st.share_bytes);
        worst = std::max(worst, ratio);
        std::printf(
            "  %d -> %d ranks, rank %d: read %.1f MiB of %d shard file(s) in %.1f s; its share "
            "%.1f MiB: %.4f x (the set: %.1f MiB)\n",
            saved, world, me, double(st.bytes_read) / mib, st.shards_read, secs,
            double(st.share_bytes) / mib, ratio, double(st.set_bytes) / mib);
      }
      std::printf("%d -> %d ranks: at most %.4f x a rank's share\n", saved, world, worst);
    }
    std::filesystem::remove_all(dir);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
