// A list of packed shards cut into blocks of block_tokens tokens, with headers read once
// and files mapped lazily: only the few most recently used stay open, so a source of
// hundreds of thousands of shards needs no more mappings than one of ten.
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
  // Opens every shard once to validate its header; with scan_max, also reads all tokens
  // to find the largest id.
  ShardSet(std::vector<std::string> paths, int64_t block_tokens, size_t max_open, bool scan_max);

  size_t size() const { return paths_.size(); }
  const std::string& path(size_t s) const { return paths_[s]; }
  uint64_t tokens(size_t s) const { return tokens_[s]; }
  // Complete blocks of shard s (its tail shorter than a block is not used).
  int64_t blocks(size_t s) const { return int64_t(tokens_[s] / uint64_t(block_tokens_)); }
  const std::vector<int64_t>& block_counts() const { return blocks_; }
  uint64_t total_tokens() const { return total_tokens_; }
  int64_t total_blocks() const { return total_blocks_; }
  uint64_t max_token_id() const { return max_id_; }
  // Copies block b of shard s (block_tokens tokens) into out. Thread-safe.
  void read_block(size_t s, int64_t b, int32_t* out) const;

 private:
  std::shared_ptr<const PackedShard> open(size_t s) const;
  std::vector<std::string> paths_;
  std::vector<uint64_t> tokens_;
  std::vector<int64_t> blocks_;
  int64_t block_tokens_;
  size_t max_open_;
  uint64_t total_tokens_ = 0, max_id_ = 0;
  int64_t total_blocks_ = 0;
  mutable std::mutex mu_;
  mutable std::vector<std::pair<size_t, std::shared_ptr<const PackedShard>>> open_;  // MRU first
};

}  // namespace tl
