#include "parallel/sharded_io.h"

namespace tl {

void start_sharded_save(const std::string& dir, Communicator& world) {
  if (world.rank() == 0) begin_sharded_save(dir);
  world.barrier();  // no shard is written into a folder that still says it is complete
}

bool writes_shard(const Fsdp& fsdp, const Communicator& world) {
  return world.rank() < fsdp.sharding().world();
}

void write_rank_shard(const std::string& dir, const json& model, const Fsdp& fsdp,
                      const Communicator& world, CheckpointData data,
                      const std::function<void()>& before_commit) {
  if (!writes_shard(fsdp, world)) return;
  ShardHeader h;
  h.shard_rank = fsdp.shard_rank();
  h.shard_world = fsdp.sharding().world();
  h.strategy = strategy_name(fsdp.strategy());
  h.model = model;
  write_shard(dir, fsdp.sharding(), h, std::move(data), before_commit);
}

void commit_sharded_save(const std::string& dir, const json& meta, const Fsdp& fsdp,
                         Communicator& world) {
  world.barrier();  // every shard is on disk
  if (world.rank() == 0)
    write_sharded_index(dir, world.world(), fsdp.sharding().world(), strategy_name(fsdp.strategy()),
                        meta);
  world.barrier();  // nobody moves on (or prunes) before the set is complete
}

void save_sharded_checkpoint(const std::string& dir, const json& meta, Fsdp& fsdp,
                             Communicator& world, const std::function<void()>& before_commit) {
  start_sharded_save(dir, world);
  CheckpointData d;
  if (writes_shard(fsdp, world)) fsdp.get_shard_state(d.params, d.adam_m, d.adam_v);
  write_rank_shard(dir, meta.at("model"), fsdp, world, std::move(d), before_commit);
  commit_sharded_save(dir, meta, fsdp, world);
}

json load_sharded_checkpoint(const std::string& dir, Fsdp& fsdp) {
  CheckpointData mine;
  read_sharded_checkpoint(dir, fsdp.sharding(), fsdp.shard_rank(), mine);
  fsdp.set_shard_state(mine.params, mine.adam_m, mine.adam_v);
  return mine.meta;
}

}  // namespace tl
