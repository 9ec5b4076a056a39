// The collective save and load of a sharded run's checkpoint folder (the files themselves:
// checkpoint/sharded.h). Every rank of the world calls these together, except
// write_rank_shard, which touches files only and so may run on a background thread while
// training goes on (checkpoint.async).
#pragma once
#include <functional>
#include <string>

#include "checkpoint/sharded.h"
#include "core/json_reader.h"
#include "parallel/communicator.h"
#include "parallel/fsdp.h"

namespace tl {

// A save in three parts:
//   start_sharded_save   collective: rank 0 prepares the folder (an older meta.json goes
//                        first), then the ranks go on
//   write_rank_shard     no collective: a rank of the first replica group writes its shard
//                        (data: its Fsdp::get_shard_state); the others write nothing
//   commit_sharded_save  collective, once every rank's write returned: rank 0 writes
//                        meta.json (meta = the training meta), and nobody moves on (or
//                        prunes) before the set is complete
void start_sharded_save(const std::string& dir, Communicator& world);
// Whether this rank writes a shard: the first replica group's ranks (make_fsdp_groups
// numbers groups node by node, so they are ranks 0 .. shard world - 1).
bool writes_shard(const Fsdp& fsdp, const Communicator& world);
void write_rank_shard(const std::string& dir, const json& model, const Fsdp& fsdp,
                      const Communicator& world, CheckpointData data,
                      const std::function<void()>& before_commit = {});
void commit_sharded_save(const std::string& dir, const json& meta, const Fsdp& fsdp,
                         Communicator& world);
// The three in a row. before_commit: passed to each shard's save_checkpoint (crash tests
// widen the write).
void save_sharded_checkpoint(const std::string& dir, const json& meta, Fsdp& fsdp,
                             Communicator& world, const std::function<void()>& before_commit = {});
// read_sharded_checkpoint for this rank's shard, then sets fsdp's shard state (fsdp
// re-gathers). Returns the training meta.
json load_sharded_checkpoint(const std::string& dir, Fsdp& fsdp);

}  // namespace tl
