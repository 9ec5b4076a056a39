// How the flat parameter array (model/param_layout.h) is cut into shards for FSDP. Pure
// arithmetic, no devices: FSDP (parallel/fsdp.h) and the sharded checkpoints
// (checkpoint/sharded.h) both use it.
//
// Units: the embedding, each layer, and the final norm + output head; each is one
// contiguous range [begin, end) of the flat array. A unit is padded at its end to a
// multiple of world * align elements and cut into `world` equal chunks: rank r owns
// unit-local elements [r * shard, (r + 1) * shard). So an all-gather of the ranks' chunks
// (in rank order) is the unit's padded range as it lies in the flat array, and a
// reduce-scatter of a unit's padded gradient gives each rank its chunk.
//
// Three layouts of the same numbers:
//   flat    the model's array, [P]                           (ParamLayout offsets)
//   padded  units back to back, each padded, [padded_total]  (full buffers in FSDP)
//   shard   one rank's chunks of every unit, [shard_total]   (master weights, AdamW state)
#pragma once
#include <cstdint>
#include <vector>

#include "model/param_layout.h"

namespace tl {

struct ShardUnit {
  int64_t begin = 0, end = 0;          // flat range
  int64_t padded = 0;                  // end - begin rounded up to a multiple of world * align
  int64_t shard = 0;                   // padded / world: elements per rank
  int64_t padded_offset = 0;           // start of this unit in the padded layout
  int64_t shard_offset = 0;            // start of this unit's chunk in every rank's shard
  bool backward_needs_weights = true;  // false for the embedding (its backward is a scatter)
  int64_t len() const { return end - begin; }
};

// A run of elements that is contiguous in both the flat array and one rank's shard.
struct ShardPiece {
  int64_t flat = 0;   // start in the flat array
  int64_t shard = 0;  // start in the owner's shard
  int64_t len = 0;
};

class Sharding {
 public:
  // Units come from layout; align (elements) keeps every chunk 256-byte aligned in any dtype.
  Sharding(const ParamLayout& layout, int world, int64_t align = kParamAlign);

  int world() const { return world_; }
  int64_t align() const { return align_; }
  int64_t flat_total() const { return flat_total_; }
  int64_t padded_total() const { return padded_total_; }
  int64_t shard_total() const { return shard_total_; }  // the same on every rank
  int64_t max_unit_padded() const { return max_padded_; }
  int num_units() const { return int(units_.size()); }
  const ShardUnit& unit(int u) const { return units_[size_t(u)]; }
  const std::vector<ShardUnit>& units() const { return units_; }

  int unit_of(int64_t flat_index) const;           // the unit holding a flat index
  int owner(int64_t flat_index) const;             // the rank whose shard holds it
  int64_t shard_index(int64_t flat_index) const;   // its position in the owner's shard
  int64_t padded_index(int64_t flat_index) const;  // its position in the padded layout

  // The flat elements rank r owns, in shard order; together over all ranks they cover
  // [0, flat_total) exactly once. Shard positions not covered are padding.
  std::vector<ShardPiece> pieces(int rank) const;

 private:
  int world_;
  int64_t align_;
  int64_t flat_total_ = 0, padded_total_ = 0, shard_total_ = 0, max_padded_ = 0;
  std::vector<ShardUnit> units_;
};

// Unit numbering shared with the model's hooks (model/param_provider.h).
std::vector<ShardUnit> model_units(const ParamLayout& layout);

// Host-side gather/scatter by the index maps (checkpoints, resharding, tests).
// shard[shard_total] of rank r <- full[flat_total]; padding positions are set to 0.
void extract_shard(const Sharding& s, int rank, const float* full, float* shard);
// full[flat_total] <- shard of rank r (only the positions rank r owns are written).
void insert_shard(const Sharding& s, int rank, const float* shard, float* full);
// A run of values that lies contiguous in src_rank's shard under one sharding and in
// dst_rank's shard under another.
struct ReshardRun {
  int64_t src = 0, dst = 0, len = 0;  // shard positions and length
};
// What dst_rank's shard under `to` takes from src_rank's shard under `from`, sorted by src
// (empty when they share nothing): what a resuming rank reads of a saved shard.
std::vector<ReshardRun> reshard_runs(const Sharding& from, int src_rank, const Sharding& to,
                                     int dst_rank);
// dst shard of rank dst_rank under `to` <- what src_rank's shard under `from` holds of it.
// Copying from every src_rank fills the destination completely (resharding, one source
// shard in memory at a time).
void reshard_copy(const Sharding& from, int src_rank, const float* src, const Sharding& to,
                  int dst_rank, float* dst);

}  // namespace tl
