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
// dist/sharding.h), and the set loads as one full model (export, eval, generate).
// Loads trust no metadata: every field of meta.json and of each shard's header is checked
// (type, rank, world, the set's model, alignment, sizes by the sharding arithmetic) before
// a buffer is allocated, and errors name the file and the field. CRCs cannot stand in for
// this: whoever wrote a shard also wrote its CRC.
#pragma once
#include <functional>
#include <string>

#include "checkpoint/checkpoint.h"
#include "core/json_reader.h"
#include "dist/communicator.h"
#include "dist/fsdp.h"

namespace tl {

// Collective over `world`: the ranks of the first replica group write their shards, then
// rank 0 writes meta.json (meta = the training meta). Removes an older meta.json in dir
// first, so an interrupted overwrite leaves no checkpoint rather than a mixed one.
// before_commit: passed to each shard's save_checkpoint (crash tests widen the write).
void save_sharded_checkpoint(const std::string& dir, const json& meta, Fsdp& fsdp,
                             Communicator& world,
                             const std::function<void()>& before_commit = {});
// Reads this rank's shard under `to` (shard `me` of it), whatever world size wrote the set,
// into out.params/adam_m/adam_v; out.meta = the training meta. Reads files only (no
// collective, nothing applied). Throws naming the file when the set is incomplete or damaged.
void read_sharded_checkpoint(const std::string& dir, const Sharding& to, int me,
                             CheckpointData& out);
// read_sharded_checkpoint, then sets fsdp's shard state (collective: fsdp re-gathers).
json load_sharded_checkpoint(const std::string& dir, Fsdp& fsdp);

// meta.json, after checking its fields (shard files: plain names inside dir, each present
// with its size). Shard headers are checked by the loads.
json read_sharded_meta(const std::string& dir);
bool is_sharded_checkpoint(const std::string& path);  // a folder holding meta.json
// The whole model from a sharded folder (params flat [P]; m and v too when asked).
CheckpointData load_sharded_as_full(const std::string& dir, bool with_optimizer);
// A native checkpoint file or a sharded folder, as one model.
CheckpointData load_any_checkpoint(const std::string& path, bool with_optimizer);

// "step_%08d" (the folder name of a step's checkpoint).
std::string sharded_checkpoint_name(int64_t step);
// Newest complete sharded checkpoint folder in `dir`, "" if none; incomplete or damaged
// ones are reported and skipped.
std::string find_latest_sharded_checkpoint(const std::string& dir);
// Removes all but the newest `keep` step folders of `dir` (meta.json first). The trainer's
// retention (train/checkpoint_policy.h) counts files and folders together instead.
void prune_sharded_checkpoints(const std::string& dir, int keep);
// Deletes one step folder, meta.json first (a half-removed set is no checkpoint); throws
// naming it when it cannot.
void remove_sharded_checkpoint(const std::string& dir);

}  // namespace tl
