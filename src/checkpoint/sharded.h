// Checkpoints of a sharded run: a folder
//   step_00001000/
//     shard_00000_of_00004.tlck   one per shard: a native checkpoint (checkpoint.h) whose
//     ...                         params/adam_m/adam_v sections hold that shard
//                                 [shard_total] and whose meta describes the sharding
//     meta.json                   written last, by rank 0, once every shard is on disk:
//                                 the shard files with their sizes and CRC-32s, and the
//                                 training meta (model, config, step, loader, ...)
// A folder without meta.json, or whose files do not match it, is not a checkpoint: resume
// skips it. Shards load on any number of ranks (resharding through the index maps of
// model/sharding.h), and the set loads as one full model (checkpoint/load.h).
// This file reads, checks, writes and removes the files; the collective save and load of
// a sharded run (which ranks write what, and when) are parallel/sharded_io.h.
// Loads trust no metadata: every field of meta.json and of each shard's header is checked
// (type, rank, world, the set's model, alignment, sizes by the sharding arithmetic) before
// a buffer is allocated, and errors name the file and the field. CRCs cannot stand in for
// this: whoever wrote a shard also wrote its CRC.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "checkpoint/checkpoint.h"
#include "core/json_reader.h"
#include "model/sharding.h"

namespace tl {

// What one shard file says about itself (its header meta; checked against the set on load).
struct ShardHeader {
  int shard_rank = 0, shard_world = 1;
  std::string strategy;  // the sharding strategy that wrote it (informational)
  json model;            // the set's model config
};
// Writes `dir`/shard_RRRRR_of_GGGGG.tlck: data holds the shard [sharding.shard_total()] of
// params, adam_m and adam_v. Atomic (checkpoint.h); before_commit as for save_checkpoint.
void write_shard(const std::string& dir, const Sharding& sharding, const ShardHeader& h,
                 CheckpointData data, const std::function<void()>& before_commit = {});
// Starts a save into `dir`: creates it and removes an older meta.json first, so that an
// interrupted overwrite leaves no checkpoint rather than a mixed one.
void begin_sharded_save(const std::string& dir);
// Completes the set once every shard is on disk: meta.json (written last, atomically) lists
// the shard files with their sizes and CRC-32s, and holds the training meta. world: the
// ranks of the run that wrote it; shard_world: the shards.
void write_sharded_index(const std::string& dir, int world, int shard_world,
                         const std::string& strategy, const json& meta);

// What a resuming rank read (headers included) against what it holds.
struct ShardedReadStats {
  uint64_t bytes_read = 0;
  uint64_t share_bytes = 0;  // params, adam_m and adam_v of its shard [to.shard_total()]
  uint64_t set_bytes = 0;    // the shard files of the whole set
  int shards_read = 0;       // files whose data it read, of the set's shard_world
};
// Reads this rank's shard under `to` (shard `me` of it), whatever world size wrote the set,
// into out.params/adam_m/adam_v; out.meta = the training meta. Of each shard file it reads
// the header and only the blocks that overlap its own slice (checkpoint.h), so a rank
// reads about its share whatever the world sizes, not the set. Reads files only (no
// collective, nothing applied). Throws naming the file when the set is incomplete or damaged.
ShardedReadStats read_sharded_checkpoint(const std::string& dir, const Sharding& to, int me,
                                         CheckpointData& out);
// meta.json, after checking its fields (shard files: plain names inside dir, each present
// with its size). Shard headers are checked by the loads.
json read_sharded_meta(const std::string& dir);
bool is_sharded_checkpoint(const std::string& path);  // a folder holding meta.json
// The whole model from a sharded folder (params flat [P]; m and v too when asked).
CheckpointData load_sharded_as_full(const std::string& dir, bool with_optimizer);
// Deletes one step folder, meta.json first (a half-removed set is no checkpoint); throws
// naming it when it cannot.
void remove_sharded_checkpoint(const std::string& dir);

}  // namespace tl
