// A list of packed shards cut into blocks of block_tokens tokens. Start-up reads each
// shard's 24-byte header (checked: magic, version, dtype, size; one small read per shard)
// and no tokens. Files are mapped lazily and only the few most recently used stay open,
// so a source of hundreds of thousands of shards needs no more mappings than one of ten.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "data/packed.h"

namespace tl {

class ShardSet {
 public:
  // Throws naming the first shard whose header is bad.
  ShardSet(std::vector<std::string> paths, int64_t block_tokens, size_t max_open);

  size_t size() const { return paths_.size(); }
  const std::string& path(size_t s) const { return paths_[s]; }
  uint64_t tokens(size_t s) const { return tokens_[s]; }
  // Complete blocks of shard s (its tail shorter than a block is not used).
  int64_t blocks(size_t s) const { return int64_t(tokens_[s] / uint64_t(block_tokens_)); }
  const std::vector<int64_t>& block_counts() const { return blocks_; }
  uint64_t total_tokens() const { return total_tokens_; }
  int64_t total_blocks() const { return total_blocks_; }
  // Copies block b of shard s (block_tokens tokens) into out. Thread-safe.
  void read_block(size_t s, int64_t b, int32_t* out) const;
  // Largest token id among all tokens of shard s (reads the whole shard).
  uint64_t scan_max(size_t s) const;

 private:
  std::shared_ptr<const PackedShard> open(size_t s) const;
  std::vector<std::string> paths_;
  std::vector<uint64_t> tokens_;
  std::vector<int64_t> blocks_;
  int64_t block_tokens_;
  size_t max_open_;
  uint64_t total_tokens_ = 0;
  int64_t total_blocks_ = 0;
  mutable std::mutex mu_;
  mutable std::vector<std::pair<size_t, std::shared_ptr<const PackedShard>>> open_;  // MRU first
};

}  // namespace tl
