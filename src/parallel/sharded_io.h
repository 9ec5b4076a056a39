// The collective save and load of a sharded run's checkpoint folder (the files themselves:
// checkpoint/sharded.h). Every rank of the world calls these together.
#pragma once
#include <functional>
#include <string>

#include "checkpoint/sharded.h"
#include "core/json_reader.h"
#include "parallel/communicator.h"
#include "parallel/fsdp.h"

namespace tl {

// The ranks of the first replica group write their shards, then rank 0 writes meta.json
// (meta = the training meta) once every shard is on disk. before_commit: passed to each
// shard's save_checkpoint (crash tests widen the write).
void save_sharded_checkpoint(const std::string& dir, const json& meta, Fsdp& fsdp,
                             Communicator& world, const std::function<void()>& before_commit = {});
// read_sharded_checkpoint for this rank's shard, then sets fsdp's shard state (fsdp
// re-gathers). Returns the training meta.
json load_sharded_checkpoint(const std::string& dir, Fsdp& fsdp);

}  // namespace tl
