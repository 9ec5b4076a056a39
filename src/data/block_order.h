// The order in which one source's blocks are read, as a pure function of (seed, position):
// epoch after epoch, the shards in a seeded order, taken in windows of `window` shards
// whose blocks are shuffled together. Only the current window's permutation is held.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace tl {

class BlockOrder {
 public:
  // shard_blocks[s]: complete blocks in shard s (some may be 0, not all).
  BlockOrder(std::vector<int64_t> shard_blocks, int window, uint64_t seed);
  int64_t blocks_per_epoch() const { return per_epoch_; }
  // Position p of the endless stream → {shard, block within the shard}.
  std::pair<size_t, int64_t> at(uint64_t p);

 private:
  void enter_epoch(uint64_t epoch);
  void enter_window(size_t window);
  std::vector<int64_t> shard_blocks_;
  size_t window_;
  uint64_t seed_;
  int64_t per_epoch_ = 0;
  // The cached epoch: shard order and where each window starts (in blocks, size W+1).
  uint64_t epoch_ = UINT64_MAX;
  std::vector<size_t> order_;
  std::vector<int64_t> window_start_;
  // The cached window: its shards' first block (relative to the window) and the shuffle.
  size_t cur_window_ = SIZE_MAX;
  std::vector<int64_t> shard_start_;
  std::vector<int64_t> perm_;
};

}  // namespace tl
