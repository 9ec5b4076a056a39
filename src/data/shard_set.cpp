#include "data/shard_set.h"

#include <algorithm>

#include "core/error.h"

namespace tl {

ShardSet::ShardSet(std::vector<std::string> paths, int64_t block_tokens, size_t max_open)
    : paths_(std::move(paths)),
      block_tokens_(block_tokens),
      max_open_(std::max<size_t>(1, max_open)) {
  TL_ASSERT(block_tokens > 0);
  for (const std::string& path : paths_) {
    // Every header (magic, version, dtype, size), now: a bad shard stops a run before it
    // creates its folder, not at the first read of that shard hours later.
    const uint64_t n = read_packed_header(path).chunk_size;
    tokens_.push_back(n);
    blocks_.push_back(int64_t(n / uint64_t(block_tokens_)));
    total_tokens_ += n;
    total_blocks_ += blocks_.back();
  }
}

std::shared_ptr<const PackedShard> ShardSet::open(size_t s) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(open_.begin(), open_.end(), [&](const auto& e) { return e.first == s; });
  if (it != open_.end()) {
    std::rotate(open_.begin(), it, it + 1);
    return open_.front().second;
  }
  auto shard = std::make_shared<const PackedShard>(paths_[s]);
  TL_CHECK(shard->num_tokens() == tokens_[s], "shard '", paths_[s], "' changed while in use (",
           tokens_[s], " tokens at start-up, the file now holds ", shard->num_tokens(), ")");
  if (open_.size() == max_open_) open_.pop_back();
  open_.insert(open_.begin(), {s, shard});
  return shard;
}

void ShardSet::read_block(size_t s, int64_t b, int32_t* out) const {
  TL_ASSERT(s < paths_.size() && b >= 0 && b < blocks_[s]);
  open(s)->read(uint64_t(b) * uint64_t(block_tokens_), uint64_t(block_tokens_), out);
}

uint64_t ShardSet::scan_max(size_t s) const {
  PackedShard shard(paths_[s]);
  constexpr uint64_t kPiece = 1 << 20;
  std::vector<int32_t> buf;
  uint64_t m = 0;
  for (uint64_t at = 0; at < shard.num_tokens(); at += kPiece) {
    const uint64_t n = std::min(kPiece, shard.num_tokens() - at);
    buf.resize(n);
    shard.read(at, n, buf.data());
    for (int32_t t : buf) m = std::max<uint64_t>(m, uint64_t(t));
  }
  return m;
}

}  // namespace tl
