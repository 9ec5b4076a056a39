#include "parallel/sharded_io.h"

namespace tl {

void save_sharded_checkpoint(const std::string& dir, const json& meta, Fsdp& fsdp,
                             Communicator& world, const std::function<void()>& before_commit) {
  const Sharding& sh = fsdp.sharding();
  const int G = sh.world();
  // The first G ranks are replica 0 (make_fsdp_groups numbers groups node by node).
  const bool writer = world.rank() < G;
  if (world.rank() == 0) begin_sharded_save(dir);
  world.barrier();
  if (writer) {
    CheckpointData d;
    fsdp.get_shard_state(d.params, d.adam_m, d.adam_v);
    ShardHeader h;
    h.shard_rank = fsdp.shard_rank();
    h.shard_world = G;
    h.strategy = strategy_name(fsdp.strategy());
    h.model = meta.at("model");
    write_shard(dir, sh, h, std::move(d), before_commit);
  }
  world.barrier();
  if (world.rank() == 0)
    write_sharded_index(dir, world.world(), G, strategy_name(fsdp.strategy()), meta);
  world.barrier();  // nobody moves on (or prunes) before the set is complete
}

json load_sharded_checkpoint(const std::string& dir, Fsdp& fsdp) {
  CheckpointData mine;
  read_sharded_checkpoint(dir, fsdp.sharding(), fsdp.shard_rank(), mine);
  fsdp.set_shard_state(mine.params, mine.adam_m, mine.adam_v);
  return mine.meta;
}

}  // namespace tl
